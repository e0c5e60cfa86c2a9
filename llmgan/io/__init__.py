"""I/O on local paths and s3:// URLs: storage primitives and the prompts reader."""
