"""The captioned-images domain (a user's own data), made only of learned parts: its words are the words of its
training captions, a prompt word is understood when it is one of them (or a typo of one, or near one by the
sentence encoder), and consistency comes from the matcher trained beside the GAN. Also `KeepWords`, the caption
check of any domain that cannot place words inside a caption: every stated value must survive in the caption."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from llmgan.domains.grounding import Cutoffs, Grounder, Grounding, stop_words

MAX_WORDS = 2000  # caption words a checkpoint records (the most frequent)
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")


def caption_words(captions: Sequence[str], limit: int = MAX_WORDS) -> list[str]:
    """The most frequent content words of a set of captions (what a checkpoint of this domain records)."""
    stop = stop_words()
    counts = Counter(w for c in captions for w in _WORD.findall(str(c).lower()) if w not in stop and len(w) > 1)
    return [w for w, _ in counts.most_common(limit)]


class KeepWords:
    """Faithfulness for a domain whose captions have no fixed places for values: a caption is faithful when it
    names every value the prompt states (and contradicts none); the LM sees the prompt as typed."""

    def __init__(self, domain: Any) -> None:
        self.domain = domain

    def stated_words(self, prompt: str) -> list[str]:
        return [" ".join(g.word.split()) for g in self.domain.ground(prompt).stated().values() if g.how == "vocabulary"]

    def not_understood(self, prompt: str) -> list[str]:
        return list(self.domain.ground(prompt).not_understood)

    def check(self, prompt: str, caption: str) -> bool:
        got = self.domain.ground(caption).values()
        return all(got.get(attr) == [g.value] for attr, g in self.domain.ground(prompt).stated().items())

    def condition(self, prompt: str) -> str:
        return prompt

    def pin(self, prompt: str, caption: str) -> str:
        return caption


class CaptionedDomain:
    """A user's captioned images. `words` are the training captions' words (config.json `caption_words`)."""

    name = "captioned"
    attributes: tuple[str, ...] = ()
    # attributes whose values fix an image up to jitter: evaluation pairs each generated image with its real one
    reference_attributes: tuple[str, ...] = ()
    datasets: dict[str, Any] = {}

    def __init__(self, words: Sequence[str] = ()) -> None:
        self.words = list(words)
        # each caption word is its own attribute: a prompt's words are all "stated", none excludes another
        self._grounder = Grounder(words={w: {w: (w,)} for w in self.words}, by_meaning=(),
                                  cutoffs=Cutoffs())

    def ground(self, text: str) -> Grounding:
        return self._grounder.ground(text)

    def faithfulness(self) -> KeepWords:
        return KeepWords(self)

    def canonical_caption(self, caption: str, prompt: str) -> str | None:
        return None

    def scorer(self) -> tuple[str, str] | None:
        return None

    def judge(self) -> str | None:
        return None

    def fallback_matcher(self) -> str | None:
        return None

    def row_splits(self, labels: dict[str, list[str]]) -> list[str] | None:
        return None

    def share_of(self, captions: Sequence[str]) -> float:
        return 1.0

    def meta(self) -> dict[str, Any]:
        return {"domain": self.name, "caption_words": self.words}
