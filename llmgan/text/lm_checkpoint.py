"""Resume state of `llmgan train-lm`: checkpoints/{step:08d}/ under --out, found, written, loaded and checked.

One checkpoint directory holds the model and tokenizer in `save_pretrained` layout (config.json,
model.safetensors, tokenizer.json, ...) and `training_state.pt` (optimizer, RNG, step, schedule length, losses
so far, the options and a hash of the training pairs), loaded with weights_only=True. A checkpoint is complete
when its training_state.pt is there: a local one is written into a temporary folder and renamed into place, an
S3 one uploads training_state.pt last, so a run killed mid-write never leaves one that looks complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from llmgan.errors import StorageError, UserError
from llmgan.io.identity import TRAINING_STATE_DIR
from llmgan.io.storage import Storage, is_s3, join

CHECKPOINTS = TRAINING_STATE_DIR  # beside the exported model, left out of its identity
TRAINING_STATE = "training_state.pt"
SUMMARY = "train_lm.json"  # the exported model's summary: with config.json, marks a finished run
# options a resumed run may change: --steps (continue further) and the time budget; everything else must match
RESUMABLE = ("steps", "max_minutes")
_STEP_DIR = re.compile(r"^\d{8}$")


def pairs_sha256(pairs: Sequence[tuple[str, str]]) -> str:
    """Content hash of the training pairs: a resumed run must see the same data (its tokenizer was trained on it)."""
    h = hashlib.sha256()
    for prompt, caption in pairs:
        h.update(prompt.encode() + b"\x1f" + caption.encode() + b"\x1e")
    return h.hexdigest()


def latest_checkpoint(out: str, storage: Storage) -> str | None:
    """The newest complete checkpoint directory under `out`, if any (temporary and partial ones are ignored)."""
    names = storage.list(join(out, CHECKPOINTS))
    done = sorted(n.split("/")[0] for n in names
                  if n.endswith("/" + TRAINING_STATE) and n.count("/") == 1 and _STEP_DIR.match(n.split("/")[0]))
    return join(out, CHECKPOINTS, done[-1]) if done else None


def save_checkpoint(out: str, step: int, model: Any, tokenizer: Any, state: dict[str, Any], storage: Storage,
                    keep: int = 2) -> None:
    """Write checkpoints/{step:08d}/ (model, tokenizer, `state`) atomically, then keep only the newest `keep`."""
    url = join(out, CHECKPOINTS, f"{step:08d}")
    buf = io.BytesIO()
    torch.save(state, buf)
    if is_s3(out):
        with tempfile.TemporaryDirectory(prefix=".llmgan-lm-ckpt-") as tmp:
            save_pretrained(Path(tmp), model, tokenizer)
            for f in sorted(Path(tmp).iterdir()):
                storage.write_bytes(join(url, f.name), f.read_bytes())
        storage.write_bytes(join(url, TRAINING_STATE), buf.getvalue())  # last: marks the checkpoint complete
    else:
        root = Path(out) / CHECKPOINTS
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{step:08d}-", dir=root))
        try:
            save_pretrained(tmp, model, tokenizer)
            (tmp / TRAINING_STATE).write_bytes(buf.getvalue())
            dest = root / f"{step:08d}"
            if dest.exists():  # an incomplete leftover of the same step
                shutil.rmtree(dest)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _prune(out, storage, keep)


def save_pretrained(path: Path, model: Any, tokenizer: Any) -> None:
    """Model and tokenizer in `save_pretrained` layout, without transformers' progress bars."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # train-lm shows its own progress
    try:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _prune(out: str, storage: Storage, keep: int) -> None:
    """Delete all but the newest `keep` step directories, and temporary folders a killed run left behind."""
    names = storage.list(join(out, CHECKPOINTS))
    steps = sorted({n.split("/")[0] for n in names if _STEP_DIR.match(n.split("/")[0])})
    for old in steps[:-keep]:
        for name in names:
            if name.startswith(old + "/"):
                storage.delete(join(out, CHECKPOINTS, name))
        if not is_s3(out):  # S3 has no folders; a local one would stay behind, empty
            shutil.rmtree(Path(out) / CHECKPOINTS / old, ignore_errors=True)
    if not is_s3(out):  # only this process writes here, so any temporary folder left is a killed run's
        for tmp in (Path(out) / CHECKPOINTS).glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


def read_state(url: str, storage: Storage) -> dict[str, Any]:
    """The training_state.pt of a checkpoint directory (tensors, numbers, strings and lists only)."""
    try:
        blob = storage.read_bytes(join(url, TRAINING_STATE))
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file is a one-line error naming it
        raise UserError(f"{join(url, TRAINING_STATE)} is not a train-lm training state ({type(exc).__name__}); "
                        f"delete that checkpoint folder to resume from an older one") from None


def load_weights(url: str, model: torch.nn.Module, storage: Storage) -> None:
    """Load the checkpoint's model.safetensors into `model` (built with the same options), strictly."""
    from safetensors.torch import load as st_load

    tensors = st_load(storage.read_bytes(join(url, "model.safetensors")))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    if unexpected or set(missing) - tied:  # tied: save_pretrained stores the shared matrix once
        raise UserError(f"{url}: its weights do not fit this model (missing {sorted(set(missing) - tied)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]})")


def check_resumable(out: str, state: dict[str, Any], config: dict[str, Any], pairs_hash: str) -> None:
    """Refuse to continue a checkpoint made with other options or other pairs (one line naming what differs)."""
    saved = state["config"]
    diff = [f"{k} {saved.get(k)!r} vs {v!r}" for k, v in config.items() if k not in RESUMABLE and saved.get(k) != v]
    if diff:
        raise UserError(f"{out} holds a run with a different configuration ({', '.join(diff)}); resume with the "
                        f"same options or choose a new --out")
    if state["pairs_sha256"] != pairs_hash:
        raise UserError(f"{out} holds a run trained on other pairs ({state['pairs']} from {state['data']}); resume "
                        f"with the same --data or choose a new --out")


def finished_summary(out: str, step: int, storage: Storage) -> dict[str, Any] | None:
    """The exported model's train_lm.json when the run in `out` finished at `step` (its newest checkpoint)."""
    if not (storage.exists(join(out, "config.json")) and storage.exists(join(out, SUMMARY))):
        return None
    summary = json.loads(storage.read_text(join(out, SUMMARY)))
    return summary if summary.get("steps") == step else None


def clear(out: str, storage: Storage) -> None:
    """--overwrite: remove everything under `out` before training, so no old checkpoint is resumed."""
    if is_s3(out):
        for name in storage.list(out):
            storage.delete(join(out, name))
    elif Path(out).is_dir():
        shutil.rmtree(out)
