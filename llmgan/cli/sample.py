"""`llmgan sample PROMPT`: a few images from one caption with the GAN (no Ray), as PNGs plus a grid."""

from __future__ import annotations

import os

import typer

from llmgan.cli.common import handle_errors
from llmgan.errors import UserError


@handle_errors
def sample_command(
    prompt: str = typer.Argument(..., help="The caption to draw, e.g. 'a small red star in the top left corner'."),
    n: int = typer.Option(8, "-n", "--n", help="Number of images."),
    out: str = typer.Option(..., "--out", help="Output directory (local or s3://); gets 000.png ... and grid.png."),
    ckpt: str | None = typer.Option(None, "--ckpt", help="GAN checkpoint or training run directory (default: the shipped shapes model)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same images."),
    best_of: int = typer.Option(1, "--best-of", help="Draw K candidates per image and keep the one D scores as the best caption match."),
    truncation: float = typer.Option(1.0, "--truncation", help="Noise scale in (0, 1]: lower is more typical, less varied."),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL [env: AWS_ENDPOINT_URL_S3]."),
) -> None:
    """Generate N images for PROMPT; prints the files written on stdout."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not prompt.strip():
        raise UserError("PROMPT must not be empty")
    if not 1 <= n <= 10_000:
        raise UserError(f"-n must be between 1 and 10000, got {n}")
    if best_of < 1:
        raise UserError(f"--best-of must be at least 1, got {best_of}")
    if not 0 < truncation <= 1:
        raise UserError(f"--truncation must be in (0, 1], got {truncation}")
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")
    from llmgan.gan.inference import GanModel, derive_seed
    from llmgan.gan.local_train import grid_png
    from llmgan.io.storage import Storage, join
    from llmgan.text.encoder import TextEncoder

    storage = Storage(s3_endpoint)
    model = GanModel.load(ckpt, storage=storage, discriminator=best_of > 1)
    emb = TextEncoder(model=model.text_encoder).encode([prompt] * n)
    seeds = [derive_seed(seed, i) for i in range(n)]
    images, scores = model.sample(emb, seeds, best_of=best_of, truncation=truncation)
    from llmgan.data.shapes import encode_png

    for i, img in enumerate(images):
        storage.write_bytes(join(out, f"{i:03d}.png"), encode_png(img))
    storage.write_bytes(join(out, "grid.png"), grid_png(images, cols=min(8, n)))
    typer.echo(f"wrote {n} images ({model.image_size}x{model.image_size}, model {model.identity}) and grid.png to {out}")


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)
