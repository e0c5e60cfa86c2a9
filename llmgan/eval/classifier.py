"""The evaluation's attribute classifier: a small CNN with one softmax head per label attribute.

It is trained on real images only (never on generator output, never sharing the discriminator's weights),
so its verdict on generated images is independent of the GAN. Saved as safetensors + JSON, never pickled.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmgan.errors import StorageError, UserError
from llmgan.io.images import to_float
from llmgan.io.storage import Storage, join

WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"
FORMAT_VERSION = 1
SHIPPED_SHAPES = Path(__file__).resolve().parent.parent / "assets" / "eval" / "shapes32-classifier"
MAX_INPUT_SIZE = 32  # attributes of the built-in datasets are readable at 32 px; larger inputs are resized down
FEATURE_DIM = 128
# dataset label columns the evaluation judges (shapes' five attributes, digits' class)
LABEL_ATTRIBUTES = ("shape", "color", "size", "position", "background", "label")
_BATCH = 256


class _Net(nn.Module):
    """conv stack -> 4x4 map -> flatten (keeps *where* things are, which pooled features lose) -> heads."""

    def __init__(self, num_classes: list[int], width: int = 32, channels: int = 3) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        # ~5M multiply-adds per 32 px image: cheap enough to train in minutes on two busy cores
        self.body = nn.Sequential(
            *block(channels, w), nn.MaxPool2d(2),  # S/2
            *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),  # S/4
            *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(4),  # (4w, 4, 4) whatever S was
            nn.Conv2d(4 * w, 2 * w, 1),  # squeeze channels so the flatten layer stays small
            nn.ReLU(inplace=True),
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 16, FEATURE_DIM), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(0.2)
        self.heads = nn.ModuleList(nn.Linear(FEATURE_DIM, c) for c in num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, S, S) in [-1, 1] -> (N, FEATURE_DIM)
        return self.embed(self.body(x))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.drop(self.features(x))
        return [head(f) for head in self.heads]


def _to_tensor(images: np.ndarray, size: int, channels: int = 3) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, size, size) in [-1, 1]; antialiased resize when sizes differ."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != channels:
        raise UserError(f"images must be an (N, H, W, {channels}) array, got shape {images.shape}")
    x = to_float(images)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Label-preserving noise and blur, so the verdict is not thrown by a generator's grain or softness.

    No colour jitter (colour is a label) and no translation (position is a label).
    """
    n = x.shape[0]
    blur = torch.rand(n, 1, 1, 1, generator=gen) < 0.3
    if blur.any():
        soft = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        mix = torch.rand(n, 1, 1, 1, generator=gen)
        x = torch.where(blur, mix * soft + (1 - mix) * x, x)
    sigma = torch.rand(n, 1, 1, 1, generator=gen) * 0.12
    return (x + sigma * torch.randn(x.shape, generator=gen)).clamp_(-1.0, 1.0)


class AttributeClassifier:
    """A trained classifier: `predict`, `accuracy`, `features`, `probabilities`, `save`."""

    def __init__(self, net: _Net, attributes: list[str], classes: dict[str, list[str]], image_size: int,
                 width: int, info: dict[str, Any] | None = None, channels: int = 3) -> None:
        self.net = net.eval()
        self.attributes = list(attributes)
        self.classes = {a: list(classes[a]) for a in self.attributes}
        self.image_size = int(image_size)
        self.width = int(width)
        self.channels = int(channels)
        self.info: dict[str, Any] = dict(info or {})

    def __repr__(self) -> str:
        return f"AttributeClassifier(attributes={self.attributes}, image_size={self.image_size})"

    @torch.no_grad()
    def _run(self, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(features (N, D), [probabilities (N, C_a) per attribute]) in batches."""
        self.net.eval()
        feats: list[np.ndarray] = []
        probs: list[list[np.ndarray]] = [[] for _ in self.attributes]
        for start in range(0, len(images), _BATCH):
            x = _to_tensor(images[start:start + _BATCH], self.image_size, self.channels)
            f = self.net.features(x)
            feats.append(f.numpy())
            for i, head in enumerate(self.net.heads):
                probs[i].append(torch.softmax(head(f), dim=1).numpy())
        if not feats:
            return np.zeros((0, FEATURE_DIM), np.float32), [np.zeros((0, len(self.classes[a])), np.float32)
                                                            for a in self.attributes]
        return np.concatenate(feats), [np.concatenate(p) for p in probs]

    def run(self, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Features and per-attribute probabilities in one pass (what the evaluation needs of each image)."""
        feats, probs = self._run(images)
        return feats, dict(zip(self.attributes, probs))

    def probabilities(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Per attribute, (N, C) softmax probabilities over `classes[attribute]`."""
        _, probs = self._run(images)
        return dict(zip(self.attributes, probs))

    def features(self, images: np.ndarray) -> np.ndarray:
        """(N, 128) penultimate-layer features, the space the Fréchet distance is computed in."""
        return self._run(images)[0]

    def predict(self, images: np.ndarray) -> dict[str, list[str]]:
        """Per attribute, the most likely class name of each image (any input size; resized to its own)."""
        return self.predict_from_probabilities(self.probabilities(images))

    def predict_from_probabilities(self, probs: dict[str, np.ndarray]) -> dict[str, list[str]]:
        return {a: [self.classes[a][i] for i in probs[a].argmax(axis=1)] for a in self.attributes}

    def accuracy(self, images: np.ndarray, labels: dict[str, list[str]]) -> dict[str, float]:
        """Fraction correct per attribute the labels and classifier share, plus 'joint' (all of them right)."""
        return accuracy_of(self.predict(images), labels)

    def save(self, url: str, storage: Storage | None = None) -> None:
        """Write `url/classifier.safetensors` then `url/classifier.json` (the JSON last marks it complete)."""
        from safetensors.torch import save as save_tensors

        storage = storage or Storage()
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        storage.write_bytes(join(url, WEIGHTS_FILE), save_tensors(state))
        config = {
            "format_version": FORMAT_VERSION,
            "attributes": self.attributes,
            "classes": self.classes,
            "image_size": self.image_size,
            "width": self.width,
            "channels": self.channels,
            "feature_dim": FEATURE_DIM,
            "info": self.info,
        }
        storage.write_text(join(url, CONFIG_FILE), json.dumps(config, indent=2) + "\n")


def accuracy_of(predicted: dict[str, list[str]], labels: dict[str, list[str]]) -> dict[str, float]:
    """Per-attribute and joint accuracy of predictions against labels (attributes present in both)."""
    shared = [a for a in predicted if a in labels]
    if not shared:
        raise UserError(f"no label attribute in common: classifier has {sorted(predicted)}, labels have {sorted(labels)}")
    n = len(labels[shared[0]])
    if n == 0:
        return {**{a: float("nan") for a in shared}, "joint": float("nan")}
    right = np.ones(n, dtype=bool)
    out: dict[str, float] = {}
    for a in shared:
        ok = np.asarray(predicted[a], dtype=object) == np.asarray(labels[a], dtype=object)
        out[a] = float(ok.mean())
        right &= ok
    out["joint"] = float(right.mean())
    return out


def train_classifier(
    images: np.ndarray,
    labels: dict[str, list[str]],
    seed: int = 0,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 2e-3,
    val_fraction: float = 0.1,
    width: int = 16,
    progress: bool = True,
    threads: int | None = 1,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> AttributeClassifier:
    """Train on real images: one softmax head per attribute in `labels`; its own seeded train/val split.

    The validation accuracy on the split-off images is kept in `classifier.info["val_accuracy"]`.
    `augment(x, generator)` replaces the default label-preserving noise and blur (x: a batch in [-1, 1]); a domain
    whose labels survive small shifts (a concept, not a position) can add them.
    `threads` caps torch's threads while training: this net is too small to gain from more, and on an
    oversubscribed machine 1 thread was measured 7x faster than 2 (None: leave torch's setting).
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    try:
        return _train(images, labels, seed, steps, batch_size, lr, val_fraction, width, progress, augment or _augment)
    finally:
        torch.set_num_threads(old_threads)


def _train(images: np.ndarray, labels: dict[str, list[str]], seed: int, steps: int, batch_size: int, lr: float,
           val_fraction: float, width: int, progress: bool,
           augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] = _augment) -> AttributeClassifier:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (3, 4) or images.dtype != np.uint8:
        raise UserError(f"images must be uint8 (N, H, W, 3 or 4), got {images.dtype} {images.shape}")
    if not labels:
        raise UserError("labels: no label attribute to train on")
    n = len(images)
    for a, vals in labels.items():
        if len(vals) != n:
            raise UserError(f"labels[{a!r}] has {len(vals)} values for {n} images")
    if n < 20:
        raise UserError(f"need at least 20 labelled images to train a classifier, got {n}")
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")

    attributes = list(labels)
    classes = {a: sorted({str(v) for v in labels[a]}) for a in attributes}
    targets = torch.tensor(
        np.stack([[classes[a].index(str(v)) for v in labels[a]] for a in attributes], axis=1), dtype=torch.long
    )
    size = min(images.shape[1], MAX_INPUT_SIZE)
    channels = images.shape[-1]
    x_all = _to_tensor(images, size, channels)

    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]

    torch.manual_seed(seed)  # weight init
    net = _Net([len(classes[a]) for a in attributes], width=width, channels=channels)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    net.train()
    started = time.time()
    report_every = max(1, steps // 10)
    for step in range(1, steps + 1):
        pick = train_idx[torch.randint(len(train_idx), (min(batch_size, len(train_idx)),), generator=gen)]
        logits = net(augment(x_all[pick], gen))
        loss = sum(F.cross_entropy(lg, targets[pick, i]) for i, lg in enumerate(logits)) / len(logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step % report_every == 0 or step == steps):
            print(f"classifier step {step}/{steps} loss {loss.item():.4f} ({time.time() - started:.0f}s)",
                  file=sys.stderr, flush=True)

    clf = AttributeClassifier(net, attributes, classes, size, width, channels=channels)
    info: dict[str, Any] = {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
                            "n_train": int(len(train_idx)), "n_val": int(n_val),
                            "train_seconds": round(time.time() - started, 1)}
    if n_val:
        vi = val_idx.numpy()
        info["val_accuracy"] = clf.accuracy(images[vi], {a: [labels[a][i] for i in vi] for a in attributes})
    clf.info = info
    return clf


def load_classifier(path: str | None = None, storage: Storage | None = None) -> AttributeClassifier:
    """Load a saved classifier (local or s3://); `None` loads the shipped 32 px shapes classifier."""
    from safetensors.torch import load as load_tensors

    storage = storage or Storage()
    where = str(path) if path is not None else str(SHIPPED_SHAPES)
    try:
        config = json.loads(storage.read_text(join(where, CONFIG_FILE)))
        blob = storage.read_bytes(join(where, WEIGHTS_FILE))
    except StorageError as exc:
        raise UserError(f"no evaluation classifier at {where} ({exc})") from None
    except json.JSONDecodeError:
        raise UserError(f"{join(where, CONFIG_FILE)} is not valid JSON") from None
    if config.get("format_version") != FORMAT_VERSION:
        raise UserError(f"classifier at {where} has format_version {config.get('format_version')!r}, "
                        f"expected {FORMAT_VERSION}")
    attributes = list(config["attributes"])
    classes = {a: list(config["classes"][a]) for a in attributes}
    channels = int(config.get("channels", 3))
    net = _Net([len(classes[a]) for a in attributes], width=int(config["width"]), channels=channels)
    try:
        net.load_state_dict(load_tensors(blob))
    except Exception as exc:  # noqa: BLE001 - wrong or corrupt weights: one line for the user
        raise UserError(f"classifier weights at {where} do not load: {str(exc).splitlines()[0]}") from None
    return AttributeClassifier(net, attributes, classes, int(config["image_size"]), int(config["width"]),
                               config.get("info"), channels)

