"""Checkpoint directories (local or s3://): config.json + safetensors weights, plus a separate resume-state file.

Layout of one checkpoint directory:
  generator.safetensors      EMA generator (what inference uses)
  discriminator.safetensors  discriminator (reranking score)
  training_state.pt          raw G, optimisers, RNG, step (resume only; loaded with weights_only=True)
  matcher.safetensors, matcher.json, matcher_state.pt   the image-text matcher trained alongside (optional)
  config.json                written LAST: its presence means the directory is complete

Inference reads only config.json and *.safetensors, so loading a model never unpickles anything.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from llmgan.errors import StorageError, UserError
from llmgan.gan.config import GanConfig
from llmgan.gan.step import TrainState, unwrap
from llmgan.io.storage import Storage, join

FORMAT = "llmgan-gan"
FORMAT_VERSION = 1
CONFIG = "config.json"
GENERATOR = "generator.safetensors"
DISCRIMINATOR = "discriminator.safetensors"
TRAINING_STATE = "training_state.pt"
MATCHER_CONFIG = "matcher.json"  # llmgan.gan.matcher's files, present when a matcher was trained alongside


def state_bytes(module: nn.Module, half: bool = False) -> bytes:
    """safetensors bytes of a module's state; `half` stores floating tensors as float16 (loading casts them back)."""
    return st_save({k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
                    for k, v in unwrap(module).state_dict().items()})


def save_checkpoint(
    url: str,
    state: TrainState,
    *,
    storage: Storage | None = None,
    text_encoder: str | None = None,
    dataset: str | None = None,
    training_state: bool = True,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint directory at `url`; config.json goes last so a half-written directory is never used."""
    storage = storage or Storage()
    storage.write_bytes(join(url, GENERATOR), state_bytes(state.G_ema))
    storage.write_bytes(join(url, DISCRIMINATOR), state_bytes(state.D))
    if training_state:
        buf = io.BytesIO()
        torch.save(
            {
                "step": state.step,
                "G": unwrap(state.G).state_dict(),
                "opt_g": state.opt_g.state_dict(),
                "opt_d": state.opt_d.state_dict(),
                "rng_cpu": torch.get_rng_state(),
            },
            buf,
        )
        storage.write_bytes(join(url, TRAINING_STATE), buf.getvalue())
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": state.config.to_dict(),
        "image_size": state.config.image_size,
        "text_encoder": text_encoder,
        "dataset": dataset,
        "step": state.step,
        **(extra or {}),
    }
    storage.write_text(join(url, CONFIG), json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(url: str, storage: Storage | None = None) -> dict[str, Any]:
    """The parsed config.json of a checkpoint directory; UserError when it is missing or not ours."""
    storage = storage or Storage()
    path = join(url, CONFIG)
    try:
        text = storage.read_text(path)
    except StorageError:
        raise UserError(f"no GAN checkpoint at {url} (missing {CONFIG})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("model"), dict):
        raise UserError(f"{path} is not an llmgan GAN checkpoint config")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: unsupported checkpoint format_version {meta.get('format_version')!r}")
    return meta


def load_weights(url: str, name: str, module: nn.Module, storage: Storage | None = None) -> bytes:
    """Load `name` (a .safetensors file) into `module`, strictly; returns the raw bytes (for hashing)."""
    storage = storage or Storage()
    path = join(url, name)
    try:
        data = storage.read_bytes(path)
    except StorageError:
        raise UserError(f"checkpoint {url} has no {name}") from None
    try:
        tensors = st_load(data)
    except (SafetensorError, Exception) as exc:  # noqa: BLE001 - never fall back to unpickling
        raise UserError(f"{path} is not a safetensors file (refusing to load it): {type(exc).__name__}") from None
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise UserError(f"weights in {path} do not match the model in {CONFIG}: {detail}") from None
    return data


def load_training_state(url: str, state: TrainState, storage: Storage | None = None) -> None:
    """Restore a TrainState (built from the same config) from a checkpoint directory, for resuming."""
    storage = storage or Storage()
    load_weights(url, GENERATOR, state.G_ema, storage)
    load_weights(url, DISCRIMINATOR, unwrap(state.D), storage)
    try:
        blob = storage.read_bytes(join(url, TRAINING_STATE))
    except StorageError:
        raise UserError(f"checkpoint {url} has no {TRAINING_STATE}; it can be sampled from but not resumed") from None
    # weights_only: tensors, dicts and numbers only, no arbitrary objects
    saved = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    unwrap(state.G).load_state_dict(saved["G"])
    state.opt_g.load_state_dict(saved["opt_g"])
    state.opt_d.load_state_dict(saved["opt_d"])
    torch.set_rng_state(saved["rng_cpu"])
    state.step = int(saved["step"])


# what must agree for exported weights to load into a new run's networks (the recipe may change)
ARCHITECTURE = ("image_size", "image_channels", "z_dim", "text_dim", "g_width", "d_width", "cond_dim",
                "contrastive_dim")


def warm_start(url: str, state: TrainState, storage: Storage | None = None) -> int:
    """Start a new run from an exported checkpoint's weights (final/, a shipped model): G and its EMA from the
    generator weights (the EMA's: raw G weights are not exported), D from the discriminator's; optimisers start
    fresh. Returns the checkpoint's step, which the run continues counting from."""
    storage = storage or Storage()
    url = resolve_checkpoint(url, storage)
    meta = read_meta(url, storage)
    saved = GanConfig.from_dict(meta["model"])
    diff = [k for k in ARCHITECTURE if getattr(saved, k) != getattr(state.config, k)]
    if diff:
        raise UserError(f"--init-from {url}: its networks differ from this run's in "
                        f"{', '.join(f'{k} ({getattr(saved, k)} vs {getattr(state.config, k)})' for k in diff)}; "
                        f"train with the same sizes")
    load_weights(url, GENERATOR, state.G_ema, storage)
    load_weights(url, GENERATOR, unwrap(state.G), storage)
    load_weights(url, DISCRIMINATOR, unwrap(state.D), storage)
    return int(meta.get("step", 0))


def resolve_checkpoint(path: str, storage: Storage) -> str:
    """A checkpoint directory from a path that may also be a training run directory: its newest of final/ and
    checkpoints/<step>/ (a resumed run's final/ can be older than its latest checkpoint)."""
    if storage.exists(join(path, CONFIG)):
        return path
    candidates: list[tuple[int, str]] = []
    if storage.exists(join(path, "final", CONFIG)):
        candidates.append((int(read_meta(join(path, "final"), storage).get("step", 0)), join(path, "final")))
    steps = sorted({n.split("/")[0] for n in storage.list(join(path, "checkpoints")) if n.endswith("/" + CONFIG)})
    if steps:
        candidates.append((int(steps[-1]), join(path, "checkpoints", steps[-1])))
    return max(candidates)[1] if candidates else path  # read_meta reports what is missing


def export_checkpoint(src: str, dst: str, storage: Storage | None = None, half: bool = False) -> dict[str, Any]:
    """Copy the inference part (config.json + safetensors, and the matcher if any) of a checkpoint or run
    directory to `dst`; `half` stores the weights as float16 (half the bytes, for a shipped bundle; they load into
    float32 networks, so images differ from the checkpoint's by the rounding only).

    The weights are loaded into fresh networks first, so a broken checkpoint is never exported.
    """
    from llmgan.gan.networks import Discriminator, Generator

    storage = storage or Storage()
    src = resolve_checkpoint(src, storage)
    meta = read_meta(src, storage)
    config = GanConfig.from_dict(meta["model"])
    nets: dict[str, nn.Module] = {GENERATOR: Generator(config), DISCRIMINATOR: Discriminator(config)}
    weights = {name: load_weights(src, name, net, storage) for name, net in nets.items()}
    for name, data in weights.items():
        storage.write_bytes(join(dst, name), state_bytes(nets[name], half=True) if half else data)
    if storage.exists(join(src, MATCHER_CONFIG)):  # the matcher trained alongside scores this GAN's consistency
        from llmgan.gan.matcher import Matcher

        Matcher.load(src, storage).save(dst, storage, half=half)  # loaded first: a broken one is not exported either
    storage.write_text(join(dst, CONFIG), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def content_identity(meta: dict[str, Any], *weights: bytes) -> str:
    """Short sha256 over the model config and weight bytes: names exactly what generated an image."""
    h = hashlib.sha256(json.dumps(meta.get("model"), sort_keys=True).encode())
    h.update(str(meta.get("text_encoder")).encode())
    for w in weights:
        h.update(hashlib.sha256(w).digest())
    return h.hexdigest()[:16]
