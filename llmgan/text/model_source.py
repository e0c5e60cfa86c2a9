"""Cheap checks that a Hugging Face model (caption LM, sentence encoder) can be loaded, made before a job writes
anything: a local directory must hold its config and weights; a hub id must be in the local cache, or answer
on the hub within seconds (no retries: an offline machine is refused at once, not after a job's shard retries).
"""

from __future__ import annotations

import os
from pathlib import Path

from llmgan.errors import UserError

CONFIG = "config.json"
# any one of these is a loadable set of weights (sharded checkpoints are found through their index)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
HUB_TIMEOUT_S = 10.0
_TRUE = {"1", "true", "yes", "on"}


def check_model_dir(path: Path, what: str) -> None:
    """UserError unless `path` is a directory holding config.json and a weights file (save_pretrained layout)."""
    if not path.is_dir():
        raise UserError(f"{what} {str(path)!r} is not a model directory")
    if not (path / CONFIG).is_file():
        raise UserError(f"{what} {str(path)!r} has no {CONFIG} (not a save_pretrained layout)")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise UserError(f"{what} {str(path)!r} has no weights (none of {', '.join(WEIGHT_FILES)})")


def hub_offline() -> bool:
    """Whether the user told Hugging Face libraries not to reach the hub."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_hub_id(repo_id: str, what: str, hint: str = "pass a local model directory") -> None:
    """UserError unless hub model `repo_id` is cached locally (config and weights) or its config answers on the hub
    within HUB_TIMEOUT_S; what the loader will download then is the loader's business."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError

    try:
        cached = isinstance(try_to_load_from_cache(repo_id, CONFIG), str)
    except HFValidationError:
        raise UserError(f"{what} {repo_id!r} not found: no such directory, and not a hub id") from None
    if cached and any(isinstance(try_to_load_from_cache(repo_id, w), str) for w in WEIGHT_FILES):
        return
    if hub_offline():
        state = "its weights are not" if cached else "it is not"
        raise UserError(f"{what} {repo_id!r} is not a local directory and {state} in the Hugging Face cache "
                        f"(offline: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set); {hint}")
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, CONFIG), timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - unreachable hub, unknown repo, gated: all one line for the user
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(f"{what} {repo_id!r} is not a local directory, not in the Hugging Face cache, and the hub "
                        f"did not serve it ({type(exc).__name__}: {detail}); {hint}") from None


def check_model_source(spec: str, what: str) -> None:
    """A local directory (config and weights present) or a hub id (see check_hub_id)."""
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith(("/", ".", "~")):
        check_model_dir(path, what)
    else:
        check_hub_id(spec, what)
