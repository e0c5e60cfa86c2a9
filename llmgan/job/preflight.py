"""What a generation job checks before it writes anything, beyond its settings (GenerateConfig): that `--out` can be
a folder, and that every model the stages will load is there and loads. The driver (llmgan.job.run) calls these
before `_job.json`, so a bad path or an unreachable hub id is one line and exit 2 in seconds, not a job that
fails every shard until its retries run out."""

from __future__ import annotations

from pathlib import Path

from llmgan.errors import UserError
from llmgan.io.storage import Storage, is_s3
from llmgan.job.config import GenerateConfig


def check_out(out: str) -> None:
    """A local `--out` must be a folder or not exist yet, and its nearest existing parent a folder; an s3://
    prefix is always a valid place (its bucket is checked when `_job.json` is written)."""
    if is_s3(out):
        return
    path = Path(out).expanduser()
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "is a file" if p == path else f"is inside {str(p)!r}, a file"
                raise UserError(f"--out {out!r} {where}; give a folder (it is created) or an s3:// prefix")
            return


def check_models(cfg: GenerateConfig, ckpt: str, meta: dict, scorer: tuple[str, str] | None,
                 lm: tuple[str, Path | None] | None, storage: Storage) -> None:
    """Every model the job's stages will load, loaded or cheaply checked here (UserError naming the option).

    `ckpt`/`meta`: the resolved GAN checkpoint and its config.json; `scorer`: resolve_scorer's answer; `lm`:
    resolve_lm's answer (None without --expand). The GAN and a matcher are small and loaded for real (their
    weights must fit their config); the caption LM and text encoders are checked for config and weights (a
    hub id: in the cache or served by the hub)."""
    from llmgan.gan.inference import GanModel

    gan = GanModel.load(ckpt, storage=storage, discriminator=cfg.best_of > 1)  # --ckpt: weights load into its config
    check_image_format(cfg, gan.config.image_channels, ckpt)
    encoders = {meta.get("text_encoder"): "the GAN's text encoder (its config.json)"}
    if scorer is not None and scorer[0] == "matcher":
        from llmgan.gan.matcher import Matcher

        matcher = Matcher.load(scorer[1], storage)  # --consistency: a folder with matcher.json must also load
        encoders.setdefault(matcher.text_encoder, f"the text encoder of the matcher at {scorer[1]}")
    for encoder, what in encoders.items():
        check_text_encoder(encoder, what)
    if lm is not None:
        from llmgan.text.model_source import check_hub_id, check_model_dir

        name, local = lm
        if local is not None:
            check_model_dir(local, "--lm: caption LM")
        else:
            check_hub_id(name, "--lm: caption LM", "pass a model directory or an s3:// prefix")


def check_image_format(cfg: GenerateConfig, channels: int, ckpt: str) -> None:
    """JPEG has no alpha channel: a jpeg job of a GAN that draws RGBA would lose its transparency (or fail on
    every shard), so it is refused here, naming the formats that keep it."""
    if cfg.image_format == "jpeg" and channels == 4:
        raise UserError(f"--image-format jpeg has no alpha channel, but the GAN at {ckpt} draws RGBA images; "
                        f"use --image-format png or webp")


def check_text_encoder(spec: str | None, what: str) -> None:
    """None: the packaged MiniLM (its weights' sha256 checked); else a local directory or hub id."""
    if spec is None:
        from llmgan.text.encoder import default_encoder_path

        default_encoder_path()
        return
    from llmgan.text.model_source import check_model_source

    if is_s3(spec):
        raise UserError(f"{what}: {spec!r} is an s3:// URL; text encoders load from a local directory or hub id")
    check_model_source(spec, what)
