"""`llmgan train-lm`: train the caption LM (tokenizer + small GPT-2) on (short prompt -> caption) pairs."""

from __future__ import annotations

import typer

from llmgan.cli.common import OutDir, S3Endpoint, Seed, handle_errors


def register(app: typer.Typer) -> None:
    app.command("train-lm")(train_lm_command)


@handle_errors
def train_lm_command(
    data: str = typer.Option(..., "--data", help="Parquet file (local or s3://) with prompt and caption columns."),
    out: OutDir = ...,  # a save_pretrained folder, loadable by `llmgan expand --lm OUT`; rerunning resumes it
    steps: int = typer.Option(2000, "--steps", help="Optimizer steps in all (a resumed run continues up to this)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sequences per step."),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (warm-up, then cosine decay)."),
    n_layer: int = typer.Option(3, "--n-layer", help="Transformer blocks."),
    n_embd: int = typer.Option(96, "--n-embd", help="Model width."),
    n_head: int = typer.Option(4, "--n-head", help="Attention heads."),
    vocab_size: int = typer.Option(640, "--vocab-size", help="Byte-level BPE vocabulary size."),
    seed: Seed = 0,
    tie_embeddings: bool = typer.Option(
        True, "--tie-embeddings/--no-tie-embeddings",
        help="Share the input and output token embeddings (GPT-2's default); untie them when some tokens are often "
        "unpredictable yet must be copied from the prompt (the emoji styles).",
    ),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", help="Time budget in minutes: the step count is fitted to it (recorded in train_lm.json)."
    ),
    prompt_column: str = typer.Option("short_prompt", "--prompt-column", help="Column with short prompts."),
    caption_column: str = typer.Option("caption", "--caption-column", help="Column with full captions."),
    threads: int = typer.Option(
        1, "--threads", help="CPU threads for torch; 1 is fastest for small models on a busy machine."
    ),
    checkpoint_every: int = typer.Option(
        200, "--checkpoint-every", help="Steps between checkpoints (OUT/checkpoints/, the newest two kept); running "
        "the same command again resumes from the newest.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a non-empty --out (deleted when training starts, checkpoints included)."
    ),
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Train a tokenizer and a small GPT-2 caption LM; the output loads like any Hugging Face model."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from llmgan.cli.common import setup_logging
    from llmgan.errors import UserError
    from llmgan.io.storage import Storage
    from llmgan.text.lm_train import LMTrainConfig, load_pairs, train_lm

    setup_logging()  # the 'starting' / 'resuming from ... at step N' line
    config = LMTrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
        vocab_size=vocab_size, seed=seed, tie_embeddings=tie_embeddings, max_minutes=max_minutes,
        prompt_column=prompt_column, caption_column=caption_column,
    )
    if threads < 1:
        raise UserError(f"--threads: must be >= 1, got {threads}")
    if checkpoint_every < 1:
        raise UserError(f"--checkpoint-every: must be >= 1, got {checkpoint_every}")
    import torch

    torch.set_num_threads(threads)
    storage = Storage(s3_endpoint)
    pairs = load_pairs(data, prompt_column, caption_column, storage)
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("train-lm"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.3f}"),
        TimeRemainingColumn(), console=console, transient=False,
    )
    every = max(steps // 20, 1)
    task = progress.add_task("train", total=steps, loss=float("nan"))
    live = False

    def on_step(step: int, loss: float, total: int) -> None:
        nonlocal live
        if not live:  # started at the first step, so the resume line above is not drawn over
            progress.start()
            live = True
        if step % 10 == 0 or step == total:
            progress.update(task, completed=step, total=total, loss=loss)
        if not console.is_terminal and (step % every == 0 or step == total):
            console.print(f"step {step}/{total} loss {loss:.3f}")  # logs without a live bar

    try:
        summary = train_lm(pairs, out, config, source=data, overwrite=overwrite, storage=storage, progress=on_step,
                           checkpoint_every=checkpoint_every)
    finally:
        if live:
            progress.stop()
    if summary["already_complete"]:
        typer.echo(f"{out} already holds a finished run of {summary['steps']} steps; nothing to train (pass a "
                   f"larger --steps to continue it, or --overwrite to start over)", err=True)
        typer.echo(f"caption LM already trained: {summary['pairs']} pairs, {summary['steps']} steps, final loss "
                   f"{summary['final_loss']} -> {out}")
        return
    resumed = f" (resumed at step {summary['start_step']})" if summary["start_step"] else ""
    typer.echo(
        f"trained caption LM: {summary['pairs']} pairs, {summary['steps']} steps{resumed}, final loss "
        f"{summary['final_loss']}, {summary['parameters'] / 1e6:.2f}M params, {summary['bytes'] / 1e6:.1f} MB, "
        f"{summary['seconds']:.0f}s -> {out}"
    )
    # a user's LM gets no domain check by default; one trained on shapes captions can take the shapes check
    console.print(f"try it: llmgan expand 'red star' --lm {out} (add --check shapes when it learned shapes captions)")
