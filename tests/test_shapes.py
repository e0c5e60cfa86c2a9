"""The shapes dataset: determinism, pixel-checked labels, spec coverage, caption/label agreement, output."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from llmgan.data import tables
from llmgan.domains.shapes import parse_attributes, vocab
from llmgan.domains.shapes import render as shapes
from llmgan.domains.shapes.captions import is_faithful
from llmgan.errors import UserError
from llmgan.io.storage import Storage


@pytest.fixture(scope="module")
def table():
    return shapes.generate_shapes(600, size=32, seed=3, split="all")


def _labels(row: dict) -> dict[str, str]:
    return {a: row[a] for a in vocab.ATTRIBUTES}


def _mask(img: np.ndarray, background: str) -> np.ndarray:
    # more than half-way from the background towards any shape colour counts as shape
    diff = np.abs(img.astype(int) - np.array(vocab.BACKGROUNDS[background])).max(axis=2)
    return diff > 35


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_same_seed_same_bytes(tmp_path):
    a = shapes.generate_shapes(40, seed=7)
    b = shapes.generate_shapes(40, seed=7)
    assert a.equals(b)
    tables.write_dataset(a, str(tmp_path / "a.parquet"))
    tables.write_dataset(b, str(tmp_path / "b.parquet"))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    # sample i does not depend on n; a different seed gives different images
    assert shapes.generate_shapes(10, seed=7).equals(a.slice(0, 10))
    assert shapes.generate_shapes(10, seed=8)["image"].to_pylist() != a["image"].to_pylist()[:10]


def test_same_bytes_in_every_process(tmp_path):
    """Nothing may depend on string hashing, which Python salts per process."""
    import os
    import subprocess
    import sys

    code = ("import hashlib, sys; from llmgan.domains.shapes.render import generate_shapes, generate_prompt_pairs; "
            "t = generate_shapes(200, size=8, seed=1); p = generate_prompt_pairs(200, seed=1); "
            "sys.stdout.write(hashlib.sha256(repr((t.to_pylist(), p.to_pylist())).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": h},
                              capture_output=True, text=True, check=True).stdout for h in ("1", "2")}
    assert len(digests) == 1


def test_prompt_pairs_for_the_caption_lm():
    pairs = shapes.generate_prompt_pairs(400, seed=2, split="train")
    assert pairs.column_names == ["short_prompt", "caption"]
    stated = [parse_attributes(p) for p in pairs["short_prompt"].to_pylist()]
    for prompt, caption, got in zip(pairs["short_prompt"].to_pylist(), pairs["caption"].to_pylist(), stated):
        assert is_faithful(prompt, caption) and ("shape" in got or "color" in got)
        assert not shapes.is_heldout({a: v[0] for a, v in parse_attributes(caption).items()})
    # more stated details than users type: size is stated in about 0.5 * 0.25 + 0.5 * 0.6 of prompts
    assert 0.3 < sum("size" in g for g in stated) / len(stated) < 0.55
    assert max(len(g) for g in stated) == 5
    every = shapes.generate_prompt_pairs(400, seed=2)["caption"].to_pylist()  # default: all pairs, held-out too
    assert any(shapes.is_heldout({a: v[0] for a, v in parse_attributes(c).items()}) for c in every)
    with pytest.raises(UserError, match="detail"):
        shapes.generate_prompt_pairs(3, detail=1.5)


def test_columns_and_types(table):
    assert tuple(table.column_names) == shapes.COLUMNS
    assert table.schema.field("image").type == "binary"
    assert len(set(table["id"].to_pylist())) == table.num_rows
    img = tables.decode_images(table["image"].to_pylist()[:3])
    assert img.shape == (3, 32, 32, 3) and img.dtype == np.uint8


def test_spec_coverage_and_splits(table):
    for attr in vocab.ATTRIBUTES:
        assert set(table[attr].to_pylist()) == set(vocab.VALUES[attr]), attr
    splits = table["split"].to_pylist()
    assert {"train", "heldout"} <= set(splits)
    for row in table.to_pylist():
        assert (row["split"] == "heldout") == shapes.is_heldout(_labels(row))
    train = shapes.generate_shapes(200, seed=1, split="train")
    assert set(train["split"].to_pylist()) == {"train"}
    held = shapes.generate_shapes(50, seed=1, split="heldout")
    assert set(held["split"].to_pylist()) == {"heldout"}
    assert {(r["shape"], r["color"]) for r in held.to_pylist()} == set(shapes.HELDOUT_PAIRS)


def test_caption_names_exactly_the_labels(table):
    for row in table.to_pylist():
        assert parse_attributes(row["caption"]) == {a: [v] for a, v in _labels(row).items()}, row["caption"]


def test_short_prompts_consistent_subset(table):
    sizes = set()
    for row in table.to_pylist():
        got = parse_attributes(row["short_prompt"])
        assert "shape" in got or "color" in got, row["short_prompt"]
        assert 1 <= len(got) <= 3, row["short_prompt"]
        assert all(values == [row[a]] for a, values in got.items()), row["short_prompt"]
        assert is_faithful(row["short_prompt"], row["caption"])
        sizes.add(len(got))
    assert sizes == {1, 2, 3}


def test_captions_vary(table):
    captions = table["caption"].to_pylist()
    assert len(set(captions)) > 0.9 * len(captions)
    openings = {" ".join(c.split()[:2]) for c in captions}
    assert len(openings) >= 8
    text = " ".join(captions)
    for words in (vocab.SYNONYMS["shape"]["circle"], vocab.SYNONYMS["color"]["red"], vocab.SYNONYMS["size"]["large"]):
        assert sum(f" {w} " in text for w in words) >= 2, words


def test_colour_and_background_pixels(table):
    for row in table.to_pylist()[:200]:
        img = tables.decode_images([row["image"]])[0]
        assert tuple(img[0, 0]) == vocab.BACKGROUNDS[row["background"]] or tuple(img[-1, -1]) == vocab.BACKGROUNDS[
            row["background"]
        ]
        if row["size"] != "large":
            continue
        x0, y0, x1, y1 = _bbox(_mask(img, row["background"]))
        centre = img[(y0 + y1) // 2, (x0 + x1) // 2].astype(int)
        assert np.abs(centre - vocab.COLORS[row["color"]]).max() <= vocab.COLOR_JITTER + 2, row
        nearest = min(vocab.COLORS, key=lambda c: np.abs(centre - vocab.COLORS[c]).sum())
        assert nearest == row["color"]


def test_bounding_box_matches_position_and_size(table):
    size = 32
    jitter = vocab.POSITION_JITTER_AT_32
    for row in table.to_pylist():
        img = tables.decode_images([row["image"]])[0]
        x0, y0, x1, y1 = _bbox(_mask(img, row["background"]))
        lo, hi = vocab.SIZES[row["size"]]
        extent = max(x1 - x0, y1 - y0)
        # a span of L px touches up to ceil(L)+1 pixel columns
        assert lo * size - 2 <= extent <= hi * size + 2, (row["caption"], extent)
        fx, fy = vocab.POSITIONS[row["position"]]
        assert abs((x0 + x1) / 2 - fx * size) <= jitter + 1, row["caption"]
        assert abs((y0 + y1) / 2 - fy * size) <= jitter + 1, row["caption"]


def _classify(mask: np.ndarray) -> str:
    """An independent reading of the shape from its pixels (64 px renders)."""
    x0, y0, x1, y1 = _bbox(mask)
    box = mask[y0:y1, x0:x1]
    h, w = box.shape
    fill = box.mean()
    corners = box[: h // 8, : w // 8].mean() + box[-(h // 8):, -(w // 8):].mean()
    top_w, bottom_w = box[: h // 6].sum(axis=1).mean(), box[-(h // 6):].sum(axis=1).mean()
    if fill > 0.9:
        return "square"
    if top_w < 0.35 * w and bottom_w > 0.75 * w:
        return "triangle"
    if fill < 0.45:
        return "star"
    if corners < 0.05 and box[h // 2].mean() > 0.95 and box[:, w // 2].mean() > 0.95 and fill < 0.65:
        return "cross"
    if 0.7 < fill < 0.86:
        return "circle"
    return "unknown"


@pytest.mark.parametrize("shape", vocab.SHAPES)
def test_shape_geometry_by_pixels(shape):
    rng = np.random.default_rng(0)
    for _ in range(12):
        labels = shapes.sample_labels(rng)
        labels["shape"] = shape
        img = shapes.render_shape(labels, 64, rng)
        assert _classify(_mask(img, labels["background"])) == shape, labels


def test_any_size_and_bad_arguments():
    rng = np.random.default_rng(0)
    labels = {"shape": "star", "color": "red", "size": "large", "position": "center", "background": "navy"}
    for size in (16, 48, 128):
        img = shapes.render_shape(labels, size, rng)
        assert img.shape == (size, size, 3)
    with pytest.raises(UserError, match="split"):
        shapes.generate_shapes(3, split="test")
    with pytest.raises(UserError, match="n must"):
        shapes.generate_shapes(0)
    with pytest.raises(UserError, match="color"):
        shapes.render_shape({**labels, "color": "pink"}, 32, rng)


def test_write_dataset_local_and_s3(tmp_path, s3_server, s3_url):
    t = shapes.generate_shapes(8, seed=2)
    local = tmp_path / "sub" / "shapes.parquet"
    tables.write_dataset(t, str(local))
    assert pq.read_table(local).equals(t)
    store = Storage(endpoint=s3_server)
    url = f"{s3_url}/shapes.parquet"
    tables.write_dataset(t, url, store)
    assert pq.read_table(io.BytesIO(store.read_bytes(url))).equals(t)


def test_cli_shapes(tmp_path, s3_server, s3_url):
    from typer.testing import CliRunner

    from llmgan.cli.app import app

    runner = CliRunner()
    out = tmp_path / "shapes.parquet"
    result = runner.invoke(app, ["data", "shapes", "--n", "50", "--out", str(out), "--seed", "4", "--split", "all"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("wrote 50 shapes images (32x32, split all, seed 4")
    assert pq.read_table(out).equals(shapes.generate_shapes(50, seed=4, split="all"))
    url = f"{s3_url}/cli/shapes.parquet"
    result = runner.invoke(app, ["data", "shapes", "--n", "5", "--out", url, "--s3-endpoint", s3_server])
    assert result.exit_code == 0, result.output
    assert Storage(endpoint=s3_server).exists(url)
    for args, message in (
        (["--n", "0", "--out", str(out)], "error: --n must be at least 1, got 0"),
        (["--n", "5", "--out", str(out), "--split", "test"], "error: --split must be one of train, heldout, all"),
        (["--n", "5", "--out", str(tmp_path)], "is a directory"),
        (["--n", "5", "--out", str(out), "--size", "2"], "error: --size must be"),
    ):
        bad = runner.invoke(app, ["data", "shapes", *args])
        assert bad.exit_code == 2, args
        assert bad.stderr.startswith("error:") and message in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_cli_prompt_pairs(tmp_path):
    from typer.testing import CliRunner

    from llmgan.cli.app import app

    runner = CliRunner()
    out = tmp_path / "pairs.parquet"
    result = runner.invoke(app, ["data", "prompt-pairs", "--n", "30", "--out", str(out), "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).equals(shapes.generate_prompt_pairs(30, seed=5))
    bad = runner.invoke(app, ["data", "prompt-pairs", "--n", "5", "--out", str(out), "--detail", "2"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --detail must be in [0, 1]")


def test_dataset_settings_are_checked_once_naming_the_option() -> None:
    """The library path and the CLI share one check per setting (llmgan.data.config), so API callers get the same
    message the CLI prints."""
    from llmgan.data.config import ParquetOut

    with pytest.raises(UserError, match="^--seed must be non-negative, got -1$"):
        shapes.generate_prompt_pairs(3, seed=-1)
    with pytest.raises(UserError, match="^--size must be between 8 and 1024 pixels, got 4$"):
        shapes.generate_shapes(3, size=4)
    with pytest.raises(UserError, match="^--out must not be empty$"):
        ParquetOut(" ")
    assert ParquetOut("s3://bucket/data.parquet").url == "s3://bucket/data.parquet"
