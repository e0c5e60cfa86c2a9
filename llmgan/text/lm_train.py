"""Training the caption LM: a byte-level BPE tokenizer and a small GPT-2 on (short prompt -> caption) pairs.

The result is a plain `save_pretrained` directory (model + PreTrainedTokenizerFast), so the expander loads
it with AutoModelForCausalLM/AutoTokenizer exactly as it loads any hub model. Its checkpoints/ folder holds the
resume state (llmgan.text.lm_checkpoint): running the same command again continues an interrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from llmgan.errors import UserError
from llmgan.io.storage import Storage, is_s3, join
from llmgan.text import lm_checkpoint as ckpt
from llmgan.text.expander import PROMPT_FORMAT, normalize_prompt

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
# Published last, in this order: config.json's presence means a complete model, train_lm.json's a finished run.
_LAST = ("config.json", ckpt.SUMMARY)


@dataclass(frozen=True)
class LMTrainConfig:
    """Model size and optimisation settings; the defaults train the shipped LM in a few CPU minutes."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    vocab_size: int = 640
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 96
    n_positions: int = 128
    seed: int = 0
    # tied input/output embeddings (GPT-2's default, the shipped shapes LM). Untied: tokens that play the same role
    # and are never predictable from the context before them (the emoji styles "google" / "twitter" when a prompt
    # does not state one) keep apart at the input; tied, their embeddings were pulled together (cosine 0.998) and
    # the LM could no longer tell a stated style from the other one
    tie_embeddings: bool = True
    max_minutes: float | None = None  # time budget: fixes the step count after a short probe (see train_lm)
    prompt_column: str = "short_prompt"
    caption_column: str = "caption"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr < 1:
            raise UserError(f"lr: must be in (0, 1), got {self.lr}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise UserError(f"max_minutes: must be > 0, got {self.max_minutes}")
        if self.warmup < 0:
            raise UserError(f"warmup: must be >= 0, got {self.warmup}")
        if not 300 <= self.vocab_size <= 65536:
            raise UserError(f"vocab_size: must be in [300, 65536] (byte-level BPE has 257 base tokens), got {self.vocab_size}")
        if self.n_embd % self.n_head:
            raise UserError(f"n_embd: must be divisible by n_head ({self.n_head}), got {self.n_embd}")
        if not 16 <= self.n_positions <= 4096:
            raise UserError(f"n_positions: must be in [16, 4096], got {self.n_positions}")


def load_pairs(data: str, prompt_column: str = "short_prompt", caption_column: str = "caption",
               storage: Storage | None = None) -> list[tuple[str, str]]:
    """(short prompt, caption) pairs from a Parquet file (local or s3://); rows with an empty side are skipped."""
    import pyarrow.parquet as pq

    storage = storage or Storage()
    try:
        with storage.open_input(data) as f:
            schema = pq.read_schema(f)
            missing = [c for c in (prompt_column, caption_column) if c not in schema.names]
            if missing:
                raise UserError(f"--data {data}: missing column(s) {', '.join(missing)} (has {', '.join(schema.names)})")
            f.seek(0)
            table = pq.read_table(f, columns=[prompt_column, caption_column])
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - not Parquet / unreadable is a user problem here
        if type(exc).__name__ == "StorageError":
            raise
        raise UserError(f"--data {data}: not a readable Parquet file ({type(exc).__name__})") from None
    pairs = [
        (normalize_prompt(p), " ".join(str(c).split()))
        for p, c in zip(table.column(prompt_column).to_pylist(), table.column(caption_column).to_pylist())
        if p and c and str(p).strip() and str(c).strip()
    ]
    if not pairs:
        raise UserError(f"--data {data}: no rows with both {prompt_column!r} and {caption_column!r}")
    return pairs


def format_pair(prompt: str, caption: str) -> tuple[str, str]:
    """(model input, target continuation): the continuation ends with the newline the expander stops at."""
    return PROMPT_FORMAT.format(prompt=prompt), f" {caption}\n"


def build_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes; newline is a byte token) with EOS as BOS/pad too."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    eos_id = tok.token_to_id(EOS)
    # add_special_tokens=True prepends EOS as a start marker, for training and for the expander alike
    tok.post_processor = processors.TemplateProcessing(single=f"{EOS} $A", special_tokens=[(EOS, eos_id)])
    return _wrap_tokenizer(tok)


def _wrap_tokenizer(tok) -> PreTrainedTokenizerFast:
    """The transformers tokenizer around a `tokenizers` one: EOS doubles as BOS, pad and unk."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
        model_max_length=1 << 20,
    )


def _encode(tokenizer, pairs: Sequence[tuple[str, str]], max_len: int) -> list[tuple[list[int], int]]:
    """Token ids per pair and the number of leading (prompt) tokens excluded from the loss."""
    encoded = []
    for prompt, caption in pairs:
        head, tail = format_pair(prompt, caption)
        head_ids = tokenizer(head)["input_ids"]
        ids = tokenizer(head + tail)["input_ids"] + [tokenizer.eos_token_id]
        encoded.append((ids[:max_len], len(head_ids)))
    return encoded


def _batch(encoded, index: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = [encoded[i] for i in index.tolist()]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (row, n_prompt) in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
        mask[r, :len(row)] = 1
        labels[r, n_prompt:len(row)] = torch.tensor(row[n_prompt:])
    return ids, mask, labels


def _write_loss_png(losses: Sequence[float], path: Path) -> None:
    """A small loss curve drawn with PIL (no plotting dependency)."""
    from PIL import Image, ImageDraw

    w, h, pad = 480, 240, 24
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    logs = [math.log(max(x, 1e-6)) for x in losses]
    lo, hi = min(logs), max(logs)
    span = (hi - lo) or 1.0
    pts = [(pad + (w - 2 * pad) * i / max(len(logs) - 1, 1), h - pad - (h - 2 * pad) * (v - lo) / span)
           for i, v in enumerate(logs)]
    draw.rectangle([pad, pad, w - pad, h - pad], outline="gray")
    if len(pts) > 1:
        draw.line(pts, fill="navy", width=2)
    draw.text((pad, 4), f"train loss (log scale) {losses[0]:.3f} -> {losses[-1]:.3f}", fill="black")
    img.save(path)


class _BatchOrder:
    """Each step's rows: consecutive batches of seeded per-epoch permutations, a pure function of (seed, step), so a
    resumed run draws exactly the batches an uninterrupted one would. An epoch's tail too short for a batch is skipped."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch, self.per_epoch = n, batch, max(n // batch, 1)
        self.gen, self.epoch, self.perm = torch.Generator().manual_seed(seed), -1, torch.empty(0, dtype=torch.long)

    def rows(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_epoch)
        while self.epoch < epoch:  # steps only go forward; a resumed run replays the earlier epochs' draws once
            self.perm, self.epoch = torch.randperm(self.n, generator=self.gen), self.epoch + 1
        return self.perm[k * self.batch:(k + 1) * self.batch]


def _new_model(config: LMTrainConfig, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=config.tie_embeddings,
    ))


def _check_out(out: str, storage: Storage) -> None:
    """A fresh run needs an empty --out (checkpoint leftovers of a run killed before its first one are fine)."""
    left = [n for n in storage.list(out) if not n.startswith(ckpt.CHECKPOINTS + "/")]
    if ckpt.SUMMARY in left:
        raise UserError(f"--out {out} holds a finished caption LM without checkpoints to resume from; pass "
                        f"--overwrite to retrain it or choose a new --out")
    if left:
        raise UserError(f"--out {out} is not empty; pass --overwrite to replace it")


def train_lm(pairs: Sequence[tuple[str, str]], out: str, config: LMTrainConfig = LMTrainConfig(), *,
             source: str = "", overwrite: bool = False, storage: Storage | None = None,
             progress: Callable[[int, float, int], None] | None = None, checkpoint_every: int = 200,
             keep_checkpoints: int = 2) -> dict:
    """Train tokenizer + GPT-2 on `pairs` and save both to `out` (local dir or s3://); returns a summary.

    Every `checkpoint_every` steps and at the end the run is checkpointed into out/checkpoints/<step>/; when `out`
    holds a checkpoint, training resumes from the newest one and continues to config.steps, ending with the same
    weights as an uninterrupted run. The summary's `already_complete` is True when `out` held the finished run.
    """
    from tokenizers import Tokenizer
    from transformers import GenerationConfig

    storage = storage or Storage()
    if not pairs:
        raise UserError("train-lm: no training pairs")
    for name, value in (("checkpoint_every", checkpoint_every), ("keep_checkpoints", keep_checkpoints)):
        if value < 1:
            raise UserError(f"{name}: must be >= 1, got {value}")
    if not is_s3(out) and Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out} is a file; expected a directory")
    if overwrite:  # replace means start over: an old checkpoint must not be resumed
        ckpt.clear(out, storage)
    started = time.perf_counter()
    pairs_hash = ckpt.pairs_sha256(pairs)
    latest = ckpt.latest_checkpoint(out, storage)
    saved: dict | None = None
    if latest is None:
        _check_out(out, storage)
    else:
        saved = ckpt.read_state(latest, storage)
        ckpt.check_resumable(out, saved, asdict(config), pairs_hash)
        done = ckpt.finished_summary(out, int(saved["step"]), storage)
        # the same command again (or --steps equal to the finished count) has nothing left to train
        if done is not None and (config.steps == saved["step"] or saved["config"] == asdict(config)):
            return {**done, "start_step": saved["step"], "already_complete": True}
        if config.steps < saved["step"]:
            raise UserError(f"--steps {config.steps} is below step {saved['step']} of the newest checkpoint in {out}; "
                            f"pass --steps {saved['step']} or more to continue it, or --overwrite to start over")
    if saved is None:
        torch.manual_seed(config.seed)
        tokenizer = build_tokenizer(("".join(format_pair(p, c)) for p, c in pairs), config.vocab_size)
    else:  # the checkpoint's own tokenizer: the ids its weights were trained with
        tokenizer = _wrap_tokenizer(Tokenizer.from_str(storage.read_text(join(latest, "tokenizer.json"))))
    encoded = _encode(tokenizer, pairs, config.n_positions)
    model = _new_model(config, tokenizer)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))

    total = config.steps
    # With a time budget the step count (and so the cosine schedule) is re-fitted every PROBE steps to end
    # on time; the count reached is recorded in train_lm.json. Without a budget, training is exactly replayable.
    probe = 20
    step, rows, losses = 0, [], []
    if saved is not None:
        ckpt.load_weights(latest, model, storage)
        opt.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng_cpu"])
        step, rows, losses = int(saved["step"]), list(saved["rows"]), list(saved["losses"])
        started -= float(saved["seconds"])  # a time budget covers the whole run, not each invocation
        if config.max_minutes is not None and saved["total"] > step:
            total = min(total, int(saved["total"]))  # the interrupted budget run's fitted schedule, until re-fitted
    log.info("%s at step %d", f"resuming from {latest}" if saved is not None else "starting", step)

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < config.warmup:
            return config.lr * (step + 1) / config.warmup
        frac = (step - config.warmup) / max(total - config.warmup, 1)
        return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    def state() -> dict[str, Any]:  # what a resumed run needs beyond the weights (the LR is a function of step and total)
        return {"step": step, "total": total, "optimizer": opt.state_dict(), "rng_cpu": torch.get_rng_state(),
                "rows": rows, "losses": losses, "seconds": time.perf_counter() - started, "config": asdict(config),
                "data": source, "pairs": len(pairs), "pairs_sha256": pairs_hash}

    order = _BatchOrder(len(encoded), config.batch_size, config.seed)
    start_step = step
    mark = (time.perf_counter(), step)  # (time, step) of the last pace measurement
    while step < total:
        if config.max_minutes is not None and step - start_step >= probe and (step - start_step) % probe == 0:
            # re-fit the step count to the time left at the recent pace (a shared CPU's speed drifts)
            now = time.perf_counter()
            per_step = (now - mark[0]) / max(step - mark[1], 1)
            left = config.max_minutes * 60 - (now - started)
            total = max(step + 1, min(config.steps, step + int(left / per_step)))
            mark = (now, step)
        ids, mask, labels = _batch(encoded, order.rows(step), tokenizer.pad_token_id)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = float(loss.detach())
        losses.append(value)
        rows.append(f"{step + 1},{value:.5f},{lr_at(step):.6g}")
        step += 1
        if step % checkpoint_every == 0 or step == total:  # before progress: a kill after it resumes from here
            ckpt.save_checkpoint(out, step, model, tokenizer, state(), storage, keep_checkpoints)
        if progress is not None:
            progress(step, value, total)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id
    )
    seconds = time.perf_counter() - started
    tail = losses[-min(50, len(losses)):]
    summary = {
        "out": out, "data": source, "pairs": len(pairs), "steps": total,
        "final_loss": round(sum(tail) / len(tail), 4), "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer), "seconds": round(seconds, 1), "config": asdict(config),
    }
    # stage next to a local destination so publishing is a rename per file on the same filesystem
    stage_root = None if is_s3(out) else Path(out).absolute().parent
    if stage_root is not None:
        stage_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".llmgan-lm-", dir=stage_root) as tmp:
        staging = Path(tmp) / "lm"
        ckpt.save_pretrained(staging, model, tokenizer)
        (staging / "loss.csv").write_text("step,loss,lr\n" + "\n".join(rows) + "\n")
        _write_loss_png(losses, staging / "loss.png")
        (staging / "train_lm.json").write_text(json.dumps(summary, indent=2) + "\n")
        summary["bytes"] = sum(p.stat().st_size for p in staging.iterdir())
        _publish(staging, out, storage)
    return {**summary, "start_step": start_step, "already_complete": False}


def _publish(staging: Path, out: str, storage: Storage) -> None:
    """Move the finished model into `out`, beside its checkpoints: config.json (a loadable model) and then
    train_lm.json (a finished run) last, so a kill while publishing never leaves a run that looks finished."""
    files = sorted(staging.iterdir(), key=lambda p: (_LAST.index(p.name) + 1 if p.name in _LAST else 0, p.name))
    if is_s3(out):
        for f in files:
            storage.write_bytes(join(out, f.name), f.read_bytes())
        return
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        os.replace(f, dest / f.name)  # same filesystem: each file appears whole
