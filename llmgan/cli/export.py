"""`llmgan export OUT DEST`: a job's shards as a plain folder of PNGs named by prompt id, plus manifest.csv."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from llmgan.cli.common import EXIT_RUNTIME_ERROR, Quiet, S3Endpoint, fail, handle_errors


@handle_errors
def export_command(
    src: Annotated[str, typer.Argument(metavar="SRC", help="A generation job's output folder or s3:// prefix.")],
    dest: Annotated[str, typer.Argument(metavar="DEST", help="Folder or s3:// prefix to write into (empty or new).")],
    partial: Annotated[bool, typer.Option(
        "--partial", help="Export the committed shards of an unfinished job (no _SUCCESS.json).")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Write into a non-empty DEST (files of the same name are replaced).")] = False,
    s3_endpoint: S3Endpoint = None,
    quiet: Quiet = False,
) -> None:
    """Write DEST/{prompt_id}/{variant}_{index}.{png,webp,jpg} (the job's image format) for every image of the job in SRC, and DEST/manifest.csv
    (one row per image: path, prompt id, prompt, caption, seed, variant, consistency, ..., your extra columns)."""
    from llmgan.io.storage import Storage
    from llmgan.job.export import ExportError, plan_export, run_export

    storage = Storage(s3_endpoint)
    plan = plan_export(storage, src, dest, partial=partial, overwrite=overwrite)  # every check, nothing written
    if not plan.complete:
        typer.echo(f"warning: {src} is unfinished: exporting {len(plan.shards)} of {plan.planned_shards} shards",
                   err=True)
    t0 = time.perf_counter()

    def progress(shard: int, done: int, total: int) -> None:
        if not quiet:
            rate = done / max(time.perf_counter() - t0, 1e-9)
            print(f"[llmgan] export: shard {shard:05d} done: {done}/{total} images ({rate:.0f} img/s)",
                  file=sys.stderr, flush=True)

    try:
        result = run_export(storage, plan, progress)
    except ExportError as exc:
        raise fail(str(exc), EXIT_RUNTIME_ERROR) from None
    typer.echo(f"{result['images']} images from {result['shards']} shards -> {dest} "
               f"({result['manifest']}; {time.perf_counter() - t0:.1f}s)")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
