"""`llmgan train`: train the text-conditioned GAN on Ray Train (default) or in this process (--local); resumable from --out."""

from __future__ import annotations

import json
import os

import typer

from llmgan.cli.common import OutDir, S3Endpoint, Seed, handle_errors, setup_logging
from llmgan.errors import UserError


@handle_errors
def train_command(
    local: bool = typer.Option(False, "--local", help="Train in this process without Ray."),
    data: str = typer.Option(..., "--data", help="Captioned images: Parquet file/folder, WebDataset shards or image folder (local or s3://)."),
    out: OutDir = ...,  # the run folder: rerunning the same command resumes from it
    steps: int | None = typer.Option(None, "--steps", help="Total training steps (a resumed run continues up to this); default 10000."),
    epochs: float | None = typer.Option(None, "--epochs", help="Distributed: train for this many passes over the data instead of --steps."),
    workers: int = typer.Option(2, "--workers", help="Distributed: Ray Train workers (DDP processes)."),
    gpu: bool = typer.Option(False, "--gpu", help="Train on GPU (distributed: one GPU per worker)."),
    cpus_per_worker: int = typer.Option(0, "--cpus-per-worker", help="Distributed: CPUs (torch threads) per worker (0 = split the cluster's CPUs)."),
    max_failures: int = typer.Option(3, "--max-failures", help="Distributed: worker failures to recover from (restart from the latest checkpoint)."),
    address: str | None = typer.Option(None, "--address", help="Distributed: Ray cluster address (default: RAY_ADDRESS, else a local Ray)."),
    log_every: int = typer.Option(50, "--log-every", help="Steps between metrics rows."),
    image_size: int = typer.Option(32, "--image-size", help="32, 64, 128 or 256."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per step (distributed: all workers together)."),
    seed: Seed = 0,
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Steps between checkpoints."),
    sample_every: int = typer.Option(500, "--sample-every", help="Steps between sample grids."),
    eval_every: int = typer.Option(500, "--eval-every", help="Steps between per-attribute accuracy checks."),
    g_width: int = typer.Option(32, "--g-width", help="Generator width (channels at full resolution)."),
    d_width: int = typer.Option(32, "--d-width", help="Discriminator width."),
    contrastive_weight: float = typer.Option(1.0, "--contrastive-weight", help="Image-text contrastive loss weight (0 = off)."),
    contrastive_pool: int = typer.Option(0, "--contrastive-pool", help="Extra dataset captions per step as contrastive negatives (0 = off)."),
    threads: int = typer.Option(0, "--threads", help="Torch CPU threads (0 = all available cores)."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="Hugging Face encoder dir (default: packaged MiniLM)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Do not track per-attribute accuracy."),
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Train the text-conditioned GAN; prints a JSON summary (steps, images/s, accuracy) on stdout."""
    # idle OpenMP threads sleep instead of spinning: on a shared CPU box spinning made steps ~10x slower
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    setup_logging()
    if not local:
        _train_distributed(
            data, out, image_size=image_size, batch_size=batch_size, g_width=g_width, d_width=d_width,
            contrastive_weight=contrastive_weight, contrastive_pool=contrastive_pool, steps=steps, epochs=epochs,
            workers=workers, gpu=gpu, cpus_per_worker=cpus_per_worker, seed=seed, checkpoint_every=checkpoint_every,
            sample_every=sample_every, eval_every=eval_every, log_every=log_every, max_failures=max_failures,
            address=address, text_encoder=text_encoder, no_eval=no_eval, s3_endpoint=s3_endpoint,
        )
        return
    if epochs is not None:
        raise UserError("--epochs is for distributed training; with --local give --steps")
    if threads < 0:
        raise UserError(f"--threads must be >= 0, got {threads}")
    from llmgan.gan.config import GanConfig
    from llmgan.gan.trainer import LocalTrainOptions, train_local
    from llmgan.io.storage import Storage

    config = GanConfig(
        image_size=image_size, batch_size=batch_size, g_width=g_width, d_width=d_width,
        contrastive_weight=contrastive_weight, contrastive_pool=contrastive_pool,
    )
    options = LocalTrainOptions(
        steps=10_000 if steps is None else steps, seed=seed, checkpoint_every=checkpoint_every, sample_every=sample_every,
        eval_every=eval_every, log_every=log_every, threads=threads or None, text_encoder=text_encoder,
        device="cuda" if gpu else "cpu",
    )
    summary = train_local(data, out, config, options, storage=Storage(s3_endpoint),
                          evaluator=None if no_eval else _shapes_accuracy())
    typer.echo(json.dumps(summary))


def _shapes_accuracy() -> object | None:
    """Per-attribute accuracy under the shipped attribute classifier (train_local drops it when the data lacks
    the labels)."""
    import logging

    from llmgan.eval.classifier import load_classifier
    from llmgan.gan.train_report import AccuracyEvaluator

    try:
        return AccuracyEvaluator(load_classifier())
    except Exception as exc:  # noqa: BLE001 - accuracy tracking is optional
        logging.getLogger("llmgan.train").info("no evaluation classifier (%s); accuracy is not tracked", exc)
        return None


def _train_distributed(data: str, out: str, *, image_size: int, batch_size: int, g_width: int, d_width: int,
                       contrastive_weight: float, contrastive_pool: int, steps: int | None, epochs: float | None,
                       workers: int, gpu: bool, cpus_per_worker: int, seed: int, checkpoint_every: int,
                       sample_every: int, eval_every: int, log_every: int, max_failures: int, address: str | None,
                       text_encoder: str | None, no_eval: bool, s3_endpoint: str | None) -> None:
    """The Ray Train path (llmgan.distributed.train); a run that keeps failing is one line and exit 1."""
    from llmgan.cli.common import EXIT_RUNTIME_ERROR, fail
    from llmgan.distributed.train import DistTrainOptions, TrainFailed, run_train
    from llmgan.gan.config import GanConfig
    from llmgan.io.storage import Storage

    if cpus_per_worker < 0:
        raise UserError(f"--cpus-per-worker must be >= 0, got {cpus_per_worker}")
    config = GanConfig(image_size=image_size, batch_size=batch_size, g_width=g_width, d_width=d_width,
                       contrastive_weight=contrastive_weight, contrastive_pool=contrastive_pool)
    options = DistTrainOptions(
        steps=steps, epochs=epochs, workers=workers, gpu=gpu, cpus_per_worker=cpus_per_worker or None, seed=seed,
        checkpoint_every=checkpoint_every, sample_every=sample_every, eval_every=eval_every, log_every=log_every,
        max_failures=max_failures, address=address,
        text_encoder=text_encoder, classifier=None if no_eval else "default",
    )
    try:
        summary = run_train(data, out, config, options, storage=Storage(s3_endpoint))
    except TrainFailed as exc:
        raise fail(str(exc), EXIT_RUNTIME_ERROR) from None
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
