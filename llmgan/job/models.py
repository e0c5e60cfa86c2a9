"""Shipped model bundles: a name (`--model emoji`) for a GAN (with its matcher scorer) and the caption LM trained on
the same captions. `--ckpt` / `--lm` given beside `--model` replace that part of the bundle."""

from __future__ import annotations

from pathlib import Path

from llmgan.errors import UserError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# name -> (GAN folder, caption LM folder), relative to llmgan/assets
BUNDLES: dict[str, tuple[str, str]] = {
    "shapes": ("gan/shapes32", "lm/shapes-captioner"),
    "emoji": ("gan/emoji64", "lm/emoji-captioner"),
    "icons": ("gan/icons64", "lm/icons-captioner"),
}


def bundle(name: str) -> tuple[str, str]:
    """(GAN folder, caption LM folder) of a shipped bundle; a UserError names the bundles this install has."""
    shipped = [n for n, parts in BUNDLES.items() if all((ASSETS / p).is_dir() for p in parts)]
    if name not in shipped:
        raise UserError(f"--model {name!r}: expected one of {', '.join(shipped)}")
    return tuple(str(ASSETS / p) for p in BUNDLES[name])  # type: ignore[return-value]
