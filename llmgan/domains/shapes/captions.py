"""The shapes domain's caption rules: the expander's faithfulness check (stated words, the corpus form of a prompt
for the LM, pinning the user's own words into a caption; a `llmgan.text.options.Faithfulness`) and the plainest
caption of a set of values, which consistency feedback redraws from. Words are read by the domain's grounding."""

from __future__ import annotations

import functools
import re

from llmgan.domains.grounding import Grounded as Mention
from llmgan.domains.shapes import grounder, parse_attributes
from llmgan.domains.shapes.vocab import SYNONYMS

_ARTICLE_BEFORE = re.compile(r"(?<![\w-])(an?)(\s+)$", re.IGNORECASE)
_GENERIC_NOUN = re.compile(r"(?<![\w-])(shape|object)(?![\w-])", re.IGNORECASE)


def find_mentions(text: str) -> list[Mention]:
    return list(grounder().ground(text).understood)


def is_faithful(prompt: str, caption: str) -> bool:
    """True when `caption` names every value the prompt states and contradicts none."""
    got = parse_attributes(caption)
    return all(got.get(attr) == [m.value] for attr, m in _stated(prompt))


def caption_phrase(m: Mention) -> str:
    """How a caption writes a value the user named: the user's own word when the GAN learned it; a colour word it
    never saw gets the canonical word after it ("sapphire" -> "sapphire blue", the GAN draws that form right);
    a typo or a word read by meaning becomes the canonical word ("sqaure" -> "square", "dot" -> "circle")."""
    word = " ".join(m.word.split())
    canonical = SYNONYMS[m.attr][m.value][0]
    if m.how == "vocabulary" and " ".join(word.lower().replace("-", " ").split()) in {
            w.replace("-", " ") for w in SYNONYMS[m.attr][m.value]}:
        return word
    if m.attr in ("color", "background") and m.how != "typo":
        return word if f" {canonical} " in f" {word.lower().replace('-', ' ')} " else f"{word} {canonical}"
    return canonical


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"  # the corpus's rule (llmgan.domains.shapes.render._article)


def _phrase(prompt: str, m: Mention) -> str:
    return " ".join(prompt[m.start:m.end].split())


def _caption_form(prompt: str, m: Mention) -> str:
    """The user's phrase as a caption writes it (`caption_phrase`), a background's noun kept."""
    phrase, word = _phrase(prompt, m), " ".join(m.word.split())
    return caption_phrase(m) + phrase[len(word):]


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
def _stated(prompt: str) -> tuple[tuple[str, Mention], ...]:
    """The first mention of each attribute the prompt names with exactly one value (prompts repeat: cached)."""
    return tuple(grounder().ground(prompt).stated().items())


class ShapesFaithfulness:
    """The built-in shapes domain: five attributes, their synonyms, and where the caption corpus puts them."""

    name = "shapes"

    def stated(self, prompt: str) -> dict[str, Mention]:
        """attribute -> its first mention, for the attributes the prompt names with exactly one value."""
        return dict(_stated(prompt))

    def stated_words(self, prompt: str) -> list[str]:
        """The value words as a caption writes them, e.g. ["small", "crimson", "star", "gray", "background"]
        (a background's noun is a word of its own, so "silver background" -> "silver gray background" keeps
        both; "sapphire" is kept as "sapphire blue")."""
        words = []
        for m in self.stated(prompt).values():
            phrase, word = _phrase(prompt, m), " ".join(m.word.split())
            words += [caption_phrase(m), phrase[len(word):].strip()] if m.attr == "background" else \
                [_caption_form(prompt, m)]
        return [w for w in words if w]

    def not_understood(self, prompt: str) -> list[str]:
        return list(grounder().ground(prompt).not_understood)

    def check(self, prompt: str, caption: str) -> bool:
        return is_faithful(prompt, caption)

    def condition(self, prompt: str) -> str:
        """The prompt as the caption corpus writes prompts ("small green square on gray background"), when it
        holds only attribute and filler words; otherwise the same words with each synonym made canonical.

        The shipped LM saw few synonyms and no leading article in its prompts: "a small green square" gave
        0 of 8 faithful drafts before, "crimson star" often came back "scarlet star".
        """
        grounding = grounder().ground(prompt)
        mentions = list(grounding.understood)
        stated = self.stated(prompt)
        if mentions and len(stated) == len({m.attr for m in mentions}) and not grounding.not_understood:
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
            shape = Mention("shape", "", generic.start(), generic.end(), generic.group(1), 1.0, "vocabulary")
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
