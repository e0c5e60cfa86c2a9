"""Training health (llmgan.gan.health): the detectors on synthetic inputs, the matcher's memorising check on a real
MatcherComponent, and real training runs: a generator forced to draw white images is reported (log, metrics.jsonl,
summary, `llmgan train` output), and the checks change nothing about training itself."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from llmgan.gan.health import (
    CHECKS,
    HealthMonitor,
    HealthThresholds,
    d_wide_margin,
    findings,
    image_stats,
    matcher_ratio,
    real_reference,
    sample_ratios,
)


def _shapes(n: int, seed: int = 0) -> np.ndarray:
    """Real-looking images: the procedural shapes (one shape on a flat background)."""
    from llmgan.domains.shapes.render import render_shape, sample_labels

    rng = np.random.default_rng(seed)
    return np.stack([render_shape(sample_labels(rng), 32, rng) for _ in range(n)])


# ---- detectors on synthetic inputs ------------------------------------------------------------------------


def test_constant_samples_are_flagged_and_varied_ones_are_not() -> None:
    real = _shapes(64)
    ref = real_reference(real, seed=0)
    assert ref["own_std"] > 10 and ref["batch_std"] > 10
    white = np.full((64, 32, 32, 3), 255, np.uint8)  # the reported failure: every grid pure white
    assert sample_ratios(white, ref) == {"health_blank_ratio": 0.0, "health_blank": 1.0,
                                         "health_collapse_ratio": 0.0, "health_collapse": 1.0}
    # other real images of the same kind: both ratios near 1
    varied = sample_ratios(_shapes(64, seed=1), ref)
    assert varied["health_blank"] == varied["health_collapse"] == 0.0
    assert 0.7 < varied["health_blank_ratio"] < 1.4 and 0.7 < varied["health_collapse_ratio"] < 1.4
    # one detailed image repeated for every caption and seed: collapsed, though not blank
    same = np.repeat(real[:1], 64, axis=0)
    one = sample_ratios(same, ref)
    assert one["health_collapse"] == 1.0 and one["health_blank"] == 0.0
    # flat images of many colours: blank, though not all alike
    flat = np.broadcast_to(real[:, :1, :1, :], real.shape)
    assert sample_ratios(flat, ref)["health_blank"] == 1.0
    # nearly constant: a little noise around white is still flagged
    noisy = np.clip(255 - np.random.default_rng(0).integers(0, 6, white.shape), 0, 255).astype(np.uint8)
    assert sample_ratios(noisy, ref)["health_collapse"] == 1.0
    # flat real data: nothing to compare with, so no verdict
    assert sample_ratios(white, image_stats(np.zeros((8, 4, 4, 3), np.uint8))) == {}
    assert image_stats(white[:1])["batch_std"] == 0.0


def test_shipped_model_samples_are_healthy() -> None:
    """A tiny run is too short to be healthy (a fresh G draws nearly the same image for every input: collapse ratio
    about 0.08 at step 2), so the no-false-alarm side is checked on a trained generator: the shipped 32 px shapes
    model's sample grid (8 captions x 8 seeds) measured against real shapes images, as the training loop does."""
    from llmgan.gan.inference import GanModel
    from llmgan.text.encoder import TextEncoder

    model = GanModel.load(None)
    captions = ["a small red star in the top left corner on a navy background",
                "a large cyan circle in the center on a black background",
                "a small white square in the bottom right corner on a gray background",
                "a large yellow cross in the center on a dark green background",
                "a small purple triangle in the top right corner on a black background",
                "a large orange circle in the bottom left corner on a navy background",
                "a small green star in the center on a gray background",
                "a large blue square in the top left corner on a dark green background"]
    emb = TextEncoder(model=model.text_encoder).encode([c for c in captions for _ in range(8)])
    samples, _ = model.sample(emb, seeds=list(range(64)))
    ratios = sample_ratios(samples, real_reference(_shapes(200), seed=0))
    assert ratios["health_blank"] == ratios["health_collapse"] == 0.0
    assert ratios["health_blank_ratio"] > 0.5 and ratios["health_collapse_ratio"] > 0.5  # far from 0.15


def test_discriminator_far_ahead_is_flagged_after_a_streak_and_again_after_recovery(
        caplog: pytest.LogCaptureFixture) -> None:
    winning = {"d_acc": 1.0, "d_real_score": 2.1, "d_fake_score": -4.4}  # fake logit near -4.4, as reported
    balanced = {"d_acc": 0.71, "d_real_score": 0.4, "d_fake_score": -0.5}
    assert d_wide_margin(winning) is True and d_wide_margin(balanced) is False and d_wide_margin({}) is None
    assert d_wide_margin({"d_acc": 0.99, "d_real_score": 1.0, "d_fake_score": -1.0}) is False  # inside the margins
    monitor = HealthMonitor({"own_std": 50.0, "batch_std": 50.0}, HealthThresholds(warmup=100, d_rows=3))
    script = [balanced, winning, winning, winning, winning, balanced, winning, winning, winning]
    rows = []
    with caplog.at_level(logging.WARNING, logger="llmgan.gan.health"):
        assert monitor.check({"step": 50, **winning}) == []  # warm-up: no check, no keys
        for i, metrics in enumerate(script):
            row = {"step": 100 + 50 * i, **metrics}
            monitor.warn(monitor.check(row), row)
            rows.append(row)
    assert [r["health_d_winning"] for r in rows] == [0, 0, 0, 1, 1, 0, 0, 0, 1]
    assert [r["health_d_rows"] for r in rows] == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and all("discriminator winning by a wide margin" in w for w in warned)
    assert warned[0].startswith("training health at step 250:") and "--lr-d" in warned[0] and "--r1-gamma" in warned[0]
    [found] = findings(rows)
    assert (found["check"], found["first_step"], found["onsets"], found["active"]) == ("d_winning", 250, [250, 500], True)
    # a resumed run primed with these rows continues the streak and does not warn again
    again = HealthMonitor({}, HealthThresholds(warmup=100, d_rows=3))
    again.prime(rows)
    nxt = {"step": 600, **winning}
    assert again.check(nxt) == [] and nxt["health_d_rows"] == 4 and nxt["health_d_winning"] == 1.0


def test_matcher_memorising_thresholds() -> None:
    assert matcher_ratio(0.08, 3.2)["health_matcher_memorising"] == 1.0  # the reported run: training loss 0.08
    assert matcher_ratio(0.9, 1.1)["health_matcher_memorising"] == 0.0  # generalising
    assert matcher_ratio(3.0, 4.2)["health_matcher_memorising"] == 0.0  # young: nothing fitted yet
    assert matcher_ratio(0.1, 0.4)["health_matcher_memorising"] == 0.0  # 4x, but a small gap: a good matcher
    assert matcher_ratio(float("nan"), 1.0) == {}


def _colour_pairs(rule: bool, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Flat-colour images with caption embeddings that follow from the colour (`rule`: learnable, so held-out rows
    follow it too) or are drawn at random per row (only memorising fits them)."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (n, 3))
    images = np.broadcast_to(colours[:, None, None, :], (n, 32, 32, 3)).astype(np.uint8).copy()
    emb = (colours / 255 - 0.5) @ np.random.default_rng(99).standard_normal((3, 16)) if rule else \
        rng.standard_normal((n, 16))
    return images, (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("rule", [False, True], ids=["memorising", "generalising"])
def test_matcher_component_reports_memorising_not_generalising(rule: bool) -> None:
    """The real matcher trained alongside: 100 steps on 36 rows (4 held out). With captions unrelated to the images
    it can only memorise them: loss 0.8 on its pairs, 8 on held-out rows (flagged); with captions that follow from
    the image both losses fall together (not flagged). The check reads the weights only."""
    from llmgan.gan.config import GanConfig
    from llmgan.gan.matcher_component import MatcherComponent
    from llmgan.io.images import to_float

    torch.set_num_threads(1)
    images, emb = _colour_pairs(rule)
    c = MatcherComponent(GanConfig(text_dim=16, batch_size=16), images, emb, seed=0)
    for group in c.state.opt.param_groups:
        group["lr"] = 3e-3  # memorise within a test's budget
    before = c.health()
    assert set(before) == {"matcher_fit_loss", "matcher_heldout_loss"} and before == c.health()  # no state moves
    for step in range(100):
        rows = np.random.default_rng(step).choice(c.train_rows, 16, replace=False)
        c.step(to_float(images[rows]), torch.from_numpy(emb[rows]), step, rows, None)
    m = c.health()
    flags = matcher_ratio(m["matcher_fit_loss"], m["matcher_heldout_loss"])
    if rule:
        assert m["matcher_fit_loss"] < 1.0 and m["matcher_heldout_loss"] < 1.0, m
        assert flags["health_matcher_memorising"] == 0.0, m
    else:
        assert m["matcher_fit_loss"] < 1.0 < 3.0 < m["matcher_heldout_loss"], m
        assert flags["health_matcher_memorising"] == 1.0, m


# ---- real training runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    from llmgan.data.tables import write_dataset
    from llmgan.domains.shapes.render import generate_shapes

    url = str(tmp_path_factory.mktemp("data") / "shapes.parquet")
    write_dataset(generate_shapes(24, seed=3), url)
    return url


TINY_ARGS = ["--batch-size", "4", "--g-width", "4", "--d-width", "4", "--threads", "1", "--no-eval",
             "--checkpoint-every", "4", "--sample-every", "4", "--log-every", "2"]


def test_a_generator_drawing_white_images_is_reported(tiny_data: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """`llmgan train --local` with a G whose every image is pure white (still trainable: its output adds 0 x the
    network's): from the first row after the warm-up the WARNING is logged once per finding, the rows carry the flags
    and ratios, the summary lists the findings and the command prints them."""
    import llmgan.gan.step as step_module
    from llmgan.cli.app import app
    from llmgan.gan.networks import Generator

    class WhiteGenerator(Generator):
        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            out = super().forward(*args)
            return torch.ones_like(out) + 0.0 * out

    monkeypatch.setattr(step_module, "Generator", WhiteGenerator)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="llmgan.gan.health"):
        res = CliRunner().invoke(app, ["train", "--local", "--data", tiny_data, "--out", str(out), "--steps", "6",
                                       "--health-warmup", "4", *TINY_ARGS])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    found = {f["check"]: f for f in summary["health"]}
    assert {"blank", "collapse"} <= set(found)
    assert found["blank"]["first_step"] == 4 and found["blank"]["active"] and found["blank"]["value"] == 0.0
    assert found["blank"]["fix"] == CHECKS["blank"].fix and "flat" in found["blank"]["meaning"]

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert not any(k.startswith("health_") for k in rows[0])  # before the warm-up
    for r in rows[1:]:
        assert r["health_blank"] == r["health_collapse"] == 1.0 and r["health_blank_ratio"] == 0.0
        assert {"health_d_winning", "health_matcher_ratio", "matcher_fit_loss", "matcher_heldout_loss"} <= set(r)
        assert {"d_acc", "d_real_score", "d_fake_score"} <= set(r)

    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("near-constant samples" in w for w in warned) == 1  # once, though steps 4 and 6 both have it
    assert sum("mode collapse" in w for w in warned) == 1
    assert any(w.startswith("training health at step 4: near-constant samples") for w in warned)
    assert "WARNING training health: near-constant samples from step 4, still present at step 6" in res.stderr
    assert "What usually fixes it:" in res.stderr


def test_health_checks_change_nothing_about_training(tiny_data: str, tmp_path: Path) -> None:
    """The checks run on rank 0 between steps and only read: a run checked from step 0 and one never checked end
    with the same weights (G, D, matcher) and the same losses."""
    from safetensors.numpy import load_file

    from llmgan.gan.config import GanConfig
    from llmgan.gan.train_options import LocalTrainOptions
    from llmgan.gan.trainer import train_local

    config = GanConfig(batch_size=4, g_width=4, d_width=4)
    runs = {}
    for warmup in (0, 10**6):
        out = tmp_path / f"w{warmup}"
        summary = train_local(tiny_data, str(out), config, LocalTrainOptions(
            steps=4, seed=3, checkpoint_every=4, sample_every=4, eval_every=4, log_every=2, threads=1,
            progress=False, health_warmup=warmup))
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        runs[warmup] = (out, summary, rows)
    (checked, s_checked, r_checked), (unchecked, s_unchecked, r_unchecked) = runs[0], runs[10**6]
    assert any(k.startswith("health_") for k in r_checked[0]) and s_checked["health"]  # a fresh G: collapse
    assert not any(k.startswith("health_") for r in r_unchecked for k in r) and s_unchecked["health"] == []
    for r1, r2 in zip(r_checked, r_unchecked):
        assert r1["loss_d"] == r2["loss_d"] and r1["loss_g"] == r2["loss_g"] and r1["matcher_loss"] == r2["matcher_loss"]
    for name in ("generator.safetensors", "discriminator.safetensors", "matcher.safetensors"):
        a, b = load_file(str(checked / "final" / name)), load_file(str(unchecked / "final" / name))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name
