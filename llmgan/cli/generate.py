"""`llmgan generate` (also `jobs/generate.py`): bulk generation from a prompts Parquet file on Ray."""

from __future__ import annotations

import json

import typer

from llmgan.cli.common import EXIT_RUNTIME_ERROR, fail, handle_errors, setup_logging


@handle_errors
def generate(
    prompts: str = typer.Argument(..., help="Prompts Parquet file (local path or s3://...)."),
    out: str | None = typer.Option(None, "--out", help="Output folder or s3:// prefix [default: outputs/<stem>]."),
    prompt_column: str = typer.Option("prompt", help="Name of the prompt column."),
    n_per_prompt: int = typer.Option(1, "--n-per-prompt", help="Images per prompt (a row's `n` column wins)."),
    variants: int = typer.Option(1, help="Expanded captions per prompt; images cycle through them."),
    expand: bool = typer.Option(True, "--expand/--no-expand", help="Expand prompts with the caption LM."),
    lm: str | None = typer.Option(None, "--lm", help="Caption LM: HF directory or hub id [default: bundled]."),
    ckpt: str | None = typer.Option(None, "--ckpt", help="GAN checkpoint dir or s3:// [default: bundled]."),
    best_of: int = typer.Option(1, "--best-of", help="Draw K candidates per image, keep the best match."),
    truncation: float = typer.Option(1.0, help="Noise truncation (lower: safer, less varied)."),
    temperature: float = typer.Option(0.9, help="Caption LM sampling temperature."),
    top_p: float = typer.Option(0.95, "--top-p", help="Caption LM nucleus sampling."),
    seed: int = typer.Option(0, help="Job seed: every image's seed derives from it."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Images per shard (the unit of work and commit)."),
    format: str = typer.Option("webdataset", "--format", help="webdataset (tar) or parquet."),
    batch_size: int = typer.Option(64, "--batch-size", help="GAN batch size."),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL [env: AWS_ENDPOINT_URL_S3]."),
    expander_min: int = typer.Option(1, "--expander-min-actors"),
    expander_max: int = typer.Option(1, "--expander-max-actors"),
    expander_cpus: float | None = typer.Option(
        None, "--expander-cpus", help="CPUs per expander actor [default: 0.25; 0 with --no-expand]."),
    expander_gpus: float = typer.Option(0.0, "--expander-gpus", help="GPUs (or a fraction) per expander actor."),
    generator_min: int = typer.Option(1, "--generator-min-actors"),
    generator_max: int | None = typer.Option(
        None, "--generator-max-actors", help="[default: as many as the CPUs (GPUs) the expanders leave allow]"),
    generator_cpus: float | None = typer.Option(
        None, "--generator-cpus", help="CPUs per generator actor [default: 1, or an equal share of the CPUs the "
        "expanders leave when --generator-max-actors is not given either]."),
    generator_gpus: float = typer.Option(0.0, "--generator-gpus", help="GPUs (or a fraction) per generator actor."),
    expander_resources: str | None = typer.Option(
        None, "--expander-resources", help='Custom Ray resources per expander actor, JSON: \'{"lm_gpu": 1}\'.'),
    generator_resources: str | None = typer.Option(
        None, "--generator-resources", help='Custom Ray resources per generator actor, JSON: \'{"gan_gpu": 1}\'.'),
    max_retries: int = typer.Option(2, "--max-retries", help="Times a failed shard is retried before the job fails."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing, different job in --out."),
    blocklist: str | None = typer.Option(
        None, "--blocklist", help="Words/phrases, or re:PATTERN lines (file or s3://): matching prompts and "
        "captions are rejected as `blocked`."),
    quiet: bool = typer.Option(False, "--quiet", help="No per-shard progress lines."),
) -> None:
    """Generate images for every prompt in a Parquet file; resumable, shards committed exactly once."""
    setup_logging()
    from llmgan.job.config import GenerateConfig, StageResources, parse_resources

    cfg = GenerateConfig(
        prompts=prompts, out=out or "", prompt_column=prompt_column, n_per_prompt=n_per_prompt,
        variants=variants, expand=expand, lm=lm, ckpt=ckpt, best_of=best_of, truncation=truncation,
        temperature=temperature, top_p=top_p, seed=seed, shard_size=shard_size, format=format,
        batch_size=batch_size, s3_endpoint=s3_endpoint, max_retries=max_retries, overwrite=overwrite,
        blocklist=blocklist,
        expander=StageResources(expander_min, expander_max, expander_cpus, expander_gpus,
                                parse_resources(expander_resources, "--expander-resources")),
        generator=StageResources(generator_min, generator_max, generator_cpus, generator_gpus,
                                 parse_resources(generator_resources, "--generator-resources")),
    )
    from llmgan.distributed.generate import JobFailed, run_generate

    try:
        summary = run_generate(cfg, progress=not quiet)
    except JobFailed as exc:
        raise fail(str(exc), EXIT_RUNTIME_ERROR) from None
    rejected = summary["rejected"]
    typer.echo(
        f"{summary['images']} images in {summary['shards']} shards -> {summary['output']} "
        f"({summary['images_this_run']} this run, {summary['wall_seconds']:.1f}s, "
        f"{summary['images_per_second'] or 0:.1f} img/s; {rejected} rejected row(s)"
        + (f": {json.dumps(summary['rejected_reasons'])}" if rejected else "") + ")"
    )


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
