"""Training the caption LM: a byte-level BPE tokenizer and a small GPT-2 on (short prompt -> caption) pairs.

The result is a plain `save_pretrained` directory (model + PreTrainedTokenizerFast), so the expander loads
it with AutoModelForCausalLM/AutoTokenizer exactly as it loads any hub model.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from llmgan.errors import UserError
from llmgan.io.storage import Storage, is_s3, join
from llmgan.text.expander import PROMPT_FORMAT, normalize_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
# Files that make up the model; config.json is written last on S3 so its presence means "complete".
_LAST = "config.json"


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
    from transformers import PreTrainedTokenizerFast

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


def train_lm(pairs: Sequence[tuple[str, str]], out: str, config: LMTrainConfig = LMTrainConfig(), *,
             source: str = "", overwrite: bool = False, storage: Storage | None = None,
             progress: Callable[[int, float, int], None] | None = None) -> dict:
    """Train tokenizer + GPT-2 on `pairs` and save both to `out` (local dir or s3://); returns a summary."""
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    storage = storage or Storage()
    if not pairs:
        raise UserError("train-lm: no training pairs")
    if storage.list(out) and not overwrite:
        raise UserError(f"--out {out} is not empty; pass --overwrite to replace it")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    tokenizer = build_tokenizer(("".join(format_pair(p, c)) for p, c in pairs), config.vocab_size)
    encoded = _encode(tokenizer, pairs, config.n_positions)
    model_cfg = GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.n_positions, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=config.tie_embeddings,
    )
    model = GPT2LMHeadModel(model_cfg)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98))

    total = config.steps
    # With a time budget the step count (and so the cosine schedule) is re-fitted every PROBE steps to end
    # on time; the count reached is recorded in train_lm.json. Without a budget, training is exactly replayable.
    probe = 20

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < config.warmup:
            return config.lr * (step + 1) / config.warmup
        frac = (step - config.warmup) / max(total - config.warmup, 1)
        return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    gen = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(encoded), generator=gen)
    cursor, rows, losses = 0, [], []
    mark = (time.perf_counter(), 0)  # (time, step) of the last pace measurement
    step = 0
    while step < total:
        if config.max_minutes is not None and step >= probe and step % probe == 0:
            # re-fit the step count to the time left at the recent pace (a shared CPU's speed drifts)
            now = time.perf_counter()
            per_step = (now - mark[0]) / max(step - mark[1], 1)
            left = config.max_minutes * 60 - (now - started)
            total = max(step + 1, min(config.steps, step + int(left / per_step)))
            mark = (now, step)
        if cursor + config.batch_size > len(order):
            order, cursor = torch.randperm(len(encoded), generator=gen), 0
        index = order[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        ids, mask, labels = _batch(encoded, index, tokenizer.pad_token_id)
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
    # stage next to a local destination so publishing is a rename on the same filesystem
    stage_root = None if is_s3(out) else Path(out).absolute().parent
    if stage_root is not None:
        stage_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".llmgan-lm-", dir=stage_root) as tmp:
        staging = Path(tmp) / "lm"
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # our own progress is enough
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        (staging / "loss.csv").write_text("step,loss,lr\n" + "\n".join(rows) + "\n")
        _write_loss_png(losses, staging / "loss.png")
        (staging / "train_lm.json").write_text(json.dumps(summary, indent=2) + "\n")
        summary["bytes"] = sum(p.stat().st_size for p in staging.iterdir())
        _publish(staging, out, storage, overwrite)
    return summary


def _publish(staging: Path, out: str, storage: Storage, overwrite: bool) -> None:
    """Move the finished directory into place: a rename locally, config.json last on S3."""
    if is_s3(out):
        if overwrite:
            for name in storage.list(out):
                storage.delete(join(out, name))
        files = sorted(staging.iterdir(), key=lambda p: (p.name == _LAST, p.name))
        for f in files:
            storage.write_bytes(join(out, f.name), f.read_bytes())
        return
    dest = Path(out)
    if dest.exists():
        if not dest.is_dir():
            raise UserError(f"--out {out} is a file; expected a directory")
        shutil.rmtree(dest) if overwrite else dest.rmdir()  # rmdir: it was checked empty before training
    staging.rename(dest)
