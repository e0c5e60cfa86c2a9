"""`llmgan data shapes|digits|prompt-pairs`: write the built-in datasets as Parquet (local path or s3://)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from llmgan.cli.common import handle_errors, setup_logging
from llmgan.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa

data_app = typer.Typer(
    help="Build the built-in captioned training datasets (shapes, digits) as Parquet.",
    no_args_is_help=True,
)


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields a callback taking the number of samples done."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


def _check_out(out: str) -> None:
    if not out.strip():
        raise UserError("--out must not be empty")
    if not out.startswith("s3://") and Path(out).is_dir():
        raise UserError(f"--out {out} is a directory; give a file path such as {Path(out) / 'data.parquet'}")


def _summary(kind: str, table: pa.Table, out: str, size: int, seconds: float, extra: str = "") -> str:
    mb = sum(len(b) for b in table["image"].to_pylist() if b) / 1e6
    return f"wrote {table.num_rows} {kind} images ({size}x{size}{extra}, {mb:.1f} MB of PNG) to {out} in {seconds:.1f}s"


@data_app.command("shapes")
@handle_errors
def shapes_command(
    n: int = typer.Option(..., "--n", help="Number of images."),
    out: str = typer.Option(..., "--out", help="Output Parquet file (local path or s3://bucket/key.parquet)."),
    size: int = typer.Option(32, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed writes the same bytes."),
    split: str = typer.Option("train", "--split", help="train (no held-out combinations), heldout, or all."),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL [env: AWS_ENDPOINT_URL_S3]."),
) -> None:
    """Procedural shapes: one coloured shape per image, with a caption and a short prompt."""
    setup_logging()
    from llmgan.data.shapes import generate_shapes, write_dataset
    from llmgan.io.storage import Storage

    _check_out(out)
    storage = Storage(s3_endpoint)
    storage.check_bucket(out)  # fail before the work, not after it
    start = time.perf_counter()
    with _progress("shapes", max(n, 0)) as progress:
        table = generate_shapes(n, size=size, seed=seed, split=split, progress=progress)
    write_dataset(table, out, storage)
    typer.echo(_summary("shapes", table, out, size, time.perf_counter() - start, f", split {split}, seed {seed}"))


@data_app.command("prompt-pairs")
@handle_errors
def prompt_pairs_command(
    n: int = typer.Option(..., "--n", help="Number of (short prompt, caption) pairs."),
    out: str = typer.Option(..., "--out", help="Output Parquet file (local path or s3://bucket/key.parquet)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed writes the same bytes."),
    detail: float = typer.Option(0.6, "--detail", help="For half the pairs: chance that the prompt states each of "
                                 "size, position, background."),
    split: str = typer.Option("all", "--split", help="all, train (no held-out pairs) or heldout."),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL [env: AWS_ENDPOINT_URL_S3]."),
) -> None:
    """Shapes (short prompt -> caption) pairs without images: training data for `llmgan train-lm`."""
    setup_logging()
    from llmgan.data.shapes import generate_prompt_pairs, write_dataset
    from llmgan.io.storage import Storage

    _check_out(out)
    storage = Storage(s3_endpoint)
    storage.check_bucket(out)
    start = time.perf_counter()
    table = generate_prompt_pairs(n, seed=seed, detail=detail, split=split)
    write_dataset(table, out, storage)
    typer.echo(f"wrote {table.num_rows} prompt pairs (split {split}, seed {seed}, detail {detail}) to {out} in "
               f"{time.perf_counter() - start:.1f}s")


@data_app.command("digits")
@handle_errors
def digits_command(
    out: str = typer.Option(..., "--out", help="Output Parquet file (local path or s3://bucket/key.parquet)."),
    size: int = typer.Option(32, "--size", help="Image side in pixels (upscaled from 8x8)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the caption wording."),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL [env: AWS_ENDPOINT_URL_S3]."),
) -> None:
    """Real handwritten digits (scikit-learn, 1,797 images) with measured thickness/slant captions."""
    setup_logging()
    from llmgan.data.digits import generate_digits
    from llmgan.data.shapes import write_dataset
    from llmgan.io.storage import Storage

    _check_out(out)
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")
    storage = Storage(s3_endpoint)
    storage.check_bucket(out)
    start = time.perf_counter()
    with _progress("digits", 1797) as progress:
        table = generate_digits(size=size, seed=seed, progress=progress)
    write_dataset(table, out, storage)
    typer.echo(_summary("digits", table, out, size, time.perf_counter() - start))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
