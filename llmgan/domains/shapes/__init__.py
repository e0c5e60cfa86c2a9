"""The built-in shapes domain: one coloured shape on a plain background, five attributes (`vocab`), the renderer
that builds its dataset (`render`), and the caption rules the expander and the feedback use (`captions`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmgan.domains.grounding import Cutoffs, Grounder, Grounding
from llmgan.domains.shapes import vocab

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CLASSIFIER = ASSETS / "eval" / "shapes32-classifier"
MATCHER = ASSETS / "eval" / "shapes32-matcher"
# every image of this domain is one flat, filled, plain shape: these words are true of all of them
CONTEXT = ("flat", "filled", "solid", "plain", "single", "simple", "vector", "one")
# calibrated on the tuning split of benchmarks/prompt_sets/openvocab-v1 (python -m benchmarks.grounding)
CUTOFFS = Cutoffs(colour_distance=40.0, colour_clarity=0.25, meaning_similarity=0.6, meaning_margin=0.1)


@functools.lru_cache(maxsize=1)
def grounder() -> Grounder:
    return Grounder(words=vocab.SYNONYMS, palettes={"color": vocab.COLORS, "background": vocab.BACKGROUNDS},
                    background="background", background_nouns=vocab.BACKGROUND_NOUNS,
                    by_meaning=("shape", "size", "position"), context=CONTEXT, cutoffs=CUTOFFS)


def parse_attributes(text: str) -> dict[str, list[str]]:
    """Every value a text names, per attribute (several values: the text contradicts itself)."""
    return grounder().ground(text).values()


def _shapes(cfg: Any, progress: Callable[[int], None] | None = None) -> Any:
    from llmgan.domains.shapes.render import generate_shapes

    return generate_shapes(cfg.n, size=cfg.size, seed=cfg.seed, split=cfg.split, progress=progress)


def _prompt_pairs(cfg: Any, progress: Callable[[int], None] | None = None) -> Any:
    from llmgan.domains.shapes.render import generate_prompt_pairs

    return generate_prompt_pairs(cfg.n, seed=cfg.seed, detail=cfg.detail, split=cfg.split)


class ShapesDomain:
    name = "shapes"
    attributes = vocab.ATTRIBUTES
    # attributes whose values fix an image up to jitter: evaluation pairs each generated image with its real one
    reference_attributes: tuple[str, ...] = vocab.ATTRIBUTES
    datasets = {"shapes": _shapes, "prompt-pairs": _prompt_pairs}

    def ground(self, text: str) -> Grounding:
        return grounder().ground(text)

    def faithfulness(self) -> Any:
        from llmgan.domains.shapes.captions import ShapesFaithfulness

        return ShapesFaithfulness()

    def canonical_caption(self, caption: str, prompt: str) -> str | None:
        from llmgan.domains.shapes.captions import canonical_caption

        return canonical_caption(caption, prompt)

    def scorer(self) -> tuple[str, str] | None:
        # calibrated on real images and it names the wrong attribute: the better judge for shapes
        return ("classifier", str(CLASSIFIER))

    def judge(self) -> str | None:
        return str(CLASSIFIER)

    def fallback_matcher(self) -> str | None:
        """A matcher for this domain's images when a GAN folder holds none."""
        return str(MATCHER)

    def row_splits(self, labels: dict[str, list[str]]) -> list[str] | None:
        if "shape" not in labels or "color" not in labels:
            return None
        from llmgan.domains.shapes.render import is_heldout

        return ["heldout" if is_heldout({"shape": s, "color": c}) else "train"
                for s, c in zip(labels["shape"], labels["color"])]

    def share_of(self, captions: Sequence[str]) -> float:
        if not captions:
            return 0.0
        return sum(1 for c in captions if {"shape", "color"} <= parse_attributes(c).keys()) / len(captions)

    def meta(self) -> dict[str, Any]:
        return {"domain": self.name}
