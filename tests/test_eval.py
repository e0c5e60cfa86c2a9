"""Evaluation: metrics on inputs with known answers, the shipped classifier on fresh real images, `llmgan eval`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.data.tables import decode_images, write_dataset
from llmgan.domains.digits.dataset import generate_digits
from llmgan.domains.shapes import vocab
from llmgan.domains.shapes.render import generate_shapes
from llmgan.errors import UserError
from llmgan.eval import metrics
from llmgan.eval.classifier import (
    SHIPPED_SHAPES,
    WEIGHTS_FILE,
    accuracy_of,
    load_classifier,
    train_classifier,
)
from llmgan.eval.report import resolve_classifier
from llmgan.io.storage import Storage

runner = CliRunner()


# ---- metrics on known inputs ----------------------------------------------------------------------


def test_frechet_distance_known_values() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.arange(8.0)
    # same covariance, means apart by `shift`: FD = ||shift||^2 exactly
    assert metrics.frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-6)
    # b = 2a: ||mu||^2 + tr(C) + tr(4C) - 2 tr(2C) = ||mu||^2 + tr(C)
    expected = float((a.mean(0) ** 2).sum() + np.trace(np.cov(a, rowvar=False)))
    assert metrics.frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)
    b = rng.normal(size=(400, 8)) * 1.5 + 0.3
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-6)
    with pytest.raises(ValueError):
        metrics.frechet_distance(a, a[:, :4])


def test_inception_score_known_values() -> None:
    c = 5
    assert metrics.inception_score(np.full((40, c), 1 / c)) == pytest.approx(1.0)  # no information
    assert metrics.inception_score(np.tile(np.eye(c)[2], (40, 1))) == pytest.approx(1.0)  # collapsed
    assert metrics.inception_score(np.tile(np.eye(c), (8, 1))) == pytest.approx(c, rel=1e-6)  # sure and varied
    soft = np.tile(0.5 * np.eye(c) + 0.5 / c, (8, 1))
    assert 1.0 < metrics.inception_score(soft) < c


def test_ssim_known_values() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    assert np.allclose(metrics.ssim(x, x), 1.0, atol=1e-5)
    noisy = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(x + rng.normal(0, 80, x.shape), 0, 255).astype(np.uint8)
    s1, s2 = metrics.ssim(x, noisy), metrics.ssim(x, noisier)
    assert np.all(s1 < 1.0) and np.all(s2 < s1)
    assert np.allclose(metrics.ssim(noisy, x), s1, atol=1e-6)  # symmetric
    assert np.allclose(metrics.ssim(x, noisy), metrics.ssim(x / 255.0, noisy / 255.0), atol=1e-6)  # uint8 == floats in 0..1
    # flat images: only the luminance term is left, (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.2, 0.7
    c1 = metrics.SSIM_K1**2
    flat = metrics.ssim(np.full((16, 16, 3), a), np.full((16, 16, 3), b))
    assert flat[0] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)
    small = rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)  # smaller than the 11 px window
    assert np.allclose(metrics.ssim(small, small), 1.0, atol=1e-5)


def test_pairwise_diversity_known_values() -> None:
    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    assert metrics.mean_pairwise_distance(np.stack([black, black, black])) == 0.0
    assert metrics.mean_pairwise_distance(np.stack([black, white])) == pytest.approx(1.0)
    # pairs (b,b)=0, (b,w)=1, (b,w)=1 -> 2/3
    assert metrics.mean_pairwise_distance(np.stack([black, black, white])) == pytest.approx(2 / 3)
    assert metrics.mean_pairwise_ssim(np.stack([white, white, white])) == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    sets = [rng.integers(0, 256, size=(k, 16, 16, 3), dtype=np.uint8) for k in (2, 3, 5)]
    batched = metrics.mean_pairwise_ssim_groups(sets)
    assert batched == pytest.approx([metrics.mean_pairwise_ssim(s) for s in sets], rel=1e-5)
    with pytest.raises(ValueError):
        metrics.mean_pairwise_ssim(white[None])


def test_accuracy_of_counts_joint() -> None:
    pred = {"shape": ["star", "circle", "square"], "color": ["red", "red", "blue"]}
    true = {"shape": ["star", "circle", "cross"], "color": ["red", "blue", "blue"], "size": ["small"] * 3}
    acc = accuracy_of(pred, true)
    assert acc == pytest.approx({"shape": 2 / 3, "color": 2 / 3, "joint": 1 / 3})


# ---- the classifier -------------------------------------------------------------------------------


def _shapes(n: int, seed: int, split: str) -> tuple[np.ndarray, dict[str, list[str]]]:
    t = generate_shapes(n, seed=seed, split=split)
    return decode_images(t.column("image").to_pylist()), {a: t.column(a).to_pylist() for a in vocab.ATTRIBUTES}


def test_shipped_classifier_is_accurate_on_fresh_real_heldout_images() -> None:
    size = sum(p.stat().st_size for p in SHIPPED_SHAPES.iterdir())
    assert size < 2_000_000
    clf = load_classifier()
    assert clf.attributes == list(vocab.ATTRIBUTES)
    for attr in vocab.ATTRIBUTES:
        assert clf.classes[attr] == sorted(vocab.VALUES[attr])
    images, labels = _shapes(300, seed=4242, split="heldout")  # a seed the classifier never saw
    acc = clf.accuracy(images, labels)
    assert all(acc[a] >= 0.97 for a in vocab.ATTRIBUTES), acc
    # any input size: upscaled 64 px renders of the same images are still read correctly
    big = np.stack([np.asarray(Image.fromarray(im).resize((64, 64), Image.BICUBIC)) for im in images[:100]])
    big_acc = clf.accuracy(big, {a: v[:100] for a, v in labels.items()})
    assert big_acc["joint"] >= 0.9, big_acc
    feats = clf.features(images[:10])
    assert feats.shape == (10, 128) and np.isfinite(feats).all()
    probs = clf.probabilities(images[:10])
    assert np.allclose(probs["color"].sum(axis=1), 1.0, atol=1e-5)


def test_train_save_load_round_trip_local_and_s3(tmp_path: Path, s3_server: str, s3_url: str) -> None:
    images, labels = _shapes(200, seed=99, split="all")
    clf = train_classifier(images, {"color": labels["color"], "background": labels["background"]},
                           seed=3, steps=10, progress=False)
    assert clf.attributes == ["color", "background"] and "val_accuracy" in clf.info
    expected = clf.probabilities(images[:20])
    for where in (str(tmp_path / "clf"), s3_url + "/clf"):
        clf.save(where, Storage(s3_server))
        again = load_classifier(where, Storage(s3_server))
        got = again.probabilities(images[:20])
        assert again.classes == clf.classes and again.info == clf.info
        for attr in clf.attributes:
            np.testing.assert_allclose(got[attr], expected[attr], rtol=1e-5, atol=1e-6)


def test_classifier_refuses_pickles_and_bad_input(tmp_path: Path) -> None:
    images, labels = _shapes(40, seed=98, split="all")
    clf = train_classifier(images, {"size": labels["size"]}, seed=0, steps=2, progress=False)
    clf.save(str(tmp_path / "c"))
    buf = io.BytesIO()
    torch.save(clf.net.state_dict(), buf)  # a pickle where safetensors belong
    (tmp_path / "c" / WEIGHTS_FILE).write_bytes(buf.getvalue())
    with pytest.raises(UserError, match="do not load"):
        load_classifier(str(tmp_path / "c"))
    with pytest.raises(UserError, match="no evaluation classifier"):
        load_classifier(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="uint8"):
        train_classifier(images.astype(np.float32), {"size": labels["size"]}, steps=1)
    with pytest.raises(UserError, match="values for"):
        train_classifier(images, {"size": labels["size"][:-1]}, steps=1)


def test_digits_classifier_is_trained_once_and_cached(tmp_path: Path) -> None:
    table = generate_digits(size=32, limit=300)
    images = decode_images(table.column("image").to_pylist())
    labels = {"label": [str(v) for v in table.column("label").to_pylist()]}
    out = str(tmp_path / "report")
    clf, where = resolve_classifier(None, images, labels, "digits.parquet", out, Storage(), seed=0, steps=10)
    assert clf.attributes == ["label"] and where.endswith("classifier")
    again, where2 = resolve_classifier(None, images, labels, "digits.parquet", out, Storage(), seed=0, steps=10)
    assert where2 == where and again.info == clf.info  # reused, not retrained
    with pytest.raises(UserError, match="no label columns"):
        resolve_classifier(None, images, {}, "x.parquet", out, Storage(), seed=0, steps=30)


# ---- llmgan eval end to end -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A randomly initialised tiny GAN checkpoint and a small shapes dataset with both splits."""
    from llmgan.gan.checkpoint import save_checkpoint
    from llmgan.gan.config import GanConfig
    from llmgan.gan.step import make_train_state

    root = tmp_path_factory.mktemp("eval")
    cfg = GanConfig(image_size=32, g_width=8, d_width=8, z_dim=16, cond_dim=16, contrastive_dim=16)
    save_checkpoint(str(root / "ckpt"), make_train_state(cfg, seed=0), training_state=False)
    write_dataset(generate_shapes(240, seed=5, split="all"), str(root / "shapes.parquet"))
    return {"ckpt": str(root / "ckpt"), "data": str(root / "shapes.parquet"), "root": str(root)}


def test_llmgan_eval_writes_a_complete_report(tiny_run: dict[str, str]) -> None:
    out = Path(tiny_run["root"]) / "report"
    result = runner.invoke(app, ["eval", "--ckpt", tiny_run["ckpt"], "--data", tiny_run["data"], "--out", str(out),
                                 "--n", "24", "--best-of", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.json'}" in result.output and "joint acc" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["best_of"] == 2 and report["n"] == 24 and report["classifier"]["source"] == "shipped:shapes32"
    assert set(report["splits"]) == {"train", "heldout"}
    for split in report["splits"].values():
        assert set(split["accuracy"]) == {*vocab.ATTRIBUTES, "joint"}
        assert all(0.0 <= v <= 1.0 for v in split["accuracy"].values())
        assert split["real_accuracy"]["joint"] >= 0.9  # the judge reads real images of this split
        assert split["frechet_distance"] > 0 and split["frechet_floor"] >= 0
        assert 1.0 <= split["inception_score"]["mean"] <= max(len(v) for v in vocab.VALUES.values())
        assert split["diversity"]["generated"] >= 0 and split["diversity"]["real"] > 0
        assert -1.0 <= split["ssim"]["generated"] <= 1.0 and -1.0 <= split["ssim"]["real"] <= 1.0
    # an untrained generator is judged poorly: its images are far from real ones
    assert report["splits"]["train"]["frechet_distance"] > report["splits"]["train"]["frechet_floor"]
    for name in report["files"].values():
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width > 100


def test_llmgan_eval_bad_input_is_one_line(tiny_run: dict[str, str], tmp_path: Path) -> None:
    cases = [
        (["--n", "0"], "n must be"),
        (["--split", "sideways"], "split must be one of"),
        (["--ckpt", str(tmp_path / "nope")], "no GAN checkpoint"),
    ]
    for extra, message in cases:
        args = ["eval", "--ckpt", tiny_run["ckpt"], "--data", tiny_run["data"], "--out", str(tmp_path / "o"), *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert lines[-1].startswith("error: ") and message in lines[-1], result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "report.json").exists()
