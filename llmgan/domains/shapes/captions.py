"""The shapes vocabulary as the caption expander's faithfulness check: stated words, the corpus form of a prompt
for the LM, and pinning the user's own words into a caption (a `llmgan.text.faithfulness.Faithfulness`)."""

from __future__ import annotations

import functools
import re

from llmgan.domains.shapes.vocab import SYNONYMS, Mention, caption_phrase, find_mentions, is_faithful, parse_attributes
from llmgan.errors import UserError

# Words a prompt may hold besides attribute words and still be rewritten in the caption corpus's prompt form.
_FILLER = frozenset("a an the in at on of with and corner image picture shape object".split())
_ARTICLE_BEFORE = re.compile(r"(?<![\w-])(an?)(\s+)$", re.IGNORECASE)
_GENERIC_NOUN = re.compile(r"(?<![\w-])(shape|object)(?![\w-])", re.IGNORECASE)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"  # the corpus's rule (llmgan.domains.shapes.render._article)


def _phrase(prompt: str, m: Mention) -> str:
    return " ".join(prompt[m.start:m.end].split())


def _caption_form(prompt: str, m: Mention) -> str:
    """The user's phrase as a caption writes it: a word the GAN never saw gets its canonical word after it."""
    phrase, word = _phrase(prompt, m), " ".join(m.word.split())
    return caption_phrase(m.attr, word) + phrase[len(word):]


def _canonical(m: Mention) -> str:
    word = SYNONYMS[m.attr][m.value][0]
    return f"{word} background" if m.attr == "background" else word


def _splice(text: str, start: int, end: int, new: str) -> str:
    """text[start:end] -> new, with an article right before it made to agree ("an emerald" -> "a green")."""
    head = text[:start]
    article = _ARTICLE_BEFORE.search(head, max(len(head) - 8, 0))  # only the end can hold it (pos: linear scans)
    if article is not None and new[:1].isalpha():
        want = _article(new)
        if article.group(1)[0].isupper():
            want = want.capitalize()
        head = head[:article.start()] + want + article.group(2)
    return head + new + text[end:]


@functools.lru_cache(maxsize=4096)
def _stated(prompt: str) -> tuple[Mention, ...]:
    """The first mention of each attribute the prompt names with exactly one value (prompts repeat: cached)."""
    mentions = find_mentions(prompt)
    values: dict[str, set[str]] = {}
    for m in mentions:
        values.setdefault(m.attr, set()).add(m.value)
    first: dict[str, Mention] = {}
    for m in mentions:
        if len(values[m.attr]) == 1:
            first.setdefault(m.attr, m)
    return tuple(first.values())


class ShapesFaithfulness:
    """The built-in shapes domain: five attributes, their synonyms, and where the caption corpus puts them."""

    name = "shapes"

    def stated(self, prompt: str) -> dict[str, Mention]:
        """attribute -> its first mention, for the attributes the prompt names with exactly one value."""
        return {m.attr: m for m in _stated(prompt)}

    def stated_words(self, prompt: str) -> list[str]:
        """The value words as typed, e.g. ["small", "crimson", "star", "gray", "background"] (a background's
        noun is a word of its own, so "silver background" -> "silver gray background" keeps both)."""
        words = []
        for m in self.stated(prompt).values():
            phrase, word = _phrase(prompt, m), " ".join(m.word.split())
            words += [word, phrase[len(word):].strip()] if m.attr == "background" else [phrase]
        return words

    def check(self, prompt: str, caption: str) -> bool:
        return is_faithful(prompt, caption)

    def condition(self, prompt: str) -> str:
        """The prompt as the caption corpus writes prompts ("small green square on gray background"), when it
        holds only attribute and filler words; otherwise the same words with each synonym made canonical.

        The shipped LM saw few synonyms and no leading article in its prompts: "a small green square" gave
        0 of 8 faithful drafts before, "crimson star" often came back "scarlet star".
        """
        mentions = find_mentions(prompt)
        stated = self.stated(prompt)
        rest = prompt
        for m in mentions:
            rest = rest[:m.start] + " " * (m.end - m.start) + rest[m.end:]
        leftover = re.findall(r"[^\W\d_]+|\d+", rest.lower())
        if mentions and len(stated) == len({m.attr for m in mentions}) and set(leftover) <= _FILLER:
            words = {attr: _canonical(m) for attr, m in stated.items()}
            text = " ".join(w for w in (words.get("size"), words.get("color"), words.get("shape", "shape")) if w)
            if "position" in words:
                text += f" in the {words['position']}"
            if "background" in words:
                text += f" on {words['background']}"
            return text
        for m in reversed(mentions):
            prompt = prompt[:m.start] + _canonical(m) + prompt[m.end:]
        return " ".join(prompt.split())

    def pin(self, prompt: str, caption: str) -> str:
        """Every mention of a stated attribute becomes the user's phrase (a synonym and a wrong value alike:
        attributes are independent here, so the rest of the caption stays true); a stated attribute the caption
        leaves out is inserted where the corpus puts it: the shape in place of "shape"/"object", colour and size
        before the shape noun, position and background right after it. Without a noun nothing is inserted."""
        stated = {attr: _caption_form(prompt, m) for attr, m in self.stated(prompt).items()}
        if not stated:
            return caption
        text = caption
        mentions = find_mentions(text)
        for m in reversed(mentions):
            if m.attr in stated and text[m.start:m.end] != stated[m.attr]:
                text = _splice(text, m.start, m.end, stated[m.attr])
        missing = [attr for attr in stated if all(m.attr != attr for m in mentions)]  # replacing kept the attrs
        if "shape" in missing:
            generic = _GENERIC_NOUN.search(text)  # "a small red shape" names no shape: it takes the user's
            if generic is not None:
                text = _splice(text, generic.start(), generic.end(), stated["shape"])
        for attr in ("color", "size", "position", "background"):
            if attr in missing:
                text = self._insert(text, attr, stated[attr])
        return text

    @staticmethod
    def _insert(text: str, attr: str, phrase: str) -> str:
        mentions = find_mentions(text)
        shape = next((m for m in mentions if m.attr == "shape"), None)
        if shape is None:
            generic = _GENERIC_NOUN.search(text)
            if generic is None:
                return text
            shape = Mention("shape", "", generic.start(), generic.end(), generic.group(1))
        if attr == "color":
            return _splice(text, shape.start, shape.start, phrase + " ")
        if attr == "size":
            # before a colour that sits right before the noun ("a small red star"), else before the noun
            color = next((m for m in mentions if m.attr == "color" and m.end <= shape.start
                          and not text[m.end:shape.start].strip()), None)
            at = color.start if color is not None else shape.start
            return _splice(text, at, at, phrase + " ")
        if attr == "position":
            return text[:shape.end] + f" in the {phrase}" + text[shape.end:]
        return text[:shape.end] + f" on {_article(phrase)} {phrase}" + text[shape.end:]


def shapes_faithfulness() -> ShapesFaithfulness:
    """The check to pass to `CaptionExpander` with the shipped caption LM (or any LM trained on shapes captions)."""
    return ShapesFaithfulness()


def faithfulness(name: str | None) -> ShapesFaithfulness | None:
    """The check named by `ExpanderConfig.resolved_check` ("shapes" or None for no domain check)."""
    if name is None or name == "none":
        return None
    if name == "shapes":
        return ShapesFaithfulness()
    raise UserError(f"--check must be one of auto, shapes, none, got {name!r}")


def canonical_caption(caption: str, prompt: str) -> str | None:
    """The attributes of `caption`, with the prompt's winning where they disagree, in the caption corpus's plainest
    form ("a large red star in the top left on a navy background"); None when it names no shape or colour.

    The generator draws this form more faithfully than the LM's varied wording (held-out synonym prompts: 96 %
    of first draws right against 88 %), so consistency feedback redraws from it.
    """
    stated = {**parse_attributes(caption or ""), **parse_attributes(prompt or "")}
    if "shape" not in stated and "color" not in stated:
        return None
    v = {attr: SYNONYMS[attr][values[0]][0] for attr, values in stated.items()}
    head = " ".join(v[a] for a in ("size", "color", "shape") if a in v)
    text = f"{_article(head)} {head}"
    if "position" in v:
        text += f" in the {v['position']}"
    if "background" in v:
        text += f" on {_article(v['background'])} {v['background']} background"
    return text
