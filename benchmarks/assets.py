"""Judges for a real domain (emoji): how good a GAN's images are, judged by models that never share weights or a
training run with the GAN or with the consistency scorer the job uses for feedback.

    python -m benchmarks.assets --ckpt runs/emoji64-b --data emoji64-all.parquet --scorer runs/emoji-scorer --out DIR
    python -m benchmarks.assets --quick --out DIR            # made-up RGBA data and tiny models: proves the code path
    python -m benchmarks.assets train-judges --data emoji64-all.parquet   # (re)trains the two shipped judges
    python -m benchmarks --only assets [--quick]             # the same in the benchmark table ($LLMGAN_EMOJI_* paths)

The judges (`llmgan/assets/eval/`): `emoji-concept-classifier`, a concept classifier (one softmax over every concept)
trained on ALL real emoji (both splits, both styles) with augmentation that keeps the concept true (small shifts,
scales and turns, blur, noise, mild brightness; no recolouring, no flips: arrows have a side); and
`emoji-judge-matcher`, an image-text matcher of another width and seed, trained on all real emoji (captions and short
prompts). The feedback scorer is a matcher trained on the TRAIN split only (seed 0).

Given a GAN checkpoint of the emoji data, images are drawn for every held-out (concept, style) caption and for a fixed
sample of training captions, several seeds each. Figures (DIR/assets.json, DIR/assets.md):

- FD in the concept classifier's feature space: generated vs the real images of the same rows, over the distance
  between those real images and a disjoint random set of real images of the same size (the real-vs-real floor);
- concept accuracy by the judge (top-1, top-5 over all concepts) and the judge matcher's P > 0.5, held-out and
  training captions apart;
- memorisation: each generated image's distance to its nearest training image (RMS over pixels of the images
  alpha-composited onto white at 32 px, and L2 in the judge's feature space) against the training images' own
  nearest-neighbour distances; and per-caption diversity across seeds against the distance across captions;
- stated colour and background right, where the data states them (the game icons), by the pixel-statistics judge
  `llmgan.eval.color_judge` (no learned weights; `--classifier none` gives these and the pixel figures alone);
- consistency feedback off vs on through the real job (`run_job`, local executor): judged accuracy and images/s;
- the feedback scorer's own quality on the held-out real images (AUC of the right prompt against a wrong one).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmgan.io.seeds import derive_seed

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "llmgan" / "assets" / "eval"
CONCEPT_JUDGE = ASSETS / "emoji-concept-classifier"
MATCHER_JUDGE = ASSETS / "emoji-judge-matcher"
CONCEPT_SEED, MATCHER_SEED = 11, 7  # the judges' seeds; the feedback scorer trains with seed 0
PIXEL_SIZE = 32  # memorisation and diversity are measured on images composited onto white at this side
NEAR_COPY_PERCENTILE = 5.0  # "near copy": closer to a training image than 95 % of training images are to another
COPYING_SHARE = 0.25  # a sample of the data distribution has ~5 % near copies; 5x that flags copying
COLLAPSE_FRACTION = 0.1  # a caption is collapsed when its seeds differ by < 10 % of the distance across captions
GOALS = {"fd_ratio": 2.5, "heldout_top5": 0.6}


# ---- pure figures (unit-tested on synthetic data) ---------------------------------------------------------


def pixel_vectors(images: np.ndarray, size: int = PIXEL_SIZE) -> np.ndarray:
    """uint8 (N, H, W, 3|4) -> float32 (N, size*size*3) in [0, 1]: alpha composited onto white, resized
    (antialiased)."""
    import torch
    import torch.nn.functional as F

    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (3, 4):
        raise ValueError(f"images must be (N, H, W, 3 or 4), got {x.shape}")
    out = []
    for start in range(0, len(x), 512):
        t = torch.from_numpy(x[start:start + 512].astype(np.float32) / 255.0)
        if t.shape[-1] == 4:
            a = t[..., 3:]
            t = t[..., :3] * a + (1.0 - a)
        t = t.permute(0, 3, 1, 2)
        if t.shape[-1] != size:
            t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(t.reshape(len(t), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, size * size * 3), np.float32)


def pairwise_rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) RMS difference between rows of a (N, D) and b (M, D): sqrt(mean((a_i - b_j)^2))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(d2, 0.0, None) / a.shape[1])


def nearest(a: np.ndarray, b: np.ndarray, exclude_self: bool = False,
            chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each row of `a`'s nearest row of `b` (RMS); exclude_self: a is b, row i never matches i."""
    dist, idx = np.empty(len(a)), np.empty(len(a), np.int64)
    for start in range(0, len(a), chunk):
        d = pairwise_rms(a[start:start + chunk], b)
        if exclude_self:
            rows = np.arange(len(d))
            d[rows, start + rows] = np.inf
        idx[start:start + chunk] = d.argmin(1)
        dist[start:start + chunk] = d[np.arange(len(d)), idx[start:start + chunk]]
    return dist, idx


def memorisation(generated: np.ndarray, train: np.ndarray, train_nn: np.ndarray | None = None) -> dict[str, Any]:
    """Is the generator copying its training images? Vectors (N, D) and (M, D) in one space.

    train_nn (M,): each training image's distance to its nearest other training image (computed when None).
    nn_ratio: median generated-to-train NN distance over the training set's own median NN distance (copies -> 0).
    share_closer_than_train_median: generated images closer to a training image than half the training images
    are to their nearest neighbour (a sample of the data distribution: about 0.5). near_copy_share: closer than the
    training set's 5th percentile (a sample of the data distribution: about 0.05); `copying` when >= 0.25.
    """
    if train_nn is None:
        train_nn, _ = nearest(train, train, exclude_self=True)
    gen_nn, gen_idx = nearest(generated, train)
    med = float(np.median(train_nn))
    low = float(np.percentile(train_nn, NEAR_COPY_PERCENTILE))
    near = float((gen_nn < low).mean()) if len(gen_nn) else float("nan")
    return {
        "n": int(len(gen_nn)),
        "generated_nn_median": round(float(np.median(gen_nn)), 5),
        "train_nn_median": round(med, 5),
        "train_nn_p5": round(low, 5),
        "nn_ratio": round(float(np.median(gen_nn)) / med, 4) if med > 0 else float("inf"),
        "share_closer_than_train_median": round(float((gen_nn < med).mean()), 4),
        "near_copy_share": round(near, 4),
        "copying": bool(near >= COPYING_SHARE),
        "nearest_train_rows": gen_idx,  # not written to JSON (see _jsonable)
    }


def diversity(vectors: np.ndarray, groups: Sequence[int]) -> dict[str, Any]:
    """Per-caption diversity: mean pairwise RMS among the seeds of one caption (averaged over captions), beside the
    mean RMS between images of different captions (one image each). ratio near 0: the seed is ignored (collapse per
    caption); near 1: the caption is ignored. collapsed_share: captions whose seeds differ by < 10 % of `across`."""
    vectors, groups = np.asarray(vectors), np.asarray(groups)
    within = []
    firsts = []
    for g in dict.fromkeys(groups.tolist()):
        rows = np.flatnonzero(groups == g)
        firsts.append(rows[0])
        if len(rows) >= 2:
            d = pairwise_rms(vectors[rows], vectors[rows])
            within.append(float(d[np.triu_indices(len(rows), 1)].mean()))
    if not within or len(firsts) < 2:
        raise ValueError("diversity needs >= 2 captions and >= 2 images of some caption")
    d = pairwise_rms(vectors[firsts], vectors[firsts])
    across = float(d[np.triu_indices(len(firsts), 1)].mean())
    w = np.array(within)
    return {"within": round(float(w.mean()), 5), "across": round(across, 5),
            "ratio": round(float(w.mean()) / across, 4) if across > 0 else float("nan"),
            "collapsed_share": round(float((w < COLLAPSE_FRACTION * across).mean()), 4), "captions": len(within)}


def fd_ratio(generated: np.ndarray, real_same: np.ndarray, real_other: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """FD(generated, real_other) over the real-vs-real floor FD(real_same, real_other), at one sample size n (the
    smallest of the three; each set subsampled, seeded).

    real_same: the real images of the rows the generated images were drawn for; real_other: real images of other
    rows (disjoint). Both sides are measured against the same other rows, so a generator that draws exactly the real
    images of its rows scores 1 (with one or two images per concept, comparing generated images with the real images
    of their own rows would favour a generator that copies them).
    """
    from llmgan.eval.metrics import frechet_distance

    n = min(len(generated), len(real_same), len(real_other))
    if n < 3:
        raise ValueError("fd_ratio needs at least 3 vectors in each set")
    rng = np.random.default_rng(derive_seed("assets-fd", seed))

    def take(x: np.ndarray) -> np.ndarray:
        return x[np.sort(rng.choice(len(x), n, replace=False))]

    gen, same, other = take(generated), take(real_same), take(real_other)
    fd, floor = frechet_distance(gen, other), frechet_distance(same, other)
    return {"fd": round(fd, 4), "floor": round(floor, 4), "ratio": round(fd / floor, 4) if floor > 0 else None, "n": n}


def degraded(images: np.ndarray) -> dict[str, np.ndarray]:
    """Real images spoiled in known ways, to read an FD ratio against: blurred (7 px box), reduced to 8 px and back,
    shifted by 1/8 of the side, colours reversed (RGB -> BGR)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    back = lambda t: t.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    side = images.shape[1]
    swapped = images.copy()
    swapped[..., :3] = swapped[..., 2::-1]
    return {"blurred (7 px box)": back(F.avg_pool2d(F.pad(x, (3, 3, 3, 3), mode="replicate"), 7, stride=1)),
            "reduced to 8 px": back(F.interpolate(F.interpolate(x, size=8, mode="area"), size=side, mode="bilinear",
                                                  align_corners=False)),
            "shifted 1/8 side": np.roll(images, side // 8, axis=2),
            "colours reversed": swapped}


def topk_accuracy(probs: np.ndarray, truth: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Share of rows whose true class index is among the k most probable (truth -1: unknown class, counts wrong)."""
    probs, truth = np.asarray(probs), np.asarray(truth)
    if len(probs) == 0:
        return {f"top{k}": float("nan") for k in ks}
    order = np.argsort(-probs, axis=1)
    return {f"top{k}": round(float((order[:, :k] == truth[:, None]).any(1).mean()), 4) for k in ks}


def wrong_rows(labels: Sequence[str], rng: np.random.Generator, tries: int = 20) -> np.ndarray:
    """For each row, another row with a different label (a seeded shuffle, collisions redrawn); a row whose label every
    row shares keeps itself."""
    labels = np.asarray(labels)
    idx = rng.permutation(len(labels))
    for _ in range(tries):
        bad = np.flatnonzero(labels[idx] == labels)
        if not len(bad):
            break
        idx[bad] = rng.integers(0, len(labels), len(bad))
    return idx


# ---- data ---------------------------------------------------------------------------------------------------


class EmojiData:
    """Rows of an emoji-layout Parquet file: RGBA images (canonical alpha), captions, short prompts, labels, styles,
    splits (the columns `llmgan data emoji` writes; `prompt` is read where an older file has no `short_prompt`)."""

    def __init__(self, url: str, size: int = 64) -> None:
        import pyarrow.parquet as pq

        from llmgan.data.readers import decode_image

        table = pq.read_table(url)
        cols = table.column_names
        for need in ("image", "caption", "label"):
            if need not in cols:
                raise ValueError(f"{url}: no {need!r} column (an emoji-layout dataset has image, caption, label, "
                                 "short_prompt, style, split)")
        self.url = url
        self.images = np.stack([decode_image(b, size) for b in table.column("image").to_pylist()])
        self.captions = [str(c) for c in table.column("caption").to_pylist()]
        prompt_col = "short_prompt" if "short_prompt" in cols else "prompt" if "prompt" in cols else "caption"
        self.prompts = [str(p) for p in table.column(prompt_col).to_pylist()]
        self.labels = [str(x) for x in table.column("label").to_pylist()]
        n = len(self.labels)
        self.styles = [str(s) for s in table.column("style").to_pylist()] if "style" in cols else [""] * n
        self.splits = [str(s) for s in table.column("split").to_pylist()] if "split" in cols else ["train"] * n
        # stated colour and background (the game icons): judged by pixel statistics where the data has them
        self.stated = ({k: [str(v) for v in table.column(k).to_pylist()] for k in ("color", "background")}
                       if {"color", "background"} <= set(cols) else None)
        self.heldout_kinds = ([str(v) for v in table.column("heldout_kind").to_pylist()] if "heldout_kind" in cols
                              else [""] * n)

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, split: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits) if s == split], np.int64)


# ---- training the judges ------------------------------------------------------------------------------------


def concept_augment(x: Any, gen: Any) -> Any:
    """Augmentation that keeps an emoji's concept true, on a batch (N, C, S, S) in [-1, 1] (RGBA: transparent is -1
    in every channel): a small affine move (shift <= 1/16 of the side, scale 0.88-1.12, turn <= 6 degrees; what
    leaves the frame is transparent), blur (30 %), brightness x0.9-1.1 on the colour channels, grain. No hue change,
    no flip (arrows and hands have a side)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    u = lambda: torch.rand(n, generator=gen)  # noqa: E731
    scale = 0.88 + 0.24 * u()
    turn = (u() * 2 - 1) * math.radians(6)
    shift = (torch.stack([u(), u()], 1) * 2 - 1) * 0.125  # affine_grid units: 2 = the whole side
    cos, sin = torch.cos(turn) / scale, torch.sin(turn) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    blur = (u() < 0.3).view(n, 1, 1, 1)
    soft = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    mix = u().view(n, 1, 1, 1)
    x = torch.where(blur, mix * soft + (1 - mix) * x, x)
    bright = (0.9 + 0.2 * u()).view(n, 1, 1, 1)
    colour = torch.ones(1, x.shape[1], 1, 1)
    colour[:, :3] = 0
    x = torch.where(colour.bool(), x, (x + 1) * bright - 1)
    sigma = u().view(n, 1, 1, 1) * 0.1
    return (x + sigma * torch.randn(x.shape, generator=gen)).clamp_(-1.0, 1.0)


def _augmented_topk(clf: Any, images: np.ndarray, truth: np.ndarray, seed: int, copies: int = 2) -> dict[str, float]:
    """Top-1/top-5 of the classifier on `copies` fresh augmented copies of each image (a seed training never used)."""
    import torch

    from llmgan.eval.classifier import _to_tensor
    from llmgan.io.images import to_uint8

    gen = torch.Generator().manual_seed(derive_seed("concept-judge-val", seed))
    x = _to_tensor(images, clf.image_size, clf.channels)
    probs, rows = [], []
    for _ in range(copies):
        for start in range(0, len(x), 512):
            aug = to_uint8(concept_augment(x[start:start + 512], gen))
            probs.append(clf.probabilities(aug)["label"])
            rows.append(truth[start:start + 512])
    return topk_accuracy(np.concatenate(probs), np.concatenate(rows))


def train_concept_judge(data: str, out: str | None, steps: int = 3000, seed: int = CONCEPT_SEED, width: int = 32,
                        check_share: float = 0.1, log: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
    """Train the concept classifier on every row of `data` (label = concept) and measure it.

    With only 1-2 images per concept there is no honest random validation split, so two figures are reported:
    `val_augmented` (the shipped model on fresh augmented copies of all images: robustness, close to a training
    figure) and `val_other_style` (a second model, same recipe, trained with one style of a random `check_share`
    of the concepts left out, read on those left-out images: does it know a concept from its other drawing?).
    """
    from llmgan.eval.classifier import train_classifier

    ds = EmojiData(data, 64)
    classes = sorted(set(ds.labels))
    index = {c: i for i, c in enumerate(classes)}
    truth = np.array([index[x] for x in ds.labels])
    info: dict[str, Any] = {"data": Path(data).name, "rows": len(ds), "concepts": len(classes), "steps": steps,
                            "seed": seed, "width": width, "augment": "benchmarks.assets.concept_augment"}
    check: dict[str, Any] | None = None
    if check_share > 0:
        rng = np.random.default_rng(derive_seed("concept-judge-check", seed))
        by_label: dict[str, list[int]] = {}
        for i, x in enumerate(ds.labels):
            by_label.setdefault(x, []).append(i)
        twins = [rows for rows in by_label.values() if len(rows) >= 2]
        picked = rng.choice(len(twins), max(1, int(round(check_share * len(twins)))), replace=False)
        left_out = np.array(sorted(twins[k][rng.integers(len(twins[k]))] for k in picked))
        keep = np.setdiff1d(np.arange(len(ds)), left_out)
        t0 = time.time()
        clf_check = train_classifier(ds.images[keep], {"label": [ds.labels[i] for i in keep]}, seed=seed + 1,
                                     steps=steps, val_fraction=0.0, width=width, progress=False,
                                     augment=concept_augment)
        probs = clf_check.probabilities(ds.images[left_out])["label"]
        check_index = {c: i for i, c in enumerate(clf_check.classes["label"])}
        check = {**topk_accuracy(probs, np.array([check_index.get(ds.labels[i], -1) for i in left_out])),
                 "n": int(len(left_out)), "train_seconds": round(time.time() - t0, 1)}
        log(f"concept judge, other-style check: top-1 {check['top1']:.3f} top-5 {check['top5']:.3f} on "
            f"{check['n']} left-out drawings ({check['train_seconds']:.0f}s)")
    t0 = time.time()
    clf = train_classifier(ds.images, {"label": ds.labels}, seed=seed, steps=steps, val_fraction=0.0, width=width,
                           progress=False, augment=concept_augment)
    info["train_seconds"] = round(time.time() - t0, 1)
    info["train_accuracy_clean"] = topk_accuracy(clf.probabilities(ds.images)["label"], truth)
    info["val_augmented"] = _augmented_topk(clf, ds.images, truth, seed)
    if check is not None:
        info["val_other_style"] = check
    clf.info = {**clf.info, **info}
    log(f"concept judge: {len(classes)} concepts, clean {info['train_accuracy_clean']}, augmented copies "
        f"{info['val_augmented']} ({info['train_seconds']:.0f}s)")
    if out is not None:
        clf.save(str(out))
    return clf, info


def train_judge_matcher(data: str, out: str | None, steps: int = 2500, seed: int = MATCHER_SEED, width: int = 32,
                        image_size: int = 32, cache_dir: str | None = None, prompt_share: float = 0.5) -> Any:
    """The independent image-text judge: a matcher on every row of `data` (its own 10 % calibration split), another
    seed and width than the feedback scorer."""
    from llmgan.gan.matcher import MatcherConfig, train_matcher

    config = MatcherConfig(image_size=image_size, width=width, prompt_share=prompt_share)
    return train_matcher(data, None if out is None else str(out), steps, config, seed=seed, cache_dir=cache_dir,
                         progress=True)


# ---- generation and judging -------------------------------------------------------------------------------


def _decode_rgba(pngs: Sequence[bytes]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGBA")) for b in pngs])


def _as_rgba(images: np.ndarray) -> np.ndarray:
    """A 3-channel GAN's images as opaque RGBA (the judges read 4 channels)."""
    if images.shape[-1] == 4:
        return images
    return np.concatenate([images, np.full(images.shape[:-1] + (1,), 255, np.uint8)], -1)


class Judges:
    """The concept classifier and the judge matcher (None: none trained for this domain yet), with the text encoder
    the matcher reads."""

    def __init__(self, classifier: str | Path, matcher: str | Path | None) -> None:
        from llmgan.eval.classifier import load_classifier
        from llmgan.gan.matcher import Matcher

        self.classifier = load_classifier(str(classifier))
        self.matcher = Matcher.load(str(matcher)) if matcher else None
        self.classes = self.classifier.classes["label"]
        self.index = {c: i for i, c in enumerate(self.classes)}
        self._encoders: dict[str | None, Any] = {}

    def encode(self, texts: Sequence[str], encoder: str | None = None) -> np.ndarray:
        from llmgan.text.encoder import TextEncoder

        if encoder not in self._encoders:
            self._encoders[encoder] = TextEncoder(model=encoder)
        return self._encoders[encoder].encode(list(texts))

    def truth(self, labels: Sequence[str]) -> np.ndarray:
        return np.array([self.index.get(x, -1) for x in labels])

    def judge(self, images: np.ndarray, labels: Sequence[str], prompts: Sequence[str],
              captions: Sequence[str] | None = None) -> tuple[dict[str, Any], np.ndarray]:
        """(figures, judge features): concept top-1/top-5, judge matcher P > 0.5 against the short prompt (prompt
        calibration) and the caption (caption calibration)."""
        images = _as_rgba(images)
        feats, probs = self.classifier.run(images)
        figures: dict[str, Any] = {"images": int(len(images)), **topk_accuracy(probs["label"], self.truth(labels))}
        m = self.matcher
        if m is None:
            return figures, feats
        emb = self.encode(prompts, m.text_encoder)
        p = m.probability(images, emb, text="prompt")
        figures["matcher_prompt_p>0.5"] = round(float((p > 0.5).mean()), 4)
        figures["matcher_prompt_mean"] = round(float(p.mean()), 4)
        # the control: the same images against another concept's prompt (what the judge accepts by chance)
        wrong = wrong_rows(labels, np.random.default_rng(derive_seed("assets-wrong", len(labels))))
        figures["matcher_wrong_prompt_p>0.5"] = round(float((m.probability(images, emb[wrong], text="prompt") > 0.5)
                                                            .mean()), 4)
        if captions is not None:
            pc = m.probability(images, self.encode(captions, m.text_encoder), text="caption")
            figures["matcher_caption_p>0.5"] = round(float((pc > 0.5).mean()), 4)
        return figures, feats


def stated_accuracy(images: np.ndarray, rows: np.ndarray, data: EmojiData) -> dict[str, Any]:
    """Share of images whose colour and background, named by the pixel-statistics judge (no learned weights), are the
    ones their rows state; held-out rows also apart by why they are held out (an unseen pairing, an unseen icon x
    pairing combination)."""
    from llmgan.eval.color_judge import judge_accuracy, judge_images

    assert data.stated is not None
    verdicts = judge_images(images)

    def share(keep: np.ndarray) -> dict[str, float]:
        picked = [v for v, k in zip(verdicts, keep) if k]
        return {k: round(v, 4) for k, v in judge_accuracy(
            picked, [data.stated["color"][r] for r in rows[keep]],
            [data.stated["background"][r] for r in rows[keep]]).items()}

    out: dict[str, Any] = share(np.ones(len(rows), bool))
    kinds = np.array([data.heldout_kinds[r] for r in rows])
    for kind in sorted(set(kinds.tolist()) - {""}):
        out[kind] = share(kinds == kind)
    return out


def generate(gan: Any, encoder: Any, captions: Sequence[str], seeds: int, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N*seeds, H, W, C), caption index of each): seed s of caption i is derive_seed('assets', tag, i, s)."""
    emb = encoder.encode(list(captions))
    rows = np.repeat(np.arange(len(captions)), seeds)
    seed_list = [derive_seed("assets", tag, int(i), s % seeds) for s, i in enumerate(rows)]
    out = []
    for start in range(0, len(rows), 256):
        imgs, _ = gan.sample(emb[rows[start:start + 256]], seed_list[start:start + 256])
        out.append(imgs)
    return np.concatenate(out), rows


def scorer_quality(matcher: Any, encode: Callable[[Sequence[str]], np.ndarray], data: EmojiData, rows: np.ndarray,
                   seed: int = 0) -> dict[str, Any]:
    """The feedback scorer on real images it never trained on (`rows`, the held-out split): each image against its
    own short prompt (a match) and against a wrong one: a random other concept's prompt, and the nearest prompt
    (MiniLM cosine) of another concept in the whole dataset (a near miss). The same with full captions."""
    from llmgan.gan.matcher import calibration_error, roc_auc

    rng = np.random.default_rng(derive_seed("assets-scorer", seed))
    labels = np.array(data.labels)
    images = _as_rgba(data.images[rows]) if matcher.config.channels == 4 else data.images[rows][..., :3]
    out: dict[str, Any] = {"images": int(len(rows))}
    for kind, texts in (("prompt", data.prompts), ("caption", data.captions)):
        emb_all = encode(texts)
        right = emb_all[rows]
        sims = right @ emb_all.T
        sims[labels[rows][:, None] == labels[None, :]] = -np.inf
        near = sims.argmax(1)
        other = np.array([rng.choice(np.flatnonzero(labels != labels[r])) for r in rows])
        pos = matcher.cosine(images, right)
        neg_near, neg_rand = matcher.cosine(images, emb_all[near]), matcher.cosine(images, emb_all[other])
        p_pos, p_near = matcher.calibrate(pos, kind), matcher.calibrate(neg_near, kind)
        acc = float(((p_pos >= 0.5).sum() + (p_near < 0.5).sum()) / (2 * len(pos)))
        out[kind] = {"auc_random_wrong": round(roc_auc(pos, neg_rand), 4),
                     "auc_near_miss": round(roc_auc(pos, neg_near), 4),
                     "accuracy_at_0.5_near_miss": round(acc, 4), "right_p>0.5": round(float((p_pos > 0.5).mean()), 4),
                     "near_miss_p>0.5": round(float((p_near > 0.5).mean()), 4),
                     "ece_near_miss": round(calibration_error(p_pos, p_near), 4)}
    return out


def _read_job(out: Path) -> tuple[np.ndarray, list[dict[str, Any]]]:
    pngs, metas = [], []
    for tar_path in sorted(out.glob("shards/*.tar")):
        with tarfile.open(tar_path) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
        for name in sorted(n for n in files if n.endswith(".png")):
            pngs.append(files[name])
            metas.append(json.loads(files[name[:-4] + ".json"]))
    return _decode_rgba(pngs), metas


JOB_TEXTS = ("caption", "short_prompt", "expand")


def job_feedback(ckpt: str, scorer: str, judges: Judges, data: EmojiData, rows: np.ndarray, kinds: Sequence[str],
                 work: Path, seeds: int, text: str = "caption", batch_size: int = 64,
                 lm: str | None = None, repeats: int = 1) -> list[dict[str, Any]]:
    """The generation job (local executor) on `rows`, `seeds` images each, with consistency feedback off
    (--consistency none) and on (the scorer folder, threshold 0.5, up to 4 draws); each judged against the row's
    concept and short prompt. text: "caption" (the row's full caption as the prompt, no expansion), "short_prompt"
    (the short prompt, no expansion) or "expand" (the short prompt expanded by the caption LM `lm`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmgan.job.config import GenerateConfig
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    if text not in JOB_TEXTS:
        raise ValueError(f"job text must be one of {', '.join(JOB_TEXTS)}, got {text!r}")
    if text == "expand" and not lm:
        raise ValueError("job text 'expand' needs a caption LM (--job-lm)")
    work.mkdir(parents=True, exist_ok=True)
    texts = [data.captions[r] if text == "caption" else data.prompts[r] for r in rows]
    prompts = work / "prompts.parquet"
    pq.write_table(pa.table({"prompt": texts, "concept": [data.labels[r] for r in rows],
                             "short": [data.prompts[r] for r in rows], "kind": list(kinds)}), prompts)
    results = []
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for rep in range(repeats):  # off and on alternate; a rerun overwrites with the same bytes (seeded), only timing
        for mode in ("off", "on"):
            cfg = GenerateConfig(prompts=str(prompts), out=str(work / f"job-{mode}"), ckpt=ckpt,
                                 expand=text == "expand", lm=lm if text == "expand" else None, variants=1,
                                 n_per_prompt=seeds, consistency=scorer if mode == "on" else "none",
                                 min_consistency=0.5 if mode == "on" else 0.0, max_attempts=4, executor="local",
                                 overwrite=True, seed=0, batch_size=batch_size, shard_size=100_000,
                                 contact_sheet_size=64)
            t0 = time.perf_counter()
            summary = run_job(cfg, LocalExecutor(), progress=False)
            rates[mode].append(summary["images"] / (time.perf_counter() - t0))
            if rep:
                continue
            images, metas = _read_job(work / f"job-{mode}")
            row: dict[str, Any] = {"feedback": mode, "text": text, "images": len(metas),
                                   "stage_seconds": summary.get("stage_seconds")}
            cons = summary.get("consistency") or {}
            if cons:
                row["scorer_mean"] = cons.get("mean")
                row["scorer_first_draw_mean"] = cons.get("first_draw_mean", cons.get("mean_first_draw"))
                row["extra_draws_per_image"] = cons.get("extra_draws_per_image")
            for kind in dict.fromkeys(kinds):
                pick = [i for i, m in enumerate(metas) if m.get("kind") == kind]
                if pick:
                    row[kind], _ = judges.judge(images[pick], [metas[i]["concept"] for i in pick],
                                                [metas[i]["short"] for i in pick])
            results.append(row)
    for row in results:  # the whole job's images/s (model loading included), median over the repeats
        row["images_per_s"] = round(float(np.median(rates[row["feedback"]])), 2)
        row["repeats"] = repeats
    return results


def run(ckpt: str, data_url: str, out: str, scorer: str | None, classifier: str | Path | None = CONCEPT_JUDGE,
        matcher: str | Path | None = MATCHER_JUDGE, n_train_prompts: int = 800, seeds: int = 4, job_train_prompts: int = 100,
        job_seeds: int = 2, job_text: Sequence[str] = ("caption",), seed: int = 0, threads: int | None = 1,
        log: Callable[[str], None] = print, lm: str | None = None, job_repeats: int = 2) -> dict[str, Any]:
    """Every figure for the GAN at `ckpt` (a checkpoint or a run folder: its newest checkpoint); writes OUT/assets.json
    and OUT/assets.md and returns the report. classifier None (a domain with no judges trained yet): the figures
    that need none (stated colour and background, memorisation and diversity in pixels) and no scorer or job part."""
    import torch

    from llmgan.gan.checkpoint import read_meta, resolve_checkpoint
    from llmgan.gan.inference import GanModel
    from llmgan.io.storage import Storage
    from llmgan.text.encoder import TextEncoder

    if threads is not None:
        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = resolve_checkpoint(str(ckpt), Storage())
    meta = read_meta(ckpt_dir)
    gan = GanModel.load(ckpt_dir)
    size = gan.image_size
    data = EmojiData(data_url, size)
    judges = Judges(classifier, matcher) if classifier else None
    encoder = TextEncoder(model=gan.text_encoder)
    seconds: dict[str, float] = {}

    held = data.rows("heldout")
    train_rows = data.rows("train")
    rng = np.random.default_rng(derive_seed("assets-train-sample", seed))
    sample = np.sort(rng.choice(train_rows, min(n_train_prompts, len(train_rows)), replace=False))
    t0 = time.perf_counter()
    gen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for kind, rows in (("heldout", held), ("train", sample)):
        images, which = generate(gan, encoder, [data.captions[r] for r in rows], seeds, kind)
        gen[kind] = (images, rows[which])
    seconds["generate"] = round(time.perf_counter() - t0, 1)
    log(f"generated {sum(len(g[0]) for g in gen.values())} images ({seconds['generate']:.0f}s)")

    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "gan": {"path": str(ckpt_dir), "step": meta.get("step"), "image_size": size,
                "channels": gan.config.image_channels},
        "data": {"path": data_url, "rows": len(data), "heldout_rows": int(len(held)),
                 "train_rows": int(len(train_rows))},
        "judges": None if judges is None else {
            "concepts": len(judges.classes), "classifier": str(classifier),
            "classifier_info": {k: judges.classifier.info.get(k)
                                for k in ("seed", "steps", "val_augmented", "val_other_style")},
            "matcher": str(matcher) if judges.matcher else None,
            "matcher_val": ((judges.matcher and judges.matcher.info) or {}).get("val"),
            "matcher_seed": ((judges.matcher and judges.matcher.info) or {}).get("seed")},
        "settings": {"seeds": seeds, "train_prompts": int(len(sample)), "heldout_prompts": int(len(held)),
                     "pixel_space": f"RMS over RGB of images alpha-composited onto white at {PIXEL_SIZE} px, in [0, 1]",
                     "feature_space": "L2/sqrt(128) in the concept classifier's 128-d features"},
    }
    feats: dict[str, np.ndarray] = {}
    if data.stated is not None:  # the real held-out images through the same judge: its ceiling on this data
        report["stated"] = {kind: stated_accuracy(images, rows, data) for kind, (images, rows) in gen.items()}
        report["stated"]["heldout_real_images"] = stated_accuracy(data.images[held], held, data)
    if judges is not None:
        splits: dict[str, Any] = {}
        for kind, (images, rows) in gen.items():
            splits[kind], feats[kind] = judges.judge(images, [data.labels[r] for r in rows],
                                                     [data.prompts[r] for r in rows], [data.captions[r] for r in rows])
        # the real images of the held-out rows through the same judges: both judges trained on them (a sanity ceiling)
        splits["heldout_real_images"], _ = judges.judge(data.images[held], [data.labels[r] for r in held],
                                                        [data.prompts[r] for r in held],
                                                        [data.captions[r] for r in held])
        report["accuracy"] = splits
    seconds["judge"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    if judges is not None:
        # FD in the judge's feature space: generated (first seed of each caption) vs the real images of the same
        # rows, over the real images of those rows vs a disjoint random set of real rows
        real_feats = judges.classifier.features(_as_rgba(data.images))
        fd_rows, fd_gen = [], []
        for kind, (_images, rows) in gen.items():
            first = np.arange(0, len(rows), seeds)
            fd_rows.append(rows[first])
            fd_gen.append(feats[kind][first])
        same = np.concatenate(fd_rows)
        rest = np.setdiff1d(np.arange(len(data)), same)
        other = np.random.default_rng(derive_seed("assets-fd-other", seed)).permutation(rest)
        report["fd"] = fd_ratio(np.concatenate(fd_gen), real_feats[same], real_feats[other], seed)
        all_gen = np.concatenate([feats[k] for k in gen])
        report["fd_all_seeds"] = fd_ratio(all_gen, real_feats[np.concatenate([gen[k][1] for k in gen])],
                                          real_feats[other], seed)
        # what the ratio means in this space: the same real images, spoiled in known ways, through the same figure
        report["fd_references"] = {name: fd_ratio(judges.classifier.features(_as_rgba(spoiled)), real_feats[same],
                                                  real_feats[other], seed)["ratio"]
                                   for name, spoiled in degraded(data.images[same]).items()}
        train_f = real_feats[train_rows] / math.sqrt(real_feats.shape[1])
        train_nn_f, _ = nearest(train_f, train_f, exclude_self=True)

    # memorisation and diversity (in the judge's feature space too where there is a judge)
    train_px = pixel_vectors(data.images[train_rows])
    train_nn_px, _ = nearest(train_px, train_px, exclude_self=True)
    mem: dict[str, Any] = {}
    div: dict[str, Any] = {}
    for kind, (images, rows) in gen.items():
        px = pixel_vectors(images)
        m_px = memorisation(px, train_px, train_nn_px)
        nearest_rows = train_rows[m_px.pop("nearest_train_rows")]
        # a generated image whose nearest training image is its own caption's other drawing is expected; count it
        m_px["nearest_is_same_concept"] = round(float(np.mean(
            [data.labels[a] == data.labels[b] for a, b in zip(nearest_rows, rows)])), 4)
        mem[kind] = {"pixel": m_px}
        div[kind] = {"pixel": diversity(px, rows)}
        if judges is not None:
            m_f = memorisation(feats[kind] / math.sqrt(feats[kind].shape[1]), train_f, train_nn_f)
            m_f.pop("nearest_train_rows")
            mem[kind]["feature"] = m_f
            div[kind]["feature"] = diversity(feats[kind], rows)
    real_px = pixel_vectors(data.images[held])
    mem["heldout_real_images"] = {"pixel": {k: v for k, v in memorisation(real_px, train_px, train_nn_px).items()
                                            if k != "nearest_train_rows"}}
    report["memorisation"] = mem
    report["diversity"] = div
    seconds["memorisation"] = round(time.perf_counter() - t0, 1)

    # the feedback scorer on the held-out real images (its figures and the job's are read by the judges)
    if scorer and judges is None:
        log("no concept judge: the scorer and job figures are left out")
    if scorer and judges is not None:
        from llmgan.gan.matcher import Matcher

        t0 = time.perf_counter()
        sm = Matcher.load(str(scorer))
        report["scorer"] = {"path": str(scorer), "seed": (sm.info or {}).get("seed"),
                            "data": (sm.info or {}).get("data"), "own_val": (sm.info or {}).get("val"),
                            "heldout_real": scorer_quality(sm, lambda t: judges.encode(t, sm.text_encoder), data, held,
                                                           seed)}
        seconds["scorer"] = round(time.perf_counter() - t0, 1)
        # feedback off vs on through the job
        t0 = time.perf_counter()
        job_sample = np.sort(rng.choice(sample, min(job_train_prompts, len(sample)), replace=False))
        rows = np.concatenate([held, job_sample])
        kinds = ["heldout"] * len(held) + ["train"] * len(job_sample)
        report["job"] = []
        for text in job_text:
            report["job"] += job_feedback(str(ckpt_dir), str(scorer), judges, data, rows, kinds,
                                          out_dir / "work" / f"job-{text}", job_seeds, text, lm=lm,
                                          repeats=job_repeats)
            log(f"job ({text}): " + "; ".join(f"feedback {r['feedback']}: {r['images_per_s']} img/s, held-out top-5 "
                                              f"{(r.get('heldout') or {}).get('top5')}" for r in report["job"][-2:]))
        seconds["job"] = round(time.perf_counter() - t0, 1)
    seconds["total"] = round(time.perf_counter() - t_start, 1)
    report["seconds"] = seconds
    report["goals"] = {"fd_ratio <=": GOALS["fd_ratio"], "heldout top5 >=": GOALS["heldout_top5"]}
    (out_dir / "assets.json").write_text(json.dumps(_jsonable(report), indent=1))
    (out_dir / "assets.md").write_text(table(report))
    return report


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items() if not isinstance(v, np.ndarray)}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _pct(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f} %"


def _num(v: Any, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table(report: dict[str, Any]) -> str:
    """The report as markdown tables (what the docs quote)."""
    acc, mem, div = report.get("accuracy"), report["memorisation"], report["diversity"]
    g = report["gan"]
    lines = [f"GAN {g['path']} (step {g['step']}, {g['image_size']} px, {g['channels']} channels); "
             f"{report['settings']['heldout_prompts']} held-out and {report['settings']['train_prompts']} training "
             f"captions x {report['settings']['seeds']} seeds", "",
             "| figure | held-out captions | training captions | goal |", "| --- | --- | --- | --- |"]
    if acc:
        h, t = acc["heldout"], acc["train"]
        chance = 5 / max(1, report["judges"].get("concepts") or 1)
        lines += [
            f"| concept top-1 (judge classifier) | {_pct(h['top1'])} | {_pct(t['top1'])} | |",
            f"| concept top-5 (judge classifier; chance {_pct(chance)}) | {_pct(h['top5'])} | {_pct(t['top5'])} "
            "| >= 60 % |",
            f"| judge matcher P > 0.5, short prompt | {_pct(h.get('matcher_prompt_p>0.5'))} | "
            f"{_pct(t.get('matcher_prompt_p>0.5'))} | |",
            f"| judge matcher P > 0.5, caption | {_pct(h.get('matcher_caption_p>0.5'))} | "
            f"{_pct(t.get('matcher_caption_p>0.5'))} | |",
            f"| judge matcher P > 0.5, another concept's prompt (chance) | "
            f"{_pct(h.get('matcher_wrong_prompt_p>0.5'))} | {_pct(t.get('matcher_wrong_prompt_p>0.5'))} | |",
        ]
    stated = report.get("stated")
    if stated:
        sh, st = stated["heldout"], stated["train"]
        lines += [f"| stated {k} right (pixel-statistics judge) | {_pct(sh[k])} | {_pct(st[k])} | >= 95 % |"
                  for k in ("color", "background", "both")]
        lines += [f"| stated colour and background right, held out as an unseen {kind} | {_pct(sh[kind]['both'])} "
                  f"({int(sh[kind]['n'])} images) | | |" for kind in sh if isinstance(sh[kind], dict)]
        lines.append(f"| real held-out images, colour and background right (the judge's ceiling) | "
                     f"{_pct(stated['heldout_real_images']['both'])} | | |")
    spaces = [sp for sp in ("pixel", "feature") if sp in mem["heldout"]]
    for space in spaces:
        mh, mt = mem["heldout"][space], mem["train"][space]
        lines += [
            f"| NN distance to train / train-train NN ({space}) | {_num(mh['nn_ratio'])} | {_num(mt['nn_ratio'])} | |",
            f"| closer to train than the train median ({space}) | {_pct(mh['share_closer_than_train_median'])} | "
            f"{_pct(mt['share_closer_than_train_median'])} | |",
            f"| near copies, < train 5th percentile ({space}) | {_pct(mh['near_copy_share'])} | "
            f"{_pct(mt['near_copy_share'])} | < 25 % |",
        ]
    for space in spaces:
        dh, dt = div["heldout"][space], div["train"][space]
        lines.append(f"| diversity across seeds / across captions ({space}) | {_num(dh['ratio'])} "
                     f"({_num(dh['within'])} / {_num(dh['across'])}) | {_num(dt['ratio'])} ({_num(dt['within'])} / "
                     f"{_num(dt['across'])}) | |")
    real = (acc or {}).get("heldout_real_images")
    if real:
        lines.append(f"| real held-out images (judges trained on them) | top-5 {_pct(real['top5'])}, matcher "
                     f"{_pct(real.get('matcher_prompt_p>0.5'))} (wrong prompt "
                     f"{_pct(real.get('matcher_wrong_prompt_p>0.5'))}) | | |")
    rm = mem.get("heldout_real_images", {}).get("pixel")
    if rm:
        lines.append(f"| real held-out images: NN ratio, near copies (pixel) | {_num(rm['nn_ratio'])}, "
                     f"{_pct(rm['near_copy_share'])} | | |")
    fd, fa = report.get("fd"), report.get("fd_all_seeds")
    if fd and fa:
        refs = ", ".join(f"{k} {_num(v, 2)}x" for k, v in (report.get("fd_references") or {}).items())
        lines += ["", f"FD in the judge's feature space: {_num(fd['fd'], 2)} vs real-vs-real floor "
                  f"{_num(fd['floor'], 2)} -> **{_num(fd['ratio'], 2)}x** (n = {fd['n']} a side, first seed of each "
                  f"caption; goal <= 2.5); every seed: {_num(fa['ratio'], 2)}x (n = {fa['n']}). The real images of the "
                  f"same rows, spoiled: {refs}."]
    if report.get("job"):
        lines += ["", "| job text | feedback | images | images/s | judge top-5 held-out / train | judge top-1 "
                  "held-out / train | judge matcher P > 0.5 held-out / train | scorer mean | extra draws / image |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in report["job"]:
            hh, tt = r.get("heldout", {}), r.get("train", {})
            lines.append(f"| {r['text']} | {r['feedback']} | {r['images']} | {_num(r['images_per_s'], 1)} | "
                         f"{_pct(hh.get('top5'))} / {_pct(tt.get('top5'))} | {_pct(hh.get('top1'))} / "
                         f"{_pct(tt.get('top1'))} | {_pct(hh.get('matcher_prompt_p>0.5'))} / "
                         f"{_pct(tt.get('matcher_prompt_p>0.5'))} | {_num(r.get('scorer_mean'))} | "
                         f"{_num(r.get('extra_draws_per_image'), 2)} |")
    sc = report.get("scorer")
    if sc:
        q = sc["heldout_real"]
        lines += ["", f"Feedback scorer ({sc['path']}, seed {sc['seed']}) on the {q['images']} held-out real images:",
                  "",
                  "| text | AUC vs random wrong | AUC vs near miss | accuracy at 0.5 (near miss) | right P > 0.5 | "
                  "near miss P > 0.5 | ECE |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for kind in ("prompt", "caption"):
            k = q[kind]
            lines.append(f"| {kind} | {_num(k['auc_random_wrong'])} | {_num(k['auc_near_miss'])} | "
                         f"{_pct(k['accuracy_at_0.5_near_miss'])} | {_pct(k['right_p>0.5'])} | "
                         f"{_pct(k['near_miss_p>0.5'])} | {_num(k['ece_near_miss'])} |")
    lines += ["", "seconds: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items())]
    return "\n".join(lines) + "\n"


# ---- the quick path: made-up RGBA data and tiny models ----------------------------------------------------


TINY_SHAPES = ("disc", "square", "bar", "cross")
TINY_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "gold": (230, 190, 40)}


def _tiny_sprite(shape: str, colour: tuple[int, int, int], style: str, size: int = 32) -> np.ndarray:
    img = np.zeros((size, size, 4), np.uint8)
    yy, xx = np.indices((size, size))
    c, r = size / 2 - 0.5, size * 0.3
    inside = {"disc": np.hypot(yy - c, xx - c) < r, "square": (abs(yy - c) < r) & (abs(xx - c) < r),
              "bar": (abs(yy - c) < r / 3) & (abs(xx - c) < r), "cross": ((abs(yy - c) < r / 3) | (abs(xx - c) < r / 3))
              & (abs(yy - c) < r) & (abs(xx - c) < r)}[shape]
    if style == "twitter":  # an outlined drawing: a dark rim around the shape
        img[inside] = (30, 30, 30, 255)
        core = np.zeros_like(inside)
        core[2:-2, 2:-2] = (inside[2:-2, 2:-2] & inside[:-4, 2:-2] & inside[4:, 2:-2] & inside[2:-2, :-4]
                            & inside[2:-2, 4:])
        inside = core
    img[inside] = (*colour, 255)
    return img


def tiny_dataset(path: Path) -> str:
    """16 made-up concepts x 2 styles (32 px RGBA) in the emoji layout; 3 (concept, style) pairs held out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmgan.io.images import png_bytes

    cols: dict[str, list[Any]] = {k: [] for k in ("image", "caption", "short_prompt", "label", "style", "split")}
    held = {("red_disc", "google"), ("blue_bar", "twitter"), ("gold_cross", "google")}
    for shape in TINY_SHAPES:
        for name, rgb in TINY_COLOURS.items():
            for style in ("google", "twitter"):
                label = f"{name}_{shape}"
                cols["image"].append(png_bytes(_tiny_sprite(shape, rgb, style)))
                cols["caption"].append(f"{name} {shape} emoji, shapes {shape}, {style} style")
                short = f"{name} {shape}" if style == "google" else f"{name} {shape}, {style} style"
                cols["short_prompt"].append(short)
                cols["label"].append(label)
                cols["style"].append(style)
                cols["split"].append("heldout" if (label, style) in held else "train")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return str(path)


def tiny_models(work: Path, data: str, steps: int = 30) -> dict[str, str]:
    """A random-initialised 32 px RGBA GAN of the captioned domain, a tiny concept classifier and two tiny matchers
    (the scorer on the train split, the judge on all rows): enough to run every figure, none of them meaningful."""
    import pyarrow.parquet as pq

    from llmgan.domains.generic import caption_words
    from llmgan.gan.checkpoint import save_checkpoint
    from llmgan.gan.config import GanConfig
    from llmgan.gan.matcher import MatcherConfig, train_matcher
    from llmgan.gan.step import make_train_state

    table = pq.read_table(data)
    train_path = work / "tiny-train.parquet"
    pq.write_table(table.filter(np.array(table.column("split").to_pylist()) == "train"), train_path)
    gan = work / "tiny-gan"
    save_checkpoint(str(gan), make_train_state(GanConfig(image_size=32, g_width=4, d_width=4, channels=4)),
                    training_state=False, extra={"domain": "captioned",
                                                 "caption_words": caption_words(table.column("caption").to_pylist())})
    clf, _ = train_concept_judge(data, str(work / "tiny-classifier"), steps=steps, width=8, check_share=0.25,
                                 log=lambda m: None)
    cfg = MatcherConfig(image_size=16, width=4, dim=16, batch_size=16, pool=16)
    cache = str(work / "cache")  # the made-up data's caption embeddings stay beside it
    train_matcher(str(train_path), str(work / "tiny-scorer"), steps, cfg, seed=0, progress=False, cache_dir=cache)
    train_matcher(data, str(work / "tiny-judge-matcher"), steps, cfg, seed=MATCHER_SEED, progress=False,
                  cache_dir=cache)
    return {"ckpt": str(gan), "classifier": str(work / "tiny-classifier"), "scorer": str(work / "tiny-scorer"),
            "matcher": str(work / "tiny-judge-matcher")}


def quick(out: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The smoke run: made-up data, tiny models, a few images."""
    work = Path(out) / "tiny"
    data = tiny_dataset(work / "tiny-emoji.parquet")
    models = tiny_models(work, data)
    return run(models["ckpt"], data, out, models["scorer"], models["classifier"], models["matcher"],
               n_train_prompts=8, seeds=2, job_train_prompts=4, job_seeds=2, log=log, job_repeats=1)


def bench(quick_mode: bool, work: Path) -> dict[str, Any]:
    """`python -m benchmarks --only assets`: the quick smoke run, or the full run on $LLMGAN_EMOJI_GAN (a checkpoint
    or run folder), $LLMGAN_EMOJI_DATA (default data/emoji64-all.parquet) and $LLMGAN_EMOJI_SCORER (default: the
    GAN folder's matcher.json, else runs/emoji-scorer). Headline: FD over its floor."""
    import os

    if quick_mode:
        report = quick(str(work), log=lambda m: None)
    else:
        ckpt = os.environ.get("LLMGAN_EMOJI_GAN")
        if not ckpt:
            raise RuntimeError("set LLMGAN_EMOJI_GAN to an emoji GAN checkpoint (or run folder)")
        data = os.environ.get("LLMGAN_EMOJI_DATA", str(REPO / "data" / "emoji64-all.parquet"))
        scorer = os.environ.get("LLMGAN_EMOJI_SCORER")
        if not scorer:
            from llmgan.gan.checkpoint import resolve_checkpoint
            from llmgan.io.storage import Storage

            own = Path(resolve_checkpoint(ckpt, Storage())) / "matcher.json"
            scorer = str(own.parent) if own.exists() else str(REPO / "runs" / "emoji-scorer")
        report = run(ckpt, data, str(work), scorer, log=lambda m: print(m, file=sys.stderr, flush=True))
    acc = report["accuracy"]
    figures: dict[str, Any] = {
        "FD/floor": report["fd"]["ratio"], "heldout top-5": acc["heldout"]["top5"], "train top-5": acc["train"]["top5"],
        "heldout top-1": acc["heldout"]["top1"],
        "near copies (pixel)": report["memorisation"]["train"]["pixel"]["near_copy_share"],
        "seed diversity ratio": report["diversity"]["train"]["pixel"]["ratio"],
    }
    for r in report.get("job", []):
        figures[f"job {r['feedback']} top-5 heldout"] = (r.get("heldout") or {}).get("top5")
        figures[f"job {r['feedback']} img/s"] = r["images_per_s"]
    if report.get("scorer"):
        figures["scorer AUC (prompt, near miss)"] = report["scorer"]["heldout_real"]["prompt"]["auc_near_miss"]
    return {**figures, "ratio": report["fd"]["ratio"], "target": "FD/floor <= 2.5; held-out top-5 >= 0.6"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["train-judges"]:
        ap = argparse.ArgumentParser(prog="python -m benchmarks.assets train-judges")
        ap.add_argument("--data", required=True, help="every real emoji (llmgan data emoji --split all)")
        ap.add_argument("--classifier-out", default=str(CONCEPT_JUDGE))
        ap.add_argument("--matcher-out", default=str(MATCHER_JUDGE))
        ap.add_argument("--classifier-steps", type=int, default=3000)
        ap.add_argument("--matcher-steps", type=int, default=2500)
        ap.add_argument("--only", choices=("classifier", "matcher"))
        ap.add_argument("--cache-dir")
        args = ap.parse_args(argv[1:])
        import torch

        torch.set_num_threads(1)
        if args.only in (None, "classifier"):
            _, info = train_concept_judge(args.data, args.classifier_out, steps=args.classifier_steps, log=log)
            print(json.dumps(_jsonable(info)))
        if args.only in (None, "matcher"):
            m = train_judge_matcher(args.data, args.matcher_out, steps=args.matcher_steps, cache_dir=args.cache_dir)
            print(json.dumps(_jsonable(m.info)))
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks.assets", description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", help="GAN checkpoint or run folder (its newest checkpoint)")
    ap.add_argument("--data", help="every real emoji, both splits (llmgan data emoji --split all)")
    ap.add_argument("--scorer", help="the feedback scorer: a folder holding matcher.json")
    ap.add_argument("--classifier", default=str(CONCEPT_JUDGE),
                    help="concept classifier judge; 'none': no judges (stated colour/background and pixel figures)")
    ap.add_argument("--matcher", default=str(MATCHER_JUDGE), help="judge matcher; 'none': the classifier alone")
    ap.add_argument("--out", default="assets-bench")
    ap.add_argument("--train-prompts", type=int, default=800)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--job-train-prompts", type=int, default=100)
    ap.add_argument("--job-seeds", type=int, default=2)
    ap.add_argument("--job-text", default="caption",
                    help="the job's prompts: caption, short_prompt, expand (short prompts + --job-lm), comma-separated")
    ap.add_argument("--job-lm", help="caption LM for --job-text expand")
    ap.add_argument("--job-repeats", type=int, default=2, help="timing runs of each job (medians)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="made-up data and tiny models (a smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        report = quick(args.out, log=log)
    else:
        if not (args.ckpt and args.data):
            ap.error("--ckpt and --data are required (or --quick)")
        classifier, matcher = (None if x == "none" else x for x in (args.classifier, args.matcher))
        report = run(args.ckpt, args.data, args.out, args.scorer, classifier, matcher, args.train_prompts,
                     args.seeds, args.job_train_prompts, args.job_seeds, [t for t in args.job_text.split(",") if t],
                     threads=args.threads, log=log, lm=args.job_lm, job_repeats=args.job_repeats)
    print(table(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
