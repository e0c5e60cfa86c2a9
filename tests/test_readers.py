"""Dataset readers: Parquet (plain and Hugging Face export), WebDataset shards, image folders; local and S3;
bad samples skipped and counted; clear errors when nothing is usable."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from llmgan.data import readers, tables
from llmgan.data.readers import load_captioned
from llmgan.domains.shapes import render as shapes
from llmgan.errors import UserError
from llmgan.io.storage import Storage

N = 10


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return shapes.generate_shapes(N, size=32, seed=5, split="all")


@pytest.fixture(scope="module")
def pixels(table) -> np.ndarray:
    return tables.decode_images(table["image"].to_pylist())


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _webdataset_shard(table: pa.Table, start: int, stop: int, broken: bool = True) -> bytes:
    """A shard laid out like img2dataset's: {key}.png|jpg + {key}.txt or {key}.json, plus bad samples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(start, stop):
            row = table.slice(i, 1).to_pylist()[0]
            key = f"{i:09d}"
            _add(tar, f"{key}.png", row["image"])
            if i % 2:
                _add(tar, f"{key}.txt", row["caption"].encode())
            else:
                meta = {"caption": row["caption"], "url": "http://example/x", "shape": row["shape"], "key": key}
                _add(tar, f"{key}.json", json.dumps(meta).encode())
        if broken:
            _add(tar, "bad000001.png", b"\x89PNG but not really")
            _add(tar, "bad000001.txt", b"a corrupt image")
            _add(tar, "bad000002.png", table["image"][0].as_py())  # no caption at all
            _add(tar, "bad000003.png", table["image"][0].as_py())
            _add(tar, "bad000003.json", json.dumps({"url": "x", "caption": None}).encode())
    return buf.getvalue()


def test_parquet_round_trip(tmp_path, table, pixels):
    url = str(tmp_path / "shapes.parquet")
    tables.write_dataset(table, url)
    data = load_captioned(url, 32)
    assert data.images.shape == (N, 32, 32, 3) and data.images.dtype == np.uint8
    assert np.array_equal(data.images, pixels)
    assert data.captions == table["caption"].to_pylist()
    assert data.labels["color"] == table["color"].to_pylist()
    assert set(data.labels) == {"shape", "color", "size", "position", "background"}
    assert data.skipped == {}
    assert len(load_captioned(url, 16, limit=4)) == 4


def test_parquet_custom_columns_resize_and_bad_rows(tmp_path, table):
    imgs = table["image"].to_pylist()
    t = pa.table(
        {
            "img": imgs + [b"garbage", None, imgs[0]],
            "text": table["caption"].to_pylist() + ["corrupt", "no image", None],
        }
    )
    url = str(tmp_path / "custom.parquet")
    tables.write_dataset(t, url)
    data = load_captioned(url, 16, image_column="img", caption_column="text")
    assert data.images.shape == (N, 16, 16, 3)
    assert data.skipped == {"corrupt image": 1, "missing image": 1, "missing caption": 1}
    with pytest.raises(UserError, match="no caption column 'caption'.*img, text"):
        load_captioned(url, 16, image_column="img")


def test_hugging_face_parquet_export(tmp_path, table, pixels):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(p) for p in pixels], "text": table["caption"].to_pylist()}
    ).cast_column("image", datasets.Image())
    folder = tmp_path / "hf" / "data"
    folder.mkdir(parents=True)
    ds.to_parquet(str(folder / "train-00000-of-00001.parquet"))
    data = load_captioned(str(tmp_path / "hf"), 32, caption_column="text")
    assert np.array_equal(data.images, pixels)
    assert data.captions == table["caption"].to_pylist()


def test_webdataset_shards_like_img2dataset(tmp_path, table, pixels):
    out = tmp_path / "wds"
    out.mkdir()
    (out / "00000.tar").write_bytes(_webdataset_shard(table, 0, 6))
    (out / "00001.tar").write_bytes(_webdataset_shard(table, 6, N, broken=False))
    # img2dataset leaves per-shard metadata next to the tars; the reader must not mistake it for data
    tables.write_dataset(pa.table({"key": ["x"], "caption": ["meta"]}), str(out / "00000.parquet"))
    (out / "00000_stats.json").write_text("{}")
    data = load_captioned(str(out), 32)
    assert np.array_equal(data.images, pixels)
    assert data.captions == table["caption"].to_pylist()
    assert data.skipped == {"corrupt image": 1, "missing caption": 2}
    # labels from .json sidecars come through; samples with only .txt get ""
    assert data.labels["shape"][0] == table["shape"][0].as_py() and data.labels["shape"][1] == ""


def test_webdataset_writer_jpeg_and_truncated_shard(tmp_path, table, pixels):
    import webdataset as wds

    path = tmp_path / "shard.tar"
    with wds.TarWriter(str(path)) as sink:
        for i in range(N):
            sink.write({"__key__": f"s{i:04d}", "jpg": _jpeg(pixels[i]), "txt": table["caption"][i].as_py()})
    data = load_captioned(str(path), 32)
    assert len(data) == N
    assert np.abs(data.images.astype(int) - pixels).mean() < 6  # JPEG is lossy, but close
    cut = tmp_path / "cut.tar"
    raw = path.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    partial = load_captioned(str(cut), 32)
    assert 0 < len(partial) < N
    assert partial.skipped.get("damaged shard") == 1


def test_image_folder_with_sidecars(tmp_path, table, pixels):
    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    for i in range(N):
        where = root / ("sub" if i >= 5 else "") / f"img{i:03d}.png"
        where.write_bytes(table["image"][i].as_py())
        where.with_suffix(".txt").write_text(table["caption"][i].as_py() + "\n")
    (root / "nocap.png").write_bytes(table["image"][0].as_py())
    (root / "zbroken.jpg").write_bytes(b"not a jpeg")
    (root / "zbroken.txt").write_text("a broken image")
    (root / "notes.md").write_text("ignored")
    data = load_captioned(str(root), 32)
    assert data.captions == table["caption"].to_pylist()  # trailing newline stripped, sorted order
    assert np.array_equal(data.images, pixels)
    assert data.skipped == {"missing caption": 1, "corrupt image": 1}


def test_every_format_from_s3(s3_server, s3_url, tmp_path, table, pixels):
    store = Storage(endpoint=s3_server)
    tables.write_dataset(table, f"{s3_url}/pq/train.parquet", store)
    store.write_bytes(f"{s3_url}/wds/00000.tar", _webdataset_shard(table, 0, N))
    for i in range(N):
        store.write_bytes(f"{s3_url}/folder/{i:03d}.png", table["image"][i].as_py())
        store.write_text(f"{s3_url}/folder/{i:03d}.txt", table["caption"][i].as_py())
    for sub in ("pq", "pq/train.parquet", "wds", "folder"):
        data = load_captioned(f"{s3_url}/{sub}", 32, store)
        assert np.array_equal(data.images, pixels), sub
        assert data.captions == table["caption"].to_pylist(), sub
    with pytest.raises(UserError, match="not found"):
        load_captioned(f"{s3_url}/missing", 32, store)


def test_centre_crop_of_non_square_images(tmp_path):
    img = np.zeros((20, 60, 3), np.uint8)
    img[:, :20] = (255, 0, 0)
    img[:, 20:40] = (0, 255, 0)
    img[:, 40:] = (0, 0, 255)
    Image.fromarray(img).save(tmp_path / "wide.png")
    (tmp_path / "wide.txt").write_text("a green square between red and blue")
    data = load_captioned(str(tmp_path), 10)
    assert data.images.shape == (1, 10, 10, 3)
    assert tuple(data.images[0, 5, 5]) == (0, 255, 0)


def test_oversized_images_are_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_IMAGE_PIXELS", 50 * 50)
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    (tmp_path / "big.txt").write_text("big")
    Image.new("RGB", (40, 40)).save(tmp_path / "ok.png")
    (tmp_path / "ok.txt").write_text("ok")
    data = load_captioned(str(tmp_path), 8)
    assert data.captions == ["ok"] and data.skipped == {"image too large": 1}


def test_nothing_usable_is_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    (tmp_path / "a.txt").write_text("junk")
    (tmp_path / "b.png").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"no usable samples.*corrupt image: 1, missing caption: 1"):
        load_captioned(str(tmp_path), 32)
    with pytest.raises(UserError, match="not found"):
        load_captioned(str(tmp_path / "nope.parquet"), 32)
    with pytest.raises(UserError, match="not found or empty"):
        load_captioned(str(tmp_path / "nope"), 32)
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="not a readable Parquet"):
        load_captioned(str(tmp_path / "x.parquet"), 32)
    with pytest.raises(UserError, match="image_size"):
        load_captioned(str(tmp_path), 0)
    assert not Path(tmp_path / "nope").exists()
