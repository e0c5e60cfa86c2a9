"""`llmgan eval` (a GAN's report card, judged by the attribute classifier) and `llmgan train-classifier`."""

from __future__ import annotations

import math
import os
from typing import Annotated

import typer

from llmgan.cli.common import (
    BestOf,
    CacheDir,
    Ckpt,
    Data,
    OutDir,
    S3Endpoint,
    Seed,
    Threads,
    handle_errors,
    setup_logging,
)
from llmgan.errors import UserError
from llmgan.eval.options import ClassifierTrainOptions, EvalOptions


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
        # consistency scorer verdicts (None: no scorer fits) and shapes' SSIM/PSNR against the caption's real image
        ("consistency", lambda s: (s.get("consistency") or {}).get("generated", {}).get("mean")),
        ("cons < 0.5", lambda s: (s.get("consistency") or {}).get("generated", {}).get("below_0.5")),
        ("cons real", lambda s: (s.get("consistency") or {}).get("real", {}).get("mean")),
        ("ref SSIM", lambda s: (s.get("reference") or {}).get("ssim")),
        ("ref SSIM flr", lambda s: (s.get("reference") or {}).get("ssim_real")),
        ("ref PSNR", lambda s: (s.get("reference") or {}).get("psnr")),
        ("ref PSNR flr", lambda s: (s.get("reference") or {}).get("psnr_real")),
    ]
    for label, get in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{_fmt(get(splits[n])):>12}" for n in names))
    return "\n".join(lines)


@handle_errors
def eval_command(
    data: Data,
    out: OutDir,
    ckpt: Ckpt = None,
    n: Annotated[int, typer.Option("--n", help="Generated images per split.")] = EvalOptions.n,
    best_of: BestOf = EvalOptions.best_of,
    seed: Seed = EvalOptions.seed,
    split: Annotated[str, typer.Option(
        "--split", help="both (train and heldout captions, when the data has them), train, heldout, or all.")]
    = EvalOptions.split,
    classifier: Annotated[str | None, typer.Option(
        "--classifier", help="Evaluation classifier directory (default: shipped shapes classifier, or one trained on "
        "the data's `label` column).")] = None,
    consistency: Annotated[str, typer.Option(
        "--consistency", help="Consistency scorer: auto (the classifier of the GAN's domain when it has one, as the "
        "shipped shapes GAN does; else the GAN folder's matcher; else none), classifier, matcher, none, or a "
        "folder / s3:// prefix holding matcher.json.")] = "auto",
    threads: Threads = EvalOptions.threads,
    cache_dir: CacheDir = None,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Judge a GAN's images with a classifier trained on real images only: generates from the captions of DATA
    (labelled images) and writes OUT/report.json and plots."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    setup_logging()
    opts = EvalOptions(n=n, best_of=best_of, seed=seed, split=split, threads=threads)
    import torch

    from llmgan.eval.consistency import resolve_scorer
    from llmgan.eval.report import evaluate
    from llmgan.io.storage import Storage, join

    storage = Storage(s3_endpoint)
    resolve_scorer(consistency, ckpt, storage)  # a bad --consistency fails here, before anything is loaded or written
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    report = evaluate(ckpt, data, out, n=opts.n, best_of=opts.best_of, seed=opts.seed, split=opts.split,
                      classifier=classifier, consistency=consistency, storage=storage, cache_dir=cache_dir)
    typer.echo(_table(report))
    typer.echo(f"report: {join(out, 'report.json')}")


@handle_errors
def train_classifier_command(
    data: Data,
    out: OutDir,
    steps: Annotated[int, typer.Option("--steps", help="Training steps (batch 64).")] = ClassifierTrainOptions.steps,
    seed: Seed = ClassifierTrainOptions.seed,
    image_size: Annotated[int, typer.Option(
        "--image-size", help="Side the images are loaded at (the classifier works at <= 32 px).")]
    = ClassifierTrainOptions.image_size,
    threads: Threads = ClassifierTrainOptions.threads,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Train the evaluation classifier on DATA's real labelled images, one softmax head per label column; writes
    OUT/classifier.safetensors and OUT/classifier.json."""
    setup_logging()
    opts = ClassifierTrainOptions(steps=steps, seed=seed, image_size=image_size,
                                  threads=ClassifierTrainOptions.threads if threads is None else threads)
    from llmgan.data.readers import load_captioned
    from llmgan.eval.classifier import LABEL_ATTRIBUTES, train_classifier
    from llmgan.io.storage import Storage

    storage = Storage(s3_endpoint)
    ds = load_captioned(data, opts.image_size, storage=storage)
    labels = {a: ds.labels[a] for a in LABEL_ATTRIBUTES if a in ds.labels}
    if not labels:
        raise UserError(f"{data} has no label column ({', '.join(LABEL_ATTRIBUTES)}) to train on")
    clf = train_classifier(ds.images, labels, seed=opts.seed, steps=opts.steps, threads=opts.threads)
    clf.info["data"] = data
    clf.save(out, storage=storage)
    val = clf.info.get("val_accuracy", {})
    typer.echo(f"trained on {clf.info['n_train']} images, validation accuracy "
               + ", ".join(f"{k} {v:.4f}" for k, v in val.items()) + f"; saved to {out}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("train-classifier")(train_classifier_command)
