"""Smoke tests of the GAN-vs-diffusion benchmark and the GPU script in their quick CPU modes (figures exist, never timings)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import diffusion, gpu
from llmgan.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_diffusion_quick_reports_both_models_side_by_side(tmp_path: Path) -> None:
    fig = diffusion.run(True, budget_s=2.0, work=str(tmp_path), n_data=128, n_eval=32, sampling_steps=2,
                        sample_batch=16, log=lambda m: None)
    for key in ("ratio", "ratio_vs_cfg", "gan_images_per_s", "diffusion_images_per_s", "diffusion_cfg_images_per_s",
                "gan_steps", "diffusion_steps", "gan_params", "unet_params", "gan_train_s", "diffusion_train_s"):
        assert _positive(fig[key]), (key, fig[key])
    assert fig["target"] == ">= 20"
    assert fig["sampling_steps"] == 2 and fig["eval_images"] == 32
    for model in ("gan", "diffusion", "diffusion_cfg"):
        acc = fig["accuracy"][model]
        assert set(acc) == {*diffusion.ATTRIBUTES, "joint"}
        assert all(0.0 <= v <= 1.0 for v in acc.values())
        assert acc["joint"] <= min(acc[a] for a in diffusion.ATTRIBUTES)
    # equal budgets: each side trained for (about) the same wall time
    assert fig["gan_train_s"] >= 2.0 and fig["diffusion_train_s"] >= 2.0
    assert "| GAN (equal budget) |" in diffusion.table(fig)
    json.dumps(fig)  # everything is JSON-serialisable for bench.json


def test_diffusion_sampling_is_per_row_deterministic() -> None:
    import numpy as np
    import torch

    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    emb = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    model = diffusion.DiffusionContestant(images, emb, batch_size=4, seed=0, width=8)
    model.step()
    assert model.steps == 1
    alone = model.sample(emb[:1], [7], steps=2)
    batched = model.sample(emb[:3], [7, 8, 9], steps=2, guidance=2.0)
    assert alone.shape == (1, 32, 32, 3) and alone.dtype == np.uint8
    again = model.sample(emb[:3], [7, 8, 9], steps=2, guidance=2.0)
    assert np.array_equal(batched, again)  # seeded per row: reruns give the same images
    assert np.abs(alone[0].astype(int) - model.sample(emb[:2], [7, 8], steps=2)[0].astype(int)).max() <= 1


def test_diffusion_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="budget_s"):
        diffusion.run(True, budget_s=0, work=str(tmp_path))


def test_gpu_script_quick_on_cpu(tmp_path: Path, tiny_lm_dir: str) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--lm", tiny_lm_dir,
         "--max-seconds", "3000", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    fig = json.loads(out.read_text())
    assert fig["machine"]["device"] == "cpu"
    rows = fig["generator"]
    assert {r["mode"] for r in rows} == set(gpu.MODES)
    for r in rows:  # every row is either measured or says why not
        assert _positive(r.get("images_per_s")) or r.get("skipped"), r
    assert any(_positive(r.get("images_per_s")) for r in rows if r["mode"] == "fp32")
    assert all(_positive(r["captions_per_s"]) for r in fig["caption_lm"])
    assert "| generator | batch |" in proc.stdout


def test_gpu_script_refuses_missing_cuda_in_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--device", "cuda", "--out", str(tmp_path / "x")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: device") and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random 2-layer GPT-2 with a word-level tokenizer built here: the caption-LM code path, nothing downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<eos>", "<unk>", "\n", "short:", "long:", "a", "red", "blue", "small", "large", "star", "circle", "on"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.WhitespaceSplit()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>")
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                       eos_token_id=0, bos_token_id=0, pad_token_id=0))
    out = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return str(out)


@pytest.mark.slow  # every benchmark, minutes on 2 cores; the report writer alone: test_benchmark_job_runs_from_any_folder
def test_bench_command_writes_report(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` end to end: every benchmark runs and reports a ratio (never asserted as a time)."""
    from benchmarks.report import _benchmarks

    out = tmp_path / "bench"
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "bench.json").read_text())
    assert set(report["results"]) == set(_benchmarks(True, tmp_path / "names"))
    assert report["machine"]["cpus"] >= 1 and report["machine"]["versions"]["llmgan"]
    for name, figures in report["results"].items():
        assert "error" not in figures, (name, figures.get("error"))
        assert _positive(figures["ratio"]), name
    memory = report["results"]["driver memory at scale"]
    assert memory["large_prompts"] == 10 * memory["small_prompts"]
    markdown = (out / "bench.md").read_text()
    assert all(f"| {name} |" in markdown for name in report["results"])


def test_benchmark_job_runs_from_any_folder(tmp_path: Path) -> None:
    """`jobs/benchmark.py` (the `ray job submit` entry point) finds the repo's `benchmarks` package from elsewhere
    and takes the report's flags; `--only` with no match writes an empty report without running anything."""
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "benchmark.py"), "--only", "no-such-benchmark",
                           "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "bench.json").read_text())["results"] == {}
    assert "| benchmark | ratio |" in proc.stdout
    bad = subprocess.run([sys.executable, str(REPO / "jobs" / "benchmark.py"), "--quick=yes"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "--quick" in bad.stderr


def test_cli_has_no_bench_command() -> None:
    """Benchmarks are not part of the shipped package: `llmgan bench` is gone (`python -m benchmarks` instead)."""
    proc = subprocess.run([sys.executable, "-m", "llmgan", "bench", "--quick"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "No such command 'bench'" in proc.stderr


def test_budget_model_prices_each_stage_and_names_the_binding_one() -> None:
    """The budget's model on made-up rates (no timing): cost = units per image / rate, C cores / summed cost on CPU,
    GPU stages on their own resource, the binding stage the largest cost on the slower resource."""
    from benchmarks.budget import JobShape, predict

    cpu = {"read": 1000.0, "expand": 50.0, "text": 100.0, "generate": 20.0, "consistency": 200.0, "encode": 400.0,
           "write": 1000.0}
    shape = JobShape(n_per_prompt=4, variants=1, expand=True)
    p = predict({"cpu": cpu}, shape, cores=4, gpus=0, extra_draws=0.1)
    # seconds per image: 0.25/1000 + 0.25/50 + 0.25/100 + 1/20 + 1/200 + 1/400 + 1/1000 = 0.06625
    assert p["images_per_s"] == round(4 / 0.06625, 1) and p["binding_stage"] == "generate"
    assert p["stages"]["expand"]["units_per_image"] == 0.25  # one caption serves the prompt's 4 images
    assert math.isclose(sum(s["allotted"] for s in p["stages"].values()), 4, abs_tol=0.01)
    # CPUs only: the Ray executor's fused layout, one single-threaded whole-shard actor per core
    assert p["layout"] == "fused" and p["pools"] == {"shard": {"actors": 4, "cpus_per_actor": 1.0, "gpus_per_actor": 0.0}}
    # one GPU much faster at the model stages: the CPU stages (read, encode, write) now bind, on 3 free cores
    gpu = {"expand": 5000.0, "text": 10_000.0, "generate": 50_000.0, "consistency": 100_000.0}
    g = predict({"cpu": cpu, "cuda": gpu}, shape, cores=4, gpus=1, extra_draws=0.0)
    assert g["binding_resource"] == "cpu" and g["binding_stage"] == "encode"
    assert g["images_per_s"] == round(2 / (0.25 / 1000 + 1 / 400 + 1 / 1000), 1)  # 4 cores less 2 GPU feeders
    assert g["stages"]["generate"]["on"] == "gpu" and g["pools"]["generator"]["gpus_per_actor"] > 0
    assert g["layout"] == "split" and g["pools"]["expander"]["actors"] == 1  # pools sized per stage around the GPU
    no_expand = predict({"cpu": cpu}, JobShape(n_per_prompt=1, expand=False), cores=1, gpus=0, extra_draws=0.0)
    assert "expand" not in no_expand["stages"] and no_expand["stages"]["text"]["units_per_image"] == 1.0


def test_budget_quick_measures_every_stage_and_checks_its_prediction(tmp_path: Path) -> None:
    """`--quick`: every stage measured at tiny sizes, every encoding at every size, a prediction with pools and a
    real local job beside it (figures exist and are positive, never timed)."""
    from benchmarks import budget

    fig = budget.run(quick=True, work=tmp_path, log=lambda m: None)
    for t, s in fig["stages"]["cpu"].items():
        assert set(s["rates"]) == set(budget.SERIAL_STAGES), t
        assert all(_positive(v) for v in s["rates"].values()), (t, s)
    encoders = [r for r in fig["encoders"] if r["source"] == "emoji GAN"]
    assert {(r["encoding"], r["size"]) for r in encoders} == {(e, s) for e in budget.ENCODINGS for s in budget.ENCODE_SIZES}
    assert all(_positive(r["images_per_s_per_core"]) and _positive(r["bytes_per_image"]) for r in fig["encoders"])
    assert _positive(fig["write_images_per_s"]) and all(_positive(v) for v in fig["emoji_generator"]["images_per_s"].values())
    p = fig["prediction"]
    assert _positive(p["images_per_s"]) and p["binding_stage"] in p["stages"]
    assert set(p["pools"]) == ({"shard"} if p["layout"] == "fused" else {"expander", "generator", "encoder"})
    [v] = fig["validation"]
    assert v["executor"] == "local" and v["images"] == 48 and _positive(v["measured_images_per_s"])
    assert 0 < v["generator_busy_share"] <= 1 and v["gpu_utilisation"] is None  # no GPU here: none sampled
    assert _positive(fig["ratio"]) and fig["ratio"] == v["predicted_over_measured"]
    text = budget.table(fig)
    assert "| stage | unit |" in text and "binding stage" in text and "validation (local" in text
    json.dumps(fig)


def test_budget_refuses_gpus_this_machine_lacks_in_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "budget", "--gpus", "1", "--out",
                           str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: --gpus 1") and "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()


def test_expand_engines_benchmark_compares_both_loops(tmp_path: Path) -> None:
    """`python -m benchmarks --only expand` runs the fast-vs-reference loop benchmark; tiny sizes here: every row
    has both rates and their ratio, and the loops' captions are compared (the fast loop is exact: none differ)."""
    import io

    from benchmarks import expand
    from benchmarks.report import _benchmarks

    assert [n for n in _benchmarks(True, tmp_path) if n.lower().startswith("expand")]
    fig = expand.engines(threads=(1,), batches=(4, 16), n=16, repeats=1, out=io.StringIO())
    assert [(r["threads"], r["batch"]) for r in fig["rows"]] == [(1, 4), (1, 16)]
    for r in fig["rows"]:
        assert _positive(r["fast_captions_per_s"]) and _positive(r["reference_captions_per_s"]) and _positive(r["ratio"])
        assert r["captions_compared"] == 32 and r["captions_differing"] == 0
    json.dumps(fig)
