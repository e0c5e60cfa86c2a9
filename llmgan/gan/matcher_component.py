"""The image-text matcher trained alongside G and D (a StepComponent of llmgan.gan.trainer): one InfoNCE step per
GAN step on the same real batch, gradients averaged over ranks so every copy stays identical, a few real rows held
out for its Platt calibration (refitted at every save and every evaluation), and the scorer the training loop's
consistency evaluator uses. Saved as matcher.safetensors + matcher.json (+ matcher_state.pt for resume)."""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from llmgan.errors import StorageError, UserError
from llmgan.gan.config import GanConfig
from llmgan.gan.losses import contrastive, same_caption
from llmgan.gan.matcher import (
    CONFIG_FILE,
    Matcher,
    MatcherConfig,
    calibrate,
    make_matcher_state,
    matcher_loss,
)
from llmgan.gan.train_report import Panel, Score
from llmgan.io.images import to_float
from llmgan.io.seeds import derive_seed
from llmgan.io.storage import Storage, join

log = logging.getLogger(__name__)

STATE_FILE = "matcher_state.pt"
HELDOUT_FRACTION = 0.05
HELDOUT_MAX = 512
LR = 1e-3  # constant: a GAN run has no fixed end for a one-cycle schedule to aim at
POOL = 256  # extra training captions per step as negatives when the GAN draws no contrastive pool itself
MAX_SIZE = 64  # larger GAN images are scored downsampled: the matcher's first convolutions stay cheap
HEALTH_ROWS = 256  # at most this many held-out rows (and as many training rows) for the memorising check


def heldout_rows(n: int, seed: int) -> np.ndarray:
    """Rows (of rank 0's share) the matcher never trains on: its calibration set. A pure function of (n, seed)."""
    k = min(HELDOUT_MAX, n // 4, max(4, round(n * HELDOUT_FRACTION)))
    rows = np.random.default_rng(derive_seed("matcher-heldout", seed)).choice(n, size=k, replace=False)
    return np.sort(rows)


def row_keys(captions: Sequence[str], labels: dict[str, list[str]]) -> list[Any]:
    """What makes two rows "the same caption" for calibration: their labels when the data has them (paraphrases
    are not mismatches), else the caption text."""
    cols = sorted(c for c in labels if len(labels[c]) == len(captions) and all(labels[c]))
    if cols:
        return [tuple(labels[c][i] for c in cols) for i in range(len(captions))]
    return list(captions)


class MatcherComponent:
    """The matcher as a StepComponent. `images`/`emb` are this rank's rows; `keys` (rank 0) their `row_keys`."""

    panels = (Panel("matcher loss (InfoNCE on real pairs; training vs held-out rows, unaugmented)",
                    keys=("matcher_loss", "matcher_fit_loss", "matcher_heldout_loss")),)

    def __init__(self, gan: GanConfig, images: np.ndarray, emb: np.ndarray | torch.Tensor, *, seed: int,
                 keys: Sequence[Any] | None = None, rank: int = 0, world: int = 1,
                 device: str | torch.device = "cpu", text_encoder: str | None = None) -> None:
        self.config = MatcherConfig(image_size=min(gan.image_size, MAX_SIZE), channels=gan.image_channels,
                                    text_dim=gan.text_dim,
                                    batch_size=max(2, gan.batch_size), lr=LR, pool=POOL,
                                    prompt_share=0.0)  # the training loop feeds caption embeddings only
        self.seed, self.rank, self.world, self.device = seed, rank, world, torch.device(device)
        with torch.random.fork_rng(devices=[]):  # the GAN's RNG stream stays what it is without a matcher
            self.state = make_matcher_state(self.config, self.device, derive_seed("matcher-init", seed))
        self.state.generator = torch.Generator(device=self.device).manual_seed(
            derive_seed("matcher-augment", seed, rank))
        for group in self.state.opt.param_groups:
            group["lr"] = LR
        n = len(emb)
        held = heldout_rows(n, seed) if rank == 0 else np.zeros(0, dtype=np.int64)
        self.held = np.zeros(n, dtype=bool)
        self.held[held] = True
        self.train_rows = np.flatnonzero(~self.held)
        self.emb = torch.as_tensor(np.array(emb, dtype=np.float32)).to(self.device)  # a copy: may be read-only
        self.cal_images = np.asarray(images)[held] if rank == 0 else None
        self.cal_emb = self.emb[held].cpu().numpy() if rank == 0 else None
        self.cal_keys = [keys[i] for i in held] if rank == 0 and keys is not None else None
        self.text_encoder = text_encoder
        self.matcher = Matcher(self.config, self.state.net, text_encoder=text_encoder, device=str(self.device))
        self._fit_sets = self._health_sets(np.asarray(images)) if rank == 0 else None

    # ---- training -------------------------------------------------------------------------------------
    def _pool(self, step: int) -> torch.Tensor | None:
        if not self.config.pool or len(self.train_rows) < 2:
            return None
        rng = np.random.default_rng([derive_seed("matcher-pool", self.seed, self.rank), step])
        return self.emb[rng.choice(self.train_rows, size=min(self.config.pool, len(self.train_rows)), replace=False)]

    def step(self, images: torch.Tensor, emb: torch.Tensor, step: int, rows: np.ndarray,
             pool: torch.Tensor | None) -> dict[str, float]:
        keep = torch.from_numpy(~self.held[rows]).to(images.device)
        x, e = images[keep], emb[keep]
        st = self.state
        st.opt.zero_grad(set_to_none=True)
        value = float("nan")  # a batch of held-out rows only: nothing to learn (every rank still joins the sync)
        if len(x) >= 2:
            loss = matcher_loss(st, x, e, pool if pool is not None else self._pool(step))
            loss.backward()
            value = float(loss.detach())
        elif self.world == 1:
            return {"matcher_loss": value}
        if self.world > 1:
            self._average_gradients()
        st.opt.step()
        st.step += 1
        return {"matcher_loss": value}

    def _average_gradients(self) -> None:
        """One all-reduce of every gradient (zeros where a rank had none): each rank then takes the same step."""
        import torch.distributed as dist

        params = list(self.state.net.parameters())
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    # ---- memorising check (rank 0) --------------------------------------------------------------------
    def _health_sets(self, images: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """Fixed (held-out images, their rows, as many training-row images, their rows, a pool of training rows whose
        captions serve as extra negatives): a pure function of (rows, seed); None when too few rows to compare."""
        held = np.flatnonzero(self.held)
        if len(held) < 2 or len(self.train_rows) < 2:
            return None
        rng = np.random.default_rng(derive_seed("matcher-health", self.seed))
        held = np.sort(rng.choice(held, size=min(HEALTH_ROWS, len(held)), replace=False))
        fit = np.sort(rng.choice(self.train_rows, size=min(len(held), len(self.train_rows)), replace=False))
        pool = np.sort(rng.choice(self.train_rows, size=min(self.config.pool, len(self.train_rows)), replace=False))
        return images[held].copy(), held, images[fit].copy(), fit, pool

    @torch.no_grad()
    def _clean_loss(self, images: np.ndarray, rows: np.ndarray, pool: np.ndarray) -> float:
        """InfoNCE (as in training, without its augmentation) in near-equal chunks of at most the batch size, all
        with the same pool of training captions as extra negatives."""
        net = self.state.net
        module = getattr(net, "module", net)
        pool_e = self.emb[torch.from_numpy(pool).to(self.device)] if len(pool) else None
        pool_vec = module.text_vec(pool_e) if pool_e is not None else None
        total = 0.0
        for part in np.array_split(np.arange(len(rows)), max(1, len(rows) // self.config.batch_size)):
            x = to_float(images[part]).to(self.device)
            e = self.emb[torch.from_numpy(rows[part]).to(self.device)]
            loss = contrastive(module.image_vec(x), module.text_vec(e), same_caption(e, e), 1.0 / module.scale(),
                               pool_vec, same_caption(e, pool_e) if pool_e is not None else None)
            total += float(loss) * len(part)
        return total / len(rows)

    def health(self) -> dict[str, float]:
        """Rank 0, at metrics rows: the matcher's loss on fixed training pairs (`matcher_fit_loss`) and on its
        held-out rows (`matcher_heldout_loss`), measured the same way (same count, chunking, pool; no augmentation),
        for llmgan.gan.health's memorising check. Reads the weights only: training is unchanged."""
        if self._fit_sets is None:
            return {}
        held_images, held, fit_images, fit, pool = self._fit_sets
        return {"matcher_fit_loss": round(self._clean_loss(fit_images, fit, pool), 4),
                "matcher_heldout_loss": round(self._clean_loss(held_images, held, pool), 4)}

    # ---- calibration and scoring (rank 0) --------------------------------------------------------------
    def calibrated(self) -> Matcher:
        """The live matcher with its calibration refitted on the held-out rows (rank 0)."""
        if self.cal_images is None:
            raise RuntimeError("only rank 0 holds the matcher's calibration rows")
        if len(self.cal_images) < 2:  # a dataset under 8 images: the default calibration stays
            self.matcher.info = {"trained_with_gan": True, "steps": self.state.step, "seed": self.seed,
                                 "n_heldout": len(self.cal_images), "val": None}
            return self.matcher
        keys = self.cal_keys if self.cal_keys is not None else [tuple(r) for r in self.cal_emb.round(5)]
        quality = calibrate(self.matcher, self.cal_images, self.cal_emb, keys, self.seed)
        self.matcher.info = {"trained_with_gan": True, "steps": self.state.step, "seed": self.seed,
                             "n_heldout": len(self.cal_images), "val": quality}
        return self.matcher

    def scorer(self) -> MatcherScoring:
        return MatcherScoring(self)

    # ---- checkpoints ----------------------------------------------------------------------------------
    def save(self, url: str, storage: Storage, training_state: bool = True) -> None:
        self.calibrated().save(url, storage)
        if training_state:
            buf = io.BytesIO()
            torch.save({"opt": self.state.opt.state_dict(), "step": self.state.step,
                        "generator": self.state.generator.get_state()}, buf)
            storage.write_bytes(join(url, STATE_FILE), buf.getvalue())

    def load(self, url: str, storage: Storage) -> None:
        if not storage.exists(join(url, CONFIG_FILE)):
            log.info("checkpoint %s holds no matcher; the matcher starts fresh", url)
            return
        saved = Matcher.load(url, storage)
        same_recipe = dataclasses.replace(saved.config, batch_size=self.config.batch_size,
                                          prompt_share=self.config.prompt_share)  # older files lack prompt_share
        if same_recipe != self.config:
            raise UserError(f"the matcher in {url} has another configuration; resume with the same options")
        self.state.net.load_state_dict(saved.net.state_dict())
        self.matcher.calibration = saved.calibration
        try:
            blob = storage.read_bytes(join(url, STATE_FILE))
        except StorageError:
            return
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        self.state.opt.load_state_dict(state["opt"])
        self.state.step = int(state["step"])
        if self.rank == 0:
            self.state.generator.set_state(state["generator"])
        else:  # rank 0's saved stream is not this rank's; a fresh one per rank and resume point
            self.state.generator.manual_seed(derive_seed("matcher-augment", self.seed, self.rank, self.state.step))


class MatcherScoring:
    """The live matcher as a consistency scorer (the `score` of llmgan.eval.consistency's scorers): calibrated
    P(image matches its caption), recalibrated on the held-out rows at every call."""

    name = "matcher (trained with the GAN)"

    def __init__(self, component: MatcherComponent) -> None:
        self.component = component

    def score(self, images: np.ndarray, captions: list[str], prompts: list[str],
              emb: np.ndarray | None = None) -> list[Score]:
        if emb is None:
            raise ValueError("the in-training matcher scores caption embeddings; pass emb")
        p = self.component.calibrated().probability(np.asarray(images), np.asarray(emb, np.float32))
        return [Score(float(s)) for s in p]
