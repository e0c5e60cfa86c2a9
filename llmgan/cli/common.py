"""Shared CLI plumbing: one-line errors with exit codes, stderr logging, and the options every command shares
(declared once here as `Annotated` aliases; each command's default comes from its config dataclass)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from llmgan.errors import StorageError, UserError

F = TypeVar("F", bound=Callable[..., Any])

# Options shared by several commands. Usage: `seed: Seed = SomeConfig.seed`, `s3_endpoint: S3Endpoint = None`.
Seed = Annotated[int, typer.Option("--seed", min=0, help="Seed: the same seed gives the same output, byte for byte.")]
S3Endpoint = Annotated[str | None, typer.Option(
    "--s3-endpoint", help="S3 endpoint URL for s3:// paths (default: env AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL).")]
Ckpt = Annotated[str | None, typer.Option(
    "--ckpt", help="GAN checkpoint folder, training run folder or s3:// prefix (default: the bundled shapes model).")]
Lm = Annotated[str | None, typer.Option(
    "--lm", help="Caption LM: HF directory, s3:// or hub id (default: the bundled shapes captioner).")]
Model = Annotated[str | None, typer.Option(
    "--model", help="A shipped model bundle: shapes (32 px), emoji or icons (64 px RGBA): its GAN, scorer and caption LM; "
    "--ckpt / --lm replace a part.")]
OutDir = Annotated[str, typer.Option("--out", help="Output folder (local path or s3://bucket/prefix).")]
OutFile = Annotated[str, typer.Option("--out", help="Output file (local path or s3://bucket/key).")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress output (the summary is still printed).")]
Data = Annotated[str, typer.Option(
    "--data", help="Captioned images: Parquet file/folder, WebDataset shards or image folder (local or s3://).")]
BestOf = Annotated[int, typer.Option(
    "--best-of", help="Draw K candidates per image and keep the one D scores as the best caption match.")]
Threads = Annotated[int | None, typer.Option(
    "--threads", help="Torch CPU threads (1 is often fastest on a busy machine).")]
CacheDir = Annotated[str | None, typer.Option(
    "--cache-dir", help="Local cache folder for caption-embedding tables (never the data's folder; default: "
    "$LLMGAN_CACHE_DIR, else $XDG_CACHE_HOME/llmgan, else ~/.cache/llmgan).")]

EXIT_USER_ERROR = 2
EXIT_RUNTIME_ERROR = 1
EXIT_QUALITY = 3  # generate: every shard written, but --fail-below-share was exceeded


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print `error: message` on one line to stderr and return the Exit to raise."""
    first_line = str(message).strip().splitlines()[0] if str(message).strip() else "failed"
    typer.echo(f"error: {first_line}", err=True)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn known failures into one line on stderr and a non-zero exit instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise fail(str(exc), EXIT_USER_ERROR) from None
        except StorageError as exc:
            raise fail(str(exc), EXIT_RUNTIME_ERROR) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Logs go to stderr; results go to stdout. quiet: errors only (`--quiet` prints the summary alone)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
