"""Every bad value of every `llmgan generate` option, through the real CLI: exit 2, one `error:` line naming
the option, nothing written into --out, and no executor (so no Ray) ever created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llmgan.cli.app import app

BAD = [
    ("--truncation", "0"), ("--truncation", "-1"), ("--truncation", "1.5"), ("--truncation", "nan"),
    ("--truncation", "abc"),
    ("--best-of", "0"), ("--best-of", "65"), ("--best-of", "two"),
    ("--batch-size", "0"), ("--batch-size", "65537"),
    ("--shard-size", "0"), ("--shard-size", "1000001"), ("--shard-size", "1.5"),
    ("--variants", "0"), ("--variants", "65"),
    ("--n-per-prompt", "0"), ("--n-per-prompt", "-2"),
    ("--seed", "-1"), ("--seed", str(2**63)),
    ("--temperature", "0"), ("--temperature", "-0.5"), ("--temperature", "inf"),
    ("--top-p", "0"), ("--top-p", "1.01"),
    ("--max-retries", "-1"), ("--max-retries", "101"),
    ("--format", "zip"), ("--format", ""),
    ("--executor", "dask"), ("--executor", ""),
    ("--prompt-column", ""),
    ("--expander-min-actors", "0"), ("--expander-max-actors", "0"),
    ("--generator-min-actors", "0"), ("--generator-max-actors", "0"),
    ("--expander-cpus", "-1"), ("--generator-cpus", "-0.5"), ("--expander-gpus", "-1"), ("--generator-gpus", "-1"),
    ("--generator-cpus", "inf"),
    ("--expander-resources", "[1]"), ("--expander-resources", "not json"), ("--expander-resources", '{"CPU": 1}'),
    ("--generator-resources", '{"gan_gpu": -1}'), ("--generator-resources", '{"gan_gpu": "one"}'),
    ("--generator-resources", '{"": 1}'), ("--generator-resources", '{"memory": 1}'),
    ("--min-consistency", "-0.1"), ("--min-consistency", "1.5"), ("--min-consistency", "nan"),
    ("--min-consistency", "high"),
    ("--max-attempts", "0"), ("--max-attempts", "65"), ("--max-attempts", "1.5"),
    ("--consistency", ""), ("--consistency", "bogus"),
]


class ExecutorReached(Exception):
    """Raised by the patched make_executor: the command got past validation."""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import llmgan.cli.generate as generate_cli

    def no_executor(name: str) -> None:
        raise ExecutorReached(name)

    monkeypatch.setattr(generate_cli, "make_executor", no_executor)
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": ["red star"]}), prompts)
    out = tmp_path / "out"

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(app, ["generate", str(prompts), "--out", str(out), "--no-expand", *args])

    invoke.out = out  # type: ignore[attr-defined]
    return invoke


@pytest.mark.parametrize("option, value", BAD, ids=[f"{o}={v}" for o, v in BAD])
def test_bad_value_is_one_line_naming_the_option(cli, option: str, value: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(option, value)
    assert result.exit_code == 2, (result.exit_code, result.exception, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not isinstance(result.exception, ExecutorReached)
    assert not cli.out.exists()


def test_min_above_max_names_both(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--generator-min-actors", "3", "--generator-max-actors", "2")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --generator-max-actors (2) must be >= --generator-min-actors (3)"


def test_good_values_reach_the_executor(cli) -> None:  # type: ignore[no-untyped-def]
    """The control: in-range values at the edges pass validation (so the cases above fail for their value)."""
    edges = ["--truncation", "1", "--best-of", "64", "--batch-size", "1", "--shard-size", "1000000", "--variants", "64",
             "--seed", str(2**63 - 1), "--top-p", "1", "--max-retries", "0", "--format", "parquet",
             "--executor", "local", "--expander-cpus", "0", "--generator-gpus", "0.5",
             "--generator-resources", '{"gan_gpu": 0.5}', "--generator-min-actors", "2",
             "--min-consistency", "1", "--max-attempts", "64", "--consistency", "none"]
    result = cli(*edges)
    assert isinstance(result.exception, ExecutorReached) and str(result.exception) == "local"
    assert not cli.out.exists()  # the executor comes before any output


def test_bad_truncation_fails_before_anything_is_written_without_ray(tmp_path: Path) -> None:
    """As users run it: a separate process, `ray` made unimportable, so starting Ray would be a traceback."""
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": ["red star"]}), prompts)
    out = tmp_path / "out"
    code = ("import runpy, sys; sys.modules['ray'] = None; "
            f"sys.argv = ['llmgan', 'generate', {str(prompts)!r}, '--out', {str(out)!r}, '--truncation', '1.5']; "
            "runpy.run_module('llmgan', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == "error: --truncation must be in (0, 1], got 1.5"
    assert not out.exists()
