"""The emoji judges' benchmark (benchmarks/assets.py): its figures on synthetic data whose answer is known (a generator
that copies its training images is flagged, one that draws noise or new samples of the data is not), and the whole
benchmark as a smoke run on made-up RGBA data with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import assets


def _manifold(n: int, seed: int, dim: int = 192) -> np.ndarray:
    """Points of one smooth low-dimensional distribution in [0, 1]^dim (a stand-in for a set of images)."""
    basis = np.random.default_rng(0).normal(size=(6, dim))
    z = np.random.default_rng(seed).normal(size=(n, 6))
    return 1 / (1 + np.exp(-(z @ basis) / 4))


@pytest.fixture(scope="module")
def train() -> tuple[np.ndarray, np.ndarray]:
    x = _manifold(400, 1)
    nn, _ = assets.nearest(x, x, exclude_self=True)
    return x, nn


def test_a_copying_generator_is_flagged(train: tuple[np.ndarray, np.ndarray]) -> None:
    x, nn = train
    rng = np.random.default_rng(2)
    copies = x[rng.integers(0, len(x), 200)] + rng.normal(0, 0.002, (200, x.shape[1]))
    m = assets.memorisation(copies, x, nn)
    assert m["copying"] is True
    assert m["near_copy_share"] > 0.9 and m["share_closer_than_train_median"] > 0.9
    assert m["nn_ratio"] < 0.2


def test_noise_and_new_samples_are_not_flagged(train: tuple[np.ndarray, np.ndarray]) -> None:
    x, nn = train
    noise = np.random.default_rng(3).uniform(0, 1, (200, x.shape[1]))
    m = assets.memorisation(noise, x, nn)
    assert m["copying"] is False and m["near_copy_share"] == 0 and m["share_closer_than_train_median"] == 0
    assert m["nn_ratio"] > 2
    fresh = assets.memorisation(_manifold(200, 4), x, nn)  # new draws of the data's own distribution
    assert fresh["copying"] is False and fresh["near_copy_share"] < assets.COPYING_SHARE
    assert 0.25 < fresh["share_closer_than_train_median"] < 0.75 and 0.7 < fresh["nn_ratio"] < 1.5
    # the nearest-neighbour search computed alone agrees with the one given
    assert assets.memorisation(noise[:20], x)["nn_ratio"] == assets.memorisation(noise[:20], x, nn)["nn_ratio"]


def test_nearest_and_pairwise_rms() -> None:
    a = np.array([[0.0, 0.0], [1.0, 1.0], [0.1, 0.0]])
    d, i = assets.nearest(a, a, exclude_self=True)
    assert list(i) == [2, 2, 0]
    np.testing.assert_allclose(d[0], np.sqrt(0.01 / 2))
    np.testing.assert_allclose(assets.pairwise_rms(a, a).diagonal(), 0, atol=1e-7)


def test_diversity_tells_collapse_from_variety() -> None:
    x = _manifold(40, 5)
    groups = np.repeat(np.arange(10), 4)
    collapsed = assets.diversity(x[groups * 4], groups)  # every seed of a caption gives the same image
    assert collapsed["within"] == 0 and collapsed["ratio"] == 0 and collapsed["collapsed_share"] == 1
    varied = assets.diversity(x, groups)  # seeds as different as captions
    assert 0.7 < varied["ratio"] < 1.3 and varied["collapsed_share"] == 0
    with pytest.raises(ValueError):
        assets.diversity(x[:3], [0, 1, 2])  # no caption with two seeds


def test_fd_ratio_near_one_for_the_same_distribution_and_large_for_another() -> None:
    real_a, real_b = _manifold(300, 6, 16), _manifold(300, 7, 16)
    same = assets.fd_ratio(_manifold(300, 8, 16), real_a, real_b)
    assert same["n"] == 300 and 0.5 < same["ratio"] < 2.0
    shifted = assets.fd_ratio(_manifold(300, 8, 16) + 0.3, real_a, real_b)
    assert shifted["ratio"] > 10
    assert assets.fd_ratio(_manifold(50, 8, 16), real_a, real_b)["n"] == 50  # one sample size for both
    assert assets.fd_ratio(real_a, real_a, real_b)["ratio"] == 1.0  # drawing exactly the rows' real images: 1


def test_wrong_rows_pick_another_label() -> None:
    labels = ["a", "a", "a", "b", "b", "c", "c", "c", "d"]
    wrong = assets.wrong_rows(labels, np.random.default_rng(0))
    assert all(labels[w] != lab for w, lab in zip(wrong, labels))


def test_topk_accuracy() -> None:
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    assert assets.topk_accuracy(probs, np.array([0, 1, 2]), ks=(1, 2)) == {"top1": round(1 / 3, 4),
                                                                           "top2": round(2 / 3, 4)}
    assert assets.topk_accuracy(probs, np.array([-1, -1, -1]), ks=(3,))["top3"] == 0  # unknown concept: wrong


def test_pixel_vectors_composite_alpha_onto_white() -> None:
    img = np.zeros((2, 8, 8, 4), np.uint8)  # transparent (black, alpha 0)
    img[1] = (255, 0, 0, 255)  # opaque red
    v = assets.pixel_vectors(img, size=4).reshape(2, 3, 4, 4)
    np.testing.assert_allclose(v[0], 1.0)
    np.testing.assert_allclose(v[1, 0], 1.0)
    np.testing.assert_allclose(v[1, 1:], 0.0)


def test_concept_augment_keeps_transparency_and_range() -> None:
    import torch

    x = -torch.ones(8, 4, 32, 32)
    x[:, :, 8:24, 8:24] = 0.8
    y = assets.concept_augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    corner = y[:, 3, :3, :3]
    assert corner.mean() < -0.8  # what the shift brings in is transparent, not grey
    assert (y[:, 3, 13:19, 13:19].mean(dim=(1, 2)) > 0.6).all()  # the drawing stays in the frame
    assert not torch.equal(y[0], y[1])  # each image its own draw


def test_quick_benchmark_runs_every_figure(tmp_path: Path) -> None:
    bench = assets.bench(True, tmp_path)  # what `python -m benchmarks --only assets --quick` runs
    saved = json.loads((tmp_path / "assets.json").read_text())
    md = (tmp_path / "assets.md").read_text()
    assert "| concept top-5 (judge classifier; chance 31.2 %) |" in md and "FD in the judge's feature space" in md
    for split in ("heldout", "train"):
        acc = saved["accuracy"][split]
        assert 0 <= acc["top1"] <= acc["top5"] <= 1 and 0 <= acc["matcher_prompt_p>0.5"] <= 1
        assert 0 <= acc["matcher_wrong_prompt_p>0.5"] <= 1
        for space in ("pixel", "feature"):
            assert saved["memorisation"][split][space]["copying"] in (True, False)
            assert saved["diversity"][split][space]["captions"] > 0
    assert saved["accuracy"]["heldout"]["images"] == 3 * 2 and saved["accuracy"]["train"]["images"] == 8 * 2
    assert saved["fd"]["ratio"] > 0 and saved["fd"]["floor"] > 0
    assert set(saved["fd_references"]) == {"blurred (7 px box)", "reduced to 8 px", "shifted 1/8 side",
                                           "colours reversed"}
    assert "nearest_train_rows" not in json.dumps(saved)
    modes = [r["feedback"] for r in saved["job"]]
    assert modes == ["off", "on"]
    for r in saved["job"]:
        assert r["images"] == (3 + 4) * 2 and r["images_per_s"] > 0 and "heldout" in r and "train" in r
    assert saved["job"][1]["scorer_mean"] is not None and saved["job"][0].get("scorer_mean") is None
    q = saved["scorer"]["heldout_real"]
    assert set(q) == {"images", "prompt", "caption"} and 0 <= q["prompt"]["auc_near_miss"] <= 1
    info = saved["judges"]["classifier_info"]
    assert info["val_augmented"]["top5"] >= info["val_augmented"]["top1"] and info["val_other_style"]["n"] > 0
    assert saved["gan"]["channels"] == 4
    assert bench["ratio"] == bench["FD/floor"] == saved["fd"]["ratio"] and "target" in bench


def _icon_layout(path: Path) -> str:
    """Made-up sprites in the game-icons layout: stated colour and background, held out by pairing or combination."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmgan.data.game_icons import BACKGROUNDS, COLORS
    from llmgan.io.images import png_bytes

    cols: dict[str, list[object]] = {k: [] for k in ("image", "caption", "short_prompt", "label", "color",
                                                     "background", "split", "heldout_kind")}
    pairings = [("red", "transparent"), ("green", "black"), ("blue", "white"), ("yellow", "navy"), ("purple", "gray")]
    for shape in assets.TINY_SHAPES:
        for color, bg in pairings:
            img = assets._tiny_sprite(shape, COLORS[color], "google")
            if BACKGROUNDS[bg] is not None:  # composite onto the stated background
                img[img[..., 3] == 0] = (*BACKGROUNDS[bg], 255)  # type: ignore[misc]
            kind = "pairing" if (color, bg) == ("yellow", "navy") else \
                "combination" if (shape, color) in {("disc", "red"), ("square", "green")} else ""
            cols["image"].append(png_bytes(img))
            cols["caption"].append(f"{shape} icon, {color} on a {bg} background")
            cols["short_prompt"].append(f"{color} {shape}")
            cols["label"].append(shape)
            cols["color"].append(color)
            cols["background"].append(bg)
            cols["split"].append("heldout" if kind else "train")
            cols["heldout_kind"].append(kind)
    pq.write_table(pa.table(cols), path)
    return str(path)


def test_stated_colour_and_background_figures_need_no_judges(tmp_path: Path) -> None:
    from llmgan.domains.generic import caption_words
    from llmgan.gan.checkpoint import save_checkpoint
    from llmgan.gan.config import GanConfig
    from llmgan.gan.step import make_train_state

    data_url = _icon_layout(tmp_path / "icons.parquet")
    data = assets.EmojiData(data_url, 32)
    train_rows, held = data.rows("train"), data.rows("heldout")
    # the judge reads the real images right, and reads them wrong once their red and blue channels are swapped
    right = assets.stated_accuracy(data.images[train_rows], train_rows, data)
    assert right["both"] == 1.0 and right["n"] == len(train_rows)
    swapped = data.images[train_rows][..., [2, 1, 0, 3]]
    assert assets.stated_accuracy(swapped, train_rows, data)["color"] < 0.75

    gan = tmp_path / "gan"
    save_checkpoint(str(gan), make_train_state(GanConfig(image_size=32, g_width=4, d_width=4, channels=4)),
                    training_state=False, extra={"domain": "captioned", "caption_words": caption_words(data.captions)})
    report = assets.run(str(gan), data_url, str(tmp_path / "out"), scorer=None, classifier=None, matcher=None,
                        n_train_prompts=6, seeds=2, log=lambda m: None)
    assert "accuracy" not in report and "fd" not in report and report["judges"] is None
    held_fig = report["stated"]["heldout"]
    assert held_fig["n"] == 2 * len(held) and {"pairing", "combination"} <= set(held_fig)
    assert held_fig["pairing"]["n"] + held_fig["combination"]["n"] == held_fig["n"]
    assert report["stated"]["heldout_real_images"]["both"] == 1.0
    assert set(report["memorisation"]["train"]) == {"pixel"} and report["diversity"]["train"]["pixel"]["captions"] == 6
    md = (tmp_path / "out" / "assets.md").read_text()
    assert "| stated color right (pixel-statistics judge) |" in md and "FD in the judge's" not in md
    # a concept classifier without a judge matcher: concept and FD figures, no matcher figures
    clf = tmp_path / "clf"
    assets.train_concept_judge(data_url, str(clf), steps=20, width=8, check_share=0.0, log=lambda m: None)
    report = assets.run(str(gan), data_url, str(tmp_path / "out2"), scorer=None, classifier=str(clf), matcher=None,
                        n_train_prompts=6, seeds=2, log=lambda m: None)
    assert 0 <= report["accuracy"]["heldout"]["top5"] <= 1 and "matcher_prompt_p>0.5" not in report["accuracy"]["train"]
    assert report["fd"]["ratio"] > 0 and report["judges"]["matcher"] is None and "stated" in report
    assert "| concept top-5 (judge classifier; chance" in (tmp_path / "out2" / "assets.md").read_text()
