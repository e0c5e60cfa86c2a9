"""`llmgan expand`: print N caption-LM expansions of one short prompt, one per line."""

from __future__ import annotations

from typing import Annotated

import typer

from llmgan.cli.common import Ckpt, Lm, Seed, handle_errors
from llmgan.text.options import CHECKS, ENGINES, ExpanderConfig

_CFG = ExpanderConfig()  # the defaults, declared once in the config


def register(app: typer.Typer) -> None:
    app.command("expand")(expand_command)


@handle_errors
def expand_command(
    prompt: Annotated[str, typer.Argument(help="Short prompt, e.g. 'red star'.")],
    n: Annotated[int, typer.Option("-n", "--n", help="Number of expansions.")] = 4,
    lm: Lm = _CFG.lm,
    seed: Seed = 0,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature (0 = greedy).")
                           ] = _CFG.temperature,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")] = _CFG.top_p,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest expansion in tokens.")
                              ] = _CFG.max_new_tokens,
    chat_template: Annotated[bool, typer.Option(
        "--chat-template", help="Wrap the prompt in the LM's chat template.")] = _CFG.chat_template,
    instruction: Annotated[str | None, typer.Option(
        "--instruction", help="Instruction for chat LMs; must contain {prompt}.", show_default=False)] = None,
    trust_remote_code: Annotated[bool, typer.Option(
        "--trust-remote-code", help="Allow code shipped with a hub model.")] = _CFG.trust_remote_code,
    max_resamples: Annotated[int, typer.Option(
        "--max-resamples", help="Retries of unfaithful expansions before falling back to the prompt.")
    ] = _CFG.max_resamples,
    check: Annotated[str, typer.Option(
        "--check", help=f"Faithfulness check: {', '.join(CHECKS)}. auto = the check of the GAN's domain "
        "(--ckpt; the shipped GAN: shapes).")] = _CFG.check,
    ckpt: Ckpt = None,
    keep_words: Annotated[bool, typer.Option(
        "--keep-words/--no-keep-words", help="Keep the prompt's own attribute words verbatim in every caption "
        "('crimson star' stays crimson); the LM adds the unstated details. Needs a check.")] = _CFG.keep_words,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or mps.")] = _CFG.device,
    lm_engine: Annotated[str, typer.Option(
        "--lm-engine", help=f"Sampling loop: {', '.join(ENGINES)}. fast = static KV cache for GPT-2-family LMs (the "
        "same captions; other LMs use the reference), reference = the Hugging Face forward per step.")
    ] = _CFG.engine,
) -> None:
    """Expand a short prompt into N detailed captions (stdout), with a one-line summary on stderr."""
    from llmgan.errors import UserError
    from llmgan.eval.consistency import gan_domain
    from llmgan.io.storage import Storage
    from llmgan.text.expander import CaptionExpander

    if n < 1:
        raise UserError(f"-n must be >= 1, got {n}")
    if not prompt.strip():
        raise UserError("PROMPT must not be empty")
    extra = {"instruction": instruction} if instruction is not None else {}
    config = ExpanderConfig(
        lm=lm, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, chat_template=chat_template,
        trust_remote_code=trust_remote_code, max_resamples=max_resamples, device=device, check=check,
        keep_words=keep_words, engine=lm_engine, **extra,
    )
    domain = gan_domain(ckpt, Storage())
    expander = CaptionExpander(config, check=domain.faithfulness() if config.check != "none" else None)
    result = expander.expand([prompt], [prompt], variants=n, seed=seed)
    for caption in result.captions[0]:
        typer.echo(caption)
    s = result.stats
    typer.echo(
        f"{n} expansions: {s['faithful']} faithful, {s['resampled']} resampled, {s['fallback']} fallback, "
        f"{s['unchecked']} unchecked, {s['not_understood']} not understood; {s['pinned']} drafts with the "
        f"prompt's words pinned (check {domain.name if config.check != 'none' else 'none'}, lm {expander.identity}, "
        f"{expander.engine} engine{f': {expander.engine_note}' if expander.engine_note else ''})",
        err=True,
    )
    missing = domain.ground(prompt).not_understood
    if missing:
        typer.echo(f"not understood by the {domain.name} domain: {', '.join(missing)} (drawn from the rest; "
                   f"no caption of this prompt is called faithful)", err=True)
