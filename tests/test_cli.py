"""The typer app: --help, --version, and one-line errors with exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llmgan import __version__
from llmgan.cli.app import app, main
from llmgan.cli.common import handle_errors
from llmgan.errors import StorageError, UserError

runner = CliRunner()


def test_help_and_version() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"llmgan {__version__}"


def _commands(command: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    subs = getattr(command, "commands", {})
    return [(path, command)] + [c for name, sub in subs.items() for c in _commands(sub, (*path, name))]


def test_help_fits_80_columns_with_every_option_name_whole() -> None:
    """Every command's --help at 80 columns: no line wider, every option spelled out in full (the rich table
    cut `--expander-min-a…`), help text in square brackets kept."""
    commands = _commands(typer.main.get_command(app))
    assert len(commands) > 8
    for path, command in commands:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (path, result.output)
        wide = [line for line in result.output.splitlines() if len(line) > 80]
        assert not wide, (path, wide)
        for param in getattr(command, "params", []):
            for name in (*param.opts, *param.secondary_opts):
                if name.startswith("--"):
                    assert name in result.output, (path, name)
    result = runner.invoke(app, ["generate", "--help"], env={"COLUMNS": "80"})
    assert "[default: 0.25; 0" in result.output


def test_bad_argument_exits_2() -> None:
    result = runner.invoke(app, ["--no-such-option"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_console_script_installed() -> None:
    out = subprocess.run([sys.executable, "-m", "llmgan", "--version"], check=False, capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_errors_become_one_line_and_exit_codes() -> None:
    demo = typer.Typer()

    @demo.command()
    @handle_errors
    def run(kind: str) -> None:
        if kind == "user":
            raise UserError("field 'steps' must be positive, got -1")
        raise StorageError("cannot reach S3 endpoint http://127.0.0.1:9")

    user = runner.invoke(demo, ["user"])
    assert user.exit_code == 2
    assert user.output.strip() == "error: field 'steps' must be positive, got -1"
    storage = runner.invoke(demo, ["storage"])
    assert storage.exit_code == 1 and "Traceback" not in storage.output


# ---- every bad value of every option of data / sample / eval / train-classifier / train-matcher (and train's shared
# ones) ----------

def _bad_values(tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, the option the one-line error must name); every argv is complete but for one bad value."""
    pq, out = str(tmp / "out" / "d.parquet"), str(tmp / "out" / "dir")
    (tmp / "a_folder").mkdir()
    shapes = ["data", "shapes", "--n", "4"]
    pairs = ["data", "prompt-pairs", "--n", "4"]
    sample = ["sample", "a red star", "--out", out]
    ev = ["eval", "--data", str(tmp / "data.parquet"), "--out", out]
    clf = ["train-classifier", "--data", str(tmp / "data.parquet"), "--out", out]
    train = ["train", "--data", str(tmp / "data.parquet"), "--out", out]
    train_local = [*train, "--local"]
    tm = ["train-matcher", "--data", str(tmp / "data.parquet"), "--out", out]
    cases: list[tuple[list[str], str]] = [
        (shapes, "--out"),  # missing
        ([*shapes, "--out", ""], "--out"),
        ([*shapes, "--out", str(tmp / "a_folder")], "--out"),
        ([*shapes, "--out", "s3://bucket-only"], "--out"),
        (["data", "shapes", "--n", "0", "--out", pq], "--n"),
        (["data", "shapes", "--n", "-3", "--out", pq], "--n"),
        (["data", "shapes", "--n", "many", "--out", pq], "--n"),
        ([*shapes, "--out", pq, "--size", "4"], "--size"),
        ([*shapes, "--out", pq, "--size", "4096"], "--size"),
        ([*shapes, "--out", pq, "--seed", "-1"], "--seed"),
        ([*shapes, "--out", pq, "--seed", "x"], "--seed"),
        ([*shapes, "--out", pq, "--split", "test"], "--split"),
        ([*shapes, "--out", pq, "--no-such-option"], "--no-such-option"),
        (["data", "prompt-pairs", "--n", "0", "--out", pq], "--n"),
        ([*pairs, "--out", pq, "--detail", "1.5"], "--detail"),
        ([*pairs, "--out", pq, "--detail", "-0.1"], "--detail"),
        ([*pairs, "--out", pq, "--split", "heldin"], "--split"),
        ([*pairs, "--out", pq, "--seed", "-2"], "--seed"),
        ([*pairs, "--out", ""], "--out"),
        (["data", "digits", "--out", pq, "--size", "7"], "--size"),
        (["data", "digits", "--out", pq, "--seed", "-1"], "--seed"),
        (["data", "digits", "--out", str(tmp / "a_folder")], "--out"),
        (["sample", " ", "--out", out], "PROMPT"),
        (["sample", "a red star"], "--out"),
        ([*sample, "-n", "0"], "--n"),
        ([*sample, "--n", "10001"], "--n"),
        ([*sample, "--best-of", "0"], "--best-of"),
        ([*sample, "--truncation", "0"], "--truncation"),
        ([*sample, "--truncation", "1.5"], "--truncation"),
        ([*sample, "--seed", "-1"], "--seed"),
        (["eval", "--out", out], "--data"),
        ([*ev, "--n", "5"], "--n"),
        ([*ev, "--n", "2000000"], "--n"),
        ([*ev, "--best-of", "0"], "--best-of"),
        ([*ev, "--seed", "-1"], "--seed"),
        ([*ev, "--split", "validation"], "--split"),
        ([*ev, "--threads", "0"], "--threads"),
        ([*ev, "--consistency", "bogus"], "--consistency"),
        ([*ev, "--consistency", ""], "--consistency"),
        ([*ev, "--consistency", str(tmp / "a_folder")], "--consistency"),  # a folder without matcher.json
        ([*clf, "--steps", "0"], "--steps"),
        ([*clf, "--seed", "-1"], "--seed"),
        ([*clf, "--image-size", "4"], "--image-size"),
        ([*clf, "--threads", "0"], "--threads"),
        (["train-classifier", "--data", str(tmp / "data.parquet")], "--out"),
        (["train-matcher", "--data", str(tmp / "data.parquet")], "--out"),
        (["train-matcher", "--out", out], "--data"),
        (["train-matcher", "--data", str(tmp / "data.parquet"), "--out", ""], "--out"),
        ([*tm, "--steps", "0"], "--steps"),
        ([*tm, "--steps", "many"], "--steps"),
        ([*tm, "--val-fraction", "0"], "--val-fraction"),
        ([*tm, "--val-fraction", "1"], "--val-fraction"),
        ([*tm, "--seed", "-1"], "--seed"),
        ([*tm, "--threads", "0"], "--threads"),
        ([*tm, "--batch-size", "1"], "--batch-size"),
        ([*tm, "--pool", "-1"], "--pool"),
        ([*tm, "--lr", "0"], "--lr"),
        ([*tm, "--lr", "1.5"], "--lr"),
        ([*tm, "--width", "2"], "--width"),
        ([*tm, "--dim", "4"], "--dim"),
        ([*tm, "--image-size", "4"], "--image-size"),
        (["train", "--local", "--data", str(tmp / "data.parquet")], "--out"),
        (["train", "--local", "--data", str(tmp / "data.parquet"), "--out", out, "--seed", "-1"], "--seed"),
        ([*train_local, "--threads", "0"], "--threads"),
        ([*train_local, "--steps", "0"], "--steps"),
        ([*train_local, "--checkpoint-every", "0"], "--checkpoint-every"),
        ([*train_local, "--log-every", "-1"], "--log-every"),
        ([*train_local, "--epochs", "1"], "--epochs"),
        ([*train_local, "--matcher", "yes"], "yes"),  # a flag takes no value: the extra argument is named
        ([*train, "--cpus-per-worker", "0"], "--cpus-per-worker"),
        ([*train, "--workers", "0"], "--workers"),
        ([*train, "--max-failures", "-1"], "--max-failures"),
        ([*train, "--steps", "3", "--epochs", "1"], "--epochs"),
        ([*train, "--eval-every", "0"], "--eval-every"),
    ]
    return cases


def test_every_bad_option_value_is_one_line_exit_2_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The `llmgan` entry point: each bad value fails before any work with exit 2 and one stderr line that names
    the option (config dataclass checks and typer's own type/range checks alike), and no output appears."""
    cases = _bad_values(tmp_path)
    failures = []
    for argv, option in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        captured = capsys.readouterr()
        lines = [ln for ln in captured.err.splitlines() if ln.strip()]
        if (exit_info.value.code != 2 or len(lines) != 1 or option not in lines[0]
                or not lines[0].startswith("error: ") or captured.out):
            failures.append(f"{argv}: exit {exit_info.value.code}, stderr {captured.err!r}, stdout {captured.out!r}")
    assert failures == [], "\n".join(failures)
    assert not (tmp_path / "out").exists()  # nothing written, not even a folder
    assert len(cases) >= 40


def test_bad_value_from_the_console_script_is_one_line() -> None:
    """Same through a real process (`python -m llmgan` runs `main`): typer's range check, then a dataclass check."""
    for argv, option in ((["data", "shapes", "--n", "3", "--out", "x.parquet", "--seed", "-4"], "--seed"),
                         (["sample", "red star", "--out", "o", "--truncation", "2"], "--truncation")):
        proc = subprocess.run([sys.executable, "-m", "llmgan", *argv], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1 and option in proc.stderr, proc.stderr


def test_train_matcher_defaults_are_the_matchers_own() -> None:
    """The CLI restates MatcherConfig's defaults (importing it would load torch for `llmgan --help`)."""
    from llmgan.cli.matcher import MatcherTrainOptions
    from llmgan.gan.matcher import MatcherConfig

    assert MatcherTrainOptions(out="m").config() == MatcherConfig()


def test_eval_passes_consistency_to_the_report(tmp_path: Path) -> None:
    """`--consistency none` reaches evaluate(): no scorer, where the default (auto) scores shapes data."""
    from llmgan.data.tables import write_dataset
    from llmgan.domains.shapes.render import generate_shapes
    from llmgan.gan.checkpoint import save_checkpoint
    from llmgan.gan.config import GanConfig
    from llmgan.gan.step import make_train_state

    cfg = GanConfig(image_size=32, g_width=8, d_width=8, z_dim=16, cond_dim=16, contrastive_dim=16)
    save_checkpoint(str(tmp_path / "ckpt"), make_train_state(cfg, seed=0), training_state=False)
    write_dataset(generate_shapes(40, seed=5, split="all"), str(tmp_path / "shapes.parquet"))
    reports = {}
    for spec in ("auto", "none"):
        out = tmp_path / spec
        result = runner.invoke(app, ["eval", "--ckpt", str(tmp_path / "ckpt"), "--data", str(tmp_path / "shapes.parquet"),
                                     "--out", str(out), "--n", "10", "--split", "all", "--consistency", spec])
        assert result.exit_code == 0, result.output
        reports[spec] = json.loads((out / "report.json").read_text())
    assert reports["auto"]["consistency_scorer"]["spec"] == "auto"
    assert reports["auto"]["splits"]["all"]["consistency"] is not None
    assert reports["none"]["consistency_scorer"] is None
    assert reports["none"]["splits"]["all"]["consistency"] is None
