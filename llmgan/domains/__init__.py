"""Domains: everything specific to a kind of image behind one interface (`base.Domain`), and how a checkpoint or a
set of captions picks one. Nothing outside this package names a domain or imports a domain's own modules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmgan.domains.base import Domain
from llmgan.domains.grounding import Grounded, Grounding
from llmgan.errors import UserError

BUILT_IN = ("shapes", "digits")
NAMES = (*BUILT_IN, "captioned")
DETECT_SHARE = 0.9  # a training set is a built-in domain's when this share of its captions reads as that domain's
# checkpoints written before domains existed recorded what their captions looked like under this key
_LEGACY = {"shapes": "shapes", "open": "captioned"}

__all__ = ["Domain", "Grounded", "Grounding", "get_domain", "domain_of", "detect_domain", "NAMES"]


def get_domain(name: str, meta: Mapping[str, Any] | None = None) -> Domain:
    """The domain called `name`; `meta` (a checkpoint's config.json) rebuilds a captioned domain's words."""
    if name == "shapes":
        from llmgan.domains.shapes import ShapesDomain

        return ShapesDomain()
    if name == "digits":
        from llmgan.domains.digits import DigitsDomain

        return DigitsDomain()
    if name == "captioned":
        from llmgan.domains.generic import CaptionedDomain

        return CaptionedDomain((meta or {}).get("caption_words") or ())
    raise UserError(f"unknown domain {name!r}; expected one of {', '.join(NAMES)}")


def domain_of(meta: Mapping[str, Any]) -> Domain:
    """The domain a checkpoint's config.json records (older checkpoints: from their caption vocabulary)."""
    name = meta.get("domain") or _LEGACY.get(str(meta.get("caption_vocabulary")), "captioned")
    return get_domain(str(name), meta)


def detect_domain(captions: Sequence[str], sample: int = 200) -> Domain:
    """The domain of a training set: a built-in one when its captions read as that domain's, else captioned with the
    captions' own words."""
    step = max(1, len(captions) // sample)
    picked = list(captions[::step])[:sample]
    for name in BUILT_IN:
        domain = get_domain(name)
        if picked and domain.share_of(picked) >= DETECT_SHARE:
            return domain
    from llmgan.domains.generic import CaptionedDomain, caption_words

    return CaptionedDomain(caption_words(captions))
