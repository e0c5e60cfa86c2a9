"""Grounding: which words of a text state what, for one domain, and which words the domain did not understand.

A domain gives its own caption words (the words its GAN was trained on: exact, confidence 1), which of its
attributes are colours (with the palette it can draw), and which attributes may be matched by meaning. A word
outside those is read, in order, as:
  - a function word or a word about the request itself ("please", "draw", "icon"): ignored;
  - a colour name from the colour survey ("sapphire", "cherry-red", "lemon-colored"): the nearest palette colour,
    if it is near and clearly nearer than the next (`llmgan.domains.colors`);
  - a one-letter typo of a domain word or a surveyed colour name ("sqaure", "yelow"; a word the sentence
    encoder's tokenizer knows as a whole word is a real word and never corrected);
  - a word the sentence encoder places near one value's caption words and clearly nearer than any other value's
    ("dot" -> circle, "enormous" -> large);
  - otherwise a word the domain did not understand ("dragon"), reported, never replaced by a guess.
Each grounding carries a confidence in [0, 1]; the cut-offs are calibrated per domain on the tuning split of a
frozen prompt set (`python -m benchmarks.grounding`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmgan.domains import colors
from llmgan.domains.colors import has_colour_suffix as colours_suffix

# Words that say something about the request or the medium, never about what to draw.
REQUEST_WORDS = frozenset(
    "draw drawn drawing render rendered generate create make paint sketch depict want need give "
    "image picture photo icon sprite illustration graphic clipart art artwork asset symbol emoji "
    "shape object thing item colored coloured color colour corner positioned placed located sitting style".split()
)
_TOKEN = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
MAX_PHRASE = 4  # tokens in the longest phrase looked up


# Function words that still state something a picture shows: counts above one, and places.
_CONTENT = frozenset("two three four five six seven eight nine ten eleven twelve fifteen twenty forty fifty sixty "
                     "hundred several many few top bottom front back behind beside".split())


@functools.lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """English function words (scikit-learn's maintained list) plus the request words above, less the words that
    state counts or places ("two stars", "at the top": things a domain may not draw)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return (frozenset(ENGLISH_STOP_WORDS) - _CONTENT) | REQUEST_WORDS | {"thanks", "thank", "pls", "plz"}


@functools.lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """Whole words of the sentence encoder's tokenizer (30k WordPiece entries): a word in it is a real word, not a
    typo, so it is never "corrected" ("scar" stays scar, not star)."""
    from pathlib import Path

    from llmgan.text.encoder import default_encoder_path

    vocab = Path(default_encoder_path()) / "vocab.txt"
    if not vocab.exists():
        return frozenset()
    return frozenset(w for w in vocab.read_text(encoding="utf-8").split() if w.isalpha())


@dataclass(frozen=True)
class Grounded:
    """One understood phrase: `text[start:end]` as written (a background's phrase includes its noun); `word` is
    the value's own words in it; `how` says which reading found it (vocabulary, colour, typo, meaning)."""

    attr: str
    value: str
    start: int
    end: int
    word: str
    confidence: float
    how: str


@dataclass(frozen=True)
class Grounding:
    understood: tuple[Grounded, ...] = ()
    not_understood: tuple[str, ...] = ()

    def values(self) -> dict[str, list[str]]:
        """attribute -> the values named (sorted); more than one means the text contradicts itself."""
        found: dict[str, set[str]] = {}
        for g in self.understood:
            found.setdefault(g.attr, set()).add(g.value)
        return {a: sorted(v) for a, v in found.items()}

    def stated(self) -> dict[str, Grounded]:
        """attribute -> its first mention, for attributes named with exactly one value."""
        values = self.values()
        first: dict[str, Grounded] = {}
        for g in self.understood:
            if len(values[g.attr]) == 1:
                first.setdefault(g.attr, g)
        return first

    def meta(self) -> dict[str, Any]:
        """What an image's metadata records: word -> value and confidence, and the words not understood."""
        return {"understood": {" ".join(g.word.lower().split()): {"attr": g.attr, "value": g.value,
                                                                   "confidence": round(g.confidence, 3)}
                               for g in self.understood},
                "not_understood": list(self.not_understood)}


@dataclass(frozen=True)
class Cutoffs:
    """Below these a reading is not trusted and the word is reported as not understood."""

    colour_distance: float = 40.0  # CIELAB distance to the nearest palette colour
    colour_clarity: float = 0.25  # 1 - d1/d2
    meaning_similarity: float = 0.55  # cosine similarity of the word to the value's nearest caption word
    meaning_margin: float = 0.12  # ... minus the same for the next value


def _norm(token: str) -> str:
    return token.lower().replace("’", "'").replace("-", " ")


def _edits1(word: str) -> set[str]:
    """Every string one deletion, transposition, substitution or insertion away (Damerau distance 1)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return ({a + b[1:] for a, b in splits if b} | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
            | {a + c + b[1:] for a, b in splits if b for c in letters} | {a + c + b for a, b in splits for c in letters})


@dataclass
class Grounder:
    """Grounds texts for one domain. `words[attr][value]` are the domain's caption words; `palettes[attr]` the RGB
    of each value of a colour attribute (the first is the default role, `background` the one a background noun
    selects); `by_meaning` the attributes the sentence encoder may match."""

    words: Mapping[str, Mapping[str, Sequence[str]]]
    palettes: Mapping[str, Mapping[str, colors.RGB]] = field(default_factory=dict)
    background: str | None = None
    background_nouns: Sequence[str] = ("background", "backdrop")
    by_meaning: Sequence[str] = ()
    # words its images always satisfy ("flat", "filled" for shapes): understood, and they state nothing
    context: Sequence[str] = ()
    cutoffs: Cutoffs = Cutoffs()
    encode: Callable[[list[str]], np.ndarray] | None = None  # default: the shipped sentence encoder

    def __post_init__(self) -> None:
        self._phrases: dict[str, tuple[str, str]] = {}
        for attr, values in self.words.items():
            for value, ws in values.items():
                for w in ws:
                    self._phrases.setdefault(" ".join(_norm(w).split()), (attr, value))
        self._colour_attr = next(iter(self.palettes), None)
        self._anchors: tuple[list[tuple[str, str]], np.ndarray] | None = None
        self._cache: dict[str, Grounding] = {}
        self._meaning_cache: dict[str, tuple[str, str, float, float] | None] = {}
        # the words a typo may be corrected to: the domain's words and the colour survey's, long enough to be safe
        self._lexicon = {w for phrase in self._phrases for w in phrase.split() if len(w) >= 4}
        if self.palettes:
            self._lexicon |= {w for name in colors.named_colours() for w in name.split() if len(w) >= 5}
        self._context = frozenset(_norm(w) for w in self.context)

    # ---- public -------------------------------------------------------------------------------
    def ground(self, text: str) -> Grounding:
        """The understood phrases of `text` in text order, and its content words that were not understood."""
        hit = self._cache.get(text)
        if hit is None:
            hit = self._ground(text or "")
            if len(self._cache) > 50_000:  # prompts and captions repeat; bound the memory all the same
                self._cache.clear()
            self._cache[text] = hit
        return hit

    # ---- readings -----------------------------------------------------------------------------
    def _ground(self, text: str) -> Grounding:
        nouns = {_norm(n) for n in self.background_nouns}
        stop = stop_words()
        toks, fixed = [], set()
        for m in _TOKEN.finditer(text):
            tok = _norm(m.group())
            right = self._spell(tok, stop, nouns)
            if right != tok:
                fixed.add(m.start())
            toks.append((m.start(), m.end(), right))
        found: list[Grounded] = []
        unknown: list[str] = []
        i = 0
        while i < len(toks):
            j, reading = self._phrase_at(toks, i)
            if reading is not None and reading[3] is not None:  # a colour: with the colour words right after it
                if reading[0] == "colour" and not self._names_colour(toks, i, j):
                    unknown.append(" ".join(text[toks[i][0]:toks[j - 1][1]].lower().split()))  # "a strawberry"
                    i = j
                    continue
                j, group, words = self._colour_group(text, toks, i, j, reading, nouns)
                if group:
                    found += group
                else:
                    unknown.append(words)
                i = j
                continue
            if reading is not None:
                kind, attr, value, _ = reading
                found.append(Grounded(attr, value, toks[i][0], toks[j - 1][1], text[toks[i][0]:toks[j - 1][1]], 1.0,
                                      kind))
                i = j
                continue
            if self.palettes and toks[i][2] in ("on", "against", "over") and self.background:
                group = self._bare_background(text, toks, i, nouns)  # "on black", "against navy"
                if group is not None:
                    j, grounded, words = group
                    found += grounded
                    unknown += [] if grounded else [words]
                    i = j
                    continue
            start, end, tok = toks[i]
            i += 1
            if tok in stop or tok in nouns or tok in colors.SHADE_WORDS or tok.rstrip("s") in stop or tok in self._context:
                continue
            g = self._meaning(text, start, end, tok)
            if g is None:
                unknown.append(tok)
            else:
                found.append(g)
        # A word read by meaning beside the domain's own word for the same attribute modifies it ("six-pointed
        # star", "rounded square"): it asks for a variant the domain has no word for, so it is not understood.
        named = {g.attr for g in found if g.how == "vocabulary"}
        unknown += [" ".join(g.word.lower().split()) for g in found if g.how == "meaning" and g.attr in named]
        found = [g for g in found if not (g.how == "meaning" and g.attr in named)]
        if fixed:  # a reading that needed a corrected word is a little less sure
            found = [dataclasses.replace(g, confidence=round(0.9 * g.confidence, 3), how="typo")
                     if any(g.start <= f < g.end for f in fixed) else g for g in found]
        return Grounding(tuple(found), tuple(dict.fromkeys(unknown)))

    def _spell(self, tok: str, stop: frozenset[str], nouns: set[str]) -> str:
        """The domain or colour word one edit away from a word that is no word at all ("sqaure", "lefg"), when
        exactly one is; otherwise the word as it is."""
        if len(tok) < 4 or " " in tok or tok in self._lexicon or tok in stop or tok in nouns \
                or tok.rstrip("s") in self._lexicon or tok in english_words():
            return tok
        found = {e for e in _edits1(tok) if e in self._lexicon}
        return next(iter(found)) if len(found) == 1 else tok

    def _bare_background(self, text: str, toks: list[tuple[int, int, str]], i: int,
                         nouns: set[str]) -> tuple[int, list[Grounded], str] | None:
        """ "on black", "against a navy": colour words after such a preposition, with nothing after them that they
        could colour, name the background. None when the words are not that."""
        k = i + 1
        while k < len(toks) and toks[k][2] in ("a", "an", "the", "plain", "solid"):
            k += 1
        if k >= len(toks):
            return None
        j, reading = self._phrase_at(toks, k)
        if reading is None or reading[3] is None:
            return None
        end = j
        while end < len(toks):
            nxt, more = self._phrase_at(toks, end)
            if more is None or more[3] is None:
                break
            end = nxt
        if end < len(toks) and (toks[end][2] in nouns or toks[end][2] in self._phrases
                                or toks[end][2].rstrip("s") in self._phrases):
            return None  # "on a red star", "on a navy background": read as usual
        return self._colour_group(text, toks, k, j, reading, nouns, role=self.background)

    def _phrase_at(self, toks: list[tuple[int, int, str]], i: int) -> tuple[int, tuple | None]:
        """Longest phrase from token i that is a domain word (preferred on a tie) or a surveyed colour name;
        a plural ("stars", "boxes") reads as its singular."""
        for j in range(min(len(toks), i + MAX_PHRASE), i, -1):
            key = " ".join(t[2] for t in toks[i:j])
            for k in (key, key[:-1] if key.endswith("s") else None, key[:-2] if key.endswith("es") else None):
                if k and k in self._phrases:
                    attr, value = self._phrases[k]
                    return j, ("vocabulary", attr, value, self.palettes.get(attr, {}).get(value))
            if self.palettes and not (j == i + 1 and (key in stop_words() or key in colors.SHADE_WORDS)):
                rgb = colors.lookup(key)
                if rgb is not None:
                    return j, ("colour", "", "", rgb)
        return i + 1, None

    def _colour_group(self, text: str, toks: list[tuple[int, int, str]], i: int, j: int, first: tuple,
                      nouns: set[str], role: str | None = None) -> tuple[int, list[Grounded], str]:
        """Colour words in a row ("sapphire blue", "silver gray") read as one colour, in the role the next word
        gives them: a background noun makes them the background, otherwise they are the default colour. Returns
        (next token, the groundings: one, or several when the words disagree ("red blue"), and the words as typed)."""
        readings = [(i, j, first)]
        while j < len(toks):
            k, nxt = self._phrase_at(toks, j)
            if nxt is None or nxt[3] is None:
                break
            readings.append((j, k, nxt))
            j = k
        start, end = toks[i][0], toks[j - 1][1]
        role_end = end
        if self.background and j < len(toks) and toks[j][2] in nouns:
            role, role_end = self.background, toks[j][1]
            j += 1
        role = role or self._colour_attr
        members = [self._in_role(text, toks[a][0], toks[b - 1][1], toks[b - 1][1], r[0], r[1], r[2], r[3], role)
                   for a, b, r in readings]
        understood = [g for g in members if g is not None]
        words = " ".join(text[start:end].lower().split())
        if len({g.value for g in understood}) != 1:  # none understood, or a contradiction the caller will see
            return j, understood, words
        how = "vocabulary" if any(g.how == "vocabulary" for g in understood) else understood[-1].how
        return j, [Grounded(role or "", understood[0].value, start, role_end, text[start:end],
                            min(g.confidence for g in understood), how)], words

    def _names_colour(self, toks: list[tuple[int, int, str]], i: int, j: int) -> bool:
        """Whether a surveyed name at tokens i:j is used as a colour. Many names are also things ("lemon",
        "strawberry", "ocean"): such a word names a colour when it says so ("lemon-colored", "cherry red") or
        modifies what follows ("lemon star", "ocean background", "in sapphire" after a noun), not when it is the
        thing asked for ("a strawberry")."""
        phrase = " ".join(t[2] for t in toks[i:j])
        colour_words = {w for attr in self.palettes for w, (a, _) in self._phrases.items() if a == attr}
        if colours_suffix(phrase) or any(w in colour_words for w in phrase.split()):
            return True
        if i > 0 and toks[i - 1][2] in ("in", "of"):
            return True
        if j >= len(toks):
            return False
        nxt = toks[j][2]
        return (nxt in self._phrases or nxt.rstrip("s") in self._phrases or nxt in REQUEST_WORDS
                or nxt in {_norm(n) for n in self.background_nouns} or colors.lookup(nxt) is not None)

    def _in_role(self, text: str, start: int, end: int, role_end: int, kind: str, attr: str, value: str,
                 rgb: colors.RGB | None, role: str | None) -> Grounded | None:
        """A phrase read as `role`: its own value when it is a word of that attribute, else its colour's nearest
        value in the role's palette (None when that is far or unclear)."""
        word = text[start:end]
        if role == attr:
            return Grounded(attr, value, start, role_end, word, 1.0, kind)
        if rgb is None or role not in self.palettes:
            return None
        near = colors.nearest(rgb, self.palettes[role])
        if near.distance > self.cutoffs.colour_distance or near.clarity < self.cutoffs.colour_clarity:
            return None
        return Grounded(role, near.value, start, role_end, word, round(near.clarity, 3), "colour")

    def _meaning(self, text: str, start: int, end: int, tok: str) -> Grounded | None:
        if not self.by_meaning:
            return None
        if tok not in self._meaning_cache:
            self._meaning_cache[tok] = self._nearest_value(tok)
        hit = self._meaning_cache[tok]
        if hit is None:
            return None
        attr, value, sim, margin = hit
        c = self.cutoffs
        if sim < c.meaning_similarity or margin < c.meaning_margin:
            return None
        return Grounded(attr, value, start, end, text[start:end], round(min(1.0, margin / (2 * c.meaning_margin)), 3),
                        "meaning")

    def nearest_value(self, word: str) -> tuple[str, str, float, float] | None:
        """(attr, value, similarity, margin over the next value) of a word by the sentence encoder (calibration)."""
        return self._nearest_value(_norm(word))

    def _nearest_value(self, tok: str) -> tuple[str, str, float, float] | None:
        anchors, emb = self._anchor_embeddings()
        if not anchors:
            return None
        vec = self._embed([tok, f"a {tok}"])
        sims = (vec @ emb.T).mean(axis=0)  # the bare word and "a word": each alone is noisier
        best: dict[tuple[str, str], float] = {}
        for (attr, value), s in zip(anchors, sims):
            best[(attr, value)] = max(best.get((attr, value), -1.0), float(s))
        ranked = sorted(best.items(), key=lambda kv: -kv[1])
        (attr, value), sim = ranked[0]
        margin = sim - (ranked[1][1] if len(ranked) > 1 else -1.0)
        return attr, value, sim, margin

    def _anchor_embeddings(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        if self._anchors is None:
            pairs = [((attr, value), w) for attr in self.by_meaning for value, ws in self.words[attr].items()
                     for w in ws]
            if not pairs:
                self._anchors = ([], np.zeros((0, 1), np.float32))
            else:
                # each anchor as both forms, averaged like the word it is compared with
                a = self._embed([w for _, w in pairs])
                b = self._embed([f"a {w}" for _, w in pairs])
                emb = (a + b) / 2
                self._anchors = ([p for p, _ in pairs], emb / np.linalg.norm(emb, axis=1, keepdims=True))
        return self._anchors

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.encode is None:
            self.encode = default_encode
        return np.asarray(self.encode(texts), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _default_encoder() -> Any:
    from llmgan.text.encoder import TextEncoder

    return TextEncoder(cache_size=20_000)


def default_encode(texts: list[str]) -> np.ndarray:
    """The shipped sentence encoder (MiniLM), loaded on first use, shared by every domain in the process."""
    return _default_encoder().encode(texts)
