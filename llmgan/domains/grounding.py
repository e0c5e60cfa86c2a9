"""Grounding: which words of a text state what, for one domain, and which words the domain did not understand.

A domain gives its own caption words (the words its GAN was trained on: exact, confidence 1), which of its
attributes are colours (with the palette it can draw), and which attributes may be matched by meaning. A word
outside those is read, in order, as:
  - a function word or a word about the request itself ("please", "draw", "icon"): ignored;
  - a colour name from the colour survey ("sapphire", "cherry-red", "lemon-colored"): the nearest palette colour,
    if it is near and clearly nearer than the next (`llmgan.domains.colors`);
  - a one-letter typo of a domain word or a surveyed colour name ("sqaure", "yelow");
  - a word the sentence encoder places near one value's caption words and clearly nearer than any other value's
    ("dot" -> circle, "enormous" -> large);
  - otherwise a word the domain did not understand ("dragon"), reported, never replaced by a guess.
Each grounding carries a confidence in [0, 1]; the cut-offs are calibrated per domain on the tuning split of a
frozen prompt set (`python -m benchmarks.grounding`).
"""

from __future__ import annotations

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


@functools.lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """English function words (scikit-learn's maintained list) plus the request words above."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | REQUEST_WORDS


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
        typo_targets: dict[str, set[tuple[str, str]]] = {}
        for phrase, av in self._phrases.items():
            if " " not in phrase and len(phrase) >= 4:
                typo_targets.setdefault(phrase, set()).add(av)
        self._typo_targets = typo_targets

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
        toks = [(m.start(), m.end(), _norm(m.group())) for m in _TOKEN.finditer(text)]
        nouns = {_norm(n) for n in self.background_nouns}
        stop = stop_words()
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
            start, end, tok = toks[i]
            i += 1
            if tok in stop or tok in nouns or tok in colors.SHADE_WORDS or tok.rstrip("s") in stop:
                continue
            g = self._typo(text, start, end, tok) or self._meaning(text, start, end, tok)
            if g is None:
                unknown.append(tok)
            else:
                found.append(g)
        return Grounding(tuple(found), tuple(dict.fromkeys(unknown)))

    def _phrase_at(self, toks: list[tuple[int, int, str]], i: int) -> tuple[int, tuple | None]:
        """Longest phrase from token i that is a domain word (preferred on a tie) or a surveyed colour name;
        a plural ("stars", "boxes") reads as its singular."""
        for j in range(min(len(toks), i + MAX_PHRASE), i, -1):
            key = " ".join(t[2] for t in toks[i:j])
            for k in (key, key[:-1] if key.endswith("s") else None, key[:-2] if key.endswith("es") else None):
                if k and k in self._phrases:
                    attr, value = self._phrases[k]
                    return j, ("vocabulary", attr, value, self.palettes.get(attr, {}).get(value))
            if self.palettes and not (j == i + 1 and key in stop_words()):
                rgb = colors.lookup(key)
                if rgb is not None:
                    return j, ("colour", "", "", rgb)
        return i + 1, None

    def _colour_group(self, text: str, toks: list[tuple[int, int, str]], i: int, j: int, first: tuple,
                      nouns: set[str]) -> tuple[int, list[Grounded], str]:
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
        role, role_end = self._colour_attr, end
        if self.background and j < len(toks) and toks[j][2] in nouns:
            role, role_end = self.background, toks[j][1]
            j += 1
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

    def _typo(self, text: str, start: int, end: int, tok: str) -> Grounded | None:
        if len(tok) < 4 or " " in tok:
            return None
        targets = {av for e in _edits1(tok) for av in self._typo_targets.get(e, ())}
        if len(targets) == 1:
            attr, value = next(iter(targets))
            return Grounded(attr, value, start, end, text[start:end], 0.9, "typo")
        if not targets and self.palettes and len(tok) >= 5:
            names = [e for e in _edits1(tok) if e in colors.named_colours()]
            if len(names) == 1:
                g = self._in_role(text, start, end, end, "typo", "", "", colors.named_colours()[names[0]],
                                  self._colour_attr)
                return None if g is None else Grounded(g.attr, g.value, start, end, g.word, 0.9 * g.confidence, "typo")
        return None

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
