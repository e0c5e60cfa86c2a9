"""`llmgan generate` (also `jobs/generate.py`): bulk generation from a prompts file, on Ray or in
one local process. Each option is declared once; defaults and validation live in GenerateConfig."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from llmgan.cli.common import (
    EXIT_QUALITY,
    EXIT_RUNTIME_ERROR,
    Ckpt,
    Lm,
    Model,
    Quiet,
    S3Endpoint,
    Seed,
    fail,
    handle_errors,
    setup_logging,
)
from llmgan.io.prompt_formats import INPUT_FORMATS
from llmgan.job.config import EXECUTORS, FORMATS, GenerateConfig

_EXP, _GEN = GenerateConfig.expander, GenerateConfig.generator  # the pools' defaults


class OneLineErrorsCommand(TyperCommand):
    """A bad option value (wrong type, out of a typer range) is one `error:` line and exit 2, like a bad
    setting that GenerateConfig rejects, instead of click's usage box."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except typer.TyperException as exc:
            if getattr(exc, "exit_code", 1) != 2:  # 2: a usage error (bad value, missing argument)
                raise
            raise fail(exc.format_message()) from None


@handle_errors
def generate(
    prompts: Annotated[str, typer.Argument(help="Prompts file: Parquet, CSV, TSV, JSON Lines, or .txt with one "
                                          "prompt a line (local path or s3://...).")],
    out: Annotated[str, typer.Option(
        "--out", help="Output folder or s3:// prefix (default: outputs/<prompts file stem>).",
        show_default=False)] = GenerateConfig.out,
    prompt_column: Annotated[str, typer.Option("--prompt-column", help="Name of the prompt column.")
                             ] = GenerateConfig.prompt_column,
    input_format: Annotated[str, typer.Option(
        "--input-format", help="Prompts file format: " + "|".join(INPUT_FORMATS) + " (auto: by extension; "
        "unknown extensions read as Parquet).")] = GenerateConfig.input_format,
    n_per_prompt: Annotated[int, typer.Option(
        "--n-per-prompt", help="Images per prompt (a row's `n` column wins).")] = GenerateConfig.n_per_prompt,
    variants: Annotated[int, typer.Option(
        "--variants", help="Expanded captions per prompt; images cycle through them.")] = GenerateConfig.variants,
    expand: Annotated[bool, typer.Option(
        "--expand/--no-expand", help="Expand prompts with the caption LM.")] = GenerateConfig.expand,
    lm: Lm = GenerateConfig.lm,
    ckpt: Ckpt = GenerateConfig.ckpt,
    model: Model = GenerateConfig.model,
    best_of: Annotated[int, typer.Option(
        "--best-of", help="Draw K candidates per image, keep the best match (1..64).")] = GenerateConfig.best_of,
    truncation: Annotated[float, typer.Option(
        "--truncation", help="Noise scale in (0, 1]: lower is more typical, less varied.")] = GenerateConfig.truncation,
    temperature: Annotated[float, typer.Option(
        "--temperature", help="Caption LM sampling temperature, in [0, 5]; 0 = greedy.")] = GenerateConfig.temperature,
    top_p: Annotated[float, typer.Option("--top-p", help="Caption LM nucleus sampling, in (0, 1].")
                     ] = GenerateConfig.top_p,
    keep_words: Annotated[bool, typer.Option(
        "--keep-words/--no-keep-words", help="Keep each prompt's own attribute words verbatim in its expanded "
        "captions ('crimson star' stays crimson).")] = GenerateConfig.keep_words,
    consistency: Annotated[str, typer.Option(
        "--consistency", help="Scorer of each image against the user's prompt: auto (the classifier of the GAN's "
        "domain when it has one, as the shipped shapes GAN does; else a matcher in the GAN folder; else none), "
        "classifier, matcher, none, or a matcher folder.")] = GenerateConfig.consistency,
    min_consistency: Annotated[float, typer.Option(
        "--min-consistency", help="Redraw an image whose consistency score is below this, in [0, 1]; 0: score "
        "only.")] = GenerateConfig.min_consistency,
    max_attempts: Annotated[int, typer.Option(
        "--max-attempts", help="Draws per image at most (the best-scoring one is kept).")] = GenerateConfig.max_attempts,
    on_unsupported: Annotated[str, typer.Option(
        "--on-unsupported", help="Prompts with words the model did not understand: flag (draw what was "
        "understood, record the words, no consistency claim) or reject (the row is rejected).")
    ] = GenerateConfig.on_unsupported,
    drop_below: Annotated[float | None, typer.Option(
        "--drop-below", help="Quality gate: keep images whose consistency after redraws is below this out of the "
        "shards (counted and listed in the stats). Default: keep every image.", show_default=False)
    ] = GenerateConfig.drop_below,
    fail_below_share: Annotated[float | None, typer.Option(
        "--fail-below-share", help="Quality gate: exit with code 3 when more than this share of scored images "
        "stayed below --min-consistency (the images are still written). Default: never fail on scores.",
        show_default=False)] = GenerateConfig.fail_below_share,
    seed: Seed = GenerateConfig.seed,
    shard_size: Annotated[int, typer.Option(
        "--shard-size", help="Images per shard (the unit of work and commit).")] = GenerateConfig.shard_size,
    format: Annotated[str, typer.Option("--format", help=" or ".join(FORMATS) + ".")] = GenerateConfig.format,
    image_format: Annotated[str, typer.Option(
        "--image-format", help="How each image is stored: png (lossless), webp (lossless; lossy with --quality) or "
        "jpeg (lossy, RGB only).")] = GenerateConfig.image_format,
    png_level: Annotated[int, typer.Option(
        "--png-level", help="PNG zlib level 0-9: 1 encodes about twice as fast as 6 for somewhat larger files.")
    ] = GenerateConfig.png_level,
    quality: Annotated[int | None, typer.Option(
        "--quality", help="1-100: lossy webp at this quality, or the jpeg quality [default: 95 for jpeg; webp "
        "lossless].", show_default=False)] = GenerateConfig.quality,
    encode_workers: Annotated[int | None, typer.Option(
        "--encode-workers", help="Image encoders running at once (threads with --executor local; with Ray, "
        "encode-and-write actors in the split layout) [default: local: one per core; Ray: one per core the actor "
        "pools leave, at least 1].",
        show_default=False)] = GenerateConfig.encode_workers,
    batch_size: Annotated[int, typer.Option("--batch-size", help="GAN batch size.")] = GenerateConfig.batch_size,
    s3_endpoint: S3Endpoint = GenerateConfig.s3_endpoint,
    executor: Annotated[str, typer.Option(
        "--executor", help="ray: actor pools on the Ray cluster (RAY_ADDRESS, else a local Ray); local: one "
        "process, no Ray needed (same shards, byte for byte).")] = GenerateConfig.executor,
    stage_layout: Annotated[str, typer.Option(
        "--stage-layout", help="Ray: fused (one pool of actors taking each shard through every stage), split (a "
        "pool per stage: LM, GAN, encode-and-write) or auto (split when a stage asks for a GPU or a custom "
        "resource or the expander pool is set, else fused).")] = GenerateConfig.stage_layout,
    expander_min: Annotated[int, typer.Option("--expander-min-actors")] = _EXP.min_actors,
    expander_max: Annotated[int, typer.Option("--expander-max-actors")] = _EXP.max_actors,
    expander_cpus: Annotated[float | None, typer.Option(
        "--expander-cpus", help="CPUs per expander actor [default: 0.25; 0 with --no-expand].")] = _EXP.num_cpus,
    expander_gpus: Annotated[float, typer.Option(
        "--expander-gpus", help="GPUs (or a fraction) per expander actor.")] = _EXP.num_gpus,
    generator_min: Annotated[int, typer.Option("--generator-min-actors")] = _GEN.min_actors,
    generator_max: Annotated[int | None, typer.Option(
        "--generator-max-actors", help="[default: as many as the CPUs (GPUs) the expanders leave allow]")
    ] = _GEN.max_actors,
    generator_cpus: Annotated[float | None, typer.Option(
        "--generator-cpus", help="CPUs per generator actor [default: 1, or an equal share of the CPUs the "
        "expanders leave when --generator-max-actors is not given either].")] = _GEN.num_cpus,
    generator_gpus: Annotated[float, typer.Option(
        "--generator-gpus", help="GPUs (or a fraction) per generator actor; with --executor local, > 0 puts the "
        "GAN on the GPU.")] = _GEN.num_gpus,
    expander_resources: Annotated[str | None, typer.Option(
        "--expander-resources", help='Custom Ray resources per expander actor, JSON: \'{"lm_gpu": 1}\'.')] = None,
    generator_resources: Annotated[str | None, typer.Option(
        "--generator-resources", help='Custom Ray resources per generator actor, JSON: \'{"gan_gpu": 1}\'.')] = None,
    max_retries: Annotated[int, typer.Option(
        "--max-retries", help="Times a failed shard is retried before the job fails.")] = GenerateConfig.max_retries,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing, different job in --out.")] = GenerateConfig.overwrite,
    blocklist: Annotated[str | None, typer.Option(
        "--blocklist", help="Words/phrases, or re:PATTERN lines (file or s3://): matching prompts and "
        "captions are rejected as `blocked`.")] = GenerateConfig.blocklist,
    quiet: Quiet = False,
) -> None:
    """Generate images for every prompt in a prompts file; resumable, shards committed exactly once."""
    from llmgan.job.config import StageResources, parse_resources

    # Every setting is checked here, before logging, Ray or any output.
    cfg = GenerateConfig(
        prompts=prompts, out=out, prompt_column=prompt_column, input_format=input_format, n_per_prompt=n_per_prompt,
        variants=variants, expand=expand, lm=lm, ckpt=ckpt, model=model, best_of=best_of, truncation=truncation,
        temperature=temperature, top_p=top_p, keep_words=keep_words, seed=seed, shard_size=shard_size, format=format,
        image_format=image_format, png_level=png_level, quality=quality, encode_workers=encode_workers,
        batch_size=batch_size, s3_endpoint=s3_endpoint, max_retries=max_retries, overwrite=overwrite,
        blocklist=blocklist, executor=executor, consistency=consistency, min_consistency=min_consistency,
        max_attempts=max_attempts, on_unsupported=on_unsupported, drop_below=drop_below,
        fail_below_share=fail_below_share, stage_layout=stage_layout,
        expander=StageResources(expander_min, expander_max, expander_cpus, expander_gpus,
                                parse_resources(expander_resources, "--expander-resources")),
        generator=StageResources(generator_min, generator_max, generator_cpus, generator_gpus,
                                 parse_resources(generator_resources, "--generator-resources")),
    )
    setup_logging(quiet=quiet)
    from llmgan.job.outcomes import JobFailed, QualityGateFailed
    from llmgan.job.run import run_job

    try:
        summary = run_job(cfg, make_executor(cfg.executor, quiet), progress=not quiet)
    except JobFailed as exc:
        raise fail(str(exc), EXIT_RUNTIME_ERROR) from None
    except QualityGateFailed as exc:
        _print_summary(exc.summary)
        raise fail(str(exc), EXIT_QUALITY) from None
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    from llmgan.job.feedback import describe_understanding

    rejected, cons = summary["rejected"], summary.get("consistency")
    unsupported = describe_understanding(summary.get("understanding"))
    typer.echo(
        f"{summary['images']} images in {summary['shards']} shards -> {summary['output']} "
        f"({summary['images_this_run']} this run, {summary['wall_seconds']:.1f}s, "
        f"{summary['images_per_second'] or 0:.1f} img/s{_first_shard(summary)}; {rejected} rejected row(s)"
        + (f": {json.dumps(summary['rejected_reasons'])}" if rejected else "") + ")"
        + (f"; consistency {cons['mean']:.3f} mean, {cons['share_below_threshold']:.1%} below "
           f"{cons['threshold']:g} ({cons['share_below_threshold_first_draw']:.1%} before redraws, "
           f"{cons['extra_draws_per_image']:.2f} extra draws per image)" if cons and cons["scored"] else "")
        + (f"; binding stage: {bind['stage']} ({bind['share']:.0%} of stage seconds)"
           if (bind := summary.get("binding_stage")) else "")
    )
    if summary.get("dropped_below_consistency"):
        typer.echo(f"{summary['dropped_below_consistency']} image(s) below --drop-below left out of the shards "
                   f"(listed in each shard's stats)")
    elif cons and cons.get("below_threshold") and "quality_gate" not in summary:
        typer.echo(f"{cons['below_threshold']} image(s) stayed below {cons['threshold']:g} and were kept "
                   f"(no quality gate: see --drop-below, --fail-below-share)")
    if unsupported:
        typer.echo(unsupported)


def _first_shard(summary: dict) -> str:
    """The job's fixed cost in the summary line: when its first shard was in (absent when none ran)."""
    first = summary.get("startup_seconds", {}).get("first_shard")
    return "" if first is None else f", first shard in at {first:.1f}s"


def make_executor(name: str, quiet: bool = False) -> Any:
    """The executor named by --executor; Ray is imported only for "ray". quiet: Ray logs errors only."""
    assert name in EXECUTORS, name  # GenerateConfig has checked it
    if name == "local":
        from llmgan.job.local_executor import LocalExecutor

        return LocalExecutor()
    from llmgan.distributed.generate import RayExecutor

    return RayExecutor(quiet=quiet)


def register(app: typer.Typer) -> None:
    app.command("generate", cls=OneLineErrorsCommand)(generate)
