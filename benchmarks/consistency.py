"""Consistency-scorer agreement with ground truth on held-out REAL images (`python -m benchmarks.consistency --out DIR`).

Each image is scored with its true caption (a match) and with a caption that changes one attribute (a
mismatch); per scorer and image set: accuracy of (score >= t) at t = 0.5 and at the best t, ROC AUC,
expected calibration error, a per-attribute breakdown, and a reliability table. Writes DIR/consistency.json
and DIR/calibration.png (binned predicted score vs observed match rate).

Sets: shapes with training-split attribute combinations (new images), shapes with held-out (shape, colour)
combinations, and the digits rows a digits matcher was not trained on. The shapes classifier covers shapes
only (there is no shipped digits classifier); the matcher covers both. The GAN's discriminator logit is shown
as a baseline (AUC only: it is not a probability).

Short prompts (`prompt_report`, `--sets prompts`): the user's prompt text itself is scored, never a caption.
Per prompt, a rendered image showing what the prompt states (attributes it leaves open drawn at random) is the
match, and the same image with one stated attribute changed the mismatch. Sets: the held-out-combination short
prompts the faithfulness benchmark uses (in-table words) and the holdout split of the frozen open-vocabulary set
benchmarks/prompt_sets/openvocab-v1 (rows with a non-empty `expect` and no `undrawable` word). Scorers: the
matcher on the prompt text (calibration fitted on captions and prompts together, and the fit on prompts alone),
an earlier matcher on the prompt text (`--compare-matcher`, default the
captions-only matcher shipped before prompts were trained), the shapes classifier scorer as the code grounds the
prompt, and the classifier's probability of the expected values (grounding given: the classifier's ceiling).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmgan.domains.shapes import vocab
from llmgan.io.seeds import derive_seed

BINS = 10
# the shipped matcher as trained on full captions only (before --prompt-share): the comparison for short prompts
CAPTIONS_ONLY_MATCHER = "7d8328c:llmgan/assets/eval/shapes32-matcher"
HELDOUT_PROMPT_SEED = 1234  # benchmarks.expand.heldout_prompts' seed: the same prompts the faithfulness run uses
DIGITS_TRAIN = 1500  # the first rows train the digits matcher; the rest (297) are held out
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# the phrases digits captions use for thickness and slant (llmgan/data/digits.py)
_DIGIT_PHRASES = {
    "thickness": {"thin": "thin strokes", "regular": "medium strokes", "thick": "thick, bold strokes"},
    "slant": {"leaning left": "slanted to the left", "upright": "upright", "leaning right": "slanted to the right"},
}


# ---- image sets with matched and one-attribute-changed captions ------------------------------------


def shapes_set(n: int, split: str, seed: int) -> dict[str, Any]:
    from llmgan.data.tables import decode_images
    from llmgan.domains.shapes.render import generate_shapes, make_caption

    table = generate_shapes(n, split=split, seed=seed)
    labels = [{a: table[a][i].as_py() for a in vocab.ATTRIBUTES} for i in range(n)]
    wrong, changed = [], []
    for i, lab in enumerate(labels):
        rng = np.random.default_rng(derive_seed("consistency-mismatch", split, seed, i))
        attr = str(rng.choice(vocab.ATTRIBUTES))
        other = [v for v in vocab.VALUES[attr] if v != lab[attr]]
        wrong.append(make_caption({**lab, attr: str(rng.choice(other))}, rng))
        changed.append(attr)
    return {"images": decode_images(table["image"].to_pylist()), "captions": table["caption"].to_pylist(),
            "wrong": wrong, "changed": changed}


def _change_digit_caption(caption: str, label: int, thickness: str, slant: str,
                          rng: np.random.Generator) -> tuple[str, str]:
    """(caption with one of digit / thickness / slant changed, which); the digit when the phrase is absent."""
    attr = str(rng.choice(["label", "label", "thickness", "slant"]))  # the digit is what users ask for most
    if attr != "label":
        current = thickness if attr == "thickness" else slant
        table = _DIGIT_PHRASES[attr]
        new = str(rng.choice([v for v in table if v != current]))
        if table[current] in caption:
            return caption.replace(table[current], table[new], 1), attr
    new_label = int(rng.choice([d for d in range(10) if d != label]))
    out = re.sub(rf"\b{label}\b", str(new_label), caption)
    out = re.sub(rf"\b{_NUMBER_WORDS[label]}\b", _NUMBER_WORDS[new_label], out)
    return out, "label"


def digits_tables(out_dir: str) -> tuple[str, dict[str, Any]]:
    """(path of the digits training rows as Parquet, the held-out set with matched/mismatched captions)."""
    from llmgan.data.tables import decode_images, write_dataset
    from llmgan.domains.digits.dataset import generate_digits

    table = generate_digits(size=32, seed=0)
    train_path = os.path.join(out_dir, "digits_train.parquet")
    if not os.path.exists(train_path):
        write_dataset(table.slice(0, DIGITS_TRAIN), train_path)
    held = table.slice(DIGITS_TRAIN)
    captions = held["caption"].to_pylist()
    wrong, changed = [], []
    for i, (cap, lab, th, sl) in enumerate(zip(captions, held["label"].to_pylist(), held["thickness"].to_pylist(),
                                               held["slant"].to_pylist())):
        w, attr = _change_digit_caption(cap, int(lab), th, sl, np.random.default_rng(derive_seed("digits-mm", i)))
        wrong.append(w)
        changed.append(attr)
    return train_path, {"images": decode_images(held["image"].to_pylist()), "captions": captions, "wrong": wrong,
                        "changed": changed}


# ---- figures ---------------------------------------------------------------------------------------


def agreement(pos: np.ndarray, neg: np.ndarray, changed: list[str], probability: bool = True) -> dict[str, Any]:
    """Accuracy at 0.5 and at the best threshold, AUC, ECE, reliability bins, per-attribute figures."""
    from llmgan.gan.matcher import roc_auc

    scores = np.concatenate([pos, neg])
    truth = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    cands = np.unique(scores)
    accs = [float(((scores >= t) == truth).mean()) for t in cands]
    best = int(np.argmax(accs))
    out: dict[str, Any] = {"pairs": int(len(scores)), "auc": roc_auc(pos, neg),
                           "best_threshold": float(cands[best]), "accuracy_at_best": accs[best]}
    by_attr = {}
    for attr in sorted(set(changed)):
        sel = np.array([c == attr for c in changed])
        by_attr[attr] = {"n": int(sel.sum()), "auc": roc_auc(pos, neg[sel])}
        if probability:
            by_attr[attr]["caught_at_0.5"] = float((neg[sel] < 0.5).mean())
    out["by_changed_attribute"] = by_attr
    if probability:
        out["accuracy_at_0.5"] = float(((scores >= 0.5) == truth).mean())
        out["mean_score_match"] = float(pos.mean())
        out["mean_score_mismatch"] = float(neg.mean())
        edges = np.linspace(0, 1, BINS + 1)
        idx = np.clip(np.digitize(scores, edges[1:-1]), 0, BINS - 1)
        bins, ece = [], 0.0
        for b in range(BINS):
            sel = idx == b
            if sel.any():
                bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(sel.sum()),
                             "mean_score": float(scores[sel].mean()), "match_rate": float(truth[sel].mean())})
                ece += sel.mean() * abs(scores[sel].mean() - truth[sel].mean())
        out["reliability"] = bins
        out["ece"] = float(ece)
    return out


def calibration_png(series: dict[str, list[dict[str, float]]], path: str) -> None:
    """Reliability diagram drawn with PIL: one line per (set, scorer), dot area ~ images in the bin."""
    from PIL import Image, ImageDraw, ImageFont

    palette = [(60, 120, 220), (235, 140, 40), (40, 160, 80), (200, 50, 60), (140, 80, 190), (90, 90, 90)]
    size, left, top, legend_h = 360, 50, 36, 16 * len(series) + 8
    img = Image.new("RGB", (left + size + 20, top + size + 40 + legend_h), "white")
    d, font = ImageDraw.Draw(img), ImageFont.load_default()

    def xy(p: float, q: float) -> tuple[float, float]:
        return left + p * size, top + (1 - q) * size

    d.text((left, 8), "calibration: predicted score vs observed match rate", fill="black", font=font)
    d.rectangle([xy(0, 1), xy(1, 0)], outline=(120, 120, 120))
    for k in range(6):
        if 0 < k < 5:
            d.line([xy(k / 5, 0), xy(k / 5, 1)], fill=(230, 230, 230))
            d.line([xy(0, k / 5), xy(1, k / 5)], fill=(230, 230, 230))
        d.text((xy(k / 5, 0)[0] - 8, top + size + 4), f"{k / 5:.1f}", fill="black", font=font)
        d.text((left - 28, xy(0, k / 5)[1] - 6), f"{k / 5:.1f}", fill="black", font=font)
    d.line([xy(0, 0), xy(1, 1)], fill=(160, 160, 160), width=1)
    d.text((left + size // 2 - 40, top + size + 18), "predicted score", fill="black", font=font)
    d.text((4, top - 14), "observed match rate", fill="black", font=font)
    total = max(sum(b["n"] for bins in series.values() for b in bins), 1)
    for k, (name, bins) in enumerate(series.items()):
        color = palette[k % len(palette)]
        pts = [xy(b["mean_score"], b["match_rate"]) for b in bins]
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
        for b, (px, py) in zip(bins, pts):
            r = 2 + 10 * (b["n"] / total) ** 0.5
            d.ellipse([px - r, py - r, px + r, py + r], outline=color, width=2)
        y = top + size + 40 + 16 * k
        d.rectangle([left, y + 2, left + 10, y + 12], fill=color)
        d.text((left + 16, y), name, fill="black", font=font)
    img.save(path)


# ---- the run ---------------------------------------------------------------------------------------


def _score(scorer: Any, images: np.ndarray, captions: list[str], emb: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = scorer.score(images, captions, [""] * len(captions), emb=emb)
    return np.array([r.score for r in result]), len(captions) / (time.perf_counter() - start)


def shapes_classifier_scorer(classifier: Any | None = None) -> Any:
    """llmgan.eval.consistency's shapes classifier scorer, built through the domain where its API takes one."""
    from llmgan.eval.consistency import ClassifierScorer

    try:
        from llmgan.domains import get_domain

        return ClassifierScorer(get_domain("shapes"), classifier)
    except (ImportError, TypeError):
        return ClassifierScorer(classifier)


class _OnCaption:
    """A matcher scoring the caption embedding it is given (what the caption sets measure); `text="caption"`: with
    its captions-only calibration where it has one."""

    def __init__(self, matcher: Any, text: str | None = None) -> None:
        self.matcher, self.text = matcher, text

    def score(self, images: np.ndarray, captions: list[str], prompts: list[str], emb: np.ndarray) -> list[Any]:
        from types import SimpleNamespace

        p = self.matcher.probability(images, emb, self.text) if self.text else self.matcher.probability(images, emb)
        return [SimpleNamespace(score=float(x)) for x in p]


def run(out_dir: str, n: int = 1000, seed: int = 0, shapes_matcher: str | None = None,
        digits_matcher: str | None = None, digits_steps: int = 300, sets: tuple[str, ...] = ("captions", "prompts"),
        compare: str | None = CAPTIONS_ONLY_MATCHER, prompt_n: int = 500) -> dict[str, Any]:
    import torch

    from llmgan.gan.matcher import Matcher, train_matcher
    from llmgan.text.encoder import TextEncoder

    os.makedirs(out_dir, exist_ok=True)
    shapes_matcher = shapes_matcher or shipped_matcher_path()
    matcher = Matcher.load(shapes_matcher)
    old = load_matcher_at(compare, out_dir) if compare else None
    report: dict[str, Any] = {"n_per_set": n, "seed": seed, "shapes_matcher": shapes_matcher,
                              "compare_matcher": compare, "torch_threads": torch.get_num_threads()}
    if "prompts" in sets:
        report["prompts"] = prompt_report(prompt_n, seed, matcher, old)
    if "captions" not in sets:
        _write(report, out_dir)
        return report
    from llmgan.gan.inference import GanModel

    encoder = TextEncoder()
    scorers = {"shapes-classifier": shapes_classifier_scorer(), "matcher": _OnCaption(matcher)}
    if getattr(matcher, "calibration_by_text", None):
        scorers["matcher, caption fit"] = _OnCaption(matcher, "caption")
    if old is not None:
        scorers["captions-only matcher"] = _OnCaption(old)
    gan = GanModel.load(None, discriminator=True)
    train_path, digits = digits_tables(out_dir)
    if digits_matcher is None:
        digits_matcher = os.path.join(out_dir, "digits-matcher")
        if not os.path.exists(os.path.join(digits_matcher, "matcher.json")):
            train_matcher(train_path, digits_matcher, digits_steps, seed=seed)
    sets = {
        "shapes (train combinations)": (shapes_set(n, "train", 1000 + seed), scorers),
        "shapes (held-out combinations)": (shapes_set(n, "heldout", 1000 + seed), scorers),
        "digits (held-out rows)": (digits, {"matcher": _OnCaption(Matcher.load(digits_matcher))}),
    }
    report.update({"digits_matcher": digits_matcher, "sets": {}})
    curves: dict[str, list[dict[str, float]]] = {}
    for set_name, (data, set_scorers) in sets.items():
        emb_pos, emb_neg = encoder.encode(data["captions"]), encoder.encode(data["wrong"])
        rows: dict[str, Any] = {}
        for name, scorer in set_scorers.items():
            pos, speed = _score(scorer, data["images"], data["captions"], emb_pos)
            neg, _ = _score(scorer, data["images"], data["wrong"], emb_neg)
            rows[name] = {**agreement(pos, neg, data["changed"]), "images_per_s": round(speed, 1)}
            curves[f"{set_name}: {name}"] = rows[name]["reliability"]
            print(f"{set_name:32s} {name:18s} AUC {rows[name]['auc']:.4f}  acc@0.5 {rows[name]['accuracy_at_0.5']:.4f}"
                  f"  acc@best {rows[name]['accuracy_at_best']:.4f} (t={rows[name]['best_threshold']:.3f})"
                  f"  ECE {rows[name]['ece']:.4f}  {speed:.0f} img/s", flush=True)
        if set_name.startswith("shapes"):  # the shipped GAN's D: was trained on these captions
            pos = gan.score(data["images"], emb_pos)
            neg = gan.score(data["images"], emb_neg)
            rows["gan-discriminator (logit)"] = agreement(pos, neg, data["changed"], probability=False)
            print(f"{set_name:32s} {'gan-discriminator':18s} AUC {rows['gan-discriminator (logit)']['auc']:.4f}",
                  flush=True)
        report["sets"][set_name] = rows
    calibration_png(curves, os.path.join(out_dir, "calibration.png"))
    _write(report, out_dir)
    return report


def _write(report: dict[str, Any], out_dir: str) -> None:
    with open(os.path.join(out_dir, "consistency.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


# ---- short prompts scored as typed ---------------------------------------------------------------------


def heldout_prompt_items(n: int, seed: int = HELDOUT_PROMPT_SEED) -> list[tuple[str, dict[str, str]]]:
    """(prompt, what it states) for the held-out-combination short prompts: the values the domain's grounding
    reads from the prompt, kept where they are the row's true labels (a misreading is dropped, not judged)."""
    from llmgan.domains.shapes import parse_attributes
    from llmgan.domains.shapes.render import generate_shapes

    table = generate_shapes(n, size=16, seed=seed, split="heldout")
    out = []
    for i, prompt in enumerate(table.column("short_prompt").to_pylist()):
        read = parse_attributes(prompt)
        expect = {a: str(table[a][i].as_py()) for a in vocab.ATTRIBUTES
                  if a in read and table[a][i].as_py() in read[a]}
        if expect:
            out.append((str(prompt), expect))
    return out


def openvocab_items(split: str = "holdout") -> tuple[list[tuple[str, dict[str, str]]], dict[str, str]]:
    """(prompt, expected values) of the frozen open-vocabulary set's rows with a non-empty `expect` and no
    `undrawable` word, and each prompt's kind; ([], {}) when the set is missing."""
    try:
        from benchmarks.prompt_sets import load
    except ImportError:
        return [], {}
    try:
        rows = load("openvocab-v1", split=split)
    except (OSError, ValueError) as exc:
        print(f"open-vocabulary set unavailable: {exc}", file=sys.stderr)
        return [], {}
    items, kinds = [], {}
    for row in rows:
        expect = {a: v[0] if isinstance(v, list) and len(v) == 1 else v for a, v in (row.get("expect") or {}).items()}
        if not expect or row.get("undrawable") or not all(isinstance(v, str) and v in vocab.VALUES.get(a, ())
                                                            for a, v in expect.items()):
            continue
        items.append((str(row["prompt"]), expect))
        kinds[str(row["prompt"])] = str(row.get("kind", ""))
    return items, kinds


def prompt_pairs(items: list[tuple[str, dict[str, str]]], tag: str, seed: int) -> dict[str, Any]:
    """Per (prompt, expected values): a rendered match (open attributes at random) and a mismatch that changes
    one stated attribute (the rest of the drawing, jitter included, drawn the same)."""
    from llmgan.domains.shapes.render import render_shape

    pos, neg, changed, expects = [], [], [], []
    for i, (_, expect) in enumerate(items):
        rng = np.random.default_rng(derive_seed("consistency-prompt-pairs", tag, seed, i))
        labels = {a: expect.get(a) or str(rng.choice(vocab.VALUES[a])) for a in vocab.ATTRIBUTES}
        attr = str(rng.choice(sorted(expect)))
        wrong = {**labels, attr: str(rng.choice([v for v in vocab.VALUES[attr] if v != labels[attr]]))}
        draw = int(rng.integers(2**31))
        pos.append(render_shape(labels, 32, np.random.default_rng(draw)))
        neg.append(render_shape(wrong, 32, np.random.default_rng(draw)))
        changed.append(attr)
        expects.append(expect)
    return {"prompts": [p for p, _ in items], "expect": expects, "pos": np.stack(pos), "neg": np.stack(neg),
            "changed": changed}


def shipped_matcher_path() -> str:
    import llmgan

    return str(Path(llmgan.__file__).resolve().parent / "assets" / "eval" / "shapes32-matcher")


def load_matcher_at(spec: str, work: str) -> Any:
    """A matcher folder, or "REV:PATH" of one in this git repository (copied into work/)."""
    import subprocess

    from llmgan.gan.matcher import CONFIG_FILE, WEIGHTS_FILE, Matcher

    if os.path.isdir(spec):
        return Matcher.load(spec)
    rev, _, path = spec.partition(":")
    dest = os.path.join(work, "matcher-" + re.sub(r"[^A-Za-z0-9]+", "-", rev))
    os.makedirs(dest, exist_ok=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        blob = subprocess.run(["git", "show", f"{rev}:{path}/{name}"], capture_output=True, check=True).stdout
        with open(os.path.join(dest, name), "wb") as f:
            f.write(blob)
    return Matcher.load(dest)


def prompt_scorers(matcher: Any, compare: Any | None) -> dict[str, Any]:
    """name -> f(images, prompts, expects) -> (N,) probabilities that the image matches the prompt."""
    from llmgan.eval.classifier import load_classifier
    from llmgan.text.encoder import TextEncoder

    encoder = TextEncoder(model=matcher.text_encoder)
    clf = load_classifier(None)

    def on_text(m: Any, text: str | None = None) -> Any:
        if text:
            return lambda images, prompts, _expects: m.probability(images, encoder.encode(prompts), text)
        return lambda images, prompts, _expects: m.probability(images, encoder.encode(prompts))

    def classifier_given(images: np.ndarray, _prompts: list[str], expects: list[dict[str, str]]) -> np.ndarray:
        probs = clf.probabilities(images)
        index = {a: {c: j for j, c in enumerate(clf.classes[a])} for a in clf.attributes}
        return np.array([np.prod([probs[a][i][index[a][v]] for a, v in e.items() if a in index])
                         for i, e in enumerate(expects)])

    def classifier_scorer(images: np.ndarray, prompts: list[str], _expects: list[dict[str, str]]) -> np.ndarray:
        return np.array([r.score for r in shapes_classifier_scorer(clf).score(images, [""] * len(prompts), prompts)])

    scorers = {"matcher on prompt": on_text(matcher)}
    if getattr(matcher, "calibration_by_text", None):
        scorers["matcher on prompt, prompt fit"] = on_text(matcher, "prompt")
    if compare is not None:
        scorers["captions-only matcher on prompt"] = on_text(compare)
    scorers["classifier scorer (code grounds prompt)"] = classifier_scorer
    scorers["classifier P(expected) (grounding given)"] = classifier_given
    return scorers


def prompt_report(n: int = 500, seed: int = 0, matcher: Any | None = None, compare: Any | None = None
                  ) -> dict[str, Any]:
    """Agreement of each prompt scorer with the rendered truth on the two short-prompt sets (see the module doc)."""
    from llmgan.gan.matcher import Matcher, roc_auc

    matcher = matcher if matcher is not None else Matcher.load(shipped_matcher_path())
    scorers = prompt_scorers(matcher, compare)
    ov_items, kinds = openvocab_items("holdout")
    sets = {"in-table held-out prompts": heldout_prompt_items(n)}
    if ov_items:
        sets["open-vocabulary holdout (openvocab-v1)"] = ov_items
    report: dict[str, Any] = {"n_prompts": {k: len(v) for k, v in sets.items()},
                              "openvocab": "openvocab-v1 holdout" if ov_items else "missing", "sets": {}}
    for set_name, items in sets.items():
        data = prompt_pairs(items, set_name, seed)
        rows: dict[str, Any] = {}
        for name, fn in scorers.items():
            try:
                pos = np.asarray(fn(data["pos"], data["prompts"], data["expect"]), np.float64)
                neg = np.asarray(fn(data["neg"], data["prompts"], data["expect"]), np.float64)
            except Exception as exc:  # noqa: BLE001 - a scorer whose API moved is reported, not fatal
                rows[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
                print(f"{set_name:40s} {name:42s} failed: {rows[name]['error']}", flush=True)
                continue
            rows[name] = agreement(pos, neg, data["changed"])
            if set_name.startswith("open"):
                by_kind: dict[str, Any] = {}
                for kind in sorted({kinds[p] for p in data["prompts"]}):
                    sel = np.array([kinds[p] == kind for p in data["prompts"]])
                    by_kind[kind] = {"n": int(sel.sum()), "auc": round(roc_auc(pos[sel], neg[sel]), 4),
                                     "mean_score_match": round(float(pos[sel].mean()), 4)}
                rows[name]["by_kind"] = by_kind
            r = rows[name]
            print(f"{set_name:40s} {name:42s} AUC {r['auc']:.4f}  acc@0.5 {r['accuracy_at_0.5']:.4f}  "
                  f"ECE {r['ece']:.4f}  mean match {r['mean_score_match']:.3f} / mismatch "
                  f"{r['mean_score_mismatch']:.3f}", flush=True)
        report["sets"][set_name] = rows
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.consistency", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for consistency.json and calibration.png")
    parser.add_argument("--n", type=int, default=1000, help="images per shapes set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shapes-matcher", default=None, help="matcher folder (default: the shipped shapes matcher)")
    parser.add_argument("--digits-matcher", default=None, help="matcher folder (default: train one into OUT)")
    parser.add_argument("--digits-steps", type=int, default=300,
                        help="steps when training the digits matcher (1,350 images: more steps overfit)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--sets", default="captions,prompts",
                        help="comma-separated: captions (images vs captions), prompts (images vs short prompts)")
    parser.add_argument("--compare-matcher", default=CAPTIONS_ONLY_MATCHER,
                        help="a matcher folder or REV:PATH in git to score beside the matcher ('none': skip)")
    parser.add_argument("--prompt-n", type=int, default=500, help="held-out short prompts drawn (before grounding)")
    args = parser.parse_args(argv)
    if args.n < 10:
        parser.error("--n must be at least 10")
    sets = tuple(x.strip() for x in args.sets.split(",") if x.strip())
    if not sets or not set(sets) <= {"captions", "prompts"}:
        parser.error(f"--sets must name captions and/or prompts, got {args.sets!r}")
    if args.prompt_n < 1:
        parser.error("--prompt-n must be at least 1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(max(1, args.threads))
    compare = None if args.compare_matcher in ("", "none") else args.compare_matcher
    run(args.out, args.n, args.seed, args.shapes_matcher, args.digits_matcher, args.digits_steps, sets, compare,
        args.prompt_n)
    print(f"wrote {os.path.join(args.out, 'consistency.json')}" + (" and calibration.png" if "captions" in sets
                                                                    else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
