"""`llmgan train-lm`: a few steps on a tiny dataset, output in save_pretrained layout that the expander loads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.domains.shapes.captions import ShapesFaithfulness
from llmgan.errors import UserError
from llmgan.text.expander import CaptionExpander, ExpanderConfig
from llmgan.text.lm_train import LMTrainConfig

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = ["--steps", "4", "--batch-size", "8", "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
        "--vocab-size", "300"]


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    rows = [
        ("red star", "a small red star in the top left corner on a navy background"),
        ("blue circle", "a large blue circle in the center on a black background"),
        ("green square on gray background", "a small green square in the bottom right on a gray background"),
        ("large cross", "a large white cross at the top right against a dark green backdrop"),
    ] * 6
    path = tmp_path_factory.mktemp("lmdata") / "pairs.parquet"
    pq.write_table(pa.table({"short_prompt": [r[0] for r in rows], "caption": [r[1] for r in rows],
                             "extra": list(range(len(rows)))}), path)
    return str(path)


def test_train_lm_writes_a_loadable_model(pairs_file: str, tmp_path: Path) -> None:
    out = tmp_path / "lm"
    result = runner.invoke(app, ["train-lm", "--data", pairs_file, "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    summary_line = result.stdout.strip().splitlines()
    assert len(summary_line) == 1 and "4 steps" in summary_line[0] and str(out) in summary_line[0]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "loss.csv", "loss.png", "train_lm.json"):
        assert (out / name).is_file(), name
    with (out / "loss.csv").open() as f:
        losses = list(csv.DictReader(f))
    assert [int(r["step"]) for r in losses] == [1, 2, 3, 4] and all(float(r["loss"]) > 0 for r in losses)
    assert json.loads((out / "train_lm.json").read_text())["pairs"] == 24
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".llmgan-lm-")]  # staging cleaned up

    # an LM trained on shapes captions takes the shapes check; "zebra" is not understood, never called faithful
    expander = CaptionExpander(ExpanderConfig(lm=str(out), max_new_tokens=8, max_resamples=1),
                               check=ShapesFaithfulness())
    result = expander.expand(["red star", "zebra"], ["a", "b"], variants=2, seed=0)
    assert [len(c) for c in result.captions] == [2, 2]
    assert sum(result.stats[k] for k in ("faithful", "resampled", "fallback")) == 2 and \
        result.stats["not_understood"] == 2
    assert all("red" in c and "star" in c for c in result.captions[0])  # words kept, or the prompt itself

    again = runner.invoke(app, ["train-lm", "--data", pairs_file, "--out", str(out), *TINY])
    assert again.exit_code == 2 and "--overwrite" in again.stderr  # never silently replaced


def test_train_lm_bad_input_is_one_line(pairs_file: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train-lm", "--data", pairs_file, "--out", str(tmp_path / "o"), "--caption-column",
                                 "nope", *TINY])
    assert result.exit_code == 2 and "missing column" in result.stderr and len(result.stderr.splitlines()) == 1
    result = runner.invoke(app, ["train-lm", "--data", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and result.stderr.startswith("error: ")
    assert not (tmp_path / "o").exists()
    with pytest.raises(UserError, match="n_embd"):
        LMTrainConfig(n_embd=30, n_head=4)


def test_train_lm_to_s3_and_expand_from_s3(pairs_file: str, s3_url: str, s3_env: str) -> None:
    out = f"{s3_url}/lm"
    result = runner.invoke(app, ["train-lm", "--data", pairs_file, "--out", out, *TINY])
    assert result.exit_code == 0, result.output
    expander = CaptionExpander(ExpanderConfig(lm=out, max_new_tokens=4, max_resamples=0))
    assert expander.identity.startswith(out)
    assert len(expander.expand(["red star"], ["k"], variants=1, seed=0).captions[0]) == 1


def test_time_budget_fixes_the_step_count(pairs_file: str, tmp_path: Path) -> None:
    from llmgan.text.lm_train import load_pairs, train_lm

    config = LMTrainConfig(steps=500, batch_size=4, n_layer=1, n_embd=16, n_head=2, vocab_size=300,
                           max_minutes=1e-4)
    summary = train_lm(load_pairs(pairs_file), str(tmp_path / "lm"), config)
    assert summary["steps"] == 21  # the 20-step probe plus at least one step, never the full 500
    assert len((tmp_path / "lm" / "loss.csv").read_text().splitlines()) == 1 + 21
