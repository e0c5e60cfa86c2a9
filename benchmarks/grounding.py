"""How well the shapes domain understands words it was never written for, on the frozen open-vocabulary prompt
set (benchmarks/prompt_sets, openvocab-v1), and the calibration of its cut-offs on that set's tuning split only.

    python -m benchmarks.grounding                  # figures on both splits with the shipped cut-offs
    python -m benchmarks.grounding --calibrate      # sweep the cut-offs on the tuning split, then report holdout

Per prompt the grounding is compared with the set's truth (written from the colour survey's RGB and by hand,
before any grounding existed): a stated attribute read as another value is *wrong* (the job would draw and
certify the wrong thing); an undrawable word that gets a value (or a prompt with undrawable words that is not
flagged) is *unsafe* too; a word of a drawable thing reported as not understood is a *false not-understood*.
The calibration picks, among cut-offs whose tuning-split unsafe rate is lowest, the ones with the fewest false
not-understood words; the holdout split is reported, never tuned on.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.prompt_sets import load
from llmgan.domains.grounding import Cutoffs, Grounder
from llmgan.domains.shapes import CUTOFFS, grounder

_WORDS = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")


def judge(g: Grounder, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Grounding-level figures of `g` on `rows` (see the module docstring)."""
    unsafe, wrong, stated, right, words, false_nu, flagged_false = 0, 0, 0, 0, 0, 0, 0
    false_words: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    kinds = Counter(r["kind"] for r in rows)
    for r in rows:
        got = g.ground(r["prompt"])
        values, missing = got.values(), list(got.not_understood)
        flagged = bool(missing)  # the job records the words and certifies nothing about this prompt
        bad_value = False
        for attr, value in r["expect"].items():
            stated += 1
            if values.get(attr) == [value]:
                right += 1
            elif attr in values:  # another value, or a contradiction, for a stated attribute
                wrong += 1
                bad_value = True
        undrawable = [w.lower() for w in r["undrawable"]]
        bad = not flagged and (bad_value or bool(undrawable))
        fake = [w for w in missing if not any(w in u or u in w for u in undrawable)]
        words += len(missing)
        false_nu += len(fake)
        flagged_false += bool(fake)
        false_words.update(fake)
        unsafe += bad
        by_kind[r["kind"]] += bad
    n = len(rows)
    tokens = sum(len(_WORDS.findall(r["prompt"])) for r in rows)
    return {
        "prompts": n,
        "prompt_words": tokens,
        "false_not_understood_per_prompt_word": round(false_nu / tokens, 4) if tokens else None,
        "unsafe_rate": round(unsafe / n, 4) if n else None,
        "stated_right": round(right / stated, 4) if stated else None,
        "stated_wrong": round(wrong / stated, 4) if stated else None,
        "words_not_understood": words,
        "false_not_understood_words": false_nu,
        "false_not_understood_share_of_words": round(false_nu / words, 4) if words else None,
        "prompts_with_a_false_not_understood": round(flagged_false / n, 4) if n else None,
        "unsafe_by_kind": {k: f"{by_kind[k]}/{kinds[k]}" for k in sorted(kinds)},
        "most_common_false_not_understood": false_words.most_common(12),
    }


def _with(g: Grounder, cut: Cutoffs) -> Grounder:
    g.cutoffs = cut
    g._cache.clear()  # the embedding readings stay cached: only the cut-offs change
    return g


def calibrate(rows: list[dict[str, Any]]) -> tuple[Cutoffs, dict[str, Any]]:
    """The cut-offs with the lowest unsafe rate on `rows`, then the fewest false not-understood words. Colour and
    meaning cut-offs act on different words, so each pair is swept with the other pair held."""
    g = grounder()

    def key(cut: Cutoffs) -> tuple[tuple, dict[str, Any]]:
        fig = judge(_with(g, cut), rows)
        return (fig["unsafe_rate"], fig["false_not_understood_words"], -fig["stated_right"]), fig

    best = CUTOFFS
    for dist, clarity in itertools.product((20.0, 25.0, 30.0, 35.0, 40.0, 50.0), (0.1, 0.2, 0.25, 0.3, 0.4)):
        cut = dataclasses.replace(best, colour_distance=dist, colour_clarity=clarity)
        if key(cut)[0] < key(best)[0]:
            best = cut
    for sim, margin in itertools.product((0.45, 0.5, 0.55, 0.6, 0.7), (0.05, 0.1, 0.15, 0.2, 0.25)):
        cut = dataclasses.replace(best, meaning_similarity=sim, meaning_margin=margin)
        if key(cut)[0] < key(best)[0]:
            best = cut
    fig = key(best)[1]
    _with(g, CUTOFFS)
    return best, fig


def run(calibrate_first: bool = False, out: str | None = None, log: Any = sys.stdout) -> dict[str, Any]:
    tune, holdout = load(split="tune"), load(split="holdout")
    result: dict[str, Any] = {"set": "openvocab-v1", "shipped_cutoffs": dataclasses.asdict(CUTOFFS)}
    if calibrate_first:
        cut, fig = calibrate(tune)
        result["calibrated_cutoffs"] = dataclasses.asdict(cut)
        result["calibration_tune"] = fig
        print(f"calibrated on tune ({len(tune)} prompts): {dataclasses.asdict(cut)} -> unsafe {fig['unsafe_rate']}, "
              f"false not-understood words {fig['false_not_understood_words']}", file=log)
        _with(grounder(), cut)
    for name, rows in (("tune", tune), ("holdout", holdout)):
        fig = judge(grounder(), rows)
        result[name] = fig
        print(f"{name:8s} {fig['prompts']} prompts: stated right {fig['stated_right']}, wrong {fig['stated_wrong']}, "
              f"unsafe {fig['unsafe_rate']}, not understood {fig['words_not_understood']} words "
              f"({fig['false_not_understood_words']} of drawable things = {fig['false_not_understood_per_prompt_word']} of "
              f"all {fig['prompt_words']} prompt words; prompts with one: "
              f"{fig['prompts_with_a_false_not_understood']})", file=log)
        print(f"         unsafe by kind {fig['unsafe_by_kind']}", file=log)
        print(f"         most common false not-understood {fig['most_common_false_not_understood']}", file=log)
    _with(grounder(), CUTOFFS)
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calibrate", action="store_true", help="sweep the cut-offs on the tuning split first")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    run(args.calibrate, args.out)


if __name__ == "__main__":
    main()
