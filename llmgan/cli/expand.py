"""`llmgan expand`: print N caption-LM expansions of one short prompt, one per line."""

from __future__ import annotations

import typer

from llmgan.cli.common import handle_errors


def register(app: typer.Typer) -> None:
    app.command("expand")(expand_command)


@handle_errors
def expand_command(
    prompt: str = typer.Argument(..., help="Short prompt, e.g. 'red star'."),
    n: int = typer.Option(4, "-n", "--n", help="Number of expansions."),
    lm: str | None = typer.Option(None, "--lm", help="Caption LM: directory, s3:// URL or hub id (default: shipped)."),
    seed: int = typer.Option(0, "--seed", help="Job seed; the same seed gives the same expansions."),
    temperature: float = typer.Option(0.9, "--temperature", help="Sampling temperature (0 = greedy)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling mass."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Longest expansion in tokens."),
    chat_template: bool = typer.Option(False, "--chat-template", help="Wrap the prompt in the LM's chat template."),
    instruction: str | None = typer.Option(None, "--instruction", help="Instruction for chat LMs; must contain {prompt}."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow code shipped with a hub model."),
    max_resamples: int = typer.Option(3, "--max-resamples", help="Retries of unfaithful expansions before fallback."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
) -> None:
    """Expand a short prompt into N detailed captions (stdout), with a one-line summary on stderr."""
    from llmgan.errors import UserError
    from llmgan.text.expander import CaptionExpander, ExpanderConfig

    if n < 1:
        raise UserError(f"-n: must be >= 1, got {n}")
    if not prompt.strip():
        raise UserError("PROMPT: must not be empty")
    extra = {"instruction": instruction} if instruction is not None else {}
    config = ExpanderConfig(
        lm=lm, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, chat_template=chat_template,
        trust_remote_code=trust_remote_code, max_resamples=max_resamples, device=device, **extra,
    )
    expander = CaptionExpander(config)
    result = expander.expand([prompt], [prompt], variants=n, seed=seed)
    for caption in result.captions[0]:
        typer.echo(caption)
    s = result.stats
    typer.echo(
        f"{n} expansions: {s['faithful']} faithful, {s['resampled']} resampled, {s['fallback']} fallback, "
        f"{s['unchecked']} unchecked (lm {expander.identity})",
        err=True,
    )
