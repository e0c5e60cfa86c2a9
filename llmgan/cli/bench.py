"""`llmgan bench` (also `jobs/benchmark.py`): every speed benchmark as side-by-side ratios, in one run."""

from __future__ import annotations

from pathlib import Path

import typer

from llmgan.cli.common import handle_errors, setup_logging


@handle_errors
def bench(
    out: str = typer.Option("bench", "--out", help="Folder for bench.json and bench.md."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes: a few minutes on 2 cores."),
    only: list[str] | None = typer.Option(None, "--only", help="Run benchmarks whose name starts with this."),
) -> None:
    """Measure pipeline efficiency, LLM batching, embedding cache, memory at scale, ... as ratios."""
    setup_logging()
    from llmgan.bench.report import run_bench

    report = run_bench(out, quick, only, log=lambda m: typer.echo(m, err=True))
    typer.echo((Path(out) / "bench.md").read_text())
    failed = [k for k, v in report["results"].items() if "error" in v]
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
