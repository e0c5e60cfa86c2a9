"""`python -m llmgan` runs the CLI."""

from llmgan.cli.app import main

if __name__ == "__main__":
    main()
