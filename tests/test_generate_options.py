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
    ("--temperature", "-0.5"), ("--temperature", "5.01"), ("--temperature", "inf"), ("--temperature", "nan"),
    ("--top-p", "0"), ("--top-p", "1.01"), ("--top-p", "nan"),
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
    ("--input-format", "xls"), ("--on-unsupported", "maybe"), ("--drop-below", "1.5"), ("--fail-below-share", "-0.1"),
    ("--s3-endpoint", "not-a-url"), ("--s3-endpoint", "ftp://host"),
    ("--model", "nope"), ("--model", ""),
    ("--image-format", "gif"), ("--image-format", ""), ("--png-level", "-1"), ("--png-level", "10"),
    ("--png-level", "fast"), ("--quality", "0"), ("--quality", "101"), ("--quality", "90"),  # png is lossless
    ("--encode-workers", "0"), ("--encode-workers", "1025"), ("--encode-workers", "two"),
    ("--stage-layout", "merged"), ("--stage-layout", ""),
]
# Options whose every value is a valid setting (flags), or whose bad values need files and models: the latter
# are swept by test_bad_path_or_model_is_refused_before_anything_is_written below.
NO_BAD_VALUE = {"--expand", "--no-expand", "--keep-words", "--no-keep-words", "--overwrite", "--quiet", "--help"}
PATH_OPTIONS = {"--out", "--lm", "--ckpt", "--blocklist"}


class ExecutorReached(Exception):
    """Raised by the patched make_executor: the command got past validation."""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import llmgan.cli.generate as generate_cli

    def no_executor(name: str, quiet: bool = False) -> None:
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
             "--seed", str(2**63 - 1), "--top-p", "1", "--temperature", "0", "--max-retries", "0", "--format", "parquet",
             "--executor", "local", "--expander-cpus", "0", "--generator-gpus", "0.5",
             "--generator-resources", '{"gan_gpu": 0.5}', "--generator-min-actors", "2",
             "--min-consistency", "1", "--max-attempts", "64", "--consistency", "none",
             "--image-format", "webp", "--quality", "100", "--encode-workers", "1024"]
    result = cli(*edges)
    assert isinstance(result.exception, ExecutorReached) and str(result.exception) == "local"
    assert not cli.out.exists()  # the executor comes before any output


@pytest.mark.parametrize("args, message", [
    (["--image-format", "webp", "--png-level", "1"], "error: --png-level applies to --image-format png, not webp"),
    (["--png-level", "1", "--quality", "80"], "error: --quality applies to --image-format webp or jpeg; png is "
                                              "lossless (--png-level trades speed for size)"),
])
def test_image_options_that_do_not_apply_are_refused(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code == 2 and result.stderr.strip() == message
    assert not cli.out.exists()
    for good in (["--png-level", "0"], ["--png-level", "9"], ["--image-format", "jpeg"],
                 ["--image-format", "webp", "--quality", "1"]):
        assert isinstance(cli(*good).exception, ExecutorReached), good


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


def test_every_option_is_swept() -> None:
    """A new `generate` option needs its bad values here (or in the path sweep), or a reason it has none."""
    import typer

    command = typer.main.get_command(app).commands["generate"]
    names = {n for p in command.params for n in (*p.opts, *p.secondary_opts) if n.startswith("--")}
    swept = {option for option, _ in BAD} | PATH_OPTIONS | NO_BAD_VALUE | {"--consistency"}
    assert names - swept == set(), f"options with no bad value swept: {sorted(names - swept)}"


# ---- paths and models: resolved and loaded (or refused) before `_job.json` ------------------------------------

class FakeExecutor:
    """Reached only once the driver got past every check (and wrote `_job.json`)."""

    name = "fake"

    def prepare(self, cfg):  # type: ignore[no-untyped-def]
        raise ExecutorReached("prepare")


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Folders that look like models at a glance and fail on a closer one."""
    import json
    import shutil

    from llmgan.gan.inference import default_checkpoint_path

    root = tmp_path_factory.mktemp("models")
    shipped = Path(default_checkpoint_path())
    made: dict[str, str] = {}

    def ckpt(name: str, drop: str | None = None, garble: str | None = None, **meta: object) -> None:
        d = root / name
        shutil.copytree(shipped, d, ignore=shutil.ignore_patterns("matcher*"))
        if drop:
            (d / drop).unlink()
        if garble:
            (d / garble).write_bytes(b"not safetensors")
        if meta:
            config = json.loads((d / "config.json").read_text())
            (d / "config.json").write_text(json.dumps({**config, **meta}))
        made[name] = str(d)

    ckpt("no_generator", drop="generator.safetensors")
    ckpt("garbled_generator", garble="generator.safetensors")
    ckpt("no_discriminator", drop="discriminator.safetensors")
    ckpt("missing_encoder", text_encoder=str(root / "no-such-encoder"))
    ckpt("hub_encoder", text_encoder="llmgan-tests/no-such-encoder")
    (root / "lm_no_weights").mkdir()
    (root / "lm_no_weights" / "config.json").write_text("{}")
    made["lm_no_weights"] = str(root / "lm_no_weights")
    (root / "matcher_no_weights").mkdir()
    (root / "matcher_no_weights" / "matcher.json").write_text("{}")
    made["matcher_no_weights"] = str(root / "matcher_no_weights")
    (root / "a_file").write_text("not a folder")
    made["a_file"] = str(root / "a_file")
    return made


PATH_CASES = [  # (id, arguments with {placeholders} from broken_models, words the one error line must hold)
    ("out-is-a-file", ["--out", "{a_file}"], ["--out", "is a file"]),
    ("out-inside-a-file", ["--out", "{a_file}/sub"], ["--out", "a file"]),
    ("lm-hub-id-offline", ["--expand", "--lm", "gpt2"], ["caption LM", "'gpt2'", "cache"]),
    ("lm-no-weights", ["--expand", "--lm", "{lm_no_weights}"], ["caption LM", "no weights"]),
    ("lm-a-file", ["--expand", "--lm", "{a_file}"], ["caption LM", "file"]),
    ("lm-missing", ["--expand", "--lm", "./no/such/lm"], ["caption LM", "not found"]),
    ("ckpt-missing", ["--ckpt", "{a_file}-missing"], ["no GAN checkpoint"]),
    ("ckpt-no-generator", ["--ckpt", "{no_generator}"], ["generator.safetensors"]),
    ("ckpt-garbled-generator", ["--ckpt", "{garbled_generator}"], ["not a safetensors file"]),
    ("ckpt-no-discriminator-for-best-of", ["--ckpt", "{no_discriminator}", "--best-of", "2"],
     ["discriminator.safetensors"]),
    ("ckpt-text-encoder-missing", ["--ckpt", "{missing_encoder}"], ["text encoder", "no-such-encoder"]),
    ("ckpt-text-encoder-hub-offline", ["--ckpt", "{hub_encoder}"], ["text encoder", "cache"]),
    ("consistency-matcher-no-weights", ["--consistency", "{matcher_no_weights}"], ["matcher"]),
    ("blocklist-missing", ["--blocklist", "{a_file}-missing"], ["blocklist"]),
]


@pytest.mark.parametrize("args, words", [c[1:] for c in PATH_CASES], ids=[c[0] for c in PATH_CASES])
def test_bad_path_or_model_is_refused_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken_models: dict[str, str], args: list[str],
        words: list[str]) -> None:
    import time

    import llmgan.cli.generate as generate_cli

    monkeypatch.setattr(generate_cli, "make_executor", lambda name, quiet=False: FakeExecutor())
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": ["red star"]}), prompts)
    out = tmp_path / "out"
    argv = ["generate", str(prompts), "--out", str(out), "--no-expand", *[a.format(**broken_models) for a in args]]
    before = sorted(p.name for p in Path(broken_models["a_file"]).parent.iterdir())
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, (result.exit_code, result.exception, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert time.perf_counter() - t0 < 30  # refused at once, not after a job's retries
    assert not out.exists()
    assert sorted(p.name for p in Path(broken_models["a_file"]).parent.iterdir()) == before
    assert Path(broken_models["a_file"]).read_text() == "not a folder"


def test_unreachable_hub_id_is_refused_in_seconds_when_not_offline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without HF_HUB_OFFLINE: the hub is asked once, briefly (here: no hub reachable, or no such model)."""
    import time

    import llmgan.cli.generate as generate_cli

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(generate_cli, "make_executor", lambda name, quiet=False: FakeExecutor())
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": ["red star"]}), prompts)
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["generate", str(prompts), "--out", str(tmp_path / "out"),
                                      "--lm", "llmgan-tests/no-such-caption-lm"])
    assert result.exit_code == 2, (result.exception, result.stderr)
    assert "caption LM 'llmgan-tests/no-such-caption-lm'" in result.stderr and "hub" in result.stderr
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "out").exists()


def test_good_models_pass_the_checks_and_reach_the_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the path sweep: the shipped models, an --out folder that exists, greedy sampling."""
    import llmgan.cli.generate as generate_cli

    monkeypatch.setattr(generate_cli, "make_executor", lambda name, quiet=False: FakeExecutor())
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": ["red star"]}), prompts)
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(app, ["generate", str(prompts), "--out", str(tmp_path / "out"), "--best-of", "2",
                                      "--temperature", "0", "--consistency", "matcher"])
    assert isinstance(result.exception, ExecutorReached), (result.exception, result.stderr)
    assert (tmp_path / "out" / "_job.json").exists()


def test_expander_and_job_share_one_sampling_rule() -> None:
    """`llmgan expand` and `llmgan generate` accept and refuse the same temperatures and top-p values."""
    from llmgan.errors import UserError
    from llmgan.job.config import GenerateConfig
    from llmgan.text.options import ExpanderConfig

    for temperature, top_p in [(0, 0.5), (5, 1), (5.01, 0.5), (-1, 0.5), (0.9, 0), (0.9, 1.5), (float("nan"), 1)]:
        verdicts = []
        for build in (ExpanderConfig, lambda **kw: GenerateConfig(prompts="p.parquet", **kw)):
            try:
                build(temperature=temperature, top_p=top_p)
                verdicts.append("ok")
            except UserError as exc:
                verdicts.append(str(exc))
        assert verdicts[0] == verdicts[1], (temperature, top_p, verdicts)
