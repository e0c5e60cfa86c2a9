"""Settings of a bulk generation job, validated once; which of them decide the output's bytes."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from llmgan.errors import UserError
from llmgan.gan.config import MAX_TRUNCATION
from llmgan.io.images import DEFAULT_PNG_LEVEL, IMAGE_FORMATS, ImageEncoding
from llmgan.io.prompt_formats import INPUT_FORMATS
from llmgan.io.storage import is_s3
from llmgan.text.options import check_sampling

FORMATS = ("webdataset", "parquet")
EXECUTORS = ("ray", "local")
MAX_VARIANTS = 64
MAX_BEST_OF = 64
MAX_SHARD_SIZE = 1_000_000
MAX_BATCH_SIZE = 65_536
MAX_RETRIES = 100
MAX_ATTEMPTS = 64
MAX_ENCODE_WORKERS = 1024
CONSISTENCY_SPECS = ("auto", "classifier", "matcher", "none")  # or a folder / s3:// prefix holding matcher.json
EXPANDER_CPUS = 0.25  # default CPU reservation of a caption-LM actor (see size_pools)

# Settings that change what is written: a rerun into the same folder must agree on all of them.
OUTPUT_DEFINING = (
    "prompts", "prompt_column", "n_per_prompt", "variants", "expand", "best_of", "truncation", "seed",
    "shard_size", "format", "temperature", "top_p", "blocklist", "keep_words", "consistency", "min_consistency",
    "max_attempts", "on_unsupported", "drop_below",
)
# The image encoding is output-defining too, but enters the job's settings only when it is not the default
# (lossless PNG at level 6), so the job ids of outputs written before the option existed do not change.
IMAGE_SETTINGS = ("image_format", "png_level", "quality")
# How the Ray executor lays the stages out (see resolve_layout): one pool of whole-shard actors, or a pool per stage.
STAGE_LAYOUTS = ("auto", "fused", "split")
# what happens to a prompt holding words the model's domain did not understand ("red dragon" for shapes)
ON_UNSUPPORTED = ("flag", "reject")


@dataclass(frozen=True)
class StageResources:
    """Actor pool sizing for one pipeline stage (Ray Data `concurrency=(min, max)`); the local executor runs
    one of each stage and reads only `num_gpus` (> 0: that stage's model goes on the GPU)."""

    min_actors: int = 1
    max_actors: int | None = 1  # None: as many as the cluster has room for (see size_pools)
    num_cpus: float | None = None  # None: left to size_pools
    num_gpus: float = 0.0
    # Custom Ray resources per actor, e.g. {"gan_gpu": 1}: pins the stage to node types that offer them.
    resources: dict[str, float] = field(default_factory=dict)

    def validate(self, stage: str) -> None:
        """Raise UserError naming the `--<stage>-...` option that is out of range."""
        opt = f"--{stage}"
        if _not_int(self.min_actors) or self.min_actors < 1:
            raise UserError(f"{opt}-min-actors must be >= 1, got {self.min_actors!r}")
        if self.max_actors is not None and (_not_int(self.max_actors) or self.max_actors < self.min_actors):
            raise UserError(f"{opt}-max-actors ({self.max_actors!r}) must be >= {opt}-min-actors ({self.min_actors})")
        for name, value in ((f"{opt}-cpus", self.num_cpus), (f"{opt}-gpus", self.num_gpus)):
            if value is not None and not (_number(value) and 0 <= value < math.inf):
                raise UserError(f"{name} must be a number >= 0, got {value!r}")
        if not isinstance(self.resources, dict):
            raise UserError(f"{opt}-resources must be a JSON object, got {self.resources!r}")
        for name, amount in self.resources.items():
            if not isinstance(name, str) or not name or name in ("CPU", "GPU", "memory"):
                raise UserError(f"{opt}-resources: {name!r} is not a custom resource name "
                                f"(use {opt}-cpus / {opt}-gpus)")
            if not (_number(amount) and 0 <= amount < math.inf):
                raise UserError(f"{opt}-resources: {name} must be a number >= 0, got {amount!r}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _not_int(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool)


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
    """Every setting of `llmgan generate`, with its default; checked once, before anything is written.
    Validation messages name the option as the user types it (`--best-of`)."""

    prompts: str
    out: str = ""  # default: outputs/<prompts file stem>
    prompt_column: str = "prompt"
    # auto: by the file's extension. Not output-defining by itself: the resolved format is part of the job's
    # prompts identity (llmgan.job.run), so spelling out the format auto finds is the same job.
    input_format: str = "auto"
    n_per_prompt: int = 1
    variants: int = 1
    expand: bool = True
    lm: str | None = None
    ckpt: str | None = None
    model: str | None = None  # a shipped bundle (llmgan.job.models): fills ckpt and lm where they are not given
    best_of: int = 1
    truncation: float = 1.0
    temperature: float = 0.9
    top_p: float = 0.95
    keep_words: bool = True  # the caption LM keeps each prompt's own attribute words verbatim
    seed: int = 0
    shard_size: int = 1000
    format: str = "webdataset"
    # How each image is encoded (llmgan.io.images.ImageEncoding): png (lossless, zlib level png_level), webp
    # (lossless, or lossy at `quality`), jpeg (lossy at `quality`, default 95; RGB only).
    image_format: str = "png"
    png_level: int = DEFAULT_PNG_LEVEL
    quality: int | None = None
    # Encoding runs in its own pool, sized apart from the generator: threads of the local executor, tasks of
    # the Ray one. None: from the cores (local: every usable core; Ray: the CPUs the actor pools leave, >= 1).
    encode_workers: int | None = None
    batch_size: int = 64
    s3_endpoint: str | None = None
    expander: StageResources = StageResources()
    generator: StageResources = StageResources(max_actors=None)
    stage_layout: str = "auto"  # Ray executor only; not output-defining (every layout writes the same bytes)
    max_retries: int = 2
    overwrite: bool = False
    contact_sheet_size: int = 64
    blocklist: str | None = None  # words / re: patterns; matching prompts and captions are rejected
    executor: str = "ray"  # "ray": actor pools on a Ray cluster; "local": one process, no Ray needed
    # Consistency feedback: every image is scored against its caption and the user's prompt by `consistency`
    # (llmgan.eval.consistency); one scoring below `min_consistency` is redrawn, up to `max_attempts` draws.
    consistency: str = "auto"
    min_consistency: float = 0.5
    max_attempts: int = 4
    # "flag": drawn from what was understood, the words recorded per image, no consistency claim; "reject": the
    # row is rejected with its words, like a blocked prompt
    on_unsupported: str = "flag"
    # Quality gate (off by default: every image is kept and the job succeeds whatever the scores): images whose
    # consistency after redraws is below `drop_below` stay out of the shards (counted and listed in the stats);
    # more than `fail_below_share` of scored images below `min_consistency` makes the job exit EXIT_QUALITY.
    drop_below: float | None = None
    fail_below_share: float | None = None

    def __post_init__(self) -> None:
        if not self.prompts:
            raise UserError("a prompts file is required")
        if not self.out:
            object.__setattr__(self, "out", default_out(self.prompts))
        if self.model is not None:
            from llmgan.job.models import bundle

            gan, lm = bundle(self.model)
            object.__setattr__(self, "ckpt", self.ckpt or gan)
            object.__setattr__(self, "lm", self.lm or lm)
        ints = [
            ("n_per_prompt", 1, None),
            ("variants", 1, MAX_VARIANTS),
            ("best_of", 1, MAX_BEST_OF),
            ("shard_size", 1, MAX_SHARD_SIZE),
            ("batch_size", 1, MAX_BATCH_SIZE),
            ("max_retries", 0, MAX_RETRIES),
            ("seed", 0, 2**63 - 1),
            ("contact_sheet_size", 0, 10_000),
            ("max_attempts", 1, MAX_ATTEMPTS),
            ("png_level", 0, 9),
        ]
        ints += [(name, lo, hi) for name, lo, hi in (("quality", 1, 100), ("encode_workers", 1, MAX_ENCODE_WORKERS))
                 if getattr(self, name) is not None]
        for name, lo, hi in ints:
            value = getattr(self, name)
            if _not_int(value) or value < lo or (hi is not None and value > hi):
                bound = f"must be >= {lo}" if hi is None else f"must be {lo}..{hi}"
                raise UserError(f"{_option(name)} {bound}, got {value!r}")
        if not (_number(self.truncation) and 0 < self.truncation <= MAX_TRUNCATION):
            raise UserError(f"--truncation must be in (0, {MAX_TRUNCATION:g}], got {self.truncation!r}")
        check_sampling(self.temperature, self.top_p)  # the caption LM's own rule, so `expand` and this agree
        for name, choices in (("format", FORMATS), ("executor", EXECUTORS), ("input_format", INPUT_FORMATS),
                              ("on_unsupported", ON_UNSUPPORTED), ("image_format", IMAGE_FORMATS),
                              ("stage_layout", STAGE_LAYOUTS)):
            if getattr(self, name) not in choices:
                raise UserError(f"{_option(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if not (_number(self.min_consistency) and 0 <= self.min_consistency <= 1):
            raise UserError(f"--min-consistency must be in [0, 1], got {self.min_consistency!r}")
        for name in ("drop_below", "fail_below_share"):
            value = getattr(self, name)
            if value is None:
                continue
            if not (_number(value) and 0 <= value <= 1):
                raise UserError(f"{_option(name)} must be in [0, 1], got {value!r}")
            if self.consistency == "none":
                raise UserError(f"{_option(name)} needs a consistency scorer; it cannot be used with --consistency none")
        spec = self.consistency
        if not isinstance(spec, str) or not (spec in CONSISTENCY_SPECS or "/" in spec or "\\" in spec):
            raise UserError(f"--consistency must be one of {', '.join(CONSISTENCY_SPECS)} or a matcher folder path "
                            f"(./dir, s3://...), got {spec!r}")
        if not isinstance(self.keep_words, bool):
            raise UserError(f"--keep-words must be true or false, got {self.keep_words!r}")
        if not isinstance(self.prompt_column, str) or not self.prompt_column.strip():
            raise UserError(f"--prompt-column must be a column name, got {self.prompt_column!r}")
        if self.s3_endpoint is not None and not re.match(r"^https?://[^/\s]+", str(self.s3_endpoint)):
            # checked here: botocore would reject it only when the first s3:// path is touched, mid-job
            # the value is not echoed: an endpoint may carry user:password@
            raise UserError("--s3-endpoint must be an http:// or https:// URL, e.g. http://127.0.0.1:9000")
        if self.quality is not None and self.image_format == "png":
            raise UserError("--quality applies to --image-format webp or jpeg; png is lossless (--png-level trades "
                            "speed for size)")
        if self.png_level != DEFAULT_PNG_LEVEL and self.image_format != "png":
            raise UserError(f"--png-level applies to --image-format png, not {self.image_format}")
        self.expander.validate("expander")
        self.generator.validate("generator")

    @property
    def encoding(self) -> ImageEncoding:
        """The encoder every executor's encoding stage uses (its settings were checked above)."""
        return ImageEncoding(self.image_format, self.png_level, self.quality)

    def output_settings(self) -> dict:
        """The settings that decide the output (compared on rerun); the image encoding only when not the default."""
        settings = {k: getattr(self, k) for k in OUTPUT_DEFINING}
        if self.encoding != ImageEncoding():
            settings.update({k: getattr(self, k) for k in IMAGE_SETTINGS})
        return settings

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _option(name: str) -> str:
    """The command-line spelling of a setting (contact_sheet_size is not on the command line)."""
    return name if name == "contact_sheet_size" else "--" + name.replace("_", "-")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's cpuset), at least 1."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_out(prompts: str) -> str:
    stem = prompts.rstrip("/").rsplit("/", 1)[-1] if is_s3(prompts) else Path(prompts).name
    return str(Path("outputs") / (stem.rsplit(".", 1)[0] or "prompts"))


def resolve_layout(cfg: GenerateConfig) -> str:
    """The Ray executor's stage layout. "fused": one pool of actors, each taking a shard through every stage
    (read, caption LM, GAN, feedback, encode, write) in its own process, as the local executor does; nothing
    is pickled between stages and no short-lived task processes start. "split": a pool per stage (LM actors ->
    GAN actors -> CPU encode-and-write actors), so that each stage can have its own GPUs, resources and pool
    size. Auto takes fused unless a stage asks for a GPU or a custom resource, or the expander's pool is set:
    on CPUs the stages share the same cores anyway, and splitting them cost about a third of the throughput on
    2 cores (docs/performance.md, A job's fixed cost)."""
    if cfg.stage_layout != "auto":
        return cfg.stage_layout
    exp, gen = cfg.expander, cfg.generator
    wants_split = exp.num_gpus > 0 or gen.num_gpus > 0 or exp.resources or gen.resources or exp != StageResources()
    return "split" if wants_split else "fused"


def size_pools(cfg: GenerateConfig, cluster_cpus: float, cluster_gpus: float) -> GenerateConfig:
    """Fill in the pool settings left to the job.

    The caption LM writes one caption per prompt while the generator draws several images per caption, so the
    LM is busy for a small part of the job: the expander reserves a quarter of a core (none without expansion,
    where it only reads prompt rows) and CPU generators share the rest, one single-threaded actor per core left.
    On 2 cores that is two generators of 0.875 CPU, not one generator beside a core the LM leaves idle; a
    reservation of a whole core for the LM cost about 15 % of the job's throughput (README, Performance).
    In the fused layout there is no expander pool: the whole-shard actors are sized as generators on every core.
    """
    exp, gen = cfg.expander, cfg.generator
    layout = resolve_layout(cfg)
    if layout == "fused":  # no LM pool: each actor holds both models, on the generator's reservation and device
        exp = dataclasses.replace(exp, num_cpus=0.0, num_gpus=gen.num_gpus, max_actors=exp.min_actors, resources={})
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
            lm_gpus = 0.0 if layout == "fused" else exp.num_gpus * exp.max_actors
            fit = int((cluster_gpus - lm_gpus) // gen.num_gpus)
        elif gen.num_cpus > 0:
            fit = int(left_cpus // gen.num_cpus)
        else:
            fit = gen.min_actors
        gen = dataclasses.replace(gen, max_actors=max(gen.min_actors, fit))
    return dataclasses.replace(cfg, expander=exp, generator=gen, stage_layout=layout)
