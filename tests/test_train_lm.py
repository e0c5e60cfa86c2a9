"""`llmgan train-lm`: a few steps on a tiny dataset, output in save_pretrained layout that the expander loads."""

from __future__ import annotations

import csv
import json
import shutil
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

    # the final checkpoint sits beside the model; the same command again says the run is finished, trains nothing
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["00000004"]
    weights = (out / "model.safetensors").read_bytes()
    again = runner.invoke(app, ["train-lm", "--data", pairs_file, "--out", str(out), *TINY])
    assert again.exit_code == 0, again.output
    assert "already holds a finished run of 4 steps" in again.stderr and "--overwrite" in again.stderr
    assert again.stdout.strip().startswith("caption LM already trained:")
    assert (out / "model.safetensors").read_bytes() == weights  # never silently replaced

    # checkpoints/ is training state, not model: deleting it changes neither identity a job records
    from llmgan.io.identity import content_identity

    identities = content_identity(str(out)), expander.identity
    shutil.rmtree(out / "checkpoints")
    assert (content_identity(str(out)), CaptionExpander(ExpanderConfig(lm=str(out))).identity) == identities


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
    from llmgan.io.storage import Storage

    assert "00000004/training_state.pt" in Storage().list(f"{out}/checkpoints")
    again = runner.invoke(app, ["train-lm", "--data", pairs_file, "--out", out, *TINY])
    assert again.exit_code == 0 and "already holds a finished run" in again.stderr
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


def test_resumed_run_ends_with_the_same_weights_bit_for_bit(pairs_file: str, tmp_path: Path) -> None:
    """Killed after step 5 (checkpoints at 2 and 4; a half-written 6 and a temporary folder left behind), the rerun
    resumes at 4 and ends with exactly the weights and losses of an uninterrupted run: the batch order is a function
    of (seed, step), the LR of (step, steps), and the optimizer state and RNG come back from the checkpoint."""
    from safetensors.numpy import load_file

    from llmgan.text.lm_train import load_pairs, train_lm

    pairs = load_pairs(pairs_file)
    config = LMTrainConfig(steps=7, batch_size=5, n_layer=1, n_embd=16, n_head=2, vocab_size=300, warmup=2)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_lm(pairs, str(straight), config, checkpoint_every=2)

    def kill_after_5(step: int, loss: float, total: int) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lm(pairs, str(split), config, checkpoint_every=2, progress=kill_after_5)
    assert sorted(p.name for p in (split / "checkpoints").iterdir()) == ["00000002", "00000004"]
    assert not (split / "config.json").exists()  # no model published
    partial = split / "checkpoints" / "00000006"  # what a kill mid-upload leaves on S3: no training_state.pt
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    (split / "checkpoints" / ".tmp-00000006-x").mkdir()

    summary = train_lm(pairs, str(split), config, checkpoint_every=2)
    assert summary["start_step"] == 4 and summary["steps"] == 7 and not summary["already_complete"]
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(split / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert (straight / "loss.csv").read_text() == (split / "loss.csv").read_text()
    assert sorted(p.name for p in (split / "checkpoints").iterdir()) == ["00000006", "00000007"]  # newest two


def test_train_lm_resume_from_the_cli(pairs_file: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rerunning with a larger --steps continues the run; other options, other data or a smaller --steps are one
    line each; --overwrite starts over."""
    import logging

    caplog.set_level(logging.INFO, logger="llmgan.text.lm_train")
    out = tmp_path / "lm"
    args = ["train-lm", "--data", pairs_file, "--out", str(out), *TINY, "--checkpoint-every", "2"]
    assert runner.invoke(app, args).exit_code == 0
    more = runner.invoke(app, [*args, "--steps", "6"])
    assert more.exit_code == 0, more.output
    assert "6 steps (resumed at step 4)" in more.stdout
    assert f"resuming from {out / 'checkpoints' / '00000004'} at step 4" in caplog.text
    assert len((out / "loss.csv").read_text().splitlines()) == 1 + 6
    assert json.loads((out / "train_lm.json").read_text())["steps"] == 6

    fewer = runner.invoke(app, [*args, "--steps", "5"])
    assert fewer.exit_code == 2 and len(fewer.stderr.splitlines()) == 1
    assert "--steps 5 is below step 6 of the newest checkpoint" in fewer.stderr
    for extra, what in ((["--n-embd", "16"], "n_embd 32 vs 16"), (["--vocab-size", "320"], "vocab_size 300 vs 320")):
        changed = runner.invoke(app, [*args, "--steps", "8", *extra])
        assert changed.exit_code == 2 and len(changed.stderr.splitlines()) == 1, changed.output
        assert "holds a run with a different configuration" in changed.stderr and what in changed.stderr
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"short_prompt": ["red star"] * 8, "caption": ["a red star"] * 8}), other)
    moved = runner.invoke(app, [*[str(other) if a == pairs_file else a for a in args], "--steps", "8"])
    assert moved.exit_code == 2 and "trained on other pairs (24 from" in moved.stderr

    fresh = runner.invoke(app, [*args, "--overwrite"])
    assert fresh.exit_code == 0 and "resumed" not in fresh.stdout
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["00000002", "00000004"]
    (out / "checkpoints").rename(tmp_path / "gone")  # a finished run without its resume state
    bare = runner.invoke(app, args)
    assert bare.exit_code == 2 and "finished caption LM without checkpoints" in bare.stderr
