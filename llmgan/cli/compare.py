"""`llmgan compare JOB --data DATA`: the job's images beside the training images nearest each prompt."""

from __future__ import annotations

from typing import Annotated

import typer

from llmgan.cli.common import CacheDir, Data, OutFile, S3Endpoint, handle_errors


@handle_errors
def compare_command(
    job: Annotated[str, typer.Argument(metavar="JOB", help="A generation job's output folder or s3:// prefix.")],
    data: Data,
    out: OutFile,
    rows: Annotated[int, typer.Option("--rows", help="Prompts shown, sampled across the job.")] = 12,
    real: Annotated[int, typer.Option("--real", help="Training images per prompt (nearest captions).")] = 2,
    generated: Annotated[int, typer.Option("--generated", help="Generated images per prompt.")] = 4,
    text_encoder: Annotated[str | None, typer.Option(
        "--text-encoder", help="Sentence encoder for caption similarity (default: packaged MiniLM).")] = None,
    cache_dir: CacheDir = None,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Write a PNG: per prompt, the training images whose captions are nearest it (left) and the job's images
    (right), so a reader can judge the model against its data and see whether it only copies it."""
    from llmgan.io.images import png_bytes
    from llmgan.io.storage import Storage
    from llmgan.job.compare_sheet import comparison_sheet

    storage = Storage(s3_endpoint)
    sheet = comparison_sheet(storage, job, data, rows=rows, real=real, generated=generated,
                             text_encoder=text_encoder, cache_dir=cache_dir)
    storage.write_bytes(out, png_bytes(sheet))
    typer.echo(f"wrote {out} ({sheet.width}x{sheet.height}): {real} training | {generated} generated per prompt")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
