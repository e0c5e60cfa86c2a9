"""Image-prompt consistency scores in [0, 1] for finished images: the shapes attribute-classifier scorer, the
learned-matcher scorer, and `load_scorer`, which picks one for a GAN checkpoint.

The contract (both scorers): an attribute the user's prompt states must be right; an attribute only the
expanded caption states also counts; where prompt and caption name different values for one attribute, the
prompt wins (the caption LM got it wrong, the image should follow the user). For the classifier scorer, a text
that states no shapes attribute scores 1.0: there is nothing to contradict, so nothing to redraw. The matcher
judges the whole (repaired) caption, so it also scores captions outside the shapes vocabulary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from llmgan.domains.shapes.vocab import SYNONYMS, find_mentions, parse_attributes
from llmgan.errors import StorageError, UserError
from llmgan.io.storage import Storage, is_s3, join

log = logging.getLogger(__name__)

SPECS = ("auto", "classifier", "matcher", "none")
MATCHER_CONFIG = "matcher.json"


@dataclass(frozen=True)
class Consistency:
    """One image's verdict."""

    score: float  # in [0, 1]: how well the image matches what was asked
    disagree: tuple[str, ...]  # attributes it gets wrong (built-in domains), e.g. ("shape",); () if unknown


class ConsistencyScorer(Protocol):
    name: str

    def score(self, images: np.ndarray, captions: list[str], prompts: list[str],
              emb: np.ndarray | None = None) -> list[Consistency]: ...


def stated_attributes(caption: str, prompt: str) -> dict[str, list[str]]:
    """What the image must show: the caption's shapes attributes, overridden attribute by attribute by the prompt's.

    An attribute with several values (a self-contradicting text) is satisfied by any of them.
    """
    return {**parse_attributes(caption or ""), **parse_attributes(prompt or "")}


def _check(images: np.ndarray, captions: list[str], prompts: list[str], emb: np.ndarray | None) -> None:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"images must be a uint8 (N, H, W, 3) array, got shape {images.shape}")
    n = len(images)
    if len(captions) != n or len(prompts) != n:
        raise UserError(f"need one caption and one prompt per image: {n} images, {len(captions)} captions, "
                        f"{len(prompts)} prompts")
    if emb is not None and len(emb) != n:
        raise UserError(f"need one caption embedding per image: {n} images, {len(emb)} embeddings")


class ClassifierScorer:
    """Built-in shapes domain: score = product over stated attributes of the classifier's P(stated value).

    With an accurate classifier that product is the probability that every stated attribute is right;
    `disagree` names the stated attributes whose most likely class is not a stated value.
    """

    name = "shapes-classifier"

    def __init__(self, classifier: object | None = None) -> None:
        from llmgan.eval.classifier import load_classifier

        self.classifier = classifier if classifier is not None else load_classifier(None)

    def score(self, images: np.ndarray, captions: list[str], prompts: list[str],
              emb: np.ndarray | None = None) -> list[Consistency]:
        _check(images, captions, prompts, emb)
        clf = self.classifier
        probs = clf.probabilities(np.asarray(images))
        index = {a: {c: i for i, c in enumerate(clf.classes[a])} for a in clf.attributes}
        out = []
        for i, (caption, prompt) in enumerate(zip(captions, prompts)):
            score, wrong = 1.0, []
            for attr, values in stated_attributes(caption, prompt).items():
                if attr not in index:
                    continue
                cols = [index[attr][v] for v in values if v in index[attr]]
                if not cols:
                    continue
                row = probs[attr][i]
                score *= float(row[cols].sum())
                if int(row.argmax()) not in cols:
                    wrong.append(attr)
            out.append(Consistency(float(min(max(score, 0.0), 1.0)), tuple(wrong)))
        return out


def reconcile(caption: str, prompt: str) -> str:
    """The caption with every shapes-vocabulary value that contradicts the prompt replaced by the prompt's value
    ("a blue star on a navy background" + "red star" -> "a red star on a navy background").

    The matcher was trained on full captions; a short prompt is far from them in embedding space (the shipped
    matcher scored real images below 0.02 against their own correct two-word prompts), so the prompt wins by
    repairing the caption rather than by scoring the prompt.
    """
    asked = parse_attributes(prompt or "")
    wrong = [m for m in find_mentions(caption or "") if m.attr in asked and m.value not in asked[m.attr]]
    for m in reversed(wrong):  # right to left: earlier spans stay valid
        word = SYNONYMS[m.attr][asked[m.attr][0]][0]
        caption = caption[:m.start] + word + caption[m.start + len(m.word):]
    return caption


class MatcherScorer:
    """Any captioned domain: the learned matcher's calibrated P(image matches text).

    Scores the caption; where the shapes vocabulary shows it contradicting the prompt, scores the caption with
    the prompt's values put in (`reconcile`: the prompt wins). Attributes the prompt states and the caption
    leaves out are not checked by the matcher. `emb`, when given, must come from the matcher's text encoder.
    """

    name = "matcher"

    def __init__(self, matcher: object, source: str = "") -> None:
        self.matcher = matcher
        self.source = source
        self._encoder: object | None = None

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._encoder is None:
            from llmgan.text.encoder import TextEncoder

            self._encoder = TextEncoder(model=self.matcher.text_encoder)
        return self._encoder.encode(texts)

    def score(self, images: np.ndarray, captions: list[str], prompts: list[str],
              emb: np.ndarray | None = None) -> list[Consistency]:
        _check(images, captions, prompts, emb)
        texts = [reconcile(c, p) for c, p in zip(captions, prompts)]
        changed = [i for i, (t, c) in enumerate(zip(texts, captions)) if t != c]
        vecs = self._encode(texts) if emb is None else np.array(emb, np.float32, copy=True)
        if emb is not None and changed:
            vecs[changed] = self._encode([texts[i] for i in changed])
        p = self.matcher.probability(np.asarray(images), vecs)
        return [Consistency(float(np.clip(s, 0.0, 1.0)), ()) for s in p]


def shipped_matcher_path() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent / "assets" / "eval" / "shapes32-matcher")


def trained_on_shapes(meta: dict, ckpt: str, storage: Storage) -> bool:
    """Whether a GAN checkpoint learned the shapes captions: its config says so, its training data's captions
    parse as shapes, or it is the shipped GAN (trained on shapes)."""
    from pathlib import Path

    from llmgan.gan.inference import default_checkpoint_path

    if meta.get("caption_vocabulary") is not None:
        return meta.get("caption_vocabulary") == "shapes"
    dataset = meta.get("dataset")
    if dataset:
        try:
            captions = _dataset_captions(str(dataset), storage)
        except (OSError, StorageError, UserError, ValueError, KeyError):
            captions = []
        if captions:
            hits = sum(1 for c in captions if {"shape", "color"} <= parse_attributes(c).keys())
            return hits >= 0.9 * len(captions)
    if is_s3(ckpt):
        return False
    return Path(ckpt).resolve() == Path(default_checkpoint_path()).resolve()


def is_shapes_gan(gan_dir: str | None, storage: Storage) -> bool:
    """Whether the GAN at `gan_dir` (None: the shipped one) learned the shapes captions (see trained_on_shapes)."""
    from llmgan.gan.checkpoint import read_meta, resolve_checkpoint
    from llmgan.gan.inference import default_checkpoint_path

    ckpt = resolve_checkpoint(str(gan_dir) if gan_dir is not None else default_checkpoint_path(), storage)
    return trained_on_shapes(read_meta(ckpt, storage), ckpt, storage)


def _dataset_captions(url: str, storage: Storage, limit: int = 200) -> list[str]:
    """Up to `limit` captions of a Parquet training file, reading only its caption column."""
    import io

    import pyarrow.parquet as pq

    if not url.lower().endswith(".parquet") or not storage.exists(url):
        return []
    table = pq.read_table(io.BytesIO(storage.read_bytes(url)), columns=["caption"])
    return [c for c in table.column("caption").to_pylist()[:limit] if isinstance(c, str)]


def resolve_scorer(spec: str | None, gan_dir: str | None, storage: Storage | None = None) -> tuple[str, str] | None:
    """Which scorer `spec` means for the GAN at `gan_dir` (None: the shipped GAN), without loading weights:
    ("classifier", its folder) or ("matcher", its folder); None when no scorer fits or spec is "none".

    spec None or "auto": the shapes classifier when the GAN was trained on shapes captions (calibrated, and it
    names the wrong attribute); else a matcher in the GAN's checkpoint folder (matcher.json, which `llmgan train`
    writes by default); else None (no scorer fits). "classifier": the shipped shapes classifier. "matcher": the
    GAN folder's matcher, else the shipped shapes matcher for a shapes GAN. A folder or s3:// prefix holding matcher.json: that matcher. "none": None.
    """
    from llmgan.eval.classifier import SHIPPED_SHAPES
    from llmgan.gan.checkpoint import read_meta, resolve_checkpoint
    from llmgan.gan.inference import default_checkpoint_path

    storage = storage or Storage()
    spec = "auto" if spec is None else str(spec).strip()
    if spec == "none":
        return None
    if spec == "classifier":
        return ("classifier", str(SHIPPED_SHAPES))
    if spec not in ("auto", "matcher"):
        try:
            has_matcher = bool(spec) and storage.exists(join(spec, MATCHER_CONFIG))
        except (StorageError, ValueError):
            has_matcher = False
        if not has_matcher:
            raise UserError(f"--consistency {spec!r}: expected {', '.join(SPECS)}, or a folder / s3:// prefix "
                            f"holding {MATCHER_CONFIG}")
        return ("matcher", spec)
    ckpt = resolve_checkpoint(str(gan_dir) if gan_dir is not None else default_checkpoint_path(), storage)
    shapes = trained_on_shapes(read_meta(ckpt, storage), ckpt, storage)
    if shapes and spec == "auto":  # calibrated on real images and names the wrong attribute: the better judge
        return ("classifier", str(SHIPPED_SHAPES))
    if storage.exists(join(ckpt, MATCHER_CONFIG)):
        return ("matcher", ckpt)
    if spec == "matcher":
        if not shapes:
            raise UserError(f"--consistency matcher: the GAN at {ckpt} has no {MATCHER_CONFIG}; train one with "
                            f"`llmgan train-matcher --data ... --out {ckpt}`")
        return ("matcher", shipped_matcher_path())
    log.info("no consistency scorer fits the GAN at %s (no matcher, not a shapes GAN)", ckpt)
    return None


def load_scorer(spec: str | None, gan_dir: str | None, storage: Storage | None = None,
                device: str = "cpu") -> ConsistencyScorer | None:
    """The consistency scorer `spec` means for images of the GAN at `gan_dir` (see resolve_scorer)."""
    from llmgan.gan.matcher import Matcher

    storage = storage or Storage()
    found = resolve_scorer(spec, gan_dir, storage)
    if found is None:
        return None
    kind, source = found
    if kind == "classifier":
        return ClassifierScorer()
    return MatcherScorer(Matcher.load(source, storage, device), source)
