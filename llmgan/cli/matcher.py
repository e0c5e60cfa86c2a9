"""`llmgan train-matcher`: train and calibrate the image-text matcher that scores image-prompt consistency."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from llmgan.cli.common import CacheDir, Data, OutDir, S3Endpoint, Seed, Threads, handle_errors, setup_logging
from llmgan.errors import UserError

if TYPE_CHECKING:
    from llmgan.gan.matcher import MatcherConfig


@dataclass(frozen=True)
class MatcherTrainOptions:
    """Settings of `llmgan train-matcher`, checked once; messages name the option as typed.

    The recipe fields restate MatcherConfig's defaults (llmgan.gan.matcher imports torch, which `llmgan --help`
    must not; tests/test_cli.py pins them equal) and MatcherConfig checks them in `config()`.
    """

    out: str = ""  # required by the CLI; empty is refused
    steps: int = 2000
    val_fraction: float = 0.1
    seed: int = 0
    threads: int = 1  # 1 was fastest on a busy 2-core machine for a net this small
    image_size: int = 32
    width: int = 24
    dim: int = 128
    batch_size: int = 128
    lr: float = 2e-3
    pool: int = 512
    prompt_share: float = 0.5

    def __post_init__(self) -> None:
        if not self.out.strip():
            raise UserError("--out must not be empty")
        if self.steps < 1:
            raise UserError(f"--steps must be >= 1, got {self.steps}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")
        if self.threads < 1:
            raise UserError(f"--threads must be >= 1, got {self.threads}")

    def config(self) -> MatcherConfig:
        """The matcher's architecture and recipe (imports torch; MatcherConfig checks these fields)."""
        from llmgan.gan.matcher import MatcherConfig

        return MatcherConfig(image_size=self.image_size, width=self.width, dim=self.dim,
                             batch_size=self.batch_size, lr=self.lr, pool=self.pool, prompt_share=self.prompt_share)


_OPTS = MatcherTrainOptions  # the defaults below


@handle_errors
def train_matcher_command(
    data: Data,
    out: OutDir,
    steps: Annotated[int, typer.Option("--steps", help="Training steps.")] = _OPTS.steps,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Image-caption pairs per step (the InfoNCE batch).")] = _OPTS.batch_size,
    pool: Annotated[int, typer.Option(
        "--pool", help="Extra dataset captions per step as negatives (0: batch only).")] = _OPTS.pool,
    prompt_share: Annotated[float, typer.Option(
        "--prompt-share", help="Share of rows trained on their short prompt instead of the caption, per step, where "
        "the data has a short_prompt column (0: captions only).")] = _OPTS.prompt_share,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (one-cycle schedule).")] = _OPTS.lr,
    width: Annotated[int, typer.Option(
        "--width", help="Image tower channels at full resolution (x2, x4 deeper).")] = _OPTS.width,
    dim: Annotated[int, typer.Option("--dim", help="Shared image/text embedding size.")] = _OPTS.dim,
    image_size: Annotated[int, typer.Option(
        "--image-size", help="Side images are loaded and scored at.")] = _OPTS.image_size,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", help="Share of images held out for calibration.")] = _OPTS.val_fraction,
    text_encoder: Annotated[str | None, typer.Option(
        "--text-encoder", help="Text encoder (default: bundled MiniLM; must be the one the GAN uses).")] = None,
    threads: Threads = _OPTS.threads,
    seed: Seed = _OPTS.seed,
    cache_dir: CacheDir = None,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Train a small contrastive image/text model on real captioned images and calibrate its score into [0, 1].

    Put it in a GAN checkpoint folder (--out CKPT) and `auto` consistency scoring uses it for that GAN.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    setup_logging()
    opts = MatcherTrainOptions(out=out, steps=steps, val_fraction=val_fraction, seed=seed,
                               threads=_OPTS.threads if threads is None else threads, image_size=image_size,
                               width=width, dim=dim, batch_size=batch_size, lr=lr, pool=pool,
                               prompt_share=prompt_share)
    config = opts.config()
    from llmgan.gan.matcher import train_matcher
    from llmgan.io.storage import Storage

    m = train_matcher(data, opts.out, opts.steps, config, seed=opts.seed, text_encoder=text_encoder,
                      val_fraction=opts.val_fraction, storage=Storage(s3_endpoint), threads=opts.threads,
                      cache_dir=cache_dir)
    val = m.info["val"]
    prompts = (f"; vs near-miss short prompts ({val['prompt_pairs']} pairs, prompt share "
               f"{m.config.prompt_share:g}): AUC {val['auc_hard_negative_prompts']:.4f}, accuracy at 0.5 "
               f"{val['accuracy_at_0.5_prompts']:.4f}") if "prompt_pairs" in val else "; captions only"
    typer.echo(f"trained matcher on {m.info['n_train']} images in {m.info['train_seconds']:.0f}s; held-out "
               f"({m.info['n_val']} images vs near-miss captions): AUC {val['auc_hard_negative']:.4f}, accuracy at 0.5 "
               f"{val['accuracy_at_0.5']:.4f}{prompts}; calibration a={m.calibration[0]:.3f} b={m.calibration[1]:.3f}; "
               f"saved to {out}")


def register(app: typer.Typer) -> None:
    app.command("train-matcher")(train_matcher_command)
