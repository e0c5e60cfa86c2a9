"""`llmgan train`: train the text-conditioned GAN on Ray Train (default) or in this process (--local); resumable from --out."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated

import typer

from llmgan.cli.common import CacheDir, Data, OutDir, S3Endpoint, Seed, Threads, handle_errors, setup_logging
from llmgan.distributed.train_options import DistTrainOptions
from llmgan.errors import UserError
from llmgan.gan.config import GanConfig
from llmgan.gan.train_options import LocalTrainOptions

if TYPE_CHECKING:
    from llmgan.io.storage import Storage

Dist = DistTrainOptions


@handle_errors
def train_command(
    data: Data,
    out: OutDir,  # the run folder: rerunning the same command resumes from it
    local: Annotated[bool, typer.Option("--local", help="Train in this process without Ray.")] = False,
    steps: Annotated[int | None, typer.Option(
        "--steps", help="Total training steps (a resumed run continues up to this); default 10000.")] = None,
    epochs: Annotated[float | None, typer.Option(
        "--epochs", help="Distributed: train for this many passes over the data instead of --steps.")] = Dist.epochs,
    workers: Annotated[int, typer.Option("--workers", help="Distributed: Ray Train workers (DDP processes).")] = Dist.workers,
    gpu: Annotated[bool, typer.Option("--gpu", help="Train on GPU (distributed: one GPU per worker).")] = Dist.gpu,
    cpus_per_worker: Annotated[int | None, typer.Option(
        "--cpus-per-worker", help="Distributed: CPUs (torch threads) per worker (default: split the cluster's CPUs).")
    ] = Dist.cpus_per_worker,
    max_failures: Annotated[int, typer.Option(
        "--max-failures", help="Distributed: worker failures to recover from (restart from the latest checkpoint).")
    ] = Dist.max_failures,
    address: Annotated[str | None, typer.Option(
        "--address", help="Distributed: Ray cluster address (default: RAY_ADDRESS, else a local Ray).")] = Dist.address,
    log_every: Annotated[int, typer.Option("--log-every", help="Steps between metrics rows.")] = LocalTrainOptions.log_every,
    health_warmup: Annotated[int, typer.Option(
        "--health-warmup", help="Steps before the training-health checks start (blank or collapsed samples, D far "
        "ahead, matcher memorising; warnings as they appear, listed at the end).")] = LocalTrainOptions.health_warmup,
    image_size: Annotated[int, typer.Option("--image-size", help="32, 64, 128 or 256.")] = GanConfig.image_size,
    channels: Annotated[int | None, typer.Option(
        "--channels", help="3 (RGB) or 4 (RGBA). Default: RGBA when any training image is transparent.")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Images per step (distributed: all workers together).")] = GanConfig.batch_size,
    seed: Seed = LocalTrainOptions.seed,
    checkpoint_every: Annotated[int, typer.Option(
        "--checkpoint-every", help="Steps between checkpoints.")] = LocalTrainOptions.checkpoint_every,
    sample_every: Annotated[int, typer.Option(
        "--sample-every", help="Steps between sample grids.")] = LocalTrainOptions.sample_every,
    eval_every: Annotated[int, typer.Option(
        "--eval-every", help="Steps between evaluations (per-attribute accuracy, consistency).")
    ] = LocalTrainOptions.eval_every,
    g_width: Annotated[int, typer.Option("--g-width", help="Generator width (channels at full resolution).")
                       ] = GanConfig.g_width,
    d_width: Annotated[int, typer.Option("--d-width", help="Discriminator width.")] = GanConfig.d_width,
    contrastive_weight: Annotated[float, typer.Option(
        "--contrastive-weight", help="Image-text contrastive loss weight (0 = off).")] = GanConfig.contrastive_weight,
    contrastive_pool: Annotated[int, typer.Option(
        "--contrastive-pool", help="Extra dataset captions per step as contrastive negatives (0 = off).")
    ] = GanConfig.contrastive_pool,
    lr_g: Annotated[float, typer.Option("--lr-g", help="Generator learning rate.")] = GanConfig.lr_g,
    lr_d: Annotated[float, typer.Option("--lr-d", help="Discriminator learning rate.")] = GanConfig.lr_d,
    r1_gamma: Annotated[float, typer.Option(
        "--r1-gamma", help="R1 penalty on D's real-image gradients (0 = off); raise it when D wins by far.")
    ] = GanConfig.r1_gamma,
    augment: Annotated[str, typer.Option(
        "--augment", help="Augmentation of real and fake images: comma-separated translation, cutout; '' = none.")
    ] = ",".join(GanConfig().augment),
    matcher: Annotated[bool, typer.Option(
        "--matcher/--no-matcher", help="Train the image-text matcher alongside G and D: saved with every checkpoint "
        "and final/, it scores image-prompt consistency for this GAN on any captions.")] = LocalTrainOptions.matcher,
    init_from: Annotated[str | None, typer.Option(
        "--init-from", help="Warm start: begin a new run from exported weights (a final/ folder or a shipped model) "
        "and continue their step count; optimisers start fresh. A run folder with checkpoints resumes instead.")
    ] = None,
    threads: Threads = LocalTrainOptions.threads,
    text_encoder: Annotated[str | None, typer.Option(
        "--text-encoder", help="Hugging Face encoder dir (default: packaged MiniLM).")] = LocalTrainOptions.text_encoder,
    no_eval: Annotated[bool, typer.Option(
        "--no-eval", help="Do not evaluate the EMA generator with the shapes classifier.")] = False,
    image_column: Annotated[str | None, typer.Option(
        "--image-column", help="Parquet column with the image bytes (default: image).")] = LocalTrainOptions.image_column,
    caption_column: Annotated[str | None, typer.Option(
        "--caption-column", help="Caption column: of Parquet files (default: caption) or of an image folder's "
        "metadata.jsonl / metadata.csv (default: text, else caption).")] = LocalTrainOptions.caption_column,
    cache_dir: CacheDir = LocalTrainOptions.cache_dir,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Train the text-conditioned GAN; prints a JSON summary (steps, images/s, accuracy, consistency) on stdout."""
    # idle OpenMP threads sleep instead of spinning: on a shared CPU box spinning made steps ~10x slower
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    setup_logging()
    config = GanConfig(image_size=image_size, channels=channels or 0, batch_size=batch_size, g_width=g_width,
                       d_width=d_width, contrastive_weight=contrastive_weight, contrastive_pool=contrastive_pool,
                       lr_g=lr_g, lr_d=lr_d, r1_gamma=r1_gamma, augment=augment)
    if not local:
        options = DistTrainOptions(
            steps=steps, epochs=epochs, workers=workers, gpu=gpu, cpus_per_worker=cpus_per_worker, seed=seed,
            checkpoint_every=checkpoint_every, sample_every=sample_every, eval_every=eval_every, log_every=log_every,
            health_warmup=health_warmup, max_failures=max_failures, address=address, text_encoder=text_encoder,
            classifier=None if no_eval else "default", matcher=matcher, cache_dir=cache_dir,
            image_column=image_column, caption_column=caption_column, init_from=init_from,
        )
        _train_distributed(data, out, config, options, s3_endpoint)
        return
    if epochs is not None:
        raise UserError("--epochs is for distributed training; with --local give --steps")
    options = LocalTrainOptions(
        steps=LocalTrainOptions.steps if steps is None else steps, seed=seed, checkpoint_every=checkpoint_every,
        sample_every=sample_every, eval_every=eval_every, log_every=log_every, health_warmup=health_warmup,
        threads=threads,
        text_encoder=text_encoder, device="cuda" if gpu else "cpu", matcher=matcher, cache_dir=cache_dir,
        image_column=image_column, caption_column=caption_column, init_from=init_from,
    )
    from llmgan.gan.trainer import train_local
    from llmgan.io.storage import Storage

    storage = Storage(s3_endpoint)
    write_options(storage, out, data, config, options, evaluate=not no_eval)
    evaluators, consistency = ([], None) if no_eval else _classifier_evaluators()
    summary = train_local(data, out, config, options, storage=storage, evaluators=evaluators,
                          consistency=consistency)
    print_health(summary)
    typer.echo(json.dumps(summary))


def print_health(summary: dict) -> None:
    """The run's training-health findings (llmgan.gan.health), one paragraph each on stderr, before the summary."""
    for f in summary.get("health") or []:
        state = "still present at" if f.get("active") else "gone by"
        again = f" (appeared {len(f['onsets'])} times)" if len(f.get("onsets", [])) > 1 else ""
        typer.echo(f"[llmgan] WARNING training health: {f['title']} from step {f['first_step']}{again}, {state} "
                   f"step {f['last_step']}: {f['meaning']}.\n    What usually fixes it: {f['fix']}.", err=True)


OPTIONS_FILE = "options.json"


def write_options(storage: Storage, out: str, data: str, config: GanConfig, options: LocalTrainOptions,
                  evaluate: bool) -> None:
    """`--local`: the run's validated options, defaults filled in, as OUT/options.json (the Ray path records its
    settings in run.json), before training starts; a resumed run rewrites it with the options it resumed with."""
    import dataclasses

    from llmgan.io.storage import join

    record = {"runtime": "local", "data": data, "model": config.to_dict(), "options": dataclasses.asdict(options),
              "evaluate": evaluate}
    storage.write_text(join(out, OPTIONS_FILE), json.dumps(record, indent=2, sort_keys=True) + "\n")


def _classifier_evaluators() -> tuple[list[object], object | None]:
    """Per-attribute accuracy under the shipped attribute classifier (train_local drops it when the data lacks the
    labels) and a factory of consistency under its scorer (used when the data's domain has a classifier)."""
    import logging

    from llmgan.eval.classifier import load_classifier
    from llmgan.eval.consistency import ClassifierScorer
    from llmgan.gan.train_report import AccuracyEvaluator, ConsistencyEvaluator

    try:
        clf = load_classifier()
    except Exception as exc:  # noqa: BLE001 - evaluation is optional
        logging.getLogger("llmgan.train").info("no evaluation classifier (%s); accuracy is not tracked", exc)
        return [], None

    def consistency(domain: object) -> object | None:
        return ConsistencyEvaluator(ClassifierScorer(domain, clf)) if domain.scorer() is not None else None

    return [AccuracyEvaluator(clf)], consistency


def _train_distributed(data: str, out: str, config: GanConfig, options: DistTrainOptions,
                       s3_endpoint: str | None) -> None:
    """The Ray Train path (llmgan.distributed.train); a run that keeps failing is one line and exit 1."""
    from llmgan.cli.common import EXIT_RUNTIME_ERROR, fail
    from llmgan.distributed.train import TrainFailed, run_train
    from llmgan.io.storage import Storage

    try:
        summary = run_train(data, out, config, options, storage=Storage(s3_endpoint))
    except TrainFailed as exc:
        raise fail(str(exc), EXIT_RUNTIME_ERROR) from None
    print_health(summary)
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
