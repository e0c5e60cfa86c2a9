"""The captioned-images domain (a user's own data), made only of learned parts: its words are the words of its
training captions, a prompt word is understood when it is one of them (a plural or a one-letter typo of one),
and consistency comes from the matcher trained beside the GAN, which judges the prompt text itself."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from llmgan.domains.base import LearnedPartsDomain
from llmgan.domains.grounding import Grounder, Grounding, stop_words

MAX_WORDS = 2000  # caption words a checkpoint records (the most frequent)
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")


def caption_words(captions: Sequence[str], limit: int = MAX_WORDS) -> list[str]:
    """The most frequent content words of a set of captions (what a checkpoint of this domain records)."""
    stop = stop_words()
    counts = Counter(w for c in captions for w in _WORD.findall(str(c).lower()) if w not in stop and len(w) > 1)
    return [w for w, _ in counts.most_common(limit)]


class CaptionedDomain(LearnedPartsDomain):
    """A user's captioned images. `words` are the training captions' words (config.json `caption_words`)."""

    name = "captioned"

    def __init__(self, words: Sequence[str] = ()) -> None:
        self.words = list(words)
        # each caption word is its own attribute: a prompt's words are all "stated", none excludes another
        self._grounder = Grounder(words={w: {w: (w,)} for w in self.words})

    def ground(self, text: str) -> Grounding:
        return self._grounder.ground(text)

    def share_of(self, captions: Sequence[str]) -> float:
        return 1.0

    def meta(self) -> dict[str, Any]:
        return {"domain": self.name, "caption_words": self.words}
