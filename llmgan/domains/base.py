"""The `Domain` interface: everything specific to a kind of image, asked by the job, training, evaluation and the
distributed layer, which never name a domain themselves."""

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

    def row_splits(self, labels: dict[str, list[str]]) -> list[str] | None:
        """Each labelled row's split ("train" / "heldout") by the domain's held-out rule; None without one."""
        ...

    def share_of(self, captions: Sequence[str]) -> float:
        """Share of training captions that read as this domain's (decides a new checkpoint's domain)."""
        ...

    def meta(self) -> dict[str, Any]:
        """What a checkpoint's config.json records to rebuild this domain (its name at least)."""
        ...
