"""End-to-end faithfulness of the generation job, judged against the user's prompt: the share of images whose
every stated attribute is right, with caption expansion on and off, before and after consistency feedback, and
the images/s that feedback costs; and on the frozen open-vocabulary set (benchmarks/prompt_sets, words the code was
never written for), the certified-wrong rate: images the job vouches for that contradict the prompt.

    python -m benchmarks.faithfulness --out faith/            # 3 prompt sets x expansion x feedback, + speed
    python -m benchmarks.faithfulness --quick --out faith/    # small sizes: proves the code path

The judge is NOT the feedback's scorer: it is a second attribute classifier trained here on other real images
(its own data seed and init seed), so feedback cannot pass its own exam. Prompt sets: held-out short prompts
(pairs the GAN never saw together), synonyms ("crimson star", "azure square") and combined attributes
("a small green square on a gray background"). Jobs run on the local executor (the same stages as on Ray).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.expand import combined_prompts, heldout_prompts, synonym_prompts
from benchmarks.prompt_sets import load
from llmgan.domains.shapes import parse_attributes
from llmgan.job.config import GenerateConfig

JUDGE_DATA_SEED, JUDGE_SEED = 515151, 7
OLD_SETS = ("held-out", "synonyms", "combined")  # measured with expansion off as well as on


def judge_classifier(work: Path, steps: int, n_images: int) -> Any:
    """The independent judge, trained once and cached under work/judge."""
    from llmgan.domains.shapes.render import generate_shapes
    from llmgan.domains.shapes.vocab import ATTRIBUTES
    from llmgan.eval.classifier import load_classifier, train_classifier

    path = work / f"judge-{steps}-{n_images}"
    if (path / "classifier.json").exists():
        return load_classifier(str(path))
    table = generate_shapes(n_images, size=32, seed=JUDGE_DATA_SEED, split="all")
    images = _decode(table.column("image").to_pylist())
    labels = {a: table.column(a).to_pylist() for a in ATTRIBUTES}
    clf = train_classifier(images, labels, seed=JUDGE_SEED, steps=steps, progress=False)
    clf.save(str(path))
    return clf


def _decode(pngs: list[bytes]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in pngs])


def _job(prompts: list[str], out: Path, expand: bool, min_consistency: float, scorer: str, n: int,
         seed: int = 0) -> dict[str, Any]:
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    path = out.with_suffix(".parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"prompt": prompts}), path)
    cfg = GenerateConfig(prompts=str(path), out=str(out), n_per_prompt=n, variants=n if expand else 1, expand=expand,
                         min_consistency=min_consistency, consistency=scorer, seed=seed, shard_size=1000,
                         executor="local", overwrite=True)
    return run_job(cfg, LocalExecutor(), progress=False)


def _images(out: Path) -> tuple[np.ndarray, list[dict[str, Any]]]:
    pngs, metas = [], []
    for tar_path in sorted(out.glob("shards/*.tar")):
        with tarfile.open(tar_path) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
        for name in sorted(n for n in files if n.endswith(".png")):
            pngs.append(files[name])
            metas.append(json.loads(files[name[:-4] + ".json"]))
    return _decode(pngs), metas


Truth = dict[str, dict[str, Any]]  # prompt -> {"expect": {attr: value}, "undrawable": [words]}


def table_truth(prompts: list[str]) -> Truth:
    """The earlier sets' truth: the values their (in-table) words name."""
    return {p: {"expect": {a: v[0] for a, v in parse_attributes(p).items() if len(v) == 1}, "undrawable": []}
            for p in prompts}


def judge(clf: Any, images: np.ndarray, metas: list[dict[str, Any]], truth: Truth | None = None,
          threshold: float | None = None) -> dict[str, Any]:
    """Against the user's prompt: the share of images whose every stated attribute the judge reads as stated, the
    same per attribute for the words the job understood, and (with feedback) the certified-wrong rate: images
    whose consistency is at least `threshold` and carry no not-understood flag, yet contradict a stated value or
    answer a prompt that asked for something the domain cannot draw."""
    truth = truth or table_truth(sorted({m["prompt"] for m in metas}))
    pred = clf.predict(images)
    right, understood_right, certified, certified_wrong = [], [], 0, 0
    per_attr: dict[str, list[bool]] = {}
    for i, m in enumerate(metas):
        t = truth[m["prompt"]]
        ok = {a: pred[a][i] == v for a, v in t["expect"].items() if a in pred}
        for a, good in ok.items():
            per_attr.setdefault(a, []).append(good)
        understood = {u["attr"] for u in (m.get("understood") or {}).values()}
        understood_right += [good for a, good in ok.items() if a in understood]
        if t["expect"]:
            right.append(all(ok.values()))
        score = m.get("consistency")
        if threshold is not None and score is not None and score >= threshold and not m.get("not_understood"):
            certified += 1
            certified_wrong += (not all(ok.values())) or bool(t["undrawable"])
    n = len(metas)
    return {"images": n, "all_stated_right": round(float(np.mean(right)), 4) if right else None,
            "understood_attributes_right": round(float(np.mean(understood_right)), 4) if understood_right else None,
            "per_attribute": {a: round(float(np.mean(v)), 4) for a, v in sorted(per_attr.items())},
            "certified": certified if threshold is not None else None,
            "certified_wrong_rate": round(certified_wrong / n, 4) if threshold is not None and n else None,
            "flagged_not_understood": sum(1 for m in metas if m.get("not_understood"))}


def open_vocab_sets() -> dict[str, tuple[list[str], Truth]]:
    """The frozen open-vocabulary set, its tuning and holdout splits (benchmarks/prompt_sets)."""
    out = {}
    for split in ("tune", "holdout"):
        rows = load(split=split)
        out[f"open-vocab {split}"] = ([r["prompt"] for r in rows],
                                      {r["prompt"]: {"expect": r["expect"], "undrawable": r["undrawable"]} for r in rows})
    return out


def run(out: str, quick: bool = False, n_prompts: int | None = None, scorers: Sequence[str] = ("auto", "matcher"),
        speed_images: int | None = None, repeats: int | None = None, log: Any = sys.stdout,
        only_expanded_off: Sequence[str] | None = None,
        only: Sequence[str] | None = None, min_consistency: float = 0.5) -> dict[str, Any]:
    work = Path(out)
    work.mkdir(parents=True, exist_ok=True)
    n_prompts = n_prompts or (24 if quick else 400)
    clf = judge_classifier(work, steps=200 if quick else 1500, n_images=2000 if quick else 12000)
    sets = {name: (p, table_truth(p)) for name, p in (
        ("held-out", heldout_prompts(n_prompts)), ("synonyms", synonym_prompts(n_prompts)),
        ("combined", combined_prompts(n_prompts)))}
    for name, (prompts, truth) in open_vocab_sets().items():
        sets[name] = (prompts[: n_prompts * 2] if quick else prompts, truth)
    sets = {k: v for k, v in sets.items() if only is None or k in only}
    rows = []
    for set_name, (prompts, truth) in sets.items():
        off_too = OLD_SETS if only_expanded_off is None else only_expanded_off
        for expand in (False, True) if set_name in off_too else (True,):
            for scorer, threshold in [("none", 0.0), *((s, min_consistency) for s in scorers)]:
                folder = work / "jobs" / f"{set_name}-{'exp' if expand else 'noexp'}-{scorer}".replace(" ", "-")
                summary = _job(prompts, folder, expand, threshold, scorer, n=2)
                verdict = judge(clf, *_images(folder), truth, threshold if threshold else None)
                cons = summary.get("consistency") or {}
                row = {"set": set_name, "expand": expand, "feedback": scorer if threshold else "off", **verdict,
                       "extra_draws_per_image": cons.get("extra_draws_per_image"),
                       "scorer_share_below_first_draw": cons.get("share_below_threshold_first_draw")}
                rows.append(row)
                print(f"{set_name:17s} expand={'on ' if expand else 'off'} feedback={row['feedback']:8s} "
                      f"all stated right {verdict['all_stated_right']} understood attrs right "
                      f"{verdict['understood_attributes_right']} certified wrong {verdict['certified_wrong_rate']} "
                      f"flagged {verdict['flagged_not_understood']}/{verdict['images']} "
                      f"extra draws/image {row['extra_draws_per_image']}", file=log, flush=True)
    speed = None if speed_images == 0 else feedback_speed(
        work, sets["held-out"][0] if "held-out" in sets else heldout_prompts(n_prompts),
        speed_images or (96 if quick else 2000), repeats or (1 if quick else 3), log, min_consistency)
    result = {"judge": {"data_seed": JUDGE_DATA_SEED, "seed": JUDGE_SEED}, "rows": rows, "speed": speed}
    (work / "faithfulness.json").write_text(json.dumps(result, indent=1))
    return result


def feedback_speed(work: Path, prompts: list[str], images: int, repeats: int, log: Any,
                   min_consistency: float = 0.5) -> dict[str, Any]:
    """Job images/s with feedback off vs on (default scorer, 0.5), expansion on, alternating runs; medians."""
    n = 2
    prompts = (prompts * (images // (n * len(prompts)) + 1))[: images // n]
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for r in range(repeats):
        for mode in ("off", "on"):
            t0 = time.perf_counter()
            summary = _job(prompts, work / "jobs" / f"speed-{mode}", True, min_consistency if mode == "on" else 0.0,
                           "auto" if mode == "on" else "none", n=n, seed=r)
            rates[mode].append(summary["images"] / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    out = {"images": images, "repeats": repeats, "off_images_per_s": round(med["off"], 1),
           "on_images_per_s": round(med["on"], 1), "cost": round(1 - med["on"] / med["off"], 4)}
    print(f"feedback speed: {out['on_images_per_s']} vs {out['off_images_per_s']} img/s -> cost {out['cost']:.1%}",
          file=log, flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="faithfulness")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-prompts", type=int)
    ap.add_argument("--speed-images", type=int)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--scorers", default="auto,matcher", help="feedback scorers to compare (comma-separated)")
    ap.add_argument("--expanded-only", action="store_true", help="skip the expansion-off rows")
    ap.add_argument("--min-consistency", type=float, default=0.5, help="feedback threshold (the job's default: 0.5)")
    ap.add_argument("--sets", help="only these prompt sets (comma-separated: held-out, synonyms, combined, "
                    "open-vocab tune, open-vocab holdout)")
    args = ap.parse_args(argv)
    run(args.out, args.quick, args.n_prompts, [s for s in args.scorers.split(",") if s], args.speed_images,
        args.repeats, only=[s.strip() for s in args.sets.split(",")] if args.sets else None,
        min_consistency=args.min_consistency, only_expanded_off=() if args.expanded_only else None)


if __name__ == "__main__":
    main()
