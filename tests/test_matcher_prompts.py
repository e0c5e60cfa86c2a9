"""The matcher learns short prompts beside captions: `--prompt-share` draws each row's text per step (seeded),
texts true of an image are never its negatives, calibration negatives contradict a stated attribute, matcher.json
records the share, and bad values are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.data.readers import load_captioned
from llmgan.data.tables import write_dataset
from llmgan.domains.shapes.render import generate_shapes
from llmgan.errors import UserError
from llmgan.gan.matcher import Matcher, MatcherConfig, train_matcher
from llmgan.gan.matcher_texts import TrainingTexts, prompt_negatives, read_short_prompts, true_of
from llmgan.io.storage import Storage

runner = CliRunner()
SMALL = MatcherConfig(width=8, dim=16, batch_size=16, pool=16)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("matcher_prompts") / "shapes.parquet"
    write_dataset(generate_shapes(64, seed=3, split="all"), str(path))
    return path


def _texts(n: int = 6) -> TrainingTexts:
    """Rows 0-2 are stars (prompt "star" x3 + a red-star prompt), rows 3-5 circles; 2 label columns."""
    labels = {"shape": ["star"] * 3 + ["circle"] * 3, "color": ["red", "blue", "red", "red", "blue", "blue"]}
    prompts = ["star", "star", "star", "red circle", None, "blue circle"]
    captions = [f"a {c} {s} caption {i}" for i, (s, c) in enumerate(zip(labels["shape"], labels["color"]))]
    rng = np.random.default_rng(0)
    cap, pr = rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 8)).astype(np.float32)
    return TrainingTexts.build(captions, labels, cap, prompts, pr)


def test_a_prompt_is_true_of_every_image_that_shows_what_it_states() -> None:
    t = _texts()
    cols = sorted(["shape", "color"])
    # "star" (three rows with mixed colours) states the shape only; a caption states everything
    assert [t.pr_stated[0][cols.index("shape")] >= 0, t.pr_stated[0][cols.index("color")] >= 0] == [True, False]
    truth = t.true_of(np.arange(6), t.pr_stated[[0]])[:, 0]
    assert truth.tolist() == [True, True, True, False, False, False]
    assert t.true_of(np.arange(6), t.cap_stated[[0]])[:, 0].tolist() == [True, False, True, False, False, False]
    # seen once, "red circle" may state both columns; it is never *surely* stated with one row
    assert (t.pr_stated[3] >= 0).all() and (t.pr_sure[3] < 0).all()
    assert not t.has_prompt[4]


def test_draw_mixes_captions_and_prompts_per_row_seeded() -> None:
    t = _texts()
    rows = np.arange(6).repeat(50)
    all_caps, _ = t.draw(rows, 0.0, np.random.default_rng(1))
    assert np.array_equal(all_caps, t.cap_emb[rows])
    all_prompts, stated = t.draw(rows, 1.0, np.random.default_rng(1))
    has = t.has_prompt[rows]
    assert np.array_equal(all_prompts[has], t.pr_emb[rows][has])
    assert np.array_equal(all_prompts[~has], t.cap_emb[rows][~has])  # no prompt: the caption
    a, sa = t.draw(rows, 0.5, np.random.default_rng(7))
    b, sb = t.draw(rows, 0.5, np.random.default_rng(7))
    assert np.array_equal(a, b) and np.array_equal(sa, sb)
    from_prompt = (a == t.pr_emb[rows]).all(1) & has
    assert 0.3 < from_prompt.sum() / has.sum() < 0.7


def test_prompt_negatives_contradict_a_surely_stated_attribute() -> None:
    table = generate_shapes(240, seed=5, split="all")
    labels = {a: table[a].to_pylist() for a in ("shape", "color", "size", "position", "background")}
    prompts = table["short_prompt"].to_pylist()
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(240, 16)).astype(np.float32)
    t = TrainingTexts.build(table["caption"].to_pylist(), labels, emb, prompts, emb[::-1].copy())
    rows, near = prompt_negatives(t, np.arange(100), seed=0)
    assert len(rows) > 30
    assert not true_of(t.lab[rows], t.pr_sure[near]).diagonal().any()
    again = prompt_negatives(t, np.arange(100), seed=0)
    assert np.array_equal(again[0], rows) and np.array_equal(again[1], near)


def test_train_on_captions_and_prompts_is_deterministic_and_recorded(shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    m = train_matcher(str(shapes), str(out), 3, SMALL, seed=4, progress=False)
    meta = json.loads((out / "matcher.json").read_text())
    assert meta["config"]["prompt_share"] == 0.5 and meta["info"]["prompt_share"] == 0.5
    assert meta["info"]["n_short_prompts"] == 64
    assert {"auc_hard_negative", "accuracy_at_0.5", "ece"} <= set(meta["info"]["val"])
    again = train_matcher(str(shapes), None, 3, SMALL, seed=4, progress=False)
    for (k, v), w in zip(m.net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(v, w), k
    assert Matcher.load(str(out)).config.prompt_share == 0.5


def test_data_without_prompts_trains_on_captions(tmp_path: Path) -> None:
    table = generate_shapes(40, seed=2, split="all")
    write_dataset(table.drop_columns(["short_prompt"]), str(tmp_path / "plain.parquet"))
    m = train_matcher(str(tmp_path / "plain.parquet"), None, 2, SMALL, seed=0, progress=False)
    assert m.config.prompt_share == 0.0 and m.info["n_short_prompts"] == 0
    assert "auc_hard_negative_prompts" not in m.info["val"]


def test_prompts_stay_aligned_when_the_reader_skips_a_row(tmp_path: Path) -> None:
    table = generate_shapes(12, seed=9, split="all")
    images = table["image"].to_pylist()
    images[4] = b"not a png"
    table = table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))
    path = str(tmp_path / "broken.parquet")
    write_dataset(table, path)
    ds = load_captioned(path, 32)
    assert len(ds) == 11
    prompts = read_short_prompts(path, ds.captions, Storage())
    expected = [p for i, p in enumerate(table["short_prompt"].to_pylist()) if i != 4]
    assert prompts == expected


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_bad_prompt_share_is_refused(value: float) -> None:
    with pytest.raises(UserError, match="--prompt-share"):
        MatcherConfig(prompt_share=value)


def test_cli_prompt_share_reaches_the_matcher_and_bad_values_exit_2(shapes: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train-matcher", "--data", str(shapes), "--out", str(tmp_path / "m"), "--steps",
                                 "2", "--batch-size", "16", "--pool", "8", "--width", "8", "--dim", "16",
                                 "--prompt-share", "0.25"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "matcher.json").read_text())["config"]["prompt_share"] == 0.25
    proc = subprocess.run([sys.executable, "-m", "llmgan", "train-matcher", "--data", str(shapes), "--out",
                           str(tmp_path / "bad"), "--prompt-share", "2"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "--prompt-share" in proc.stderr, proc.stderr


def test_per_text_calibration_round_trips_and_old_files_still_load(tmp_path: Path) -> None:
    from llmgan.gan.matcher import MatcherNet

    config = MatcherConfig(width=8, dim=16)
    m = Matcher(config, MatcherNet(config), (10.0, -5.0), calibration_by_text={"caption": (20.0, -10.0),
                                                                               "prompt": (5.0, -1.0)})
    m.save(str(tmp_path / "m"))
    back = Matcher.load(str(tmp_path / "m"))
    assert back.calibration == (10.0, -5.0) and back.calibration_by_text["prompt"] == (5.0, -1.0)
    cos = np.array([0.1, 0.5])
    assert np.allclose(back.calibrate(cos), m.calibrate(cos))
    assert np.allclose(back.calibrate(cos, "prompt"), 1 / (1 + np.exp(-(5.0 * cos - 1.0))))
    with pytest.raises(ValueError, match="caption, prompt"):
        back.calibrate(cos, "title")
    meta = json.loads((tmp_path / "m" / "matcher.json").read_text())
    del meta["calibration_by_text"], meta["config"]["prompt_share"]  # a file written before prompts
    (tmp_path / "m" / "matcher.json").write_text(json.dumps(meta))
    old = Matcher.load(str(tmp_path / "m"))
    assert old.calibration_by_text == {} and np.allclose(old.calibrate(cos, "prompt"), old.calibrate(cos))
