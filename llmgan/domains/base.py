"""The `Domain` interface (everything specific to a kind of image, asked by the job, training, evaluation and the
distributed layer, which never name a domain themselves), and the defaults of a domain without tables of its own
(`LearnedPartsDomain`, with `KeepWords` as its caption check)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from llmgan.domains.grounding import Grounding

if TYPE_CHECKING:
    from llmgan.text.options import Faithfulness


class Domain(Protocol):
    """A kind of image. Implementations: shapes, digits (built in) and captioned (a user's own images)."""

    name: str
    # the attributes its grounding names, in caption order; () for a domain made only of learned parts
    attributes: tuple[str, ...]
    # attributes whose values fix an image up to jitter (evaluation's reference SSIM/PSNR); () when none do
    reference_attributes: tuple[str, ...]
    # dataset builders by `llmgan data` command name: builder(config, progress) -> a captioned pyarrow Table
    datasets: dict[str, Callable[..., Any]]

    def ground(self, text: str) -> Grounding:
        """Which words of `text` state which value, with confidence, and which words were not understood."""
        ...

    def faithfulness(self) -> Faithfulness:
        """The caption expander's check for this domain: captions keep the prompt's words and contradict none."""
        ...

    def canonical_caption(self, caption: str, prompt: str) -> str | None:
        """The plainest caption the GAN was trained on for the same values (the prompt's winning); None: none."""
        ...

    def scorer(self) -> tuple[str, str] | None:
        """The default consistency scorer that is not the GAN's own matcher: ("classifier", folder) or None."""
        ...

    def judge(self) -> str | None:
        """Folder of the attribute classifier that evaluation uses as its judge, or None."""
        ...

    def fallback_matcher(self) -> str | None:
        """A shipped matcher for this domain's images, used when a GAN folder holds none; or None."""
        ...

    def row_splits(self, labels: dict[str, list[str]]) -> list[str] | None:
        """Each labelled row's split ("train" / "heldout") by the domain's held-out rule; None without one."""
        ...

    def share_of(self, captions: Sequence[str]) -> float:
        """Share of training captions that read as this domain's (decides a new checkpoint's domain)."""
        ...

    def meta(self) -> dict[str, Any]:
        """What a checkpoint's config.json records to rebuild this domain (its name at least)."""
        ...


class KeepWords:
    """Faithfulness for a domain whose captions have no fixed places for values: a caption is faithful when it
    names every value the prompt states (and contradicts none); the LM sees the prompt as typed."""

    def __init__(self, domain: Domain) -> None:
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


class LearnedPartsDomain:
    """Defaults of a domain that has words but no tables of its own to lean on: no canonical caption, no attribute
    classifier or shipped matcher, no held-out rule; captions checked by `KeepWords`. Subclasses give `ground`."""

    name = ""
    attributes: tuple[str, ...] = ()
    reference_attributes: tuple[str, ...] = ()
    datasets: dict[str, Callable[..., Any]] = {}

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

    def meta(self) -> dict[str, Any]:
        return {"domain": self.name}
