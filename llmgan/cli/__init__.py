"""The `llmgan` command line (the only package that imports typer)."""
