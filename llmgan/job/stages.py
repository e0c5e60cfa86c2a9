"""The compute stages of generation, per shard, with no Ray: the Ray executor wraps them in actors and tasks and
the local executor calls them directly, so both do exactly the same work and write the same bytes.

ShardExpander: prompt rows of a shard -> validated rows -> K captions per prompt -> one work item per image.
ShardGenerator: work items -> text embeddings (LRU-cached) -> GAN in fixed batches (best-of-N) -> consistency
feedback (score against caption and prompt, redraw what scores low; llmgan.job.feedback) -> one ImageRecord
(key, caption, meta dict, uint8 pixels) per image.
ShardEncoder: pixels -> png / webp / jpeg bytes (--image-format), on a CPU pool sized apart from the generator.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmgan.eval.consistency import gan_domain, load_scorer
from llmgan.io.prompts import PromptsFile
from llmgan.io.storage import Storage
from llmgan.job.blocklist import BLOCKED, load_blocklist
from llmgan.job.config import GenerateConfig
from llmgan.job.feedback import NOT_UNDERSTOOD, Feedback, shard_consistency, shard_understanding
from llmgan.job.plan import ShardSpec, caption_seed, image_seed, prompt_seed
from llmgan.job.shards import ImageRecord, ShardResult, image_key


@dataclass
class WorkItem:
    key: str
    caption: str
    seed: int
    meta: dict[str, Any]


@dataclass
class ShardWork:
    spec: ShardSpec
    items: list[WorkItem] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    expansion: dict[str, int] = field(default_factory=dict)
    understanding: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    workers: dict[str, dict] = field(default_factory=dict)


def pick_device(num_gpus: float) -> str:
    import torch

    return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"


class ShardExpander:
    """Stage 1. Holds the caption LM (when expansion is on) and an open prompts file."""

    def __init__(self, cfg: GenerateConfig) -> None:
        self.cfg = cfg
        # Opened on first use, so storage trouble becomes a per-shard error the driver retries, not a dead actor.
        self.prompts: PromptsFile | None = None
        self.blocklist = None
        self.expander = None
        self.domain: Any = None

    def _load(self, storage: Storage) -> None:
        """Open the prompts file, the blocklist, the GAN's domain (its config.json) and the caption LM."""
        cfg = self.cfg
        self.blocklist = load_blocklist(cfg.blocklist, storage) if cfg.blocklist else None
        self.prompts = PromptsFile(cfg.prompts, storage, cfg.prompt_column, input_format=cfg.input_format)
        self.domain = gan_domain(cfg.ckpt, storage)
        if cfg.expand:
            from llmgan.text.expander import CaptionExpander, ExpanderConfig

            exp_cfg = ExpanderConfig(lm=cfg.lm, temperature=cfg.temperature, top_p=cfg.top_p, keep_words=cfg.keep_words,
                                     device=pick_device(cfg.expander.num_gpus))
            # the domain's check with any LM: the user's words are the contract
            self.expander = CaptionExpander(exp_cfg, check=self.domain.faithfulness())

    def __call__(self, spec: ShardSpec) -> ShardWork:
        cfg = self.cfg
        if self.prompts is None:  # a one-off model load: a fixed cost (startup_seconds), not the read stage's
            self._load(Storage(cfg.s3_endpoint))
        assert self.prompts is not None
        t0 = time.perf_counter()
        rows, rejected = self.prompts.read_range(spec.row_start, spec.row_stop)
        work = ShardWork(spec=spec, rejected=[vars(r) for r in rejected])
        grounded = {r.prompt: self.domain.ground(r.prompt) for r in rows}
        dropped: dict[int, dict[str, Any]] = {}
        for r in rows:
            if self.blocklist is not None and self.blocklist.blocks(r.prompt):
                dropped[id(r)] = {"reason": BLOCKED}
            elif cfg.on_unsupported == "reject" and grounded[r.prompt].not_understood:
                dropped[id(r)] = {"reason": NOT_UNDERSTOOD, "words": list(grounded[r.prompt].not_understood)}
        if dropped:
            work.rejected += [{"row": r.row, "id": r.id, **dropped[id(r)]} for r in rows if id(r) in dropped]
            work.rejected.sort(key=lambda r: r["row"])
            rows = [r for r in rows if id(r) not in dropped]
        t1 = time.perf_counter()
        variants = cfg.variants if cfg.expand else 1
        if self.expander is not None and rows:
            result = self.expander.expand([r.prompt for r in rows], [r.id for r in rows], variants,
                                          caption_seed(cfg.seed))
            captions, work.expansion = result.captions, dict(result.stats)
        else:
            captions = [[r.prompt] for r in rows]
        t2 = time.perf_counter()
        for row, caps in zip(rows, captions):
            base = prompt_seed(cfg.seed, row.id, row.seed)
            # an expanded caption that the blocklist matches yields no image (its variant is skipped)
            blocked = {v for v, c in enumerate(caps) if self.blocklist is not None and self.blocklist.blocks(c)}
            work.rejected += [{"row": row.row, "id": row.id, "reason": BLOCKED, "variant": v} for v in sorted(blocked)]
            for j in range(row.n or cfg.n_per_prompt):
                variant = j % variants
                if variant in blocked:
                    continue
                seed = image_seed(base, variant, j)
                meta = {**row.extra, "prompt": row.prompt, "prompt_id": row.id, "row": row.row, "variant": variant,
                        "index": j, "seed": seed, "caption": caps[variant], **grounded[row.prompt].meta()}
                work.items.append(WorkItem(image_key(spec.index, len(work.items)), caps[variant], seed, meta))
        work.seconds = {"read": t1 - t0, "expand": t2 - t1}
        work.understanding = shard_understanding([it.meta for it in work.items])
        return work


class ShardGenerator:
    """Stage 2. Holds the text encoder (with its caption cache) and the GAN."""

    def __init__(self, cfg: GenerateConfig, lazy: bool = False) -> None:
        self.cfg = cfg
        self.gan: Any = None
        self.encoder: Any = None
        self.feedback: Feedback | None = None
        if not lazy:
            self._load()

    def _load(self) -> None:
        """Load the GAN (from a local or s3:// checkpoint) and its text encoder."""
        from llmgan.gan.inference import GanModel
        from llmgan.text.encoder import TextEncoder

        cfg = self.cfg
        device = pick_device(cfg.generator.num_gpus)
        storage = Storage(cfg.s3_endpoint)
        gan = GanModel.load(cfg.ckpt, storage=storage, device=device, discriminator=cfg.best_of > 1)
        self.encoder = TextEncoder(gan.text_encoder, device=device)
        scorer = load_scorer(cfg.consistency, cfg.ckpt, storage, device)
        if scorer is not None:
            # the caption embeddings are the GAN's; a matcher on another text encoder embeds the texts itself
            matcher = getattr(scorer, "matcher", None)
            share = matcher is None or matcher.text_encoder == gan.text_encoder
            self.feedback = Feedback(scorer, cfg.min_consistency, cfg.max_attempts, share_emb=share,
                                     recaption=scorer.domain.canonical_caption, embed=self.encoder.encode)
        self.gan = gan

    def __call__(self, work: ShardWork) -> ShardResult:
        cfg = self.cfg
        if self.gan is None:  # lazy: a checkpoint on unreachable storage fails one shard, retried, not the actor
            self._load()
        spec = work.spec
        result = ShardResult(spec.index, spec.row_start, spec.row_stop, rejected=work.rejected,
                             expansion=work.expansion, seconds=dict(work.seconds), workers=dict(work.workers),
                             understanding=work.understanding)
        t0 = time.perf_counter()
        emb = self.encoder.encode([it.caption for it in work.items]) if work.items else None
        t1 = time.perf_counter()
        gan_s = 0.0
        feedback_s = 0.0
        for start in range(0, len(work.items), cfg.batch_size):
            batch = work.items[start:start + cfg.batch_size]
            batch_emb = emb[start:start + len(batch)]
            g0 = time.perf_counter()
            images, scores = self.draw(batch_emb, [it.seed for it in batch])
            g1 = time.perf_counter()
            extra: list[dict[str, Any]] = [{} for _ in batch]
            if self.feedback is not None:
                d = self.feedback(self.draw, batch_emb, [it.seed for it in batch], [it.caption for it in batch],
                                  [it.meta["prompt"] for it in batch], images, scores)
                images, scores = d.images, d.scores
                # an image asked for words the domain did not understand gets no consistency that claims a match
                extra = [{"seed": seed, "consistency": None if v.certified is None else round(v.score, 5),
                          **({"consistency_of_understood": round(v.score, 5)} if v.certified is None else {}),
                          "first_consistency": round(first, 5), "attempts": n, "disagree": list(v.disagree),
                          **({"drawn_from": text} if text else {})}
                         for seed, v, first, n, text in zip(d.seeds, d.verdicts, d.first_scores, d.attempts,
                                                            d.drawn_from)]
            gan_s += g1 - g0
            feedback_s += time.perf_counter() - g1
            for it, score, more, pixels in zip(batch, scores, extra, images):
                result.records.append(self.record(it, float(score), pixels, more))
        result.seconds.update(text=t1 - t0, generate=gan_s)
        if self.feedback is not None:
            fb = self.feedback
            result.seconds["consistency"] = feedback_s
            result.consistency = shard_consistency([r.meta for r in result.records], fb.scorer.name, fb.threshold,
                                                   fb.max_attempts)
        if cfg.drop_below is not None:  # the gate: figures above describe every drawn image, the shard the kept
            low = [r for r in result.records
                   if r.meta.get("consistency") is not None and r.meta["consistency"] < cfg.drop_below]
            result.dropped = [{"key": r.key, "prompt_id": r.meta["prompt_id"], "consistency": r.meta["consistency"]}
                              for r in low]
            gone = {id(r) for r in low}
            result.records = [r for r in result.records if id(r) not in gone]
        return result

    def draw(self, emb: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """One GAN batch: uint8 (N, H, W, 3) images and their match scores (NaN without reranking)."""
        return self.gan.sample(emb, seeds, best_of=self.cfg.best_of, truncation=self.cfg.truncation)

    @staticmethod
    def record(item: WorkItem, score: float, pixels: np.ndarray, extra: dict[str, Any]) -> ImageRecord:
        """The image, not yet encoded, with its metadata; `extra` (consistency, attempts, the kept draw's seed)
        overrides the item's."""
        meta = dict(item.meta, key=item.key, score=None if np.isnan(score) else round(score, 5), **extra)
        return ImageRecord(item.key, b"", item.caption, meta, pixels=pixels)


class ShardEncoder:
    """Stage 3. Encodes a generated shard's images with the job's ImageEncoding on `workers` threads of its own.
    Pillow's PNG, WebP and JPEG encoders release the GIL while they compress, so threads scale with cores
    (docs/generation.md, Image formats). The same pixels always give the same bytes, in record order, so any
    pool size writes the same shard."""

    def __init__(self, cfg: GenerateConfig, workers: int = 1) -> None:
        self.encoding = cfg.encoding
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="encode") if workers > 1 else None

    def __call__(self, result: ShardResult) -> ShardResult:
        t0 = time.perf_counter()
        todo = [r for r in result.records if r.pixels is not None]
        mapper = self._pool.map if self._pool is not None else map
        for rec, data in zip(todo, mapper(self.encoding.encode, [r.pixels for r in todo])):
            rec.image, rec.ext, rec.pixels = data, self.encoding.ext, None
        result.seconds["encode"] = time.perf_counter() - t0
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
