"""GPU benchmark of the core layer (no Ray): generator images/s at 32-256 px in fp32 / bf16 / torch.compile, caption-LM captions/s.

Runs unattended on a bare GPU box that has torch + transformers but not Ray:
    python -m benchmarks.gpu --device cuda --out gpu.json
and on CPU with --quick (tiny sizes) so the test suite can smoke-test it. A global deadline skips whatever
is left (recorded as skipped, with the reason) so one run always finishes and always writes its JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from llmgan.errors import UserError
from llmgan.gan.config import GanConfig
from llmgan.gan.inference import default_checkpoint_path
from llmgan.gan.networks import Generator
from llmgan.io.images import to_uint8_tensor

MODES = ("fp32", "bf16", "compile", "compile+bf16")
# images per forward pass: large enough to fill an H200 at each side length
GPU_BATCH = {32: 1024, 64: 512, 128: 128, 256: 32}
LM_BATCHES_GPU = (64, 256, 1024)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rate(fn: Callable[[], Any], items: int, device: torch.device, min_s: float, max_iters: int) -> float:
    """items/s of fn: two warm-up calls, then calls until min_s has passed (or max_iters); median per call."""
    for _ in range(2):
        fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_iters and (time.perf_counter() - start < min_s or len(times) < 3):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return items / statistics.median(times)


def _generator_fn(G: torch.nn.Module, mode: str, batch: int, device: torch.device, backend: str) -> Callable[[], Any]:
    cfg = G.config
    z = torch.randn(batch, cfg.z_dim, device=device)
    e = torch.nn.functional.normalize(torch.randn(batch, cfg.text_dim, device=device), dim=1)
    net = torch.compile(G, backend=backend) if mode.startswith("compile") else G
    bf16 = mode.endswith("bf16")

    @torch.inference_mode()
    def fn() -> Any:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            x = net(z, e)
        # uint8 on the device (the product's rounding and layout); the host copy is the PNG stage's cost
        return to_uint8_tensor(x)

    return fn


def bench_generators(device: torch.device, sizes: Sequence[int], modes: Sequence[str], batch: dict[int, int],
                     min_s: float, deadline: float, g_width: int | None, log: Callable[[str], None],
                     backend: str = "inductor", include_shipped: bool = True) -> list[dict]:
    """One row per (model, mode): images/s, or `skipped` with the reason."""
    models: list[tuple[str, Generator]] = []
    shipped = default_checkpoint_path()
    if Path(shipped, "config.json").exists() and 32 in sizes and include_shipped:
        from llmgan.gan.inference import GanModel

        models.append(("shipped shapes32", GanModel.load(shipped).generator))
    for size in sizes:
        cfg = GanConfig(image_size=size) if g_width is None else GanConfig(image_size=size, g_width=g_width)
        models.append((f"random {size}px", Generator(cfg)))
    rows: list[dict] = []
    for name, G in models:
        G = G.to(device).eval().requires_grad_(False)
        size = G.config.image_size
        n = batch[size]
        params = sum(p.numel() for p in G.parameters())
        for mode in modes:
            row: dict[str, Any] = {"model": name, "image_size": size, "mode": mode, "batch": n, "params": params}
            rows.append(row)
            if time.perf_counter() > deadline:
                row["skipped"] = "time limit reached"
                continue
            t0 = time.perf_counter()
            try:
                row["images_per_s"] = round(timed_rate(_generator_fn(G, mode, n, device, backend), n, device, min_s, 200), 1)
            except Exception as exc:  # noqa: BLE001 - e.g. no compiler for torch.compile: say so, keep going
                row["skipped"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
            row["seconds"] = round(time.perf_counter() - t0, 1)
            log(f"  {name:18s} {mode:13s} batch {n:5d}: "
                + (f"{row['images_per_s']:>10.1f} images/s" if "images_per_s" in row else f"skipped ({row['skipped']})"))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def bench_lm(device: torch.device, lm: str | None, batches: Sequence[int], n_per_batch: int,
             deadline: float, max_new_tokens: int, log: Callable[[str], None]) -> list[dict] | dict:
    """captions/s of the batched caption expander at each batch size (pure sampling, no faithfulness retries), with
    the fast sampling loop (the default; `fast_engine_ran` says if the LM fell back) and the reference loop."""
    from llmgan.text.expander import SHIPPED_LM, CaptionExpander, ExpanderConfig

    if lm is None and not SHIPPED_LM.exists():
        return {"skipped": f"no shipped caption LM at {SHIPPED_LM} (give --lm)"}
    from benchmarks.expand import heldout_prompts

    rows: list[dict] = []
    for b in batches:
        row: dict[str, Any] = {"batch": b}
        rows.append(row)
        if time.perf_counter() > deadline:
            row["skipped"] = "time limit reached"
            continue
        # the default (fast) sampling loop, then the reference loop on the same prompts: their ratio in one run
        for key, engine in (("captions_per_s", "fast"), ("reference_captions_per_s", "reference")):
            exp = CaptionExpander(ExpanderConfig(lm=lm, device=str(device), batch_size=b, max_resamples=0,
                                                 cache_size=0, max_new_tokens=max_new_tokens, engine=engine))
            row[key] = round(_captions_per_s(exp, heldout_prompts(max(b, n_per_batch)), device), 1)
            row["lm"], row[f"{engine}_engine_ran"] = exp.identity, exp.engine
        row["ratio"] = round(row["captions_per_s"] / row["reference_captions_per_s"], 2)
        log(f"  caption LM batch {b:5d}: {row['captions_per_s']:>10.1f} captions/s ({row['fast_engine_ran']} loop), "
            f"reference loop {row['reference_captions_per_s']:>10.1f}: {row['ratio']:.2f}x")
    return rows


def _captions_per_s(exp: Any, prompts: list[str], device: torch.device) -> float:
    counter = iter(range(1 << 30))

    def fn() -> Any:  # fresh keys and seed each call, so nothing is served from the expander's cache
        k = next(counter)
        return exp.expand(prompts, [f"{k}-{i}" for i in range(len(prompts))], variants=1, seed=k)

    return timed_rate(fn, len(prompts), device, 1.0, 5)


def run(device: str = "cuda", quick: bool = False, lm: str | None = None, max_seconds: float = 540.0,
        compile_backend: str | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """All figures as a dict: machine, generator rows, caption-LM rows. Quick: tiny sizes for a CPU smoke test.

    compile_backend: torch.compile's backend; default inductor, but "eager" with --quick (inductor's C++
    build takes minutes on a busy CPU; eager still traces the model through dynamo, proving the path).
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: {device!r} requested but CUDA is not available (use --device cpu)")
    deadline = time.perf_counter() + max_seconds
    backend = compile_backend or ("eager" if quick else "inductor")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if quick:
        sizes, batch, min_s, width = (32,), {32: 8, 64: 4, 128: 2, 256: 1}, 0.05, 8
        lm_batches, lm_n, lm_tokens = (4,), 8, 8
    else:
        sizes, batch, min_s, width = (32, 64, 128, 256), GPU_BATCH, 2.0, None
        lm_batches, lm_n, lm_tokens = LM_BATCHES_GPU, 1024, 48
    info: dict[str, Any] = {"device": str(dev), "torch": torch.__version__, "python": platform.python_version(),
                            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                            "threads": torch.get_num_threads(), "quick": quick, "compile_backend": backend}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    log(f"generator images/s on {info['gpu'] or 'CPU'} ({'quick' if quick else 'full'})")
    # cheap figures first, compiles last: if the deadline hits, what is lost is the slowest part
    gen = bench_generators(dev, sizes, MODES[:2], batch, min_s, deadline, width, log, backend, not quick)
    log("caption LM captions/s")
    try:
        lm_rows = bench_lm(dev, lm, lm_batches, lm_n, deadline, lm_tokens, log)
    except UserError as exc:
        lm_rows = {"skipped": str(exc)}
    log(f"torch.compile (backend {backend})")
    gen += bench_generators(dev, sizes, MODES[2:], batch, min_s, deadline, width, log, backend, not quick)
    return {"machine": info, "generator": gen, "caption_lm": lm_rows}


def table(fig: dict[str, Any]) -> str:
    """Markdown: one row per generator model, one column per mode; then the caption-LM rows."""
    by: dict[tuple[str, int, int], dict[str, str]] = {}
    for r in fig["generator"]:
        cell = f"{r['images_per_s']:,.0f}" if "images_per_s" in r else "skipped"
        by.setdefault((r["model"], r["image_size"], r["batch"]), {})[r["mode"]] = cell
    m = fig["machine"]
    lines = [f"device: {m['gpu'] or m['device']}, torch {m['torch']}, torch.compile backend {m['compile_backend']}", "",
             "| generator | batch | " + " | ".join(MODES) + " |", "| --- " * (2 + len(MODES)) + "|"]
    for (name, _, b), cells in by.items():
        lines.append(f"| {name} | {b} | " + " | ".join(cells.get(k, "-") for k in MODES) + " |")
    lm = fig["caption_lm"]
    if isinstance(lm, dict):
        lines.append(f"\ncaption LM: skipped ({lm['skipped']})")
    else:
        lines += ["", "| caption LM batch | captions/s (fast loop) | reference loop | fast ÷ reference |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['batch']} | {r.get('captions_per_s', 'skipped')} | {r.get('reference_captions_per_s', '-')} | "
                  f"{r.get('ratio', '-')} |" for r in lm]
    skipped = sorted({r["skipped"] for r in fig["generator"] if "skipped" in r})
    if skipped:
        lines.append("\nskipped: " + "; ".join(skipped))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    parser.add_argument("--lm", default=None, help="caption LM directory (default: the shipped one)")
    parser.add_argument("--max-seconds", type=float, default=540.0, help="skip what is left after this long")
    parser.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; eager "
                        "with --quick)")
    parser.add_argument("--out", required=True, help="JSON file for every figure (local path or s3://)")
    args = parser.parse_args(argv)
    try:
        fig = run(args.device, args.quick, args.lm, args.max_seconds, args.compile_backend)
        from llmgan.io.storage import Storage

        Storage().write_text(args.out, json.dumps(fig, indent=1) + "\n")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(table(fig))


if __name__ == "__main__":
    main()
