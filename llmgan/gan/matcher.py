"""The learned image-text matcher: a small CNN image tower and a caption-embedding projection trained with
InfoNCE (CLIP / XMC-GAN style), Platt-calibrated into a match probability; its step, training, save and load.

It learns full captions and, where the data has a short-prompt column, the short prompts users type (each row's
text drawn per step: `prompt_share`), so it can judge a user's prompt itself; see llmgan.gan.matcher_texts.

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
from llmgan.gan.matcher_calibration import (  # noqa: F401 - re-exported: the matcher's public API
    calibrate,
    calibration_error,
    evaluate_pairs,
    fit_platt,
    hard_negatives,
    roc_auc,
)
from llmgan.gan.matcher_texts import TrainingTexts, check_prompt_share, load_training_texts, prompt_negatives
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
    channels: int = 3  # 3 (RGB) or 4 (RGBA)
    text_dim: int = 384
    width: int = 24  # channels after the first layer; x2 and x4 deeper
    dim: int = 128  # shared image/text space
    batch_size: int = 128
    lr: float = 2e-3
    pool: int = 512  # extra dataset captions per step as negatives (some differ from the right one in one detail)
    prompt_share: float = 0.5  # share of rows whose text is their short prompt (data with one), not the caption

    def __post_init__(self) -> None:
        for name, low in (("image_size", 8), ("text_dim", 1), ("width", 4), ("dim", 8), ("batch_size", 2), ("pool", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UserError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if self.channels not in (3, 4):
            raise UserError(f"matcher channels must be 3 (RGB) or 4 (RGBA), got {self.channels!r}")
        if not 0 < self.lr < 1:
            raise UserError(f"--lr must be in (0, 1), got {self.lr}")
        check_prompt_share(self.prompt_share)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MatcherConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class MatcherNet(nn.Module):
    """image (N, C, S, S) in [-1, 1] -> unit vector; caption embedding (N, E) -> unit vector; learned scale."""

    def __init__(self, config: MatcherConfig) -> None:
        super().__init__()
        w = config.width

        def conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(4, cout), nn.SiLU()]

        self.size = config.image_size
        self.image = nn.Sequential(
            *conv(config.channels, w), *conv(w, w, 2),  # S/2
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
                 pool: torch.Tensor | None = None, same: torch.Tensor | None = None,
                 pool_same: torch.Tensor | None = None) -> torch.Tensor:
    """The InfoNCE loss of one batch of real (image, caption embedding) pairs (augmented by `_noise`).

    images_float (N, 3, S, S) in [-1, 1] (`llmgan.io.images.to_float`), emb (N, E); optional pool (M, E):
    more captions as negatives for image->text. Copies of the same caption are never negatives, nor are texts
    that `same` (N, N) / `pool_same` (N, M) mark true of an image (a short prompt is true of many images).
    """
    net = state.net
    net.train()
    x = _noise(images_float, state.generator)
    module = getattr(net, "module", net)
    img, txt = module.image_vec(x), module.text_vec(emb)
    temperature = 1.0 / module.scale()
    pool_vec = pool_mask = None
    if pool is not None and len(pool):
        pool_vec, pool_mask = module.text_vec(pool), same_caption(emb, pool)
        if pool_same is not None:
            pool_mask = pool_mask | pool_same.to(pool_mask.device)
    mask = same_caption(emb, emb)
    if same is not None:
        mask = mask | same.to(mask.device)
    return contrastive(img, txt, mask, temperature, pool_vec, pool_mask)


def matcher_step(state: MatcherState, images_float: torch.Tensor, emb: torch.Tensor,
                 pool: torch.Tensor | None = None, same: torch.Tensor | None = None,
                 pool_same: torch.Tensor | None = None) -> float:
    """One optimiser step on `matcher_loss`; returns the loss."""
    loss = matcher_loss(state, images_float, emb, pool, same, pool_same)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    state.opt.step()
    state.step += 1
    return float(loss.detach())


# ---- the trained model --------------------------------------------------------------------------


TEXT_KINDS = ("caption", "prompt")


class Matcher:
    """A trained, calibrated matcher: `cosine`, `probability` on uint8 images and caption embeddings, `save`.

    `calibration` is fitted on every kind of text it was trained on; `calibration_by_text` (when it learned short
    prompts) holds one fit per kind ("caption", "prompt") for a caller that knows which kind it scores.
    """

    def __init__(self, config: MatcherConfig, net: MatcherNet, calibration: tuple[float, float] = (10.0, -5.0),
                 text_encoder: str | None = None, info: dict[str, Any] | None = None, device: str = "cpu",
                 calibration_by_text: dict[str, tuple[float, float]] | None = None) -> None:
        self.config = config
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.calibration = (float(calibration[0]), float(calibration[1]))
        self.calibration_by_text = {k: (float(v[0]), float(v[1])) for k, v in (calibration_by_text or {}).items()}
        self.text_encoder = text_encoder
        self.info: dict[str, Any] = dict(info or {})

    @torch.no_grad()
    def cosine(self, images: np.ndarray, emb: np.ndarray) -> np.ndarray:
        """(N,) cosine between each uint8 (H, W, C) image and its caption embedding (C: the matcher's channels)."""
        images = np.asarray(images)
        emb = np.asarray(emb, np.float32)
        c = self.config.channels
        if images.ndim != 4 or images.shape[-1] != c:
            raise UserError(f"images must be an (N, H, W, {c}) array, got shape {images.shape}")
        if emb.ndim != 2 or len(emb) != len(images) or emb.shape[1] != self.config.text_dim:
            raise UserError(f"caption embeddings must be ({len(images)}, {self.config.text_dim}), got {emb.shape}: "
                            "the matcher needs the text encoder it was trained with")
        self.net.eval()
        out = [self.net(to_float(images[i:i + _BATCH]).to(self.device),
                        torch.from_numpy(emb[i:i + _BATCH]).to(self.device)).float().cpu().numpy()
               for i in range(0, len(images), _BATCH)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def calibrate(self, cos: np.ndarray, text: str | None = None) -> np.ndarray:
        """Cosines -> probabilities; `text` ("caption" / "prompt") picks that kind's own fit where there is one."""
        if text is not None and text not in TEXT_KINDS:
            raise ValueError(f"text must be one of {', '.join(TEXT_KINDS)} or None, got {text!r}")
        a, b = self.calibration_by_text.get(text, self.calibration) if text else self.calibration
        return 0.5 * (1 + np.tanh(0.5 * (a * np.asarray(cos, np.float64) + b)))  # sigmoid without overflow

    def probability(self, images: np.ndarray, emb: np.ndarray, text: str | None = None) -> np.ndarray:
        """(N,) calibrated P(image matches text) in [0, 1]; `text` as in `calibrate`."""
        return self.calibrate(self.cosine(images, emb), text)

    def save(self, url: str, storage: Storage | None = None, half: bool = False) -> None:
        """`half`: floating weights stored as float16 (loading casts them back to the network's float32)."""
        from llmgan.gan.checkpoint import state_bytes

        storage = storage or Storage()
        storage.write_bytes(join(url, WEIGHTS_FILE), state_bytes(self.net, half))
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": self.config.to_dict(),
                "calibration": {"a": self.calibration[0], "b": self.calibration[1]},
                "text_encoder": self.text_encoder, "info": self.info}
        if self.calibration_by_text:
            meta["calibration_by_text"] = {k: {"a": a, "b": b} for k, (a, b) in self.calibration_by_text.items()}
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
        by_text = {k: (v["a"], v["b"]) for k, v in (meta.get("calibration_by_text") or {}).items()
                   if k in TEXT_KINDS and isinstance(v, dict) and {"a", "b"} <= v.keys()}
        return cls(config, net, (cal.get("a", 10.0), cal.get("b", -5.0)), meta.get("text_encoder"),
                   meta.get("info"), device, by_text)


def train_matcher(data: str, out: str | None, steps: int, config: MatcherConfig | None = None, *, seed: int = 0,
                  text_encoder: str | None = None, val_fraction: float = 0.1, storage: Storage | None = None,
                  device: str = "cpu", threads: int | None = 1, progress: bool = True,
                  cache_dir: str | None = None) -> Matcher:
    """Train on a captioned dataset (caption embeddings cached in `cache_dir`), calibrate on its held-out part, save
    to `out`.

    With a short-prompt column (and prompt_share > 0) each row's text is, per step, its short prompt with
    probability prompt_share, else its caption; texts true of an image (a prompt that leaves attributes open) are
    never its negatives. The held-out images are scored against their own caption and a near-miss caption
    (`hard_negatives`) and against their own prompt and a near-miss prompt (`prompt_negatives`); Platt scaling on
    all those cosines gives the calibration, and info["val"] its quality per kind of text.
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
        ds, emb, _ = load_training_data(data, gan_config, text_encoder, storage, cache_dir=cache_dir)
        n = len(ds)
        if n < 20:
            raise UserError(f"{data}: need at least 20 captioned images to train a matcher, got {n}")
        config = dataclasses.replace(config, text_dim=int(emb.shape[1]), channels=int(ds.images.shape[-1]))
        texts = load_training_texts(data, ds, emb, config.prompt_share, text_encoder, storage, cache_dir)
        if config.prompt_share > 0 and not texts.n_prompts:
            log.info("%s has no %s column: the matcher trains on captions only", data, "short_prompt")
            config = dataclasses.replace(config, prompt_share=0.0)
        keys, val, train = heldout_split(ds, seed, val_fraction)
        n_val = len(val)
        state = make_matcher_state(config, device, seed)
        gen = np.random.default_rng(derive_seed("matcher-batches", seed))
        text_rng = np.random.default_rng(derive_seed("matcher-texts", seed))
        x_all = to_float(ds.images[train])
        started = time.time()
        every = max(1, steps // 10)
        sched = torch.optim.lr_scheduler.OneCycleLR(state.opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)
        for step in range(1, steps + 1):
            pick = gen.integers(0, len(train), min(config.batch_size, len(train)))
            pool_rows = train[gen.integers(0, len(train), config.pool)] if config.pool else None
            emb_b, stated_b = texts.draw(train[pick], config.prompt_share, text_rng)
            same = torch.from_numpy(texts.true_of(train[pick], stated_b))
            pool = pool_same = None
            if pool_rows is not None:
                pool_np, stated_p = texts.draw(pool_rows, config.prompt_share, text_rng)
                pool = torch.from_numpy(pool_np).to(device)
                pool_same = torch.from_numpy(texts.true_of(train[pick], stated_p))
            loss = matcher_step(state, x_all[pick].to(device), torch.from_numpy(emb_b).to(device), pool, same,
                                pool_same)
            sched.step()
            if progress and (step % every == 0 or step == steps):
                log.info("matcher step %d/%d loss %.4f (%.0fs)", step, steps, loss, time.time() - started)
        matcher = Matcher(config, getattr(state.net, "module", state.net), text_encoder=text_encoder, device=device)
        quality = heldout_calibration(matcher, ds.images, texts, keys, val, seed)
        matcher.info = {
            "data": data, "steps": steps, "seed": seed, "n_train": int(len(train)), "n_val": int(n_val),
            "prompt_share": config.prompt_share, "n_short_prompts": texts.n_prompts,
            "train_seconds": round(time.time() - started, 1), "final_loss": round(loss, 4), "val": quality,
        }
        if out is not None:
            matcher.save(out, storage)
        return matcher
    finally:
        torch.set_num_threads(old_threads)


def heldout_split(ds: Any, seed: int, val_fraction: float) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """(row keys: labels, else the caption; held-out rows; training rows): a pure function of (data, seed)."""
    n = len(ds)
    label_cols = sorted(ds.labels)
    keys = [tuple(ds.labels[c][i] for c in label_cols) for i in range(n)] if label_cols else list(ds.captions)
    order = np.random.default_rng(derive_seed("matcher-split", seed)).permutation(n)
    n_val = max(10, int(round(n * val_fraction)))
    return keys, order[:n_val], order[n_val:]


def heldout_calibration(matcher: Matcher, images: np.ndarray, texts: TrainingTexts, keys: list[Any],
                        val: np.ndarray, seed: int) -> dict[str, float]:
    """`calibrate` on the held-out rows: their captions and, where the matcher learned prompts, their prompts."""
    prompts = None
    if matcher.config.prompt_share > 0:
        rows, near = prompt_negatives(texts, val, seed)
        where = {r: i for i, r in enumerate(val)}
        prompts = (np.array([where[r] for r in rows], np.int64), texts.pr_emb[rows], texts.pr_emb[near])
    return calibrate(matcher, images[val], texts.cap_emb[val], [keys[i] for i in val], seed, prompts)
