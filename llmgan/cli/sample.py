"""`llmgan sample PROMPT`: a few images from one caption with the GAN (no Ray), as PNGs plus a grid."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated

import typer

from llmgan.cli.common import BestOf, Ckpt, Model, OutDir, S3Endpoint, Seed, handle_errors
from llmgan.errors import UserError
from llmgan.gan.config import MAX_TRUNCATION

MAX_IMAGES = 10_000


@dataclass(frozen=True)
class SampleConfig:
    """One `llmgan sample` run: N images of PROMPT, image i seeded by derive_seed(seed, i)."""

    prompt: str
    n: int = 8
    seed: int = 0
    best_of: int = 1
    truncation: float = 1.0

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise UserError("PROMPT must not be empty")
        if not 1 <= self.n <= MAX_IMAGES:
            raise UserError(f"--n must be between 1 and {MAX_IMAGES}, got {self.n}")
        if self.seed < 0:
            raise UserError(f"--seed must be non-negative, got {self.seed}")
        if self.best_of < 1:
            raise UserError(f"--best-of must be at least 1, got {self.best_of}")
        if not 0 < self.truncation <= MAX_TRUNCATION:
            raise UserError(f"--truncation must be in (0, {MAX_TRUNCATION:g}], got {self.truncation}")


@handle_errors
def sample_command(
    prompt: Annotated[str, typer.Argument(help="The caption to draw, e.g. 'a small red star in the top left corner'.")],
    out: OutDir,
    n: Annotated[int, typer.Option("-n", "--n", help="Number of images.")] = SampleConfig.n,
    ckpt: Ckpt = None,
    model_name: Model = None,
    seed: Seed = SampleConfig.seed,
    best_of: BestOf = SampleConfig.best_of,
    truncation: Annotated[float, typer.Option(
        "--truncation", help="Noise scale in (0, 1]: lower is more typical, less varied.")] = SampleConfig.truncation,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Generate N images for PROMPT into OUT (000.png ... and grid.png); prints what was written on stdout."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cfg = SampleConfig(prompt=prompt, n=n, seed=seed, best_of=best_of, truncation=truncation)
    from llmgan.gan.inference import GanModel
    from llmgan.io.images import grid, png_bytes
    from llmgan.io.seeds import derive_seed
    from llmgan.io.storage import Storage, join
    from llmgan.text.encoder import TextEncoder

    if model_name is not None and ckpt is None:
        from llmgan.job.models import bundle

        ckpt = bundle(model_name)[0]
    storage = Storage(s3_endpoint)
    model = GanModel.load(ckpt, storage=storage, discriminator=cfg.best_of > 1)
    emb = TextEncoder(model=model.text_encoder).encode([cfg.prompt] * cfg.n)
    seeds = [derive_seed(cfg.seed, i) for i in range(cfg.n)]
    images, _ = model.sample(emb, seeds, best_of=cfg.best_of, truncation=cfg.truncation)
    for i, img in enumerate(images):
        storage.write_bytes(join(out, f"{i:03d}.png"), png_bytes(img))
    storage.write_bytes(join(out, "grid.png"), png_bytes(grid(images, cols=min(8, cfg.n))))
    typer.echo(f"wrote {cfg.n} images ({model.image_size}x{model.image_size}, model {model.identity}) and grid.png "
               f"to {out}")
    from llmgan.domains import domain_of

    domain = domain_of(model.meta)
    missing = domain.ground(cfg.prompt).not_understood
    if missing:
        typer.echo(f"not understood by the {domain.name} domain: {', '.join(missing)} (drawn from the rest of "
                   f"the prompt; nothing checks these images against those words)", err=True)


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)
