"""The typer app: --help, --version, and one-line errors with exit codes."""

from __future__ import annotations

import subprocess
import sys

import typer
from typer.testing import CliRunner

from llmgan import __version__
from llmgan.cli.app import app
from llmgan.cli.common import handle_errors
from llmgan.errors import StorageError, UserError

runner = CliRunner()


def test_help_and_version() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"llmgan {__version__}"


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
