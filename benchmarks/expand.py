"""Caption-LM benchmark: batched vs one-at-a-time `generate` throughput, faithfulness and variety, in one run."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import torch

from llmgan.data.vocab import is_faithful, parse_attributes
from llmgan.text.expander import CaptionExpander, ExpanderConfig, normalize_prompt


def heldout_prompts(n: int, seed: int = 1234) -> list[str]:
    """Short prompts from the shapes held-out split (attribute pairs the shipped LM never saw in training)."""
    from llmgan.data.shapes import generate_shapes

    return [str(p) for p in generate_shapes(n, size=16, seed=seed, split="heldout").column("short_prompt").to_pylist()]


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


def run(lm: str | None = None, n_speed: int = 512, n_baseline: int = 512, n_variety: int = 64, variants: int = 8, batch_size: int = 64, device: str = "cpu",
        out=sys.stdout) -> dict:
    """Measure everything with one loaded LM and print a table; returns the figures as a dict."""
    base = ExpanderConfig(lm=lm, batch_size=batch_size, device=device, cache_size=0)
    prompts = heldout_prompts(max(n_speed, n_variety))
    raw = CaptionExpander(replace(base, max_resamples=0))
    keys = [f"p{i}" for i in range(len(prompts))]

    # speed: batched expansion of n_speed prompts vs n_baseline single-prompt generate() calls
    raw.expand(prompts[:8], keys[:8], 1, seed=99)  # warm-up (allocator, kernels) for both paths
    t0 = time.perf_counter()
    speed_run = raw.expand(prompts[:n_speed], keys[:n_speed], 1, seed=0)
    batched_s = time.perf_counter() - t0
    single_s = one_at_a_time(raw, prompts[:n_baseline])
    batched_rate, single_rate = n_speed / batched_s, n_baseline / single_s

    # faithfulness before any fallback, from the same run: with max_resamples=0 a fallback = an unfaithful sample
    checked = n_speed - speed_run.stats["unchecked"]
    faithful = speed_run.stats["faithful"] / max(checked, 1)

    # variety and guard outcomes with the default guard, as the generation job runs it
    guarded = CaptionExpander(base)
    var_run = guarded.expand(prompts[:n_variety], keys[:n_variety], variants, seed=2)
    distinct = [len(set(caps)) for caps in var_run.captions]
    all_ok = all(is_faithful(p, c) for p, caps in zip(prompts, var_run.captions) for c in caps)
    states = sum(1 for p in prompts[:n_variety] if parse_attributes(p))

    result = {
        "lm": raw.identity, "device": device, "threads": torch.get_num_threads(), "batch_size": batch_size,
        "batched_prompts": n_speed, "batched_s": round(batched_s, 2), "batched_prompts_per_s": round(batched_rate, 1),
        "single_prompts": n_baseline, "single_s": round(single_s, 2), "single_prompts_per_s": round(single_rate, 1),
        "speedup": round(batched_rate / single_rate, 1),
        "faithful_checked": checked, "faithfulness": round(faithful, 4),
        "variety_prompts": n_variety, "variants": variants, "distinct_mean": round(sum(distinct) / len(distinct), 2),
        "distinct_min": min(distinct), "guard": {k: var_run.stats[k] for k in ("faithful", "resampled", "fallback",
                                                                               "unchecked")},
        "guarded_all_faithful": all_ok, "prompts_with_attributes": states,
    }
    rows = [
        ("batched expander", f"{n_speed} prompts in {batched_s:.1f}s", f"{batched_rate:.1f} prompts/s"),
        ("one-at-a-time generate()", f"{n_baseline} prompts in {single_s:.1f}s", f"{single_rate:.1f} prompts/s"),
        ("speed-up", "", f"{result['speedup']}x (target >= 8x)"),
        ("faithfulness, no guard", f"{speed_run.stats['faithful']}/{checked} held-out prompts",
         f"{100 * faithful:.1f}% (target >= 98%)"),
        ("variety", f"{n_variety} prompts x {variants}", f"{result['distinct_mean']} distinct (min {min(distinct)}; "
         "target >= 5)"),
        ("guard outcomes", ", ".join(f"{k} {v}" for k, v in result["guard"].items()), ""),
    ]
    print(f"caption LM {raw.identity} on {device} ({result['threads']} threads), batch {batch_size}", file=out)
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip(), file=out)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.expand", description=__doc__)
    parser.add_argument("--lm", default=None, help="caption LM directory or hub id (default: the shipped LM)")
    parser.add_argument("--n", type=int, default=512, help="held-out prompts for the batched run and faithfulness")
    parser.add_argument("--baseline", type=int, default=512, help="prompts for the one-at-a-time run (a prefix)")
    parser.add_argument("--variety", type=int, default=64, help="prompts for the variety measure (8 variants each)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (both paths use the same)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args.lm, args.n, args.baseline, args.variety, batch_size=args.batch_size,
                 device=args.device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
