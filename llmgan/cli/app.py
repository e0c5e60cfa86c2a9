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
    # click's plain help, not rich's boxed table: at 80 columns the table cut long option names
    # ("--expander-min-a…") and squeezed every description into a narrow column
    rich_markup_mode=None,
)

# Each module defines `register(app)`; a command is listed here only once it works.
COMMAND_MODULES: list[str] = ["generate", "export", "data", "train", "expand", "train_lm", "sample", "eval_cmd",
                              "matcher", "compare"]


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


def main(argv: list[str] | None = None) -> None:
    """`llmgan` / `python -m llmgan`: a usage error (unknown option, missing option, a value of the wrong type or
    out of range) is one line on stderr and exit 2, like a bad value the config dataclasses reject."""
    command = typer.main.get_command(app)
    try:
        code = command.main(argv, prog_name="llmgan", standalone_mode=False)
    except Exception as exc:
        # click's UsageError family (typer vendors click, so match by shape rather than by class)
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `llmgan` or `llmgan data`: the help, as before
            exc.show()
            raise SystemExit(exc.exit_code) from None
        message = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        typer.echo(f"error: {message}{where}", err=True)
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)
