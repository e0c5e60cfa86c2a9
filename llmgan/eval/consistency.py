"""Image-prompt consistency scores in [0, 1] for finished images: the attribute-classifier scorer, the
learned-matcher scorer, and `load_scorer`, which picks one for a GAN checkpoint by asking its domain.

The contract (both scorers): the user's prompt is the reference. For the classifier scorer, an attribute the
prompt states must be right; an attribute only the expanded caption states also counts; where prompt and
caption name different values, the prompt wins. The matcher judges the prompt text itself (open vocabulary
through the text embedding), so a domain without an attribute table still gets a score. Words of the prompt
that the domain did not understand are carried in the verdict: an image asked for such a word is never
certified by its score (the job records its consistency as unverified).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from llmgan.domains import Domain, domain_of
from llmgan.errors import StorageError, UserError
from llmgan.io.storage import Storage, join

log = logging.getLogger(__name__)

SPECS = ("auto", "classifier", "matcher", "none")
MATCHER_CONFIG = "matcher.json"


@dataclass(frozen=True)
class Consistency:
    """One image's verdict."""

    score: float  # in [0, 1]: how well the image matches what was understood of the request
    disagree: tuple[str, ...]  # attributes it gets wrong (attribute domains), e.g. ("shape",); () if unknown
    not_understood: tuple[str, ...] = ()  # prompt words the domain did not understand: the score vouches for none

    @property
    def certified(self) -> float | None:
        """The score as a claim about the whole prompt: None when part of the prompt was not understood."""
        return None if self.not_understood else self.score


class ConsistencyScorer(Protocol):
    name: str
    domain: Domain

    def score(self, images: np.ndarray, captions: list[str], prompts: list[str],
              emb: np.ndarray | None = None) -> list[Consistency]: ...


def stated_attributes(domain: Domain, caption: str, prompt: str) -> dict[str, list[str]]:
    """What the image must show: the caption's values, overridden attribute by attribute by the prompt's.

    An attribute with several values (a self-contradicting text) is satisfied by any of them.
    """
    return {**domain.ground(caption or "").values(), **domain.ground(prompt or "").values()}


def _check(images: np.ndarray, captions: list[str], prompts: list[str], emb: np.ndarray | None) -> None:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise UserError(f"images must be a uint8 (N, H, W, 3 or 4) array, got shape {images.shape}")
    n = len(images)
    if len(captions) != n or len(prompts) != n:
        raise UserError(f"need one caption and one prompt per image: {n} images, {len(captions)} captions, "
                        f"{len(prompts)} prompts")
    if emb is not None and len(emb) != n:
        raise UserError(f"need one caption embedding per image: {n} images, {len(emb)} embeddings")


class ClassifierScorer:
    """An attribute domain: score = product over stated attributes of the classifier's P(stated value).

    With an accurate classifier that product is the probability that every stated attribute is right;
    `disagree` names the stated attributes whose most likely class is not a stated value.
    """

    def __init__(self, domain: Domain, classifier: object | None = None) -> None:
        from llmgan.eval.classifier import load_classifier

        self.domain = domain
        self.name = f"{domain.name}-classifier"
        self.classifier = classifier if classifier is not None else load_classifier(domain.judge())

    def score(self, images: np.ndarray, captions: list[str], prompts: list[str],
              emb: np.ndarray | None = None) -> list[Consistency]:
        _check(images, captions, prompts, emb)
        clf = self.classifier
        probs = clf.probabilities(np.asarray(images))
        index = {a: {c: i for i, c in enumerate(clf.classes[a])} for a in clf.attributes}
        out = []
        for i, (caption, prompt) in enumerate(zip(captions, prompts)):
            score, wrong = 1.0, []
            for attr, values in stated_attributes(self.domain, caption, prompt).items():
                if attr not in index:
                    continue
                cols = [index[attr][v] for v in values if v in index[attr]]
                if not cols:
                    continue
                row = probs[attr][i]
                score *= float(row[cols].sum())
                if int(row.argmax()) not in cols:
                    wrong.append(attr)
            out.append(Consistency(float(min(max(score, 0.0), 1.0)), tuple(wrong),
                                   self.domain.ground(prompt or "").not_understood))
        return out


class MatcherScorer:
    """Any captioned domain: the learned matcher's calibrated P(image matches the user's prompt), judged on the
    prompt text itself, with the matcher's calibration for short prompts (the caption, with its caption
    calibration, when there is no prompt). `emb`, when given, holds the caption embeddings: used for the images
    scored against their caption; prompts are embedded with the matcher's own text encoder (cached)."""

    name = "matcher"

    def __init__(self, matcher: Any, domain: Domain, source: str = "") -> None:
        self.matcher, self.domain, self.source = matcher, domain, source
        self._encoder: Any = None

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._encoder is None:
            from llmgan.text.encoder import TextEncoder

            self._encoder = TextEncoder(model=self.matcher.text_encoder)
        return self._encoder.encode(texts)

    def score(self, images: np.ndarray, captions: list[str], prompts: list[str],
              emb: np.ndarray | None = None) -> list[Consistency]:
        _check(images, captions, prompts, emb)
        images = np.asarray(images)
        asked = [i for i, p in enumerate(prompts) if p and p.strip()]
        rest = [i for i in range(len(prompts)) if i not in set(asked)]
        p = np.zeros(len(prompts))
        if asked:
            p[asked] = self.matcher.probability(images[asked], self._encode([prompts[i] for i in asked]),
                                                text="prompt")
        if rest:
            vecs = emb[rest] if emb is not None else self._encode([captions[i] for i in rest])
            p[rest] = self.matcher.probability(images[rest], vecs, text="caption")
        return [Consistency(float(np.clip(s, 0.0, 1.0)), (), self.domain.ground(t).not_understood)
                for s, t in zip(p, prompts)]


def gan_domain(gan_dir: str | None, storage: Storage) -> Domain:
    """The domain of the GAN at `gan_dir` (None: the shipped one), from its config.json."""
    from llmgan.gan.checkpoint import read_meta, resolve_checkpoint
    from llmgan.gan.inference import default_checkpoint_path

    ckpt = resolve_checkpoint(str(gan_dir) if gan_dir is not None else default_checkpoint_path(), storage)
    return domain_of(read_meta(ckpt, storage))


def resolve_scorer(spec: str | None, gan_dir: str | None, storage: Storage | None = None) -> tuple[str, str] | None:
    """Which scorer `spec` means for the GAN at `gan_dir` (None: the shipped GAN), without loading weights:
    ("classifier", its folder) or ("matcher", its folder); None when no scorer fits or spec is "none".

    spec None or "auto": the domain's own scorer when it has one (an attribute classifier: calibrated on real
    images, and it names the wrong attribute); else the matcher in the GAN's folder (matcher.json, which
    `llmgan train` writes by default); else None. "classifier": the domain's classifier. "matcher": the GAN
    folder's matcher, else the domain's shipped one. A folder or s3:// prefix holding matcher.json: that matcher.
    """
    from llmgan.gan.checkpoint import read_meta, resolve_checkpoint
    from llmgan.gan.inference import default_checkpoint_path

    storage = storage or Storage()
    spec = "auto" if spec is None else str(spec).strip()
    if spec == "none":
        return None
    if spec not in ("auto", "matcher", "classifier"):
        try:
            has_matcher = bool(spec) and storage.exists(join(spec, MATCHER_CONFIG))
        except (StorageError, ValueError):
            has_matcher = False
        if not has_matcher:
            raise UserError(f"--consistency {spec!r}: expected {', '.join(SPECS)}, or a folder / s3:// prefix "
                            f"holding {MATCHER_CONFIG}")
        return ("matcher", spec)
    ckpt = resolve_checkpoint(str(gan_dir) if gan_dir is not None else default_checkpoint_path(), storage)
    domain = domain_of(read_meta(ckpt, storage))
    own = domain.scorer()
    if spec == "classifier":
        if own is None:
            raise UserError(f"--consistency classifier: the {domain.name} domain of the GAN at {ckpt} has no "
                            f"attribute classifier; use --consistency matcher")
        return own
    if own is not None and spec == "auto":
        return own
    if storage.exists(join(ckpt, MATCHER_CONFIG)):
        return ("matcher", ckpt)
    fallback = domain.fallback_matcher()
    if spec == "matcher":
        if fallback is None:
            raise UserError(f"--consistency matcher: the GAN at {ckpt} has no {MATCHER_CONFIG}; train one with "
                            f"`llmgan train-matcher --data ... --out {ckpt}`")
        return ("matcher", fallback)
    log.info("no consistency scorer fits the GAN at %s (no matcher, no %s classifier)", ckpt, domain.name)
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
    domain = gan_domain(gan_dir, storage)
    if kind == "classifier":
        from llmgan.eval.classifier import load_classifier

        return ClassifierScorer(domain, load_classifier(source, storage))
    return MatcherScorer(Matcher.load(source, storage, device), domain, source)
