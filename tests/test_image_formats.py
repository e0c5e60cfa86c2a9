"""--image-format png|webp|jpeg end to end: each format through the shard writer, both shard readers, the
documented WebDataset and `datasets` lines, the index, `llmgan export`, the contact sheet and the training-data
reader; the encoding pool (threads locally, Ray tasks) keeps exactly-once shards and byte-identical reruns; the
default stays the PNG every earlier job wrote; a jpeg job of an RGBA GAN is refused before anything is written."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from llmgan.errors import UserError
from llmgan.io.storage import Storage
from llmgan.job.config import GenerateConfig
from llmgan.job.shards import committed_shards, read_shard_records, read_stats

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (name, GenerateConfig settings, PIL's name of the format, extension, lossless)
ENCODINGS = [
    ("png1", {"png_level": 1}, "PNG", "png", True),
    ("webp", {"image_format": "webp"}, "WEBP", "webp", True),
    ("webp80", {"image_format": "webp", "quality": 80}, "WEBP", "webp", False),
    ("jpeg", {"image_format": "jpeg"}, "JPEG", "jpg", False),
]
IMAGES = 8  # 4 prompts x 2 images, in shards of 4


def _prompts(path: Path) -> str:
    pq.write_table(pa.table({"prompt": ["red star", "blue circle", "green cross", "white square"],
                             "id": ["a", "b", "c", "d"], "n": pa.array([2] * 4, pa.int32())}), path)
    return str(path)


def _cfg(prompts: str, out: Path, ckpt: str, **kw) -> GenerateConfig:  # type: ignore[no-untyped-def]
    return GenerateConfig(**{"prompts": prompts, "out": str(out), "ckpt": ckpt, "expand": False, "batch_size": 4,
                             "shard_size": 4, "consistency": "none", "executor": "local", "contact_sheet_size": 8,
                             **kw})


def _local(cfg: GenerateConfig) -> dict:
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    return run_job(cfg, LocalExecutor(), progress=False)


def _records(out: Path) -> list:  # type: ignore[type-arg]
    st = Storage()
    return [rec for i, url in sorted(committed_shards(st, str(out)).items())
            for rec in read_shard_records(st, str(out), read_stats(st, url))]


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int16)


def _data_shas(out: Path) -> dict[str, str]:
    files = [*Path(out, "shards").iterdir(), *Path(out, "index").iterdir()]
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)
            if not p.name.endswith(".stats.json")}


@pytest.fixture(scope="module")
def jobs(tiny_ckpt: str, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """The same prompts in every encoding and both shard formats, plus the default (PNG level 6) as reference."""
    root = tmp_path_factory.mktemp("formats")
    prompts = _prompts(root / "prompts.parquet")
    outs = {("default", "webdataset"): root / "default"}
    _local(_cfg(prompts, outs[("default", "webdataset")], tiny_ckpt))
    for name, settings, *_ in ENCODINGS:
        for fmt in ("webdataset", "parquet"):
            outs[(name, fmt)] = root / f"{name}-{fmt}"
            _local(_cfg(prompts, outs[(name, fmt)], tiny_ckpt, format=fmt, **settings))
    return outs


@pytest.mark.parametrize("name, settings, pil_format, ext, lossless", ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_each_format_round_trips_through_the_writer_and_both_readers(
        jobs: dict, name: str, settings: dict, pil_format: str, ext: str, lossless: bool) -> None:
    reference = {r.key: _pixels(r.image) for r in _records(jobs[("default", "webdataset")])}
    assert len(reference) == IMAGES
    both = {}
    for fmt in ("webdataset", "parquet"):
        out = jobs[(name, fmt)]
        records = _records(out)
        assert [r.key for r in records] == sorted(reference) and {r.ext for r in records} == {ext}
        for rec in records:
            img = Image.open(io.BytesIO(rec.image))
            assert img.format == pil_format and img.size == (32, 32)
            diff = np.abs(_pixels(rec.image) - reference[rec.key])
            if lossless:
                assert diff.max() == 0  # the very pixels of the PNG job
            else:
                assert diff.mean() < 32  # lossy, yet the same picture
        both[fmt] = [(r.key, r.image, r.ext, r.caption, r.meta["seed"]) for r in records]
        index = pq.read_table(out / "index" / "00000.parquet").to_pylist()
        by_key = {r.key: r for r in records}
        assert [row["sha256"] for row in index] == [hashlib.sha256(by_key[row["key"]].image).hexdigest()
                                                    for row in index]
        assert [row["image_bytes"] for row in index] == [len(by_key[row["key"]].image) for row in index]
        if fmt == "webdataset":
            with tarfile.open(out / "shards" / "00000.tar") as tar:
                assert tar.getnames()[:3] == [f"00000_000000.{ext}", "00000_000000.json", "00000_000000.txt"]
        else:
            paths = pq.read_table(out / "shards" / "00000.parquet").column("image").combine_chunks().field("path")
            assert paths.to_pylist()[0] == f"00000_000000.{ext}"
        job = json.loads((out / "_job.json").read_text())
        assert job["settings"]["image_format"] == settings.get("image_format", "png")  # a different job
        assert Image.open(out / "contact_sheet.png").size[0] > 32
    assert both["webdataset"] == both["parquet"]  # the same bytes whichever shard format holds them


def test_documented_reading_lines_load_every_format(jobs: dict, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    import datasets

    from tests.test_outputs import _documented_lines

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    lines = _documented_lines()
    for name, _, _, ext, _ in ENCODINGS:
        for fmt, code in lines.items():
            code = code.replace("outputs/batch1", str(jobs[(name, fmt)])).replace("{00000..00009}", "{00000..00001}")
            scope: dict = {}
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                warnings.simplefilter("ignore", ResourceWarning)  # webdataset leaves closing tars to the GC
                exec(code, scope)  # noqa: S102 - the documented lines, as a user would paste them
                if fmt == "webdataset":
                    samples = list(scope["samples"])
                    assert len(samples) == IMAGES and samples[0][ext].size == (32, 32), (name, list(samples[0]))
                else:
                    ds = scope["ds"]
                    assert len(ds) == IMAGES and ds[0]["image"].size == (32, 32) and ds[0]["prompt_id"] == "a"


def test_export_keeps_each_formats_bytes_and_extension(jobs: dict, tmp_path: Path) -> None:
    from llmgan.job.export import plan_export, run_export

    st = Storage()
    for name, _, _, ext, _ in ENCODINGS:
        for fmt in ("webdataset", "parquet"):
            dest = tmp_path / f"{name}-{fmt}"
            assert run_export(st, plan_export(st, str(jobs[(name, fmt)]), str(dest)))["images"] == IMAGES
            files = sorted(p for p in dest.rglob("*") if p.is_file() and p.name != "manifest.csv")
            assert len(files) == IMAGES and {p.suffix for p in files} == {f".{ext}"}
            shas = {r.meta["prompt_id"] + f"/{r.meta['variant']}_{r.meta['index']}.{ext}":
                    hashlib.sha256(r.image).hexdigest() for r in _records(jobs[(name, fmt)])}
            assert {str(p.relative_to(dest)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == shas


def test_job_output_in_any_format_reads_back_as_training_data(jobs: dict) -> None:
    from llmgan.data.readers import load_captioned

    for name, _, _, _, _ in ENCODINGS:
        data = load_captioned(str(jobs[(name, "webdataset")] / "shards"), 32, channels=None)
        assert data.images.shape == (IMAGES, 32, 32, 3), name


def test_the_default_is_the_png_every_earlier_job_wrote(tiny_ckpt: str, tmp_path: Path) -> None:
    """Lossless PNG at level 6, byte for byte what png_bytes gave, and no image setting in the job's identity,
    so an output written before --image-format existed resumes as the same job."""
    from llmgan.io.images import ImageEncoding, png_bytes

    arr = np.arange(16 * 16 * 4, dtype=np.uint8).reshape(16, 16, 4)
    assert ImageEncoding().encode(arr) == png_bytes(arr) and ImageEncoding().encode(arr[..., :3]) == png_bytes(arr[..., :3])
    default = _cfg("p.parquet", tmp_path, tiny_ckpt)
    assert not {"image_format", "png_level", "quality"} & set(default.output_settings())
    assert _cfg("p.parquet", tmp_path, tiny_ckpt, png_level=6).output_settings() == default.output_settings()
    webp = _cfg("p.parquet", tmp_path, tiny_ckpt, image_format="webp").output_settings()
    assert (webp["image_format"], webp["png_level"], webp["quality"]) == ("webp", 6, None)


def test_encoder_pool_size_does_not_change_a_byte_and_reruns_are_exactly_once(tiny_ckpt: str, tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "p.parquet")
    kw = {"image_format": "webp", "quality": 70}
    one = _local(_cfg(prompts, tmp_path / "one", tiny_ckpt, encode_workers=1, **kw))
    four = _local(_cfg(prompts, tmp_path / "four", tiny_ckpt, encode_workers=4, **kw))
    assert one["images"] == four["images"] == IMAGES
    assert _data_shas(tmp_path / "one") == _data_shas(tmp_path / "four")
    stats = json.loads((tmp_path / "four" / "shards" / "00001.stats.json").read_text())
    assert "encode" in stats["seconds"] and "png_wait" not in stats["seconds"] and "encode" in stats["workers"]
    assert "encode" in four["stage_seconds"]
    # a shard cut mid-write is redone with the same bytes; the committed one is skipped, not rewritten
    before = _data_shas(tmp_path / "four")
    kept = (tmp_path / "four" / "shards" / "00000.tar").stat().st_mtime_ns
    tar = tmp_path / "four" / "shards" / "00001.tar"
    tar.write_bytes(tar.read_bytes()[:1000])
    (tmp_path / "four" / "shards" / "00001.stats.json").unlink()
    again = _local(_cfg(prompts, tmp_path / "four", tiny_ckpt, encode_workers=2, **kw))
    assert again["images_this_run"] == 4 and again["images"] == IMAGES
    assert _data_shas(tmp_path / "four") == before
    assert (tmp_path / "four" / "shards" / "00000.tar").stat().st_mtime_ns == kept


def test_ray_encoding_actors_write_the_local_executors_bytes(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    """The split layout's encode-and-write pool (the fused layout encodes in its whole-shard actors, which
    test_generate compares with the local executor)."""
    from llmgan.distributed.generate import RayExecutor
    from llmgan.job.run import run_job

    prompts = _prompts(tmp_path / "p.parquet")
    kw = {"image_format": "jpeg", "quality": 90, "format": "parquet"}
    summary = run_job(_cfg(prompts, tmp_path / "ray", tiny_ckpt, executor="ray", encode_workers=2,
                           stage_layout="split", **kw), RayExecutor(), progress=False)
    _local(_cfg(prompts, tmp_path / "local", tiny_ckpt, **kw))
    assert summary["images"] == IMAGES and "encode" in summary["stage_seconds"]
    assert _data_shas(tmp_path / "ray") == _data_shas(tmp_path / "local")


def test_encode_pool_takes_the_cpus_the_actor_pools_leave() -> None:
    from llmgan.distributed.generate import encode_pool
    from llmgan.job.config import StageResources, size_pools

    cfg = GenerateConfig(prompts="p.parquet", out="o", stage_layout="split")
    assert encode_pool(size_pools(cfg, 2, 0), 2) == (1, 0.0)  # CPU generators fill 2 cores: share them
    gpu = size_pools(GenerateConfig(prompts="p.parquet", out="o", generator=StageResources(num_gpus=1)), 16, 1)
    assert encode_pool(gpu, 16) == (14, 1.0)  # 16 - 0.25 (LM) - 1 (the GPU generator's core)
    assert encode_pool(dataclasses.replace(gpu, encode_workers=4), 16) == (4, 1.0)
    assert encode_pool(dataclasses.replace(gpu, encode_workers=59), 16) == (59, 0.25)  # 14.75 CPUs shared


def test_jpeg_of_an_rgba_gan_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from llmgan.gan.checkpoint import save_checkpoint
    from llmgan.gan.config import GanConfig
    from llmgan.gan.step import make_train_state

    ckpt = str(tmp_path / "rgba")
    save_checkpoint(ckpt, make_train_state(GanConfig(image_size=32, g_width=8, d_width=8, channels=4), seed=0),
                    training_state=False, extra={"domain": "shapes"})
    prompts = _prompts(tmp_path / "p.parquet")
    with pytest.raises(UserError, match=r"^--image-format jpeg has no alpha channel, but the GAN at .* draws RGBA "
                                        r"images; use --image-format png or webp$"):
        _local(_cfg(prompts, tmp_path / "out", ckpt, image_format="jpeg"))
    assert not (tmp_path / "out").exists()
    summary = _local(_cfg(prompts, tmp_path / "webp", ckpt, image_format="webp"))  # alpha kept, losslessly
    assert {Image.open(io.BytesIO(r.image)).mode for r in _records(tmp_path / "webp")} == {"RGBA"}
    assert summary["images"] == IMAGES
