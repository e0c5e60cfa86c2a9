"""The learned image-text matcher: a small CNN image tower and a caption-embedding projection trained with
InfoNCE (CLIP / XMC-GAN style), Platt-calibrated into a match probability; its step, training, save and load.

The image tower keeps a 4x4 map and flattens it (where a thing is matters, pooled features lose it) and has no
BatchNorm, so a GAN training loop can train it under DDP alongside G and D with `matcher_step`. Saved as
`matcher.safetensors` + `matcher.json` (JSON last = complete); never pickled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmgan.errors import StorageError, UserError
from llmgan.gan.losses import contrastive, same_caption
from llmgan.io.images import to_float
from llmgan.io.seeds import derive_seed
from llmgan.io.storage import Storage, join

log = logging.getLogger(__name__)

FORMAT = "llmgan-matcher"
FORMAT_VERSION = 1
WEIGHTS_FILE = "matcher.safetensors"
CONFIG_FILE = "matcher.json"
MAX_SCALE = 100.0  # CLIP's cap on the learned inverse temperature
_BATCH = 512


@dataclass(frozen=True)
class MatcherConfig:
    """Architecture and training recipe of a matcher; messages name the `llmgan train-matcher` options."""

    image_size: int = 32
    text_dim: int = 384
    width: int = 24  # channels after the first layer; x2 and x4 deeper
    dim: int = 128  # shared image/text space
    batch_size: int = 128
    lr: float = 2e-3
    pool: int = 512  # extra dataset captions per step as negatives (some differ from the right one in one detail)

    def __post_init__(self) -> None:
        for name, low in (("image_size", 8), ("text_dim", 1), ("width", 4), ("dim", 8), ("batch_size", 2), ("pool", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UserError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if not 0 < self.lr < 1:
            raise UserError(f"--lr must be in (0, 1), got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MatcherConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class MatcherNet(nn.Module):
    """image (N, 3, S, S) in [-1, 1] -> unit vector; caption embedding (N, E) -> unit vector; learned scale."""

    def __init__(self, config: MatcherConfig) -> None:
        super().__init__()
        w = config.width

        def conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(4, cout), nn.SiLU()]

        self.size = config.image_size
        self.image = nn.Sequential(
            *conv(3, w), *conv(w, w, 2),  # S/2
            *conv(w, 2 * w), *conv(2 * w, 2 * w, 2),  # S/4
            *conv(2 * w, 4 * w, 2),  # S/8
            nn.AdaptiveAvgPool2d(4), nn.Conv2d(4 * w, w, 1), nn.SiLU(),  # squeeze before the flatten
            nn.Flatten(), nn.Linear(w * 16, 2 * config.dim), nn.SiLU(), nn.Linear(2 * config.dim, config.dim),
        )
        self.text = nn.Sequential(nn.Linear(config.text_dim, 2 * config.dim), nn.SiLU(),
                                  nn.Linear(2 * config.dim, config.dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def image_vec(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return F.normalize(self.image(x), dim=-1)

    def text_vec(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(emb), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """(N,) cosine of each (image, caption) pair."""
        return (self.image_vec(x) * self.text_vec(emb)).sum(-1)


@dataclass
class MatcherState:
    """What `matcher_step` touches; `net` may be DDP-wrapped by the caller (it is only called)."""

    config: MatcherConfig
    net: nn.Module
    opt: torch.optim.Optimizer
    step: int = 0
    generator: torch.Generator | None = None


def make_matcher_state(config: MatcherConfig, device: str | torch.device = "cpu", seed: int = 0) -> MatcherState:
    torch.manual_seed(seed)
    net = MatcherNet(config).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    gen = torch.Generator(device=device).manual_seed(derive_seed("matcher-augment", seed))
    return MatcherState(config, net, opt, generator=gen)


def _noise(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Grain and softness a generator adds, so real-image training transfers to generated images.

    No colour, flip or translation changes: colour and position are what captions state.
    """
    n = x.shape[0]
    soft = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    mix = torch.rand(n, 1, 1, 1, generator=gen, device=x.device) * (
        torch.rand(n, 1, 1, 1, generator=gen, device=x.device) < 0.3)
    sigma = torch.rand(n, 1, 1, 1, generator=gen, device=x.device) * 0.1
    x = mix * soft + (1 - mix) * x
    return (x + sigma * torch.randn(x.shape, generator=gen, device=x.device)).clamp(-1, 1)


def matcher_loss(state: MatcherState, images_float: torch.Tensor, emb: torch.Tensor,
                 pool: torch.Tensor | None = None) -> torch.Tensor:
    """The InfoNCE loss of one batch of real (image, caption embedding) pairs (augmented by `_noise`).

    images_float (N, 3, S, S) in [-1, 1] (`llmgan.io.images.to_float`), emb (N, E); optional pool (M, E):
    more captions as negatives for image->text. Copies of the same caption are never negatives.
    """
    net = state.net
    net.train()
    x = _noise(images_float, state.generator)
    module = getattr(net, "module", net)
    img, txt = module.image_vec(x), module.text_vec(emb)
    temperature = 1.0 / module.scale()
    pool_vec = pool_same = None
    if pool is not None and len(pool):
        pool_vec, pool_same = module.text_vec(pool), same_caption(emb, pool)
    return contrastive(img, txt, same_caption(emb, emb), temperature, pool_vec, pool_same)


def matcher_step(state: MatcherState, images_float: torch.Tensor, emb: torch.Tensor,
                 pool: torch.Tensor | None = None) -> float:
    """One optimiser step on `matcher_loss`; returns the loss."""
    loss = matcher_loss(state, images_float, emb, pool)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    state.opt.step()
    state.step += 1
    return float(loss.detach())


# ---- calibration --------------------------------------------------------------------------------


def fit_platt(pos: np.ndarray, neg: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a * cos + b): Newton's method with backtracking on the log loss, with Platt's
    smoothed targets (so separable data gives a finite slope)."""
    x = np.concatenate([pos, neg]).astype(np.float64)
    n1, n0 = len(pos), len(neg)
    y = np.concatenate([np.full(n1, (n1 + 1) / (n1 + 2)), np.full(n0, 1 / (n0 + 2))])

    def loss(a: float, b: float) -> float:  # stable log loss: log(1 + e^z) - y z
        z = a * x + b
        return float((np.logaddexp(0, z) - y * z).sum())

    a, b = 0.0, float(np.log((n1 + 1) / (n0 + 1)))
    current = loss(a, b)
    for _ in range(iters):
        p = 0.5 * (1 + np.tanh(0.5 * (a * x + b)))  # sigmoid without overflow
        g = np.array([((p - y) * x).sum(), (p - y).sum()])
        w = p * (1 - p)
        h = np.array([[(w * x * x).sum(), (w * x).sum()], [(w * x).sum(), w.sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(h, g)
        t = 1.0
        while t > 1e-6 and loss(a - t * step[0], b - t * step[1]) > current:
            t /= 2
        a, b = a - t * step[0], b - t * step[1]
        new = loss(a, b)
        if current - new < 1e-10 * max(1.0, abs(current)):
            break
        current = new
    return float(a), float(b)


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties count half (Mann-Whitney U)."""
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2 + 1
    ranks[order] = np.repeat(avg, counts)
    n1, n0 = len(pos), len(neg)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def hard_negatives(emb: np.ndarray, keys: list[Any], seed: int, k: int = 1) -> np.ndarray:
    """For each row, the index of another row whose caption is among its k nearest *different* ones (k = 1: the
    nearest caption that is not a paraphrase; on shapes it calibrated better than k = 3 or 8 against
    one-attribute changes).

    Rows with equal `keys` (same labels when the data has them, else the same caption) are never picked, so
    paraphrases of the right caption do not count as mismatches. These near misses (often one attribute
    changed) are what calibration must separate, not random captions that differ in everything.
    """
    sims = emb @ emb.T
    key_ids = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    kid = np.array([key_ids[key] for key in keys])
    sims[kid[:, None] == kid[None, :]] = -np.inf
    rng = np.random.default_rng(derive_seed("matcher-negatives", seed))
    k = max(1, min(k, len(emb) - 1))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    pick = top[np.arange(len(emb)), rng.integers(0, k, len(emb))]
    return pick


# ---- the trained model --------------------------------------------------------------------------


class Matcher:
    """A trained, calibrated matcher: `cosine`, `probability` on uint8 images and caption embeddings, `save`."""

    def __init__(self, config: MatcherConfig, net: MatcherNet, calibration: tuple[float, float] = (10.0, -5.0),
                 text_encoder: str | None = None, info: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.calibration = (float(calibration[0]), float(calibration[1]))
        self.text_encoder = text_encoder
        self.info: dict[str, Any] = dict(info or {})

    @torch.no_grad()
    def cosine(self, images: np.ndarray, emb: np.ndarray) -> np.ndarray:
        """(N,) cosine between each uint8 (H, W, 3) image and its caption embedding."""
        images = np.asarray(images)
        emb = np.asarray(emb, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise UserError(f"images must be an (N, H, W, 3) array, got shape {images.shape}")
        if emb.ndim != 2 or len(emb) != len(images) or emb.shape[1] != self.config.text_dim:
            raise UserError(f"caption embeddings must be ({len(images)}, {self.config.text_dim}), got {emb.shape}: "
                            "the matcher needs the text encoder it was trained with")
        self.net.eval()
        out = [self.net(to_float(images[i:i + _BATCH]).to(self.device),
                        torch.from_numpy(emb[i:i + _BATCH]).to(self.device)).float().cpu().numpy()
               for i in range(0, len(images), _BATCH)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def calibrate(self, cos: np.ndarray) -> np.ndarray:
        a, b = self.calibration
        return 0.5 * (1 + np.tanh(0.5 * (a * np.asarray(cos, np.float64) + b)))  # sigmoid without overflow

    def probability(self, images: np.ndarray, emb: np.ndarray) -> np.ndarray:
        """(N,) calibrated P(image matches caption) in [0, 1]."""
        return self.calibrate(self.cosine(images, emb))

    def save(self, url: str, storage: Storage | None = None) -> None:
        from safetensors.torch import save as save_tensors

        storage = storage or Storage()
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        storage.write_bytes(join(url, WEIGHTS_FILE), save_tensors(state))
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": self.config.to_dict(),
                "calibration": {"a": self.calibration[0], "b": self.calibration[1]},
                "text_encoder": self.text_encoder, "info": self.info}
        storage.write_text(join(url, CONFIG_FILE), json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, url: str, storage: Storage | None = None, device: str = "cpu") -> Matcher:
        from safetensors.torch import load as load_tensors

        storage = storage or Storage()
        try:
            meta = json.loads(storage.read_text(join(url, CONFIG_FILE)))
            blob = storage.read_bytes(join(url, WEIGHTS_FILE))
        except StorageError as exc:
            raise UserError(f"no matcher at {url} ({str(exc).splitlines()[0]})") from None
        except json.JSONDecodeError:
            raise UserError(f"{join(url, CONFIG_FILE)} is not valid JSON") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{join(url, CONFIG_FILE)} is not an llmgan matcher (format_version {FORMAT_VERSION})")
        config = MatcherConfig.from_dict(meta["config"])
        net = MatcherNet(config)
        try:
            net.load_state_dict(load_tensors(blob))
        except Exception as exc:  # noqa: BLE001 - wrong or corrupt weights: one line, never unpickle
            raise UserError(f"matcher weights at {url} do not load: {str(exc).splitlines()[0]}") from None
        cal = meta.get("calibration") or {}
        return cls(config, net, (cal.get("a", 10.0), cal.get("b", -5.0)), meta.get("text_encoder"),
                   meta.get("info"), device)


def evaluate_pairs(matcher: Matcher, images: np.ndarray, emb: np.ndarray, keys: list[Any],
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cosines of the right captions, cosines of hard-negative captions) for held-out images."""
    neg = hard_negatives(emb, keys, seed)
    return matcher.cosine(images, emb), matcher.cosine(images, emb[neg])


def calibrate(matcher: Matcher, images: np.ndarray, emb: np.ndarray, keys: list[Any], seed: int) -> dict[str, float]:
    """Fit the matcher's Platt calibration on held-out real images scored against their own caption and a near-miss
    caption (`hard_negatives`); returns its quality there (AUC, accuracy at 0.5)."""
    pos, neg = evaluate_pairs(matcher, images, emb, keys, seed)
    matcher.calibration = fit_platt(pos, neg)
    p_pos, p_neg = matcher.calibrate(pos), matcher.calibrate(neg)
    return {"auc_hard_negative": round(roc_auc(pos, neg), 4),
            "accuracy_at_0.5": round(float(((p_pos >= 0.5).sum() + (p_neg < 0.5).sum()) / (2 * len(pos))), 4)}


def train_matcher(data: str, out: str | None, steps: int, config: MatcherConfig | None = None, *, seed: int = 0,
                  text_encoder: str | None = None, val_fraction: float = 0.1, storage: Storage | None = None,
                  device: str = "cpu", threads: int | None = 1, progress: bool = True) -> Matcher:
    """Train on a captioned dataset (cached caption embeddings), calibrate on its held-out part, save to `out`.

    The held-out images are scored against their own caption and against a near-miss caption
    (`hard_negatives`); Platt scaling on those cosines gives the calibration, and info["val"] its quality.
    """
    from llmgan.gan.config import GanConfig
    from llmgan.gan.train_data import load_training_data

    config = config or MatcherConfig()
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    storage = storage or Storage()
    old_threads = torch.get_num_threads()
    if threads is not None:  # a net this small gains nothing from more threads on a busy machine
        torch.set_num_threads(max(1, threads))
    try:
        gan_config = GanConfig(image_size=config.image_size if config.image_size in (32, 64, 128, 256) else 32,
                               batch_size=2)
        ds, emb, _ = load_training_data(data, gan_config, text_encoder, storage)
        n = len(ds)
        if n < 20:
            raise UserError(f"{data}: need at least 20 captioned images to train a matcher, got {n}")
        config = dataclasses.replace(config, text_dim=int(emb.shape[1]))
        label_cols = sorted(ds.labels)
        keys = [tuple(ds.labels[c][i] for c in label_cols) for i in range(n)] if label_cols else list(ds.captions)
        order = np.random.default_rng(derive_seed("matcher-split", seed)).permutation(n)
        n_val = max(10, int(round(n * val_fraction)))
        val, train = order[:n_val], order[n_val:]
        state = make_matcher_state(config, device, seed)
        gen = np.random.default_rng(derive_seed("matcher-batches", seed))
        x_all, e_all = to_float(ds.images[train]), torch.from_numpy(emb[train])
        started = time.time()
        every = max(1, steps // 10)
        sched = torch.optim.lr_scheduler.OneCycleLR(state.opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)
        for step in range(1, steps + 1):
            pick = gen.integers(0, len(train), min(config.batch_size, len(train)))
            pool = e_all[gen.integers(0, len(train), config.pool)] if config.pool else None
            loss = matcher_step(state, x_all[pick].to(device), e_all[pick].to(device),
                                None if pool is None else pool.to(device))
            sched.step()
            if progress and (step % every == 0 or step == steps):
                log.info("matcher step %d/%d loss %.4f (%.0fs)", step, steps, loss, time.time() - started)
        matcher = Matcher(config, getattr(state.net, "module", state.net), text_encoder=text_encoder, device=device)
        quality = calibrate(matcher, ds.images[val], emb[val], [keys[i] for i in val], seed)
        matcher.info = {
            "data": data, "steps": steps, "seed": seed, "n_train": int(len(train)), "n_val": int(n_val),
            "train_seconds": round(time.time() - started, 1), "final_loss": round(loss, 4), "val": quality,
        }
        if out is not None:
            matcher.save(out, storage)
        return matcher
    finally:
        torch.set_num_threads(old_threads)
