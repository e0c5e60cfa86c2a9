"""Entry point for `ray job submit -- python jobs/benchmark.py [--quick] --out DIR` (same as `llmgan bench`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, under `ray job submit --working-dir`

import typer  # noqa: E402

from llmgan.cli.bench import bench  # noqa: E402

if __name__ == "__main__":
    typer.run(bench)
