"""`llmgan train --local`: train the text-conditioned GAN in this process (no Ray), resumable from --out."""

from __future__ import annotations

import json
import os

import typer

from llmgan.cli.common import handle_errors, setup_logging
from llmgan.errors import UserError


@handle_errors
def train_command(
    local: bool = typer.Option(False, "--local", help="Train in this process without Ray."),
    data: str = typer.Option(..., "--data", help="Captioned images: Parquet file/folder, WebDataset shards or image folder (local or s3://)."),
    out: str = typer.Option(..., "--out", help="Run directory (local or s3://); rerun the same command to resume."),
    steps: int = typer.Option(10_000, "--steps", help="Total training steps (a resumed run continues up to this)."),
    image_size: int = typer.Option(32, "--image-size", help="32, 64, 128 or 256."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per step."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation, batches and noise."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Steps between checkpoints."),
    sample_every: int = typer.Option(500, "--sample-every", help="Steps between sample grids."),
    eval_every: int = typer.Option(500, "--eval-every", help="Steps between per-attribute accuracy checks."),
    g_width: int = typer.Option(32, "--g-width", help="Generator width (channels at full resolution)."),
    d_width: int = typer.Option(32, "--d-width", help="Discriminator width."),
    contrastive_weight: float = typer.Option(1.0, "--contrastive-weight", help="Image-text contrastive loss weight (0 = off)."),
    threads: int = typer.Option(0, "--threads", help="Torch CPU threads (0 = all available cores)."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="Hugging Face encoder dir (default: packaged MiniLM)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Do not track per-attribute accuracy."),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL [env: AWS_ENDPOINT_URL_S3]."),
) -> None:
    """Train the text-conditioned GAN; prints a JSON summary (steps, images/s, accuracy) on stdout."""
    # idle OpenMP threads sleep instead of spinning: on a shared CPU box spinning made steps ~10x slower
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    setup_logging()
    if not local:
        raise UserError("distributed training is not available yet: pass --local to train in this process")
    if threads < 0:
        raise UserError(f"--threads must be >= 0, got {threads}")
    from llmgan.gan.config import GanConfig
    from llmgan.gan.local_train import LocalTrainOptions, train_local
    from llmgan.io.storage import Storage

    config = GanConfig(
        image_size=image_size, batch_size=batch_size, g_width=g_width, d_width=d_width,
        contrastive_weight=contrastive_weight,
    )
    options = LocalTrainOptions(
        steps=steps, seed=seed, checkpoint_every=checkpoint_every, sample_every=sample_every,
        eval_every=eval_every, threads=threads or None, text_encoder=text_encoder,
        classifier=None if no_eval else "default",
    )
    summary = train_local(data, out, config, options, storage=Storage(s3_endpoint))
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
