"""Caption-LM benchmark: batched vs one-at-a-time `generate` throughput, first-draft faithfulness per prompt set
with keep-words on and off, guard outcomes and variety, in one run (optionally: how the GAN draws synonyms).

`--engines`: instead, captions/s of the expander's fast decoding loop vs the reference loop (`ExpanderConfig.engine`)
at each thread count and batch size, both engines on the same prompts and seeds in one process, and how many of
their captions differ (the fast loop is meant to differ in none).

`--captioned DATA`: instead, a caption LM for a captioned dataset with name / style / subcategory columns (the emoji
dataset): on its held-out rows' prompts (name + style pairs kept out of training) and a sample of its train rows'
prompts, how many expansions keep the name and the style and are well-formed captions, at what speed, and what the
expander's domain check made of them. On the game-icons dataset (label / color / background columns) the same
for icons: held-out rows (unseen pairings and icon x pairing combinations) stating colour and background, the same
rows by name alone, and a train sample; kept are the name, the stated colour and the stated background."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from llmgan.domains import shapes
from llmgan.domains.shapes import vocab
from llmgan.domains.shapes.captions import ShapesFaithfulness, caption_phrase
from llmgan.text.expander import CaptionExpander, ExpanderConfig, normalize_prompt
from llmgan.text.options import keeps_words


def heldout_prompts(n: int, seed: int = 1234) -> list[str]:
    """Short prompts from the shapes held-out split (attribute pairs the shipped LM never saw in training)."""
    from llmgan.domains.shapes.render import generate_shapes

    return [str(p) for p in generate_shapes(n, size=16, seed=seed, split="heldout").column("short_prompt").to_pylist()]


def _labels(rng: np.random.Generator) -> dict[str, str]:
    from llmgan.domains.shapes.render import sample_labels

    return sample_labels(rng, "heldout" if rng.random() < 0.5 else "all")


# Words users type that no generated caption uses: the synonym set's own words (kept as the set was first built,
# so its figures stay comparable; the code no longer reads them -- words are grounded by llmgan.domains).
USER_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {},
    "color": {
        "red": ("ruby", "cherry"),
        "green": ("lime", "jade"),
        "blue": ("sky blue",),
        "yellow": ("gold", "lemon"),
        "purple": ("lavender",),
        "white": ("ivory",),
        "cyan": ("aqua", "teal"),
    },
    "size": {"small": ("mini", "miniature"), "large": ("giant", "massive")},
    "position": {
        "top left": ("upper-left",),
        "top right": ("upper-right",),
        "bottom left": ("lower-left",),
        "bottom right": ("lower-right",),
    },
    "background": {"gray": ("silver",), "navy": ("navy blue",), "dark green": ("dark-green",)},
}


def _other_word(rng: np.random.Generator, attr: str, value: str) -> str:
    """A word other than the canonical one, from the caption corpus or from what users type; else canonical."""
    words = [*vocab.SYNONYMS[attr][value][1:], *USER_WORDS[attr].get(value, ())]
    return str(rng.choice(words)) if words else value


def synonym_prompts(n: int, seed: int = 77) -> list[str]:
    """"crimson star", "tiny azure square in the upper-left": short prompts whose colour (and sometimes more) is
    named by a synonym, held-out and seen (shape, colour) pairs alike."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 1, i])
        lab = _labels(rng)
        words = {a: _other_word(rng, a, lab[a]) if a == "color" or rng.random() < 0.5 else lab[a] for a in lab}
        text = f"{words['color']} {words['shape']}"
        if rng.random() < 0.4:
            text = f"{words['size']} {text}"
        if rng.random() < 0.3:
            text += f" in the {words['position']}"
        if rng.random() < 0.3:
            text += f" on {words['background']} {rng.choice(vocab.BACKGROUND_NOUNS)}"
        out.append(text)
    return out


def combined_prompts(n: int, seed: int = 78) -> list[str]:
    """"a small green square on a gray background": prompts as people type them, with articles and three to
    five attributes, now and then a synonym."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 2, i])
        lab = _labels(rng)
        words = {a: _other_word(rng, a, lab[a]) if rng.random() < 0.2 else lab[a] for a in lab}
        extras = [a for a in ("position", "background") if rng.random() < 0.6] or ["background"]
        head = f"{words['size']} {words['color']} {words['shape']}"
        text = f"{'an' if head[0] in 'aeiou' else 'a'} {head}"
        if "position" in extras:
            text += f" in the {words['position']}" + (" corner" if lab["position"] != "center" and rng.random() < 0.5
                                                      else "")
        if "background" in extras:
            bg = words["background"]
            text += f" on {'an' if bg[0] in 'aeiou' else 'a'} {bg} {rng.choice(vocab.BACKGROUND_NOUNS)}"
        out.append(text)
    return out


class _Recorder(ShapesFaithfulness):
    """The shapes check, remembering every draft it judged (to count those that keep the user's words)."""

    def __init__(self) -> None:
        self.drafts: list[tuple[str, str, bool]] = []
        self.before_pin: list[bool] = []

    def pin(self, prompt: str, caption: str) -> str:
        if not self.not_understood(prompt):  # the LM's own draft, by value, for prompts that count
            self.before_pin.append(super().check(prompt, caption))
        return super().pin(prompt, caption)

    def check(self, prompt: str, caption: str) -> bool:
        ok = super().check(prompt, caption)
        self.drafts.append((prompt, caption, ok))
        return ok


def first_drafts(expander: CaptionExpander, prompts: list[str], seed: int) -> dict[str, Any]:
    """Faithfulness of every prompt's first draft (no resample, no fallback) and how many keep the user's words."""
    rec = _Recorder()
    expander.check = rec
    result = expander.expand(prompts, [f"f{i}" for i in range(len(prompts))], 1, seed=seed)
    # with no resamples every checked prompt is either accepted at once or falls back (an empty draft too); a
    # prompt with words the domain did not understand is never called faithful: it is counted apart
    unknown = result.stats["not_understood"]
    checked, faithful = len(prompts) - result.stats["unchecked"] - unknown, result.stats["faithful"]
    verbatim = sum(ok and keeps_words(rec.stated_words(p), c) for p, c, ok in rec.drafts if not rec.not_understood(p))
    n = max(checked, 1)
    lm_faithful = sum(rec.before_pin) if rec.before_pin else faithful
    return {"checked": checked, "not_understood": unknown, "faithful": faithful, "faithfulness": round(faithful / n, 4),
            "words_kept": round(verbatim / n, 4), "pinned": result.stats["pinned"],
            "lm_faithful_before_pin": round(lm_faithful / n, 4)}


def one_at_a_time(expander: CaptionExpander, prompts: Sequence[str]) -> float:
    """Seconds for Hugging Face `generate`, one prompt per call, same sampling settings and stop tokens."""
    cfg, model = expander.config, expander.model
    stop = expander.stop_token_ids
    started = time.perf_counter()
    for prompt in prompts:
        ids = torch.tensor([expander.format_prompt(normalize_prompt(prompt))], device=expander.device)
        with torch.inference_mode():
            model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=cfg.temperature > 0,
                temperature=cfg.temperature or None, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                eos_token_id=stop, pad_token_id=expander.pad_id,
            )
    return time.perf_counter() - started


def run(lm: str | None = None, n_speed: int = 512, n_baseline: int = 512, n_variety: int = 64, variants: int = 8,
        batch_size: int = 64, device: str = "cpu", out=sys.stdout) -> dict:
    """Measure everything with one loaded LM and print a table; returns the figures as a dict."""
    base = ExpanderConfig(lm=lm, batch_size=batch_size, device=device, cache_size=0)
    sets = {"held-out": heldout_prompts(max(n_speed, n_variety)), "synonyms": synonym_prompts(n_speed),
            "combined": combined_prompts(n_speed)}
    prompts = sets["held-out"]
    raw = CaptionExpander(replace(base, max_resamples=0), check=ShapesFaithfulness())
    keys = [f"p{i}" for i in range(len(prompts))]

    # speed: batched expansion (default settings, one draft each) vs n_baseline single-prompt generate() calls
    raw.expand(prompts[:8], keys[:8], 1, seed=99)  # warm-up (allocator, kernels) for both paths
    t0 = time.perf_counter()
    raw.expand(prompts[:n_speed], keys[:n_speed], 1, seed=0)
    batched_s = time.perf_counter() - t0
    single_s = one_at_a_time(raw, prompts[:n_baseline])
    batched_rate, single_rate = n_speed / batched_s, n_baseline / single_s

    # first drafts per prompt set, keep-words off (the LM's own words) and on (the default)
    drafts: dict[str, dict[str, Any]] = {}
    guard: dict[str, dict[str, Any]] = {}
    for keep in (False, True):
        mode = "keep-words" if keep else "no-keep-words"
        raw.config = replace(raw.config, keep_words=keep)
        guarded = CaptionExpander(replace(base, keep_words=keep), check=ShapesFaithfulness())
        for name, ps in sets.items():
            drafts[f"{name} {mode}"] = first_drafts(raw, ps[:n_speed], seed=0)
            # the job's path: up to 3 resamples, then the prompt itself; variety among the K variants
            g = guarded.expand(ps[:n_variety], [f"v{i}" for i in range(n_variety)], variants, seed=2)
            distinct = [len(set(caps)) for caps in g.captions]
            guard[f"{name} {mode}"] = {
                **{k: g.stats[k] for k in ("faithful", "resampled", "fallback", "unchecked", "pinned")},
                "distinct_mean": round(sum(distinct) / len(distinct), 2), "distinct_min": min(distinct)}
    headline = drafts["held-out keep-words"]
    result = {
        "lm": raw.identity, "device": device, "threads": torch.get_num_threads(), "batch_size": batch_size,
        "batched_prompts": n_speed, "batched_s": round(batched_s, 2), "batched_prompts_per_s": round(batched_rate, 1),
        "single_prompts": n_baseline, "single_s": round(single_s, 2), "single_prompts_per_s": round(single_rate, 1),
        "speedup": round(batched_rate / single_rate, 1),
        "faithful_checked": headline["checked"], "faithfulness": headline["faithfulness"],
        "variety_prompts": n_variety, "variants": variants,
        "distinct_mean": guard["held-out keep-words"]["distinct_mean"],
        "distinct_min": guard["held-out keep-words"]["distinct_min"],
        "first_drafts": drafts, "guard": guard,
    }
    rows = [
        ("batched expander", f"{n_speed} prompts in {batched_s:.1f}s", f"{batched_rate:.1f} prompts/s"),
        ("one-at-a-time generate()", f"{n_baseline} prompts in {single_s:.1f}s", f"{single_rate:.1f} prompts/s"),
        ("speed-up", "", f"{result['speedup']}x (target >= 8x)"),
    ]
    for name, d in drafts.items():
        g = guard[name]
        rows.append((f"first drafts, {name}", f"{d['faithful']}/{d['checked']} faithful, {d['pinned']} pinned",
                     f"{100 * d['faithfulness']:.1f}% faithful, {100 * d['words_kept']:.1f}% words kept, "
                     f"{100 * d['lm_faithful_before_pin']:.1f}% before pinning"))
        rows.append((f"  guard x{variants}, {name}", f"resampled {g['resampled']}, fallback {g['fallback']}",
                     f"{g['distinct_mean']} distinct (min {g['distinct_min']})"))
    print(f"caption LM {raw.identity} on {device} ({result['threads']} threads), batch {batch_size}; "
          "targets: >= 98% first drafts faithful with keep-words, >= 5 distinct of 8", file=out)
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip(), file=out)
    return result


def engines(lm: str | None = None, threads: Sequence[int] = (1, 2), batches: Sequence[int] = (64, 256, 1024),
            n: int = 1024, repeats: int = 3, device: str = "cpu", out=sys.stdout) -> dict[str, Any]:
    """Fast vs reference sampling loop: captions/s of `expand` (one draft per prompt, no check, no cache) on n
    held-out prompts at each (threads, batch), engines alternating, the best of `repeats` each; every repeat uses
    fresh keys, and each engine's captions are compared with the other's for the same keys."""
    prompts = heldout_prompts(n)
    base = ExpanderConfig(lm=lm, device=device, cache_size=0, max_resamples=0)
    models = {e: CaptionExpander(replace(base, engine=e)) for e in ("fast", "reference")}
    if models["fast"].engine != "fast":
        raise RuntimeError(f"the fast engine cannot run this LM: {models['fast'].engine_note}")
    before = torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    try:
        for t in threads:
            torch.set_num_threads(t)
            for b in batches:
                best = {"fast": 0.0, "reference": 0.0}
                differ = 0
                for r in range(repeats + 1):  # repeat 0 warms both up (allocator, first-call costs); not counted
                    keys = [f"{t}-{b}-{r}-{i}" for i in range(n)]
                    caps = {}
                    for name, exp in models.items():
                        exp.config = replace(exp.config, batch_size=b)
                        t0 = time.perf_counter()
                        caps[name] = exp.expand(prompts, keys, 1, seed=r).captions
                        if r:
                            best[name] = max(best[name], n / (time.perf_counter() - t0))
                    differ += sum(a != c for a, c in zip(caps["fast"], caps["reference"]))
                rows.append({"threads": t, "batch": b, "fast_captions_per_s": round(best["fast"], 1),
                             "reference_captions_per_s": round(best["reference"], 1),
                             "ratio": round(best["fast"] / best["reference"], 2),
                             "captions_compared": n * (repeats + 1), "captions_differing": differ})
    finally:
        torch.set_num_threads(before)
    result = {"lm": models["fast"].identity, "device": device, "prompts": n, "repeats": repeats, "rows": rows}
    print(f"caption LM {result['lm']} on {device}: fast vs reference sampling loop, {n} held-out prompts, "
          f"best of {repeats}", file=out)
    print("| threads | batch | fast captions/s | reference captions/s | fast ÷ reference | captions differing |",
          file=out)
    print("| --- | --- | --- | --- | --- | --- |", file=out)
    for row in rows:
        print(f"| {row['threads']} | {row['batch']} | {row['fast_captions_per_s']:,.1f} | "
              f"{row['reference_captions_per_s']:,.1f} | {row['ratio']:.2f} | "
              f"{row['captions_differing']} of {row['captions_compared']} |", file=out)
    return result


def gan_synonyms(n: int = 48, seed: int = 0, out=sys.stdout) -> dict[str, float]:
    """How the shipped text encoder + GAN draw a value named by each word (canonical, corpus synonym, typed-only
    synonym alone and as `caption_phrase` writes it): the evaluation classifier's accuracy over n images each."""
    from llmgan.eval.classifier import load_classifier
    from llmgan.gan.inference import GanModel
    from llmgan.text.encoder import TextEncoder

    gan = GanModel.load(None)
    enc, clf = TextEncoder(gan.text_encoder), load_classifier(None)
    figures: dict[str, float] = {}
    for attr in ("shape", "color", "size", "background"):
        for value in vocab.VALUES[attr]:
            words = [(w, "canonical" if i == 0 else "corpus") for i, w in enumerate(vocab.SYNONYMS[attr][value])]
            for w in USER_WORDS[attr].get(value, ()):
                words.append((w, "typed"))
                grounded = shapes.grounder().ground(w).understood
                if grounded and caption_phrase(grounded[0]) != w:
                    words.append((caption_phrase(grounded[0]), "typed, as captioned"))
            for word, kind in words:
                rng = np.random.default_rng([seed, len(figures)])
                labels = [{a: str(rng.choice(vocab.VALUES[a])) for a in vocab.ATTRIBUTES} for _ in range(n)]
                caps = [f"a {lab['size']} {lab['color']} {lab['shape']} in the {lab['position']} on a "
                        f"{lab['background']} background".replace(f" {lab[attr]} ", f" {word} ", 1) for lab in labels]
                images = gan.generate(enc.encode(caps), gan.noise(list(range(n))))
                acc = float(np.mean([p == value for p in clf.predict(images)[attr]]))
                figures[f"{attr}:{word}"] = acc
                print(f"{attr:10s} {value:10s} {word:22s} {kind:20s} {acc:.2f}", file=out)
    return figures


# "doughnut emoji, food sweet, twitter style": the caption form of the emoji dataset (llmgan.data.emoji.caption_of)
EMOJI_CAPTION = re.compile(r"^(?P<name>[^,]+) emoji, (?P<sub>[^,]+), (?P<style>[^,\s]+) style$")


def _sub(row: dict[str, Any]) -> str:
    return str(row["subcategory"]).replace("-", " ")  # as the caption writes it


def _states(word: str, text: str) -> bool:
    """`word` appears in `text` as a whole word (not inside a hyphenated name)."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def _share(k: int, d: int) -> float:
    return round(k / max(d, 1), 4)


def captioned_prompt_sets(rows: Sequence[dict[str, Any]], n_train: int, seed: int = 0) -> dict[str, list[dict]]:
    """Prompt sets from a captioned dataset's rows (name, style, subcategory, split): every held-out row as
    "<name>, <style> style" and once more in another form that states the style ("<style> style <name>", ...), and
    n_train train rows in the forms `llmgan data prompt-pairs --from` draws (a different seed than training's)."""
    from llmgan.data.prompt_pairs import STYLE_FORMS, draw_prompt

    styles = sorted({str(r["style"]) for r in rows})
    items: dict[str, list[dict]] = {"held-out name, style": [], "held-out other forms": [], "train sample": []}
    held = [r for r in rows if r.get("split") == "heldout"]
    for i, r in enumerate(held):
        rng = np.random.default_rng([seed, 31, i])
        form = STYLE_FORMS[1 + int(rng.integers(len(STYLE_FORMS) - 1))]
        for name, text in (("held-out name, style", f"{r['name']}, {r['style']} style"),
                           ("held-out other forms", form.format(name=r["name"], style=r["style"]))):
            items[name].append({"prompt": text, "name": r["name"], "style": r["style"], "sub": _sub(r)})
    train = [r for r in rows if r.get("split") == "train"]
    pick = np.random.default_rng([seed, 32]).choice(len(train), size=min(n_train, len(train)), replace=False)
    for j, k in enumerate(pick):
        r = train[int(k)]
        text = draw_prompt(r, np.random.default_rng([seed, 33, j]))
        stated = next((s for s in styles if _states(s, text)), None)
        items["train sample"].append({"prompt": text, "name": r["name"], "style": stated, "sub": _sub(r)})
    return items


def caption_figures(items: Sequence[dict], captions: Sequence[Sequence[str]], subcategories: set[str],
                    styles: set[str]) -> dict[str, Any]:
    """Shares of captions that keep the asked-for name verbatim (whole words), name exactly that concept, keep the
    asked-for style (prompts stating one), are well-formed ("<name> emoji, <known subcategory>, <known style>
    style") and give the concept its own subcategory."""
    n = kept = exact = styled = style_n = formed = sub_ok = 0
    for item, caps in zip(items, captions):
        for cap in caps:
            n += 1
            m = EMOJI_CAPTION.match(cap)
            kept += keeps_words([item["name"]], cap)
            exact += bool(m) and m["name"] == item["name"]
            formed += bool(m) and m["sub"] in subcategories and m["style"] in styles
            sub_ok += bool(m) and m["sub"] == item["sub"]
            if item["style"]:
                style_n += 1
                styled += bool(m) and m["style"] == item["style"]
    return {"captions": n, "name_kept": _share(kept, n), "name_exact": _share(exact, n),
            "style_prompts": style_n, "style_kept": _share(styled, style_n), "well_formed": _share(formed, n),
            "subcategory_right": _share(sub_ok, n)}


# "crossed swords icon, red on a black background" (categories may follow the name): llmgan.data.game_icons.caption_of
ICON_CAPTION = re.compile(r"^(?P<name>[^,]+) icon(?:, [^,]+)?, (?P<color>[\w ]+?) on a (?P<background>[\w ]+) background$")


def icon_prompt_sets(rows: Sequence[dict[str, Any]], n_train: int, seed: int = 0) -> dict[str, list[dict]]:
    """Every held-out game-icons row as "<color> <name> on <background>" (the dataset's own fullest short-prompt form),
    once more by its name alone, and n_train train rows in the forms `llmgan data prompt-pairs --from` draws (a
    different seed than training's)."""
    from llmgan.data.game_icons import TRANSPARENT, background_words, icon_words
    from llmgan.data.prompt_pairs import draw_prompt

    items: dict[str, list[dict]] = {"held-out colour + background": [], "held-out name only": [], "train sample": []}
    for r in (r for r in rows if r.get("split") == "heldout"):
        name, color, bg = icon_words(r["label"]), r["color"], r["background"]
        items["held-out colour + background"].append(
            {"prompt": f"{color} {name} on {background_words(bg) if bg == TRANSPARENT else bg}", "name": name,
             "color": color, "background": bg})
        items["held-out name only"].append({"prompt": name, "name": name, "color": None, "background": None})
    train = [r for r in rows if r.get("split") == "train"]
    pick = np.random.default_rng([seed, 32]).choice(len(train), size=min(n_train, len(train)), replace=False)
    for j, k in enumerate(pick):
        r = train[int(k)]
        text = draw_prompt(r, np.random.default_rng([seed, 33, j]))
        stated = {a: r[a] if _states(r[a], text) else None for a in ("color", "background")}
        items["train sample"].append({"prompt": text, "name": icon_words(r["label"]), **stated})
    return items


def icon_caption_figures(items: Sequence[dict], captions: Sequence[Sequence[str]], colors: set[str],
                         backgrounds: set[str]) -> dict[str, Any]:
    """Shares of captions that name exactly the asked-for icon, keep the stated colour and background (of the prompts
    stating them), and are well-formed ("<name> icon, <known colour> on a <known background> background")."""
    n = exact = formed = 0
    stated = {"color": [0, 0], "background": [0, 0]}
    for item, caps in zip(items, captions):
        for cap in caps:
            n += 1
            m = ICON_CAPTION.match(cap)
            exact += bool(m) and m["name"] == item["name"]
            formed += bool(m) and m["color"] in colors and m["background"] in backgrounds
            for attr, count in stated.items():
                if item[attr]:
                    count[0] += 1
                    count[1] += bool(m) and m[attr] == item[attr]
    return {"captions": n, "name_exact": _share(exact, n), "color_prompts": stated["color"][0],
            "color_kept": _share(stated["color"][1], stated["color"][0]),
            "background_prompts": stated["background"][0],
            "background_kept": _share(stated["background"][1], stated["background"][0]), "well_formed": _share(formed, n)}


def _emoji_line(f: dict[str, Any]) -> str:
    return (f"name kept {100 * f['name_kept']:.1f}% (exact {100 * f['name_exact']:.1f}%), style kept "
            f"{100 * f['style_kept']:.1f}% of {f['style_prompts']}, well-formed {100 * f['well_formed']:.1f}%, own "
            f"subcategory {100 * f['subcategory_right']:.1f}%")


def _icon_line(f: dict[str, Any]) -> str:
    return (f"name exact {100 * f['name_exact']:.1f}%, colour kept {100 * f['color_kept']:.1f}% of "
            f"{f['color_prompts']}, background kept {100 * f['background_kept']:.1f}% of {f['background_prompts']}, "
            f"well-formed {100 * f['well_formed']:.1f}%")


def captioned(data: str, lm: str | None = None, n_train: int = 300, variants: int = 4, batch_size: int = 64,
              seed: int = 0, ckpt: str | None = None, device: str = "cpu", out=sys.stdout) -> dict:
    """The caption LM on a captioned dataset's prompt sets (`captioned_prompt_sets`): its own drafts (no check:
    figures and captions/s) and the job's path (the domain check with keep-words, up to 3 resamples, then the
    prompt itself: outcomes and figures). The check is that of the GAN at `ckpt`, else the one `llmgan train`
    would record for the data's train rows (their caption words)."""
    import pyarrow.parquet as pq

    from llmgan.domains import detect_domain
    from llmgan.io.storage import Storage

    icons = "color" in pq.read_schema(data).names
    cols = ["caption", "short_prompt", "label", "color", "background", "split"] if icons else [
        "caption", "name", "style", "subcategory", "split"]
    rows = pq.read_table(data, columns=cols).to_pylist()
    train_caps = [r["caption"] for r in rows if r["split"] == "train"]
    if ckpt is not None:
        from llmgan.eval.consistency import gan_domain

        domain = gan_domain(ckpt, Storage())
    else:
        domain = detect_domain(train_caps)
    if icons:
        sets = icon_prompt_sets(rows, n_train, seed)
        known = ({str(r["color"]) for r in rows}, {str(r["background"]) for r in rows})
        figures, line = icon_caption_figures, _icon_line
    else:
        sets = captioned_prompt_sets(rows, n_train, seed)
        known = ({_sub(r) for r in rows}, {str(r["style"]) for r in rows})
        figures, line = caption_figures, _emoji_line
    base = ExpanderConfig(lm=lm, batch_size=batch_size, device=device, cache_size=0)
    raw = CaptionExpander(replace(base, max_resamples=0), check=None)
    guarded = CaptionExpander(base, check=domain.faithfulness())
    warm = [it["prompt"] for it in sets["train sample"][:8]]
    raw.expand(warm, [f"w{i}" for i in range(len(warm))], 1, seed=99)
    result: dict[str, Any] = {"lm": raw.identity, "data": data, "domain": domain.name,
                              "domain_words": len(getattr(domain, "words", ())), "device": device,
                              "threads": torch.get_num_threads(), "batch_size": batch_size, "variants": variants,
                              "seed": seed, "sets": {}}
    rows_out = []
    for name, items in sets.items():
        prompts, keys = [it["prompt"] for it in items], [f"{name}:{i}" for i in range(len(items))]
        t0 = time.perf_counter()
        drafts = raw.expand(prompts, keys, variants, seed=seed)
        raw_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        job = guarded.expand(prompts, keys, variants, seed=seed)
        job_s = time.perf_counter() - t0
        own, final = figures(items, drafts.captions, *known), figures(items, job.captions, *known)
        outcomes = {k: job.stats[k] for k in ("generated", "pinned", "faithful", "resampled", "fallback",
                                                "unchecked", "not_understood")}
        result["sets"][name] = {
            "prompts": len(items), "lm_drafts": own, "lm_captions_per_s": round(own["captions"] / raw_s, 1),
            "job": final, "job_captions_per_s": round(final["captions"] / job_s, 1), "outcomes": outcomes,
            "examples": [[p, c[0], j[0]] for p, c, j in list(zip(prompts, drafts.captions, job.captions))[:5]],
        }
        for label, f in (("LM drafts", own), ("job (check)", final)):
            rows_out.append((f"{name}, {label}", f"{f['captions']} captions", line(f)))
        rows_out.append((f"  {name} speed / outcomes", f"{own['captions'] / raw_s:.1f} LM captions/s",
                         ", ".join(f"{k} {v}" for k, v in outcomes.items())))
    print(f"caption LM {raw.identity} on {data} ({domain.name} check, {result['domain_words']} words), {device} "
          f"({result['threads']} threads), batch {batch_size}, {variants} per prompt", file=out)
    width = [max(len(r[i]) for r in rows_out) for i in range(3)]
    for r in rows_out:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip(), file=out)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.expand", description=__doc__)
    parser.add_argument("--lm", default=None, help="caption LM directory or hub id (default: the shipped LM)")
    parser.add_argument("--n", type=int, default=512, help="prompts per set for the batched run and first drafts")
    parser.add_argument("--baseline", type=int, default=512, help="prompts for the one-at-a-time run (a prefix)")
    parser.add_argument("--variety", type=int, default=64, help="prompts per set for guard and variety (8 variants)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (both paths use the same)")
    parser.add_argument("--gan-synonyms", action="store_true",
                        help="instead: how the shipped GAN draws each synonym (evaluation classifier, ~1 min)")
    parser.add_argument("--captioned", default=None, metavar="DATA",
                        help="instead: the LM on a captioned Parquet with name, style, subcategory and split columns "
                             "(llmgan data emoji --split all) or label, color, background and split columns (llmgan "
                             "data game-icons --split all): its held-out rows and a sample of its train rows")
    parser.add_argument("--n-train", type=int, default=300, help="--captioned: train rows sampled")
    parser.add_argument("--per-prompt", type=int, default=4, help="--captioned: captions per prompt")
    parser.add_argument("--ckpt", default=None, help="--captioned: GAN whose domain check applies (default: the "
                                                     "one `llmgan train` records for DATA's train rows)")
    parser.add_argument("--seed", type=int, default=0, help="--captioned: prompt and sampling seed")
    parser.add_argument("--engines", action="store_true",
                        help="instead: captions/s of the fast vs the reference sampling loop at each --threads-list "
                             "and --batches, same prompts and seeds, and how many captions differ")
    parser.add_argument("--threads-list", default="1,2", help="--engines: thread counts, comma-separated")
    parser.add_argument("--batches", default="64,256,1024", help="--engines: batch sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="--engines: timed repeats (best is kept)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.gan_synonyms:
        result: dict = gan_synonyms()
    elif args.engines:
        result = engines(args.lm, [int(t) for t in args.threads_list.split(",")],
                         [int(b) for b in args.batches.split(",")], args.n, args.repeats, args.device)
    elif args.captioned:
        result = captioned(args.captioned, args.lm, args.n_train, args.per_prompt, args.batch_size, args.seed,
                           args.ckpt, args.device)
    else:
        result = run(args.lm, args.n, args.baseline, args.variety, batch_size=args.batch_size, device=args.device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
