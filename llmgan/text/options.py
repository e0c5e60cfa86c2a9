"""The caption expander's settings (`ExpanderConfig`) and what it asks of a domain (the `Faithfulness` protocol).

Light on purpose (no torch): the CLI reads its defaults from here. The expander itself knows no vocabulary;
whoever builds one passes the domain's check (`Domain.faithfulness()` of the GAN's domain, unless check is "none").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from llmgan.errors import UserError

DEFAULT_INSTRUCTION = (
    "Rewrite the short image prompt below as one detailed caption of a single flat shape on a plain background. "
    "Keep every detail the prompt states; choose plausible values for its colour, size (small or large), "
    "position (center, top left, top right, bottom left, bottom right) and background if they are missing. "
    "Answer with the caption only, on one line.\nPrompt: {prompt}"
)
# Values of ExpanderConfig.check / `--check`: "auto" = the check of the GAN's domain, whatever the LM (the user's
# words are the contract); "none" = no check (every caption `unchecked`).
CHECKS: tuple[str, ...] = ("auto", "none")
# Values of ExpanderConfig.engine / `--lm-engine`: "fast" = the static-cache decoding loop for GPT-2-family LMs
# (the same captions as the reference, bit for bit; other LMs fall back to the reference), "reference" = the
# Hugging Face forward step by step, for any causal LM.
ENGINES: tuple[str, ...] = ("fast", "reference")
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
MAX_TEMPERATURE = 5.0  # beyond this the LM's token distribution is near uniform: captions stop being sentences


def check_sampling(temperature: object, top_p: object) -> None:
    """The caption LM's sampling settings, one rule for every command that takes them (`expand`, `generate`):
    temperature in [0, MAX_TEMPERATURE] with 0 = greedy, top_p in (0, 1]; a UserError naming the option."""
    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not (number(temperature) and 0.0 <= temperature <= MAX_TEMPERATURE):  # type: ignore[operator]
        raise UserError(f"--temperature must be in [0, {MAX_TEMPERATURE:g}] (0 = greedy), got {temperature!r}")
    if not (number(top_p) and 0.0 < top_p <= 1.0):  # type: ignore[operator]
        raise UserError(f"--top-p must be in (0, 1], got {top_p!r}")


@dataclass(frozen=True)
class ExpanderConfig:
    """How captions are sampled; `lm=None` means the caption LM shipped with the package."""

    lm: str | None = None
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 48
    max_chars: int = 300
    chat_template: bool = False
    instruction: str = DEFAULT_INSTRUCTION
    trust_remote_code: bool = False
    batch_size: int = 64
    max_resamples: int = 3
    cache_size: int = 100_000
    device: str = "cpu"
    # the domain check the builder passes: "auto" = the GAN domain's check whatever the LM, "none" = no check
    check: str = "auto"
    # keep the prompt's own attribute words verbatim in every caption (needs a check; a no-op without one)
    keep_words: bool = True
    # the sampling loop (ENGINES): it never changes a caption, only how fast they come
    engine: str = "fast"

    def __post_init__(self) -> None:
        if self.lm is not None and (not isinstance(self.lm, str) or not self.lm.strip()):
            raise UserError("--lm must be a model directory, an s3:// URL or a hub id (or omitted for the shipped LM)")
        check_sampling(self.temperature, self.top_p)
        if not 1 <= self.max_new_tokens <= 4096:
            raise UserError(f"--max-new-tokens must be in [1, 4096], got {self.max_new_tokens}")
        if self.max_chars < 1:
            raise UserError(f"--max-chars must be >= 1, got {self.max_chars}")
        if "{prompt}" not in self.instruction:
            raise UserError("--instruction must contain the placeholder {prompt}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 0 <= self.max_resamples <= 100:
            raise UserError(f"--max-resamples must be in [0, 100], got {self.max_resamples}")
        if self.cache_size < 0:
            raise UserError(f"--cache-size must be >= 0, got {self.cache_size}")
        if not _DEVICE.match(self.device):
            raise UserError(f"--device must be cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.check not in CHECKS:
            raise UserError(f"--check must be one of {', '.join(CHECKS)}, got {self.check!r}")
        if self.engine not in ENGINES:
            raise UserError(f"--lm-engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if not isinstance(self.keep_words, bool):
            raise UserError(f"--keep-words must be true or false, got {self.keep_words!r}")


class Faithfulness(Protocol):
    """A domain's rules for a faithful expansion. The shapes domain's is the shipped one.

    Keep-words uses all four methods: the LM expands `condition(prompt)` (the prompt in words the LM knows
    best), `pin` writes the user's own words back into each sampled caption, and a caption is accepted when
    `check` passes and every `stated_words` phrase appears in it verbatim.
    """

    def not_understood(self, prompt: str) -> list[str]:
        """The prompt's words the domain did not understand: its captions are never reported faithful."""
        ...

    def stated_words(self, prompt: str) -> list[str]:
        """The prompt's attribute phrases as typed ("crimson", "star"); [] = nothing to check (unchecked)."""
        ...

    def check(self, prompt: str, caption: str) -> bool:
        """True when `caption` names every attribute value the prompt states and contradicts none."""
        ...

    def condition(self, prompt: str) -> str:
        """The text the LM is asked to expand for `prompt` when words are kept (e.g. synonyms made canonical)."""
        ...

    def pin(self, prompt: str, caption: str) -> str:
        """`caption` with the prompt's stated phrases in place of the caption's words for those attributes
        (inserted where the caption names none); the caption unchanged where the domain cannot place one."""
        ...


def keeps_words(words: list[str], caption: str) -> bool:
    """Every stated phrase appears in the caption exactly as the user typed it, as whole words ("red" is not
    kept by "colored")."""
    return all(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", caption) for w in words)
