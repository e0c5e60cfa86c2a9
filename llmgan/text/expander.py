"""The caption expander: short prompts -> detailed captions with any Hugging Face causal LM, batched and seeded per row.

Every caption is sampled by our own short decoding loop (KV cache, left padding) in which each row draws its
random numbers from a generator seeded by (job seed, key, variant, attempt), so a caption does not depend on
the batch it lands in. Two loops give the same captions: the fast one (`fast_decode`, static KV cache, GPT-2
family) and the reference one (the Hugging Face forward per step, any causal LM; `ExpanderConfig.engine`). The expander knows no vocabulary: a domain's `Faithfulness` check, when one is passed,
resamples expansions that drop or contradict a stated attribute (falling back to the short prompt itself), and
with `keep_words` writes the user's own attribute words into every caption.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmgan.errors import UserError
from llmgan.io.identity import is_model_file
from llmgan.io.seeds import derive_seed
from llmgan.text.options import DEFAULT_INSTRUCTION, ExpanderConfig, Faithfulness, keeps_words  # noqa: F401 - re-exported
from llmgan.text.sampling import sample_tokens, sample_tokens_fast  # noqa: F401 - re-exported

# Base (non-chat) LMs see this text and continue it; `lm_train` writes its corpus in the same format.
PROMPT_FORMAT = "short: {prompt}\nlong:"
SHIPPED_LM = Path(__file__).resolve().parents[1] / "assets" / "lm" / "shapes-captioner"
# "not_understood": the prompt holds words the domain did not understand, so no caption of it is called faithful
OUTCOMES = ("faithful", "resampled", "fallback", "unchecked", "not_understood")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_FULL_HASH_LIMIT = 256 << 20  # files above this are fingerprinted by size + head/tail, not read whole


@dataclass
class ExpansionResult:
    """`captions[i]` holds the variants for prompt i; `stats` counts outcomes per returned caption (OUTCOMES),
    drafts `generated` and `pinned` (changed by keep-words), `cache_hits`, `deduped` and `model_calls`."""

    captions: list[list[str]]
    stats: dict[str, int] = field(default_factory=dict)


def normalize_prompt(prompt: str) -> str:
    """One line, single spaces: what the LM sees and what the fallback returns."""
    return " ".join(str(prompt).split())


def clean_caption(text: str, max_chars: int) -> str:
    """First non-empty line, whitespace collapsed, wrapping quotes removed, cut at a word boundary."""
    text = text.lstrip()
    text = text.split("\n", 1)[0]
    text = "".join(ch if ch.isprintable() else " " for ch in text)  # no control bytes from a bad LM
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    if len(text) > max_chars:
        cut = text[:max_chars]
        space = cut.rfind(" ")
        text = (cut[:space] if space > max_chars // 2 else cut).rstrip(" ,;:-")
    return text


def _fingerprint_dir(path: Path) -> str:
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and is_model_file(p.relative_to(path).as_posix())):
        rel = file.relative_to(path).as_posix()
        size = file.stat().st_size
        h.update(f"{rel}\x00{size}\x00".encode())
        with file.open("rb") as f:
            if size <= _FULL_HASH_LIMIT:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            else:
                h.update(f.read(4 << 20))
                f.seek(size - (4 << 20))
                h.update(f.read(4 << 20))
    return h.hexdigest()[:16]


def _fetch_s3_dir(url: str) -> Path:
    """Copy an s3:// model directory into a local cache keyed by its URL (skipping files already there)."""
    import tempfile

    from llmgan.io.storage import Storage, join

    storage = Storage()
    names = [n for n in storage.list(url) if is_model_file(n)]
    if "config.json" not in names:
        raise UserError(f"caption LM {url!r}: no config.json under that prefix")
    local = Path(tempfile.gettempdir()) / "llmgan-lm" / hashlib.sha256(url.encode()).hexdigest()[:16]
    for name in names:
        dest = local / name
        data = storage.read_bytes(join(url, name))
        if not dest.exists() or dest.stat().st_size != len(data):
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    return local


def resolve_lm(lm: str | None) -> tuple[str, Path | None]:
    """(display name, local directory or None for a hub id); a bad path is one UserError line."""
    if lm is None:
        if not (SHIPPED_LM / "config.json").exists():
            raise UserError(f"the shipped caption LM is missing ({SHIPPED_LM}); pass --lm or reinstall llmgan")
        return str(SHIPPED_LM), SHIPPED_LM
    if lm.startswith("s3://"):
        return lm, _fetch_s3_dir(lm)
    path = Path(lm).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"caption LM {lm!r} is a file; expected a model directory (save_pretrained layout)")
        if not (path / "config.json").exists():
            raise UserError(f"caption LM directory {lm!r} has no config.json (not a save_pretrained layout)")
        return str(path), path
    if lm.startswith(("/", ".", "~")) or "\\" in lm or not _HUB_ID.match(lm):
        raise UserError(f"caption LM {lm!r} not found: no such directory, and not a hub id")
    return lm, None


class CaptionExpander:
    """Loads one causal LM and expands short prompts into `variants` captions each, deterministically.

    `check` is the domain's faithfulness check (None: any domain, nothing checked, every caption `unchecked`).
    """

    def __init__(self, config: ExpanderConfig = ExpanderConfig(), check: Faithfulness | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.check = check
        name, local = resolve_lm(config.lm)
        source = str(local) if local is not None else name
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device: {config.device!r} requested but CUDA is not available")
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bars in every pipeline worker's log
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=config.trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                source,
                trust_remote_code=config.trust_remote_code,
                dtype=torch.float32 if self.device.type == "cpu" else "auto",
            )
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad --lm for the user
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"cannot load caption LM {name!r}: {first}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.to(self.device).eval()
        if config.chat_template and not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"chat_template: the tokenizer of {name!r} has no chat template")
        fingerprint = _fingerprint_dir(local) if local is not None else getattr(self.model.config, "_commit_hash", None)
        self.identity: str = f"{name}@{fingerprint or 'unknown'}"
        self.model_calls: int = 0
        self._cache: OrderedDict[tuple[str, str, int, int], tuple[str, str]] = OrderedDict()
        self._prepare_special_tokens()
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params
        positions = [getattr(self.model.config, k, None) for k in ("max_position_embeddings", "n_positions")]
        self._max_positions = next((int(p) for p in positions if p), 1 << 30)
        # the sampling loop: the static-cache one where it runs this model exactly, else Hugging Face's forward
        from llmgan.text import fast_decode

        # engine_note: why an LM asked to run fast runs on the reference loop (None when it does not)
        self.engine_note: str | None = fast_decode.unsupported(self.model) if config.engine == "fast" else None
        fast = config.engine == "fast" and self.engine_note is None
        self._fast = fast_decode.Gpt2Decoder(self.model) if fast else None
        self.engine: str = "fast" if fast else "reference"

    # ---- set-up ---------------------------------------------------------------------------------
    def _prepare_special_tokens(self) -> None:
        tok = self.tokenizer
        eos: set[int] = set()
        for source in (getattr(self.model.generation_config, "eos_token_id", None), tok.eos_token_id):
            if isinstance(source, int):
                eos.add(source)
            elif source:
                eos.update(int(t) for t in source)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (min(eos) if eos else 0)
        # classify every token once: a newline ends a caption (after some text), EOS ends it anyway
        texts = tok.batch_decode([[i] for i in range(len(tok))], skip_special_tokens=False)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        newline = torch.zeros(vocab, dtype=torch.bool)
        has_text = torch.zeros(vocab, dtype=torch.bool)
        for i, text in enumerate(texts[:vocab]):
            newline[i] = "\n" in text
            has_text[i] = bool(text.strip()) and i not in eos
        stop = torch.zeros(vocab, dtype=torch.bool)
        stop[[i for i in eos if i < vocab]] = True
        self._newline, self._has_text, self._eos = newline.to(self.device), has_text.to(self.device), stop.to(self.device)

    def format_prompt(self, prompt: str) -> list[int]:
        """The token ids the LM continues for one (normalised) short prompt."""
        if self.config.chat_template:
            messages = [{"role": "user", "content": self.config.instruction.format(prompt=prompt)}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = PROMPT_FORMAT.format(prompt=prompt)
        ids = self.tokenizer(text, add_special_tokens=not self.config.chat_template)["input_ids"]
        room = max(self._max_positions - self.config.max_new_tokens, 1)
        return list(ids[-room:])  # an over-long prompt keeps its tail, where the format's cue sits

    @property
    def stop_token_ids(self) -> list[int]:
        """Token ids that can end a caption (EOS and every token containing a newline)."""
        return torch.nonzero((self._eos | self._newline).cpu()).flatten().tolist()

    # ---- sampling -------------------------------------------------------------------------------
    def _stop(self, token: torch.Tensor, done: torch.Tensor, started: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A row stops at EOS, or at a newline once it has produced some text (a leading newline is skipped)."""
        done = done | self._eos[token] | (self._newline[token] & started)
        return done, started | self._has_text[token]

    def _sample(self, logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        return sample_tokens(logits, uniforms, self.config.temperature, self.config.top_p)

    def _sample_fast(self, logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        return sample_tokens_fast(logits, uniforms, self.config.temperature, self.config.top_p)

    @torch.inference_mode()
    def generate_rows(self, token_rows: Sequence[Sequence[int]], seeds: Sequence[int]) -> list[str]:
        """One batched decoding pass: row r continues token_rows[r] with randomness from seeds[r]."""
        cfg = self.config
        self.model_calls += 1
        n = len(token_rows)
        width = max(len(r) for r in token_rows)
        steps = min(cfg.max_new_tokens, max(self._max_positions - width, 1))
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for r, row in enumerate(token_rows):  # left padding: every row's last prompt token is aligned
            ids[r, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[r, width - len(row):] = 1
        uniforms = torch.stack(
            [torch.rand(steps, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds]
        ).to(self.device)
        ids, mask = ids.to(self.device), mask.to(self.device)
        if self._fast is not None:
            # on an accelerator every all-done check is a host sync: look every 8 steps (extra steps emit pad only)
            out_tokens = self._fast.decode(ids, mask, uniforms, steps, self._sample_fast, self._stop, self.pad_id,
                                           sync_every=1 if self.device.type == "cpu" else 8)
        else:
            out_tokens = self._decode_reference(ids, mask, uniforms, steps)
        texts = self.tokenizer.batch_decode(out_tokens.cpu().tolist(), skip_special_tokens=True)
        return [clean_caption(t, cfg.max_chars) for t in texts]

    def _decode_reference(self, ids: torch.Tensor, mask: torch.Tensor, uniforms: torch.Tensor, steps: int
                          ) -> torch.Tensor:
        """The Hugging Face forward step by step with a DynamicCache: any causal LM (`engine="reference"`)."""
        n = ids.shape[0]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        out_tokens = torch.full((n, steps), self.pad_id, dtype=torch.long, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        started = torch.zeros(n, dtype=torch.bool, device=self.device)
        step_input, step_pos = ids, positions
        for t in range(steps):
            kwargs: dict[str, Any] = {self._cache_kwarg: cache, "use_cache": True}
            if self._logits_to_keep:
                kwargs["logits_to_keep"] = 1
            out = self.model(input_ids=step_input, attention_mask=mask, position_ids=step_pos, **kwargs)
            for name in ("cache", "past_key_values"):  # legacy remote-code models return a new cache object
                if getattr(out, name, None) is not None:
                    cache = getattr(out, name)
                    break
            logits = out.logits[:, -1, :].float()
            token = self._sample(logits, uniforms[:, t])
            token = torch.where(done, torch.full_like(token, self.pad_id), token)
            out_tokens[:, t] = token
            done, started = self._stop(token, done, started)
            if bool(done.all()):
                break
            step_input = token.unsqueeze(-1)
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=self.device)], dim=-1)
        return out_tokens

    # ---- public API -----------------------------------------------------------------------------
    def expand(self, prompts: Sequence[str], keys: Sequence[str], variants: int, seed: int) -> ExpansionResult:
        """`variants` captions per prompt; caption (keys[i], v, seed) is the same whatever the batch."""
        if len(prompts) != len(keys):
            raise UserError(f"expand: {len(prompts)} prompts but {len(keys)} keys")
        if variants < 1:
            raise UserError(f"variants: must be >= 1, got {variants}")
        cfg = self.config
        stats = dict.fromkeys((*OUTCOMES, "generated", "pinned", "cache_hits", "deduped", "model_calls"), 0)
        calls_before = self.model_calls
        captions: list[list[str]] = [[""] * variants for _ in prompts]
        # (prompt, key, variant) -> output slots; identical prompts with identical keys are sampled once
        jobs: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
        for i, (prompt, key) in enumerate(zip(prompts, keys)):
            prompt = normalize_prompt(prompt)
            for v in range(variants):
                hit = self._cache.get((prompt, str(key), v, seed))
                if hit is not None:
                    self._cache.move_to_end((prompt, str(key), v, seed))
                    captions[i][v] = hit[0]
                    stats[hit[1]] += 1
                    stats["cache_hits"] += 1
                    continue
                slots = jobs.setdefault((prompt, str(key), v), [])
                stats["deduped"] += bool(slots)
                slots.append((i, v))
        check = self.check
        keep = cfg.keep_words and check is not None
        stated = {p: check.stated_words(p) if check is not None else [] for p, _, _ in jobs}
        # with keep-words the LM expands the domain's form of the prompt, and the user's words are pinned back
        tokens = {p: self.format_prompt(check.condition(p) if keep else p) for p in stated}
        settled: dict[tuple[str, str, int], tuple[str, str]] = {}
        pending = list(jobs)
        for attempt in range(cfg.max_resamples + 1):
            if not pending:
                break
            texts = self._sample_jobs(pending, tokens, seed, attempt)
            stats["generated"] += len(pending)
            retry = []
            for job, text in zip(pending, texts):
                prompt = job[0]
                if not text:  # an empty draft is resampled whatever the check
                    retry.append(job)
                    continue
                if not stated[prompt]:
                    settled[job] = (text, "unchecked")
                    continue
                assert check is not None  # a prompt states words only when there is a check
                if keep:
                    pinned = clean_caption(check.pin(prompt, text), cfg.max_chars)
                    stats["pinned"] += pinned != text
                    text = pinned
                if text and check.check(prompt, text) and (not keep or keeps_words(stated[prompt], text)):
                    settled[job] = (text, "faithful" if attempt == 0 else "resampled")
                else:
                    retry.append(job)
            pending = retry
        for job in pending:
            settled[job] = (clean_caption(job[0], cfg.max_chars), "fallback")
        for job, (text, outcome) in settled.items():
            if check is not None and outcome != "fallback" and check.not_understood(job[0]):
                outcome = "not_understood"
            for i, v in jobs[job]:
                captions[i][v] = text
            stats[outcome] += len(jobs[job])
            self._remember((job[0], job[1], job[2], seed), (text, outcome))
        stats["model_calls"] = self.model_calls - calls_before
        return ExpansionResult(captions=captions, stats=stats)

    def _sample_jobs(
        self, jobs: list[tuple[str, str, int]], tokens: dict[str, list[int]], seed: int, attempt: int
    ) -> list[str]:
        # similar lengths share a batch (less padding); the order cannot change any row's caption
        order = sorted(range(len(jobs)), key=lambda j: len(tokens[jobs[j][0]]))
        texts: list[str] = [""] * len(jobs)
        bs = self.config.batch_size
        for start in range(0, len(order), bs):
            chunk = order[start:start + bs]
            rows = [tokens[jobs[j][0]] for j in chunk]
            seeds = [derive_seed("caption", seed, jobs[j][1], jobs[j][2], attempt) for j in chunk]
            for j, text in zip(chunk, self.generate_rows(rows, seeds)):
                texts[j] = text
        return texts

    def _remember(self, key: tuple[str, str, int, int], value: tuple[str, str]) -> None:
        if self.config.cache_size == 0:
            return
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)
