"""A user's own captioned images in the layouts they already have (Hugging Face imagefolder with metadata.jsonl or
metadata.csv, sidecar .txt captions, WebDataset shards, Parquet), read alike; caches never written into the data
folder; and one end-to-end run of the generic `captioned` domain on made-up concepts: train, then sample."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from llmgan.data.readers import load_captioned
from llmgan.errors import UserError
from llmgan.io.storage import Storage

# made-up concepts: none of these words is a shapes- or digits-domain word
CONCEPTS = [
    ("a glowing rune tile", (20, 20, 60), (120, 200, 255), "ellipse"),
    ("a mossy stone tile", (90, 90, 90), (40, 140, 40), "rectangle"),
    ("a rusty gear tile", (60, 30, 10), (200, 110, 40), "ellipse"),
    ("a frosted glass tile", (200, 220, 235), (250, 250, 255), "rectangle"),
]
N = 40
SIZE = 32
LAYOUTS = ("jsonl", "csv", "sidecar", "webdataset", "parquet")


def _png(i: int) -> bytes:
    caption, bg, fg, kind = CONCEPTS[i % len(CONCEPTS)]
    img = Image.new("RGB", (SIZE, SIZE), bg)
    off = (i // len(CONCEPTS)) % 5
    getattr(ImageDraw.Draw(img), kind)([6 + off, 6 + off, 22 + off, 22 + off], fill=fg)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, bytes, str]]:
    """(key, PNG bytes, caption) of the made-up set, in key order."""
    return [(f"{i:03d}", _png(i), CONCEPTS[i % len(CONCEPTS)][0]) for i in range(N)]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_layout(layout: str, root: Path, samples: list[tuple[str, bytes, str]]) -> str:
    """Write the set in `layout` under root; returns the URL to read."""
    root.mkdir(parents=True, exist_ok=True)
    if layout in ("jsonl", "csv"):  # Hugging Face imagefolder: images in a subfolder, metadata at the top
        (root / "images").mkdir()
        rows = []
        for key, png, caption in samples:
            (root / "images" / f"{key}.png").write_bytes(png)
            rows.append({"file_name": f"images/{key}.png", "text": caption, "label": caption.split()[1]})
        if layout == "jsonl":
            (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            with (root / "metadata.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=["file_name", "text", "label"])
                writer.writeheader()
                writer.writerows(rows)
    elif layout == "sidecar":
        for key, png, caption in samples:
            (root / f"{key}.png").write_bytes(png)
            (root / f"{key}.txt").write_text(caption + "\n")
    elif layout == "webdataset":  # as img2dataset writes: {key}.png + {key}.txt or {key}.json
        with tarfile.open(root / "00000.tar", "w") as tar:
            for i, (key, png, caption) in enumerate(samples):
                _add(tar, f"{key}.png", png)
                if i % 2:
                    _add(tar, f"{key}.txt", caption.encode())
                else:
                    _add(tar, f"{key}.json", json.dumps({"caption": caption, "key": key}).encode())
    elif layout == "parquet":
        pq.write_table(pa.table({"image": [s[1] for s in samples], "caption": [s[2] for s in samples]}),
                       root / "train.parquet")
    else:
        raise ValueError(layout)
    return str(root)


@pytest.fixture(scope="module")
def pixels(samples) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(s[1])).convert("RGB")) for s in samples])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_reads_the_same_images_and_captions(layout, tmp_path, samples, pixels):
    url = write_layout(layout, tmp_path / layout, samples)
    data = load_captioned(url, SIZE)
    assert data.captions == [s[2] for s in samples]
    assert np.array_equal(data.images, pixels)
    assert data.skipped == {}
    if layout in ("jsonl", "csv"):  # extra columns named in LABEL_COLUMNS ride along
        assert data.labels["label"] == [c.split()[1] for c in data.captions]


def test_metadata_wins_over_sidecars_and_missing_images_are_counted(tmp_path, samples):
    root = tmp_path / "mixed"
    root.mkdir()
    rows = []
    for key, png, caption in samples[:6]:
        (root / f"{key}.png").write_bytes(png)
        (root / f"{key}.txt").write_text("a sidecar caption that loses")
        rows.append({"file_name": f"{key}.png", "caption": caption})  # `caption` when there is no `text`
    (root / "extra.png").write_bytes(samples[6][1])  # not in the metadata: its sidecar is used
    (root / "extra.txt").write_text("an extra sidecar tile")
    rows += [{"file_name": "gone.png", "caption": "no such image"}, {"file_name": "../outside.png", "caption": "x"}]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    data = load_captioned(str(root), SIZE)
    assert data.captions == [s[2] for s in samples[:6]] + ["an extra sidecar tile"]
    assert data.skipped == {"missing image": 2, "bad metadata row": 1}


def test_caption_column_and_metadata_errors(tmp_path, samples):
    root = tmp_path / "cols"
    root.mkdir()
    (root / "a.png").write_bytes(samples[0][1])
    with (root / "metadata.csv").open("w", newline="") as fh:
        fh.write("file_name,prompt,text\na.png,a prompt tile,a text tile\n")
    assert load_captioned(str(root), SIZE).captions == ["a text tile"]  # HF's default column
    assert load_captioned(str(root), SIZE, caption_column="prompt").captions == ["a prompt tile"]
    with pytest.raises(UserError, match="no caption column 'nope'.*file_name, prompt, text.*--caption-column"):
        load_captioned(str(root), SIZE, caption_column="nope")
    (root / "metadata.csv").write_text("path,text\na.png,a tile\n")
    with pytest.raises(UserError, match="no 'file_name' column \\(columns: path, text\\)") as err:
        load_captioned(str(root), SIZE)
    assert "\n" not in str(err.value)


def test_imagefolder_metadata_on_s3(s3_server, s3_url, samples, pixels):
    store = Storage(endpoint=s3_server)
    rows = []
    for key, png, caption in samples[:8]:
        store.write_bytes(f"{s3_url}/data/train/{key}.png", png)
        rows.append(json.dumps({"file_name": f"train/{key}.png", "text": caption}))
    rows.append(json.dumps({"file_name": "train/missing.png", "text": "gone"}))
    store.write_text(f"{s3_url}/data/metadata.jsonl", "\n".join(rows) + "\n")
    data = load_captioned(f"{s3_url}/data", SIZE, store)
    assert data.captions == [s[2] for s in samples[:8]]
    assert np.array_equal(data.images, pixels[:8])
    assert data.skipped == {"missing image": 1}


def _listing(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_train_and_sample_the_captioned_domain_on_made_up_concepts(tmp_path, samples, monkeypatch):
    """One cheap end-to-end run: `llmgan train --local` on an imagefolder (metadata.jsonl) leaves the data folder
    untouched and caches the caption embeddings under the cache folder (reused on a rerun); the checkpoint records
    the captioned domain with its captions' words; `llmgan sample` draws a prompt of those words and reports a word
    the captions never used as not understood."""
    from typer.testing import CliRunner

    from llmgan.cli.app import app

    data = write_layout("jsonl", tmp_path / "data", samples)
    before = _listing(tmp_path / "data")
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLMGAN_CACHE_DIR", str(tmp_path / "env-cache"))  # --cache-dir wins over the environment
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--local", "--data", data, "--out", str(out), "--steps", "2", "--batch-size", "8",
            "--g-width", "4", "--d-width", "4", "--checkpoint-every", "2", "--sample-every", "2", "--eval-every", "2",
            "--threads", "1", "--no-eval", "--cache-dir", str(cache)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["images"] == N
    assert _listing(tmp_path / "data") == before  # nothing written into the user's data folder
    tables = list((cache / "embeddings").iterdir())
    assert len(tables) == 1 and pq.read_table(tables[0]).num_rows == len(CONCEPTS)
    assert not (tmp_path / "env-cache").exists()
    stamp = _listing(cache)
    again = runner.invoke(app, args)  # a rerun (the run is complete): the captions come from the cache
    assert again.exit_code == 0, again.output
    assert _listing(cache) == stamp and _listing(tmp_path / "data") == before

    meta = json.loads((out / "final" / "config.json").read_text())
    assert meta["domain"] == "captioned"
    assert {"glowing", "rune", "tile", "mossy", "stone", "rusty", "gear", "frosted", "glass"} <= set(meta["caption_words"])
    assert json.loads((out / "options.json").read_text())["options"]["cache_dir"] == str(cache)

    res = runner.invoke(app, ["sample", "a glowing rune tile", "-n", "2", "--out", str(tmp_path / "s"),
                              "--ckpt", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["000.png", "001.png", "grid.png"]
    assert np.asarray(Image.open(tmp_path / "s" / "000.png")).shape[:2] == (SIZE, SIZE)
    assert "not understood" not in res.output
    res = runner.invoke(app, ["sample", "a mossy dragon tile", "-n", "1", "--out", str(tmp_path / "d"),
                              "--ckpt", str(out)])
    assert res.exit_code == 0, res.output
    assert "not understood by the captioned domain: dragon" in res.output
