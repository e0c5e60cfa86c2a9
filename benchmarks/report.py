"""`python -m benchmarks`: run every benchmark, print one table, write bench.json (all figures + machine) and bench.md."""

from __future__ import annotations

import io
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmgan.job.manifest import versions

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(), "versions": versions()}
    try:
        import torch

        info["threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info


def _benchmarks(quick: bool, work: Path, gpus: int | None = None,
                cores: int | None = None) -> dict[str, Callable[[], dict[str, Any]]]:
    """name -> thunk; each returns a dict of figures with a headline `ratio` (and `target` when one is set).
    gpus, cores: the node the stage budget predicts for (default: this machine)."""
    from benchmarks import assets, budget, diffusion, expand, faithfulness, pipeline

    def llm() -> dict[str, Any]:
        n = 128 if quick else 512
        figures = expand.run(n_speed=n, n_baseline=n // (4 if quick else 1),
                             n_variety=16 if quick else 64, out=io.StringIO())
        return {**figures, "ratio": figures["speedup"], "target": ">= 8"}

    def engines() -> dict[str, Any]:
        figures = expand.engines(threads=(1,) if quick else (1, 2), batches=(16, 64) if quick else (64, 256, 1024),
                                 n=64 if quick else 1024, repeats=1 if quick else 3, out=io.StringIO())
        # headline: the largest batch on one thread (the expander actor's setting); every row is in the figures
        head = next(r for r in reversed(figures["rows"]) if r["threads"] == 1)
        differing = sum(r["captions_differing"] for r in figures["rows"])
        return {"ratio": head["ratio"], "target": "> 1, captions differing = 0", "captions_differing": differing,
                **{f"{r['threads']}t b{r['batch']}": r["ratio"] for r in figures["rows"]}, "rows": figures["rows"]}

    tiny = pipeline.tiny_checkpoint(work / "tiny-gan", width=4)
    images, repeats = (800, 1) if quick else (20_000, 3)
    return {
        "pipeline (no expansion)": lambda: pipeline.pipeline_efficiency(work, images, False, repeats, ckpt=None),
        "pipeline (with expansion)": lambda: pipeline.pipeline_efficiency(
            work, images // 4 if quick else images, True, repeats, ckpt=None),
        "LLM batching": llm,
        "expand: fast vs reference sampling loop": engines,
        "text-embedding cache": lambda: pipeline.embedding_cache(400 if quick else 4000, 20, None, repeats),
        "driver memory at scale": lambda: pipeline.driver_memory(
            work, *((1_000, 10_000) if quick else (10_000, 200_000)), ckpt=tiny),
        "end-to-end faithfulness": lambda: _faithfulness(faithfulness.run(
            str(work / "faith"), quick, scorers=("auto",) if quick else ("auto", "matcher"), log=io.StringIO())),
        "quality (shipped GAN)": lambda: _quality(work / "quality", quick),
        # its own process: Ray Train starts and stops its own local Ray
        "training (Ray Train / --local)": lambda: _training(quick),
        # equal training budget for both (quick: seconds, proving the code path; full: 10 minutes each)
        "GAN vs diffusion": lambda: diffusion.run(quick, work=str(work / "diffusion")),
        # emoji: independent judges of a GAN of real images (quick: made-up RGBA data, tiny models; full: the GAN,
        # data and scorer named by $LLMGAN_EMOJI_GAN, $LLMGAN_EMOJI_DATA, $LLMGAN_EMOJI_SCORER)
        "assets (emoji judges)": lambda: assets.bench(quick, work / "assets"),
        # each stage's throughput here, the predicted images/s of a node (gpus, cores) and its binding stage; the
        # ratio is the prediction over a measured local job (quick: tiny sizes, the code path only)
        "budget (stage throughputs)": lambda: _budget(budget.run(quick, gpus, cores, ray=not quick,
                                                                 work=work / "budget")),
    }


def _budget(fig: dict[str, Any]) -> dict[str, Any]:
    """Headline figures of the stage budget beside its full table (printed on stderr, all of it in bench.json)."""
    import sys

    from benchmarks.budget import table

    print(table(fig), file=sys.stderr, flush=True)
    p = fig["prediction"]
    head = {"node": f"{p['cores']} cores, {p['gpus']} GPUs", "predicted_images_per_s": p["images_per_s"],
            "binding_stage": p["binding_stage"]}
    for v in fig.get("validation", []):
        head[f"{v['executor']} predicted/measured"] = f"{v['predicted_images_per_s']}/{v['measured_images_per_s']}"
    return {**head, **fig}


def _faithfulness(result: dict[str, Any]) -> dict[str, Any]:
    """Headline: the worst prompt set's share of images with every stated attribute right (expansion and feedback
    on, the defaults); beside it the same without feedback and feedback's images/s cost."""
    rows = [r for r in result["rows"] if r["expand"]]
    on = {r["set"]: r["all_stated_right"] for r in rows if r["feedback"] == "auto"}
    off = {r["set"]: r["all_stated_right"] for r in rows if r["feedback"] == "off"}
    figures: dict[str, Any] = {f"{k} feedback on": v for k, v in on.items()}
    figures.update({f"{k} feedback off": v for k, v in off.items()})
    wrong = [r["certified_wrong_rate"] for r in rows if r["feedback"] == "auto" and r["certified_wrong_rate"] is not None]
    figures["certified wrong, worst set"] = max(wrong) if wrong else None
    return {**figures, "images_per_s_cost": result["speed"]["cost"], "ratio": min(v for v in on.values() if v),
            "target": ">= 0.95; certified wrong <= 0.01"}


def _quality(work: Path, quick: bool) -> dict[str, Any]:
    """The seed document's quality metrics for the shipped GAN on fresh shapes data: FD over its real-vs-real floor
    (headline), Inception-style score beside the real images', SSIM/PSNR against the real image of each caption,
    joint accuracy and the consistency score."""
    import pyarrow.parquet as pq

    from llmgan.domains.shapes.render import generate_shapes
    from llmgan.eval.report import evaluate

    work.mkdir(parents=True, exist_ok=True)
    data = work / "shapes-all.parquet"
    pq.write_table(generate_shapes(800 if quick else 20_000, size=32, seed=4242, split="all"), data)
    report = evaluate(None, str(data), str(work / "report"), n=100 if quick else 2000)
    figures: dict[str, Any] = {}
    for split, r in report["splits"].items():
        ref, cons = r.get("reference") or {}, (r.get("consistency") or {}).get("generated") or {}
        figures.update({
            f"{split} joint": round(r["accuracy"]["joint"], 4),
            f"{split} FD/floor": round(r["frechet_ratio"], 3) if r["frechet_ratio"] else None,
            f"{split} IS (real)": f"{r['inception_score']['mean']:.2f} ({r['inception_score_real']['mean']:.2f})",
            f"{split} ref SSIM/PSNR": f"{ref.get('ssim', 0):.3f}/{ref.get('psnr', 0):.1f}" if ref else None,
            f"{split} consistency": round(cons["mean"], 4) if cons.get("mean") is not None else None,
        })
    ratios = [r["frechet_ratio"] for r in report["splits"].values() if r["frechet_ratio"]]
    return {**figures, "ratio": round(max(ratios), 3) if ratios else None, "target": "FD/floor <= 3"}


def _training(quick: bool) -> dict[str, Any]:
    import subprocess
    import sys

    steps = ["--steps", "12", "--images", "256", "--g-width", "16", "--d-width", "16"] if quick else []
    # `benchmarks` is not installed: the child finds it through the repo root, whatever the caller's cwd
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-m", "benchmarks.train", "--json", *steps],
                         check=True, capture_output=True, text=True, env=env).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    return {**figures, "ratio": figures["ray1_over_local"], "target": ">= 0.9"}


def _markdown(results: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [f"machine: {info['cpus']} CPUs, GPU: {info.get('gpu') or 'none'}, "
             f"torch {info['versions'].get('torch')}, ray {info['versions'].get('ray')}", "",
             "| benchmark | ratio | target | figures |", "| --- | --- | --- | --- |"]
    for name, fig in results.items():
        if "error" in fig:
            lines.append(f"| {name} | failed | | {fig['error']} |")
            continue
        detail = ", ".join(f"{k}={v}" for k, v in fig.items()
                           if k not in ("ratio", "target") and isinstance(v, (int, float, str)) and len(str(v)) < 40)
        lines.append(f"| {name} | {fig['ratio']} | {fig.get('target', '-')} | {detail} |")
    return "\n".join(lines) + "\n"


def run_bench(out: str, quick: bool, only: list[str] | None = None,
              log: Callable[[str], None] = print, gpus: int | None = None,
              cores: int | None = None) -> dict[str, Any]:
    """Run the benchmarks (optionally a subset by name prefix); returns {name: figures}."""
    import tempfile

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="llmgan-bench-"))
    info = machine()
    results: dict[str, Any] = {}
    for name, thunk in _benchmarks(quick, work, gpus, cores).items():
        if only and not any(name.lower().startswith(o.lower()) for o in only):
            continue
        log(f"running: {name} ...")
        t0 = time.perf_counter()
        try:
            results[name] = thunk()
        except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        results[name]["bench_seconds"] = round(time.perf_counter() - t0, 1)
        log(f"  {name}: ratio {results[name].get('ratio', 'failed')} ({results[name]['bench_seconds']}s)")
    report = {"quick": quick, "machine": info, "results": results}
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "bench.md").write_text(_markdown(results, info))
    return report


def main(argv: list[str] | None = None) -> int:
    """The command line of `python -m benchmarks` and `jobs/benchmark.py`; exit 1 when any benchmark failed."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench", help="Folder for bench.json and bench.md (default: bench).")
    parser.add_argument("--quick", action="store_true", help="Small sizes: a few minutes on 2 cores.")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="Run benchmarks whose name starts with NAME (repeatable).")
    parser.add_argument("--gpus", type=int, default=None, metavar="N",
                        help="The stage budget's node: GPUs (default: this machine's).")
    parser.add_argument("--cores", type=int, default=None, metavar="N",
                        help="The stage budget's node: CPU cores (default: this machine's).")
    args = parser.parse_args(argv)
    if args.gpus is not None or args.cores is not None:
        from benchmarks.budget import check_node
        from llmgan.errors import UserError

        try:
            check_node(args.gpus, args.cores)
        except UserError as exc:
            parser.exit(2, f"error: {exc}\n")
    report = run_bench(args.out, args.quick, args.only, log=lambda m: print(m, file=sys.stderr, flush=True),
                       gpus=args.gpus, cores=args.cores)
    print((Path(args.out) / "bench.md").read_text(), end="")
    return 1 if any("error" in v for v in report["results"].values()) else 0
