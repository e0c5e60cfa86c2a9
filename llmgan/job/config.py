"""Settings of a bulk generation job, validated once; which of them decide the output's bytes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from llmgan.errors import UserError
from llmgan.io.storage import is_s3

FORMATS = ("webdataset", "parquet")
EXPANDER_CPUS = 0.25  # default CPU reservation of a caption-LM actor (see size_pools)

# Settings that change what is written: a rerun into the same folder must agree on all of them.
OUTPUT_DEFINING = (
    "prompts", "prompt_column", "n_per_prompt", "variants", "expand", "best_of", "truncation", "seed",
    "shard_size", "format", "temperature", "top_p", "blocklist",
)


@dataclass(frozen=True)
class StageResources:
    """Actor pool sizing for one pipeline stage (Ray Data `concurrency=(min, max)`)."""

    min_actors: int = 1
    max_actors: int | None = 1  # None: as many as the cluster has room for (see size_pools)
    num_cpus: float | None = None  # None: left to size_pools
    num_gpus: float = 0.0
    # Custom Ray resources per actor, e.g. {"gan_gpu": 1}: pins the stage to node types that offer them.
    resources: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.min_actors < 1:
            raise UserError(f"min actors must be >= 1, got {self.min_actors}")
        if self.max_actors is not None and self.max_actors < self.min_actors:
            raise UserError(f"max actors ({self.max_actors}) must be >= min actors ({self.min_actors})")
        if (self.num_cpus or 0) < 0 or self.num_gpus < 0:
            raise UserError("CPUs and GPUs per actor must be >= 0")
        for name, amount in self.resources.items():
            if not name or name in ("CPU", "GPU", "memory"):
                raise UserError(f"resources: {name!r} is not a custom resource name (use the -cpus/-gpus options)")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                raise UserError(f"resources: {name} must be a number >= 0, got {amount!r}")


def parse_resources(text: str | None, option: str) -> dict[str, float]:
    """A `--<stage>-resources` value: a JSON object of custom resource amounts, e.g. '{"gan_gpu": 1}'."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UserError(f"{option} must be a JSON object like '{{\"gan_gpu\": 1}}', got {text!r}")
    return value


@dataclass(frozen=True)
class GenerateConfig:
    prompts: str
    out: str = ""  # default: outputs/<prompts file stem>
    prompt_column: str = "prompt"
    n_per_prompt: int = 1
    variants: int = 1
    expand: bool = True
    lm: str | None = None
    ckpt: str | None = None
    best_of: int = 1
    truncation: float = 1.0
    temperature: float = 0.9
    top_p: float = 0.95
    seed: int = 0
    shard_size: int = 1000
    format: str = "webdataset"
    batch_size: int = 64
    s3_endpoint: str | None = None
    expander: StageResources = StageResources()
    generator: StageResources = StageResources(max_actors=None)
    max_retries: int = 2
    overwrite: bool = False
    contact_sheet_size: int = 64
    blocklist: str | None = None  # words / re: patterns; matching prompts and captions are rejected

    def __post_init__(self) -> None:
        if not self.prompts:
            raise UserError("prompts: a prompts Parquet file is required")
        if not self.out:
            object.__setattr__(self, "out", default_out(self.prompts))
        checks = [
            ("n_per_prompt", self.n_per_prompt >= 1, "must be >= 1"),
            ("variants", self.variants >= 1, "must be >= 1"),
            ("best_of", 1 <= self.best_of <= 64, "must be 1..64"),
            ("truncation", 0 < self.truncation <= 2, "must be in (0, 2]"),
            ("temperature", self.temperature > 0, "must be > 0"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("shard_size", 1 <= self.shard_size <= 1_000_000, "must be 1..1000000"),
            ("batch_size", 1 <= self.batch_size <= 65_536, "must be 1..65536"),
            ("max_retries", self.max_retries >= 0, "must be >= 0"),
            ("seed", 0 <= self.seed < 2**63, "must be a non-negative 63-bit integer"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise UserError(f"{name.replace('_', '-')} {why}, got {getattr(self, name)!r}")
        if self.format not in FORMATS:
            raise UserError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")

    def output_settings(self) -> dict:
        """The settings that decide the output (compared on rerun)."""
        return {k: getattr(self, k) for k in OUTPUT_DEFINING}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_out(prompts: str) -> str:
    stem = prompts.rstrip("/").rsplit("/", 1)[-1] if is_s3(prompts) else Path(prompts).name
    return str(Path("outputs") / (stem.rsplit(".", 1)[0] or "prompts"))


def size_pools(cfg: GenerateConfig, cluster_cpus: float, cluster_gpus: float) -> GenerateConfig:
    """Fill in the pool settings left to the job.

    The caption LM writes one caption per prompt while the generator draws several images per caption, so the
    LM is busy for a small part of the job: the expander reserves a quarter of a core (none without expansion,
    where it only reads prompt rows) and CPU generators share the rest, one single-threaded actor per core left.
    On 2 cores that is two generators of 0.875 CPU, not one generator beside a core the LM leaves idle; a
    reservation of a whole core for the LM cost about 15 % of the job's throughput (README, Performance).
    """
    exp, gen = cfg.expander, cfg.generator
    if exp.num_cpus is None:
        exp = dataclasses.replace(exp, num_cpus=EXPANDER_CPUS if cfg.expand else 0.0)
    if exp.max_actors is None:
        exp = dataclasses.replace(exp, max_actors=exp.min_actors)
    left_cpus = cluster_cpus - exp.num_cpus * exp.max_actors
    if gen.num_gpus == 0 and gen.num_cpus is None and gen.max_actors is None:
        n = max(gen.min_actors, round(left_cpus))
        gen = dataclasses.replace(gen, num_cpus=min(1.0, left_cpus / n) if left_cpus > 0 else 1.0, max_actors=n)
    if gen.num_cpus is None:
        gen = dataclasses.replace(gen, num_cpus=1.0)
    if gen.max_actors is None:
        if gen.num_gpus > 0:
            fit = int((cluster_gpus - exp.num_gpus * exp.max_actors) // gen.num_gpus)
        elif gen.num_cpus > 0:
            fit = int(left_cpus // gen.num_cpus)
        else:
            fit = gen.min_actors
        gen = dataclasses.replace(gen, max_actors=max(gen.min_actors, fit))
    return dataclasses.replace(cfg, expander=exp, generator=gen)
