"""The quality gate: `--drop-below` keeps low-consistency images out of the shards (counted and listed),
`--fail-below-share` exits with code 3 after writing everything; the default keeps every image and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.errors import UserError
from llmgan.job.config import GenerateConfig

runner = CliRunner()
PROMPTS = ["red star", "blue circle", "green cross", "white square", "yellow triangle", "cyan star"]


@pytest.fixture()
def prompts(tmp_path: Path) -> str:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": PROMPTS}), path)
    return str(path)


def _generate(prompts: str, out: Path, ckpt: str, *extra: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["generate", prompts, "--out", str(out), "--ckpt", ckpt, "--executor", "local",
                               "--no-expand", "--n-per-prompt", "2", "--consistency", "classifier",
                               "--max-attempts", "2", "--quiet", *extra])


def test_default_keeps_every_image_and_says_so(prompts: str, tmp_path: Path, tiny_ckpt: str) -> None:
    result = _generate(prompts, tmp_path / "o", tiny_ckpt)  # a random GAN: most images score low
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "_SUCCESS.json").read_text())
    assert summary["images"] == 12 and summary["consistency"]["below_threshold"] > 0
    assert "were kept (no quality gate" in result.stdout and "quality_gate" not in summary


def test_drop_below_leaves_low_images_out_and_lists_them(prompts: str, tmp_path: Path, tiny_ckpt: str) -> None:
    kept_all = _generate(prompts, tmp_path / "all", tiny_ckpt)
    assert kept_all.exit_code == 0
    everything = pq.read_table(tmp_path / "all" / "index" / "00000.parquet").to_pylist()
    cut = sorted(r["consistency"] for r in everything)[len(everything) // 2]  # a random GAN: take the median
    low = sorted(r["key"] for r in everything if r["consistency"] < cut)
    assert 0 < len(low) < len(everything)
    result = _generate(prompts, tmp_path / "gate", tiny_ckpt, "--drop-below", repr(cut))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "gate" / "_SUCCESS.json").read_text())
    assert summary["images"] == len(everything) - len(low) and summary["dropped_below_consistency"] == len(low)
    assert sorted(d["key"] for d in summary["dropped_sample"]) == low
    kept = pq.read_table(tmp_path / "gate" / "index" / "00000.parquet").to_pylist()
    assert all(r["consistency"] >= cut for r in kept)  # the same draws, fewer of them
    same = {r["key"]: r["sha256"] for r in everything}
    assert all(same[r["key"]] == r["sha256"] for r in kept)
    assert f"{len(low)} image(s) below --drop-below left out" in result.stdout


def test_fail_below_share_exits_3_after_writing(prompts: str, tmp_path: Path, tiny_ckpt: str) -> None:
    result = _generate(prompts, tmp_path / "f", tiny_ckpt, "--fail-below-share", "0.01")
    assert result.exit_code == 3
    assert "quality gate failed" in result.output and "--fail-below-share 0.01" in result.output
    summary = json.loads((tmp_path / "f" / "_SUCCESS.json").read_text())
    assert summary["images"] == 12 and summary["quality_gate"]["passed"] is False
    ok = _generate(prompts, tmp_path / "p", tiny_ckpt, "--fail-below-share", "1")
    assert ok.exit_code == 0 and json.loads((tmp_path / "p" / "_SUCCESS.json").read_text())["quality_gate"]["passed"]


def test_gate_settings_are_checked_before_anything_is_written(prompts: str, tmp_path: Path) -> None:
    for bad in ({"drop_below": 2.0}, {"fail_below_share": -1}, {"drop_below": 0.5, "consistency": "none"}):
        with pytest.raises(UserError, match="^--(drop-below|fail-below-share) "):
            GenerateConfig(prompts=prompts, **bad)
    result = runner.invoke(app, ["generate", prompts, "--out", str(tmp_path / "x"), "--fail-below-share", "0.1",
                                 "--consistency", "none"])
    assert result.exit_code == 2 and not (tmp_path / "x").exists()
