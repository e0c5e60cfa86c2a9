"""The `llmgan` typer app: wires one module per command group; heavy imports stay inside commands."""

from __future__ import annotations

import importlib

import typer

from llmgan import __version__

app = typer.Typer(
    name="llmgan",
    help="Bulk image generation with a caption LM and a text-conditioned GAN, on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; a command is listed here only once it works.
COMMAND_MODULES: list[str] = ["generate", "data", "train", "expand", "train_lm", "sample", "eval_cmd"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmgan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Bulk image generation with a caption LM and a text-conditioned GAN, on Ray."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"llmgan.cli.{_name}").register(app)


def main() -> None:
    app()
