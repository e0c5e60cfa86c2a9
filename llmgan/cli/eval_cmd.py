"""`llmgan eval` (a GAN's report card, judged by the attribute classifier) and `llmgan train-classifier`."""

from __future__ import annotations

import math
import os

import typer

from llmgan.cli.common import handle_errors, setup_logging
from llmgan.errors import UserError


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}"
    return "-" if v is None else str(v)


def _table(report: dict) -> str:
    """A compact per-split table: accuracies, then FD against its real-vs-real floor, IS, diversity, SSIM."""
    splits = report["splits"]
    attrs = report["attributes"] + ["joint"]
    names = list(splits)
    width = max(12, *(len(a) + 5 for a in attrs))
    lines = [f"{'':<{width}}" + "".join(f"{n:>12}" for n in names)]
    for a in attrs:
        lines.append(f"{a + ' acc':<{width}}" + "".join(f"{_fmt(splits[n]['accuracy'].get(a)):>12}" for n in names))
    rows = [
        ("FD", lambda s: s["frechet_distance"]),
        ("FD floor", lambda s: s["frechet_floor"]),
        ("FD / floor", lambda s: s["frechet_ratio"]),
        ("IS (mean)", lambda s: s["inception_score"]["mean"]),
        ("IS real", lambda s: s["inception_score_real"]["mean"]),
        ("div gen", lambda s: s["diversity"]["generated"]),
        ("div real", lambda s: s["diversity"]["real"]),
        ("SSIM gen", lambda s: s["ssim"]["generated"]),
        ("SSIM real", lambda s: s["ssim"]["real"]),
    ]
    for label, get in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{_fmt(get(splits[n])):>12}" for n in names))
    return "\n".join(lines)


@handle_errors
def eval_command(
    ckpt: str | None = typer.Option(None, "--ckpt", help="GAN checkpoint or training run directory (default: the shipped shapes model)."),
    data: str = typer.Option(..., "--data", help="Labelled dataset (Parquet / WebDataset / folder, local or s3://) whose captions drive generation."),
    out: str = typer.Option(..., "--out", help="Output directory (local or s3://) for report.json and plots."),
    n: int = typer.Option(2000, "--n", help="Generated images per split."),
    best_of: int = typer.Option(1, "--best-of", help="Keep the best of K candidates per image, as D ranks them."),
    seed: int = typer.Option(0, "--seed", help="Seed for caption choice and noise."),
    split: str = typer.Option("both", "--split", help="both (train and heldout captions, when the data has them), train, heldout, or all."),
    classifier: str | None = typer.Option(None, "--classifier", help="Evaluation classifier directory (default: shipped shapes classifier, or one trained on the data's `label` column)."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads (default: torch's choice; 1 is often faster on a busy machine)."),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL [env: AWS_ENDPOINT_URL_S3]."),
) -> None:
    """Judge a GAN's images with a classifier trained on real images only; writes OUT/report.json and plots."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    setup_logging()
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    import torch

    from llmgan.eval.report import evaluate
    from llmgan.io.storage import Storage, join

    if threads is not None:
        torch.set_num_threads(threads)

    report = evaluate(ckpt, data, out, n=n, best_of=best_of, seed=seed, split=split, classifier=classifier,
                      storage=Storage(s3_endpoint))
    typer.echo(_table(report))
    typer.echo(f"report: {join(out, 'report.json')}")


@handle_errors
def train_classifier_command(
    data: str = typer.Option(..., "--data", help="Real labelled images (Parquet / WebDataset / folder, local or s3://)."),
    out: str = typer.Option(..., "--out", help="Directory (local or s3://) for classifier.safetensors + classifier.json."),
    steps: int = typer.Option(1500, "--steps", help="Training steps (batch 64)."),
    seed: int = typer.Option(1, "--seed", help="Seed for the train/validation split, initialisation and batches."),
    image_size: int = typer.Option(32, "--image-size", help="Side the images are loaded at (the classifier works at <= 32 px)."),
    threads: int = typer.Option(1, "--threads", help="Torch threads; 1 is fastest on a busy 2-core machine."),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL [env: AWS_ENDPOINT_URL_S3]."),
) -> None:
    """Train the evaluation classifier on real images; one softmax head per label column."""
    setup_logging()
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    from llmgan.data.readers import load_captioned
    from llmgan.eval.classifier import LABEL_ATTRIBUTES, train_classifier
    from llmgan.io.storage import Storage

    storage = Storage(s3_endpoint)
    ds = load_captioned(data, image_size, storage=storage)
    labels = {a: ds.labels[a] for a in LABEL_ATTRIBUTES if a in ds.labels}
    if not labels:
        raise UserError(f"{data} has no label column ({', '.join(LABEL_ATTRIBUTES)}) to train on")
    clf = train_classifier(ds.images, labels, seed=seed, steps=steps, threads=threads)
    clf.info["data"] = data
    clf.save(out, storage=storage)
    val = clf.info.get("val_accuracy", {})
    typer.echo(f"trained on {clf.info['n_train']} images, validation accuracy "
               + ", ".join(f"{k} {v:.4f}" for k, v in val.items()) + f"; saved to {out}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("train-classifier")(train_classifier_command)
