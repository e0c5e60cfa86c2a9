"""The built-in digits domain: scikit-learn's handwritten digits (`dataset`), named by number, stroke thickness
and slant."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from llmgan.domains.base import LearnedPartsDomain
from llmgan.domains.grounding import Grounder, Grounding

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "label": {str(d): (str(d), w, f"digit {d}", f"number {d}") for d, w in enumerate(NUMBER_WORDS)},
    "thickness": {"thin": ("thin", "thin strokes"), "regular": ("medium strokes", "regular"),
                  "thick": ("thick", "bold", "thick, bold strokes")},
    "slant": {"leaning left": ("leaning left", "slanted to the left"), "upright": ("upright",),
              "leaning right": ("leaning right", "slanted to the right")},
}


@functools.lru_cache(maxsize=1)
def grounder() -> Grounder:
    return Grounder(words=WORDS, by_meaning=("thickness", "slant"))


def _digits(cfg: Any, progress: Callable[[int], None] | None = None) -> Any:
    from llmgan.domains.digits.dataset import generate_digits

    return generate_digits(size=cfg.size, seed=cfg.seed, limit=cfg.limit, progress=progress)


class DigitsDomain(LearnedPartsDomain):
    name = "digits"
    attributes = ("label", "thickness", "slant")
    datasets = {"digits": _digits}

    def ground(self, text: str) -> Grounding:
        return grounder().ground(text)

    def share_of(self, captions: Sequence[str]) -> float:
        if not captions:
            return 0.0
        return sum(1 for c in captions if "label" in grounder().ground(c).values()) / len(captions)
