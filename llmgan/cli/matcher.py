"""`llmgan train-matcher`: train and calibrate the image-text matcher that scores image-prompt consistency."""

from __future__ import annotations

import os

import typer

from llmgan.cli.common import OutDir, S3Endpoint, Seed, handle_errors, setup_logging
from llmgan.errors import UserError


@handle_errors
def train_matcher_command(
    data: str = typer.Option(..., "--data", help="Captioned real images (Parquet / WebDataset / folder, local or s3://)."),
    out: OutDir = ...,
    steps: int = typer.Option(2000, "--steps", help="Training steps."),
    batch_size: int = typer.Option(128, "--batch-size", help="Image-caption pairs per step (the InfoNCE batch)."),
    pool: int = typer.Option(512, "--pool", help="Extra dataset captions per step as negatives (0: batch only)."),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (one-cycle schedule)."),
    width: int = typer.Option(24, "--width", help="Image tower channels at full resolution (x2, x4 deeper)."),
    dim: int = typer.Option(128, "--dim", help="Shared image/text embedding size."),
    image_size: int = typer.Option(32, "--image-size", help="Side images are loaded and scored at."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of images held out for calibration."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="Text encoder (default: bundled MiniLM; "
                                            "must be the one the GAN uses)."),
    threads: int = typer.Option(1, "--threads", help="Torch threads; 1 is fastest on a busy 2-core machine."),
    seed: Seed = 0,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Train a small contrastive image/text model on real captioned images and calibrate its score into [0, 1].

    Put it in a GAN checkpoint folder (--out CKPT) and `auto` consistency scoring uses it for that GAN.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    setup_logging()
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    from llmgan.gan.matcher import MatcherConfig, train_matcher
    from llmgan.io.storage import Storage

    config = MatcherConfig(image_size=image_size, width=width, dim=dim, batch_size=batch_size, lr=lr, pool=pool)
    m = train_matcher(data, out, steps, config, seed=seed, text_encoder=text_encoder, val_fraction=val_fraction,
                      storage=Storage(s3_endpoint), threads=threads)
    val = m.info["val"]
    typer.echo(f"trained matcher on {m.info['n_train']} images in {m.info['train_seconds']:.0f}s; held-out "
               f"({m.info['n_val']} images vs near-miss captions): AUC {val['auc_hard_negative']:.4f}, accuracy at 0.5 "
               f"{val['accuracy_at_0.5']:.4f}; calibration a={m.calibration[0]:.3f} b={m.calibration[1]:.3f}; saved to {out}")


def register(app: typer.Typer) -> None:
    app.command("train-matcher")(train_matcher_command)
