"""Builds the frozen open-vocabulary prompt set `openvocab-v1.jsonl`: deterministic (fixed seed, no network).

    python -m benchmarks.prompt_sets.build_openvocab [--out PATH]

Colour kinds come from matplotlib's colour tables mapped to the palette (openvocab_colours.py, which documents the
CIELAB rule and its bounds); the other kinds from hand-written English (openvocab_words.py, openvocab_typos.py).
Each row has a `group` (the colour name, phrase or word under test; the prompt itself where nothing is shared);
its split is "tune" when sha256("openvocab-v1:" + group) falls in the lowest TUNE_SHARE of the hash range, else
"holdout", and every prompt is assembled only from words whose groups share its split. README.md has the rules.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.prompt_sets import openvocab_colours as colours
from benchmarks.prompt_sets import openvocab_words as words
from benchmarks.prompt_sets.openvocab_typos import OPS, TYPO_TARGETS, make_typo
from llmgan.domains.shapes import vocab

NAME = "openvocab-v1"
SEED = 19
TUNE_SHARE = 0.30
OUT = Path(__file__).with_name(f"{NAME}.jsonl")
KINDS = ("colour-list", "colour-outside-list", "colour-compound", "shape-paraphrase", "size-position-background",
         "typo", "casing", "extra-words", "word-order", "undrawable", "combined")
# colour-shape pairs that name another thing ("sea star" is a starfish, "lemon square" a cake)
COLLISIONS = {("sea", "star"), ("lemon", "square"), ("caramel", "square"), ("custard", "square"),
              ("butterscotch", "square"), ("bronze", "star"), ("sea", "cross")}
SHAPE_TEMPLATES = ("{a_c} {c} {s}", "{c} {s}", "{a_s} {s} in {c}", "the {c} {s}")
COMPOUND_TEMPLATES = ("{a_c} {c} {s}", "{c} {s}", "the {c} {s}")  # "a square in lemon-colored" is no English
BACKGROUND_TEMPLATES = ("{a_s} {s} on {a_c} {c} background", "{s} on {c} background",
                        "{a_s} {s} against {a_c} {c} backdrop", "{s}, {c} background")
CORNERS = ("top left", "top right", "bottom left", "bottom right")


def article(next_words: str) -> str:
    return "an" if next_words[:1] in tuple("aeiou") or next_words.startswith("x ") else "a"


def fill(template: str, **kw: str) -> str:
    return template.format(**kw, **{f"a_{k}": article(v) for k, v in kw.items()})


def split_of(group: str) -> str:
    h = int.from_bytes(hashlib.sha256(f"{NAME}:{group}".encode()).digest()[:8], "big")
    return "tune" if h / 2**64 < TUNE_SHARE else "holdout"


def _bare(phrase: str) -> bool:  # a phrase with no preposition of its own ("top-left", "black background")
    return not phrase.startswith(("in ", "at ", "on ", "against ", "with ", "near ", "off "))


def _join(*parts: str) -> str:
    out = parts[0]
    for p in parts[1:]:
        out += (", " if _bare(p) else " ") + p
    return out


class SetBuilder:
    """Collects rows; every random choice comes from one seeded generator, in a fixed order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.rng = np.random.default_rng(SEED)

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rng.integers(len(seq)))]

    def sample(self, seq: Sequence[Any], n: int) -> list[Any]:
        idx = sorted(self.rng.choice(len(seq), size=min(n, len(seq)), replace=False).tolist())
        return [seq[i] for i in idx]

    def same_split(self, group: str, pool: Sequence[Any], key: Callable[[Any], str]) -> list[Any]:
        return [x for x in pool if split_of(key(x)) == split_of(group)]

    def add(self, kind: str, prompt: str, expect: dict[str, str], undrawable: Sequence[str], source: str,
            group: str | None = None) -> bool:
        if prompt in self.seen:
            return False
        for attr, value in expect.items():
            if value not in vocab.VALUES[attr]:
                raise ValueError(f"{prompt!r}: {attr}={value!r} is not a palette value")
        self.seen.add(prompt)
        group = group or f"prompt:{prompt}"
        self.rows.append({"prompt": prompt, "expect": {a: expect[a] for a in vocab.ATTRIBUTES if a in expect},
                          "undrawable": list(undrawable), "kind": kind, "source": source, "group": group,
                          "split": split_of(group)})
        return True

    def colour_prompt(self, kind: str, typed: str, truth: colours.Truth, role: str, source: str, group: str,
                      undrawable_words: Sequence[str] | None = None) -> bool:
        shapes = [s for s in vocab.SHAPES if (typed.split()[-1], s) not in COLLISIONS]
        s = self.pick(shapes)
        templates = BACKGROUND_TEMPLATES if role == "background" else SHAPE_TEMPLATES
        template = self.pick(COMPOUND_TEMPLATES if kind == "colour-compound" else templates)
        expect = {"shape": s} | ({role: truth.value} if truth.status == "near" else {})
        undrawable = [] if truth.status == "near" else list(undrawable_words or typed.split())
        return self.add(kind, fill(template, c=typed, s=s), expect, undrawable, f"{source} {truth.note}", group)


def _colour_kinds(b: SetBuilder) -> list[tuple[str, str, colours.Truth]]:
    """colour-list, colour-outside-list and colour-compound; returns the near shape colours for later kinds."""
    xkcd = colours.xkcd_colours()
    shape = {n: colours.colour_truth(n, h, "color") for n, h in xkcd.items()}
    back = {n: colours.colour_truth(n, h, "background") for n, h in xkcd.items()}
    near = [n for n in xkcd if shape[n].status == "near"]
    far = [n for n in xkcd if shape[n].status == "far" and back[n].status != "near"]
    back_near = [n for n in xkcd if back[n].status == "near" and shape[n].status != "near"]
    for n in b.sample(near, 150):
        b.colour_prompt("colour-list", n, shape[n], "color", f"xkcd:{n} {xkcd[n]}", f"xkcd:{n}")
    for n in b.sample(far, 45):
        b.colour_prompt("colour-list", n, shape[n], "color", f"xkcd:{n} {xkcd[n]}", f"xkcd:{n}")
    for n in b.sample(back_near, 50):
        b.colour_prompt("colour-list", n, back[n], "background", f"xkcd:{n} {xkcd[n]}", f"xkcd:{n}")
    for n in b.sample([n for n in near if back[n].status == "far"], 25):
        b.colour_prompt("colour-list", n, back[n], "background", f"xkcd:{n} {xkcd[n]}", f"xkcd:{n}")

    for css, (typed, hex_code) in colours.css_outside_xkcd().items():
        src, group = f"css4:{css} {hex_code}", f"css4:{css}"
        t = colours.colour_truth(typed, hex_code, "color")
        if t.status in ("near", "far"):
            for _ in range(2):
                b.colour_prompt("colour-outside-list", typed, t, "color", src, group)
        t = colours.colour_truth(typed, hex_code, "background")
        if t.status in ("near", "far"):
            b.colour_prompt("colour-outside-list", typed, t, "background", src, group)

    basic = set(vocab.COLORS)
    singles = [n for n in near if " " not in n and n not in basic and colours.head_term(n) is None]
    far_singles = [n for n in far if " " not in n]
    doubles = [n for n in near if n.count(" ") == 1 and "'" not in n]
    ish = [n for n in xkcd if (n.endswith("ish") or n in ("purply", "purpley", "pinky", "sandy"))
           and shape[n].status in ("near", "far")]
    forms = ([(n, f"{n}-colored") for n in b.sample(singles, 18)] + [(n, f"{n}-coloured") for n in b.sample(singles, 12)]
             + [(n, f"{n}-ish") for n in b.sample(singles, 8)] + [(n, n.replace(" ", "-")) for n in b.sample(doubles, 25)]
             + [(n, f"{n}-colored") for n in b.sample(far_singles, 8)]
             + [(n, f"{n}-coloured") for n in b.sample(far_singles, 4)] + [(n, n) for n in ish])
    for n, typed in forms:
        b.colour_prompt("colour-compound", typed, shape[n], "color", f"xkcd:{n} {xkcd[n]} as {typed}", f"xkcd:{n}",
                        undrawable_words=[typed] if "-" in typed and " " not in typed else None)
    return [(n, xkcd[n], shape[n]) for n in near]


def _check_hand_colours() -> None:
    """Hand-written prompts use XKCD names only with the truth the colour rule gives them."""
    xkcd = colours.xkcd_colours()
    for word, (attr, value) in TYPO_TARGETS.items():
        if attr == "color" and word in xkcd and colours.colour_truth(word, xkcd[word], "color").value != value:
            raise ValueError(f"typo target {word!r}: the colour rule does not give {value!r}")
    checks = {"golden": "yellow", "sapphire": "blue", "cherry red": "red", "lemon": "yellow", "emerald": "green",
              "turquoise": "cyan", "scarlet": "red", "crimson": "red", "tangerine": "orange", "violet": "purple",
              "off white": "white", "gold": "yellow", "mustard": "yellow", "tomato red": "red", "teal": "cyan",
              "pumpkin orange": "orange"}
    for word, value in checks.items():
        got = colours.colour_truth(word, xkcd[word], "color")
        if got.value != value:
            raise ValueError(f"hand-written colour {word!r}: the colour rule gives {got}, not {value!r}")
    for word in ("hot pink", "chocolate"):
        if colours.colour_truth(word, xkcd[word], "color").status != "far":
            raise ValueError(f"hand-written undrawable colour {word!r} is not far from the palette")


def wrap(template: str, p: str) -> str:
    """An extra-words template around prompt `p`, each "{a}" the article of the word after it."""
    text = template.replace("{p}", p)
    return re.sub(r"\{a\} (\S+)", lambda m: f"{article(m.group(1))} {m.group(1)}", text)


def _word_after(template: str) -> bool:  # "{p} icon": a word follows the prompt
    return re.search(r"\{p\} [a-z]", template.replace("please", "").replace("asap", "")) is not None


def _canonical(b: SetBuilder) -> dict[str, str]:
    return {"color": b.pick(list(vocab.COLORS)), "shape": b.pick(vocab.SHAPES), "size": b.pick(list(vocab.SIZES)),
            "position": b.pick(list(vocab.POSITIONS)), "background": b.pick(list(vocab.BACKGROUNDS))}


def _plain(v: dict[str, str], attrs: Sequence[str]) -> tuple[str, dict[str, str]]:
    """A plain prompt in palette words for `attrs` of `v` ("small red star in the top left on a navy background")."""
    text = " ".join(v[a] for a in ("size", "color", "shape") if a in attrs)
    if "position" in attrs:
        text += f" in the {v['position']}"
    if "background" in attrs:
        text += f" on {article(v['background'])} {v['background']} background"
    return text, {a: v[a] for a in attrs}


def _hand_kinds(b: SetBuilder) -> None:
    for phrase, (shape, undrawable) in words.SHAPE_PARAPHRASES.items():
        v = _canonical(b)
        template = b.pick(("{a_c} {c} {p}", "{c} {p}", "{a_p} {p}", "{a_z} {z} {p}"))
        expect = {"shape": shape} if shape else {}
        expect |= {"color": v["color"]} if "{c}" in template else {}
        expect |= {"size": v["size"]} if "{z}" in template else {}
        b.add("shape-paraphrase", fill(template, p=phrase, c=v["color"], z=v["size"]), expect, undrawable,
              f"hand:shape {phrase}", f"shape:{phrase}")

    pools = {"size": words.SIZE_PHRASES, "position": words.POSITION_PHRASES, "background": words.BACKGROUND_PHRASES}
    for attr, pool in pools.items():
        for phrase, (_, undrawable) in pool.items():
            group = f"{attr}:{phrase}"
            v = _canonical(b)
            expect, undr = {"color": v["color"], "shape": v["shape"]}, list(undrawable)
            parts = {attr: phrase}
            if b.rng.random() < 0.4:  # a second tested phrase, from the same split
                other = b.pick([a for a in pools if a != attr])
                phrase2 = b.pick(b.same_split(group, list(pools[other]), lambda p, o=other: f"{o}:{p}"))
                parts[other] = phrase2
            for a, p in parts.items():
                val, u = pools[a][p]
                expect |= {a: val} if val else {}
                undr += [w for w in u if w not in undr]
            head = fill("{a_z} {z} {c} {s}", z=parts["size"], c=v["color"], s=v["shape"]) if "size" in parts \
                else fill("{a_c} {c} {s}", c=v["color"], s=v["shape"])
            tail = [parts[a] for a in ("position", "background") if a in parts]
            b.add("size-position-background", _join(head, *tail), expect, undr, f"hand:{attr} {phrase}", group)

    for thing, undrawable in words.UNDRAWABLE_THINGS.items():
        v = _canonical(b)
        template = b.pick(("{a_c} {c} {t}", "{a_t} {t}", "{a_z} {z} {t}", "{a_t} {t} in the {p}", "{c} {t}"))
        expect = {a: v[a] for f, a in (("{c}", "color"), ("{z}", "size"), ("{p}", "position")) if f in template}
        b.add("undrawable", fill(template, t=thing, c=v["color"], z=v["size"], p=v["position"]), expect,
              undrawable, f"hand:thing {thing}", f"thing:{thing}")
    for prompt, expect, undrawable in words.UNDRAWABLE_PROMPTS:
        b.add("undrawable", prompt, expect, undrawable, "hand:undrawable")

    for template in words.EXTRA_WORDS:
        for _ in range(2 if b.rng.random() < 0.3 else 1):
            v = _canonical(b)
            attrs = b.pick((("color", "shape"), ("color", "shape"), ("size", "color", "shape"))
                           + ((("color", "shape", "position"),) if not _word_after(template) else ()))
            p, expect = _plain(v, attrs)
            b.add("extra-words", wrap(template, p), expect, [], f"hand:extra {template}",
                  f"extra:{template}")

    for template in words.WORD_ORDER:
        for _ in range(2):
            v = _canonical(b)
            if "corner" in template:
                v["position"] = b.pick(CORNERS)
            fields = {"shape": v["shape"], "color": v["color"], "size": v["size"], "pos": v["position"],
                      "bg": v["background"]}
            expect = {a: v[a] for a, f in (("shape", "shape"), ("color", "color"), ("size", "size"),
                                           ("position", "pos"), ("background", "bg")) if f"{{{f}}}" in template}
            b.add("word-order", fill(template, **fields), expect, [], f"hand:order {template}")


def _known_words() -> set[str]:
    known = {w for n in colours.xkcd_colours() for w in n.replace("-", " ").split()}
    known |= {w for values in vocab.VALUES.values() for v in values for w in v.split()}
    for pool in (words.SHAPE_PARAPHRASES, words.SIZE_PHRASES, words.POSITION_PHRASES, words.BACKGROUND_PHRASES,
                 words.UNDRAWABLE_THINGS):
        known |= {w for p in pool for w in p.split()}
    return known


def _typo_prompt(b: SetBuilder, word: str, typo: str) -> tuple[str, dict[str, str]]:
    attr, value = TYPO_TARGETS[word]
    v = _canonical(b)
    if attr == "position":
        pos = value or b.pick([c for c in CORNERS if word in c.split()])
        v["position"] = pos
        phrase = "in the " + " ".join(typo if w == word else w for w in (pos.split() if value != "center" else [word]))
        return fill("{a_c} {c} {s} ", c=v["color"], s=v["shape"]) + phrase, {"color": v["color"], "shape": v["shape"],
                                                                               "position": pos}
    v[attr] = value
    slot = {"color": "c", "shape": "s", "size": "z", "background": "g"}[attr]
    kw = {"c": v["color"], "s": v["shape"], "z": v["size"], "g": v["background"]} | {slot: typo}
    template = {"color": ("{c} {s}", "{a_c} {c} {s}", "{a_z} {z} {c} {s}"), "shape": ("{c} {s}", "{a_c} {c} {s}"),
                "size": ("{a_z} {z} {c} {s}",), "background": ("{a_c} {c} {s} on {a_g} {g} background",)}[attr]
    t = b.pick(template)
    expect = {a: v[a] for a, f in (("color", "{c}"), ("shape", "{s}"), ("size", "{z}"), ("background", "{g}"))
              if f in t}
    return fill(t, **kw), expect


def _typo_kind(b: SetBuilder, known: set[str], taken: set[str]) -> None:
    n = 0
    for word in TYPO_TARGETS:
        for _ in range(2):
            op = OPS[n % len(OPS)]
            n += 1
            typo = make_typo(word, op, b.rng, known, taken)
            if typo is None:
                continue
            taken.add(typo)
            prompt, expect = _typo_prompt(b, word, typo)
            b.add("typo", prompt, expect, [], f"hand:typo {op} {word}->{typo}", f"typo:{word}")


def _case(b: SetBuilder, text: str, style: str) -> str:
    if style == "upper":
        return text.upper()
    if style == "title":
        return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
    if style == "sentence":
        return text[:1].upper() + text[1:]
    if style == "one-word":
        ws = text.split(" ")
        content = [j for j, w in enumerate(ws) if w not in ("a", "an", "the", "on", "in", "of", "at")]
        i = b.pick(content)
        return " ".join(w.upper() if j == i else w for j, w in enumerate(ws))
    return (text[:1].upper() + text[1:]).swapcase()  # caps lock left on


def _casing_kind(b: SetBuilder) -> None:
    styles = ("upper", "title", "sentence", "one-word", "capslock")
    things = list(words.UNDRAWABLE_THINGS)
    for i in range(45):
        v = _canonical(b)
        if i % 9 == 8:
            thing = b.pick(things)
            text, expect, undrawable = f"{v['color']} {thing}", {"color": v["color"]}, words.UNDRAWABLE_THINGS[thing]
        else:
            attrs = b.pick((("color", "shape"), ("color", "shape"), ("size", "color", "shape"),
                            ("color", "shape", "position"), ("color", "shape", "background")))
            (text, expect), undrawable = _plain(v, attrs), ()
        b.add("casing", _case(b, text, styles[i % len(styles)]), expect, undrawable, f"hand:casing {styles[i % 5]}")


def _combined_kind(b: SetBuilder, near: list[tuple[str, str, colours.Truth]], known: set[str],
                   taken: set[str]) -> None:
    drawable = {a: [p for p, (val, u) in pool.items() if val and not u] for a, pool in
                (("shape", words.SHAPE_PARAPHRASES), ("size", words.SIZE_PHRASES),
                 ("position", words.POSITION_PHRASES), ("background", words.BACKGROUND_PHRASES))}
    truths = {"shape": words.SHAPE_PARAPHRASES, "size": words.SIZE_PHRASES, "position": words.POSITION_PHRASES,
              "background": words.BACKGROUND_PHRASES}
    k = 0
    while sum(r["kind"] == "combined" for r in b.rows) < 40:
        group, k = f"combined:{k}", k + 1
        v, expect, undrawable, tags = _canonical(b), {}, [], []

        def maybe(p: float, attr: str, g=group) -> str | None:
            pool = b.same_split(g, drawable[attr], lambda x, a=attr: f"{a}:{x}")
            return b.pick(pool) if pool and b.rng.random() < p else None

        colour_pool = b.same_split(group, near, lambda x: f"xkcd:{x[0]}")
        colour = b.pick(colour_pool) if b.rng.random() < 0.7 else None
        c_word = colour[0] if colour else v["color"]
        expect["color"] = colour[2].value if colour else v["color"]
        tags += ["xkcd"] if colour else []
        shape = maybe(0.6, "shape")
        s_word = shape or v["shape"]
        expect["shape"] = words.SHAPE_PARAPHRASES[shape][0] if shape else v["shape"]
        tags += ["paraphrase"] if shape else []
        if not shape and b.rng.random() < 0.15:
            things = b.same_split(group, list(words.UNDRAWABLE_THINGS), lambda x: f"thing:{x}")
            s_word = b.pick(things)
            del expect["shape"]
            undrawable += words.UNDRAWABLE_THINGS[s_word]
            tags.append("thing")
        if b.rng.random() < 0.3 and not (colour and shape):  # a typo of a palette word
            w = v["shape"] if not shape and "shape" in expect else (v["color"] if not colour else None)
            typo = make_typo(w, b.pick(OPS), b.rng, known, taken) if w else None
            if typo:
                taken.add(typo)
                s_word, c_word = (typo, c_word) if w == s_word else (s_word, typo)
                tags.append(f"typo {w}->{typo}")
        parts = [f"{c_word} {s_word}"]
        for attr in ("size", "position", "background"):
            phrase = maybe(0.5, attr)
            if phrase:
                expect[attr] = truths[attr][phrase][0]
                parts.append(phrase)
                tags.append(attr)
        if "size" in expect:
            parts = [f"{parts[1]} {parts[0]}"] + parts[2:]
        if b.rng.random() < 0.3 and len(parts) > 1:
            order = b.rng.permutation(len(parts)).tolist()
            text = ", ".join(parts[i] for i in order)
            tags.append("order")
        else:
            text = _join(parts[0], *parts[1:])
            text = f"{article(text)} {text}" if b.rng.random() < 0.5 else text
        extras = [e for e in b.same_split(group, list(words.EXTRA_WORDS), lambda x: f"extra:{x}")
                  if not _word_after(e) and ("order" not in tags or e.startswith("{p}") or ": {p}" in e)]
        if extras and b.rng.random() < 0.5:
            extra = b.pick(extras)
            text = wrap(extra, text.removeprefix("a ").removeprefix("an "))
            tags.append("extra")
        if b.rng.random() < 0.3:
            style = b.pick(("upper", "title", "sentence", "one-word", "capslock"))
            text = _case(b, text, style)
            tags.append(style)
        if len(tags) >= 3:
            b.add("combined", text, expect, undrawable, "hand:combined " + ", ".join(tags), group)
    for prompt, expect, undrawable in words.COMBINED_PROMPTS:
        b.add("combined", prompt, expect, undrawable, "hand:combined (written whole)")


def build() -> list[dict[str, Any]]:
    """Every row of the set, in file order, with ids and splits; raises when a kind lacks a split."""
    _check_hand_colours()
    b = SetBuilder()
    near = _colour_kinds(b)
    _hand_kinds(b)
    known, taken = _known_words(), set()
    _typo_kind(b, known, taken)
    _casing_kind(b)
    _combined_kind(b, near, known, taken)
    rows = sorted(b.rows, key=lambda r: KINDS.index(r["kind"]))
    out = []
    for i, r in enumerate(rows, 1):
        out.append({"id": f"ov-{i:04d}", **r})
    for kind in KINDS:
        splits = {r["split"] for r in out if r["kind"] == kind}
        if splits != {"tune", "holdout"}:
            raise ValueError(f"kind {kind!r} has splits {sorted(splits)}; every kind needs both")
    return out


def render(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows).encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = build()
    data = render(rows)
    args.out.write_bytes(data)
    print(f"{args.out}: {len(rows)} prompts, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
