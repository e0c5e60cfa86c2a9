"""The digits dataset: real sklearn digits, measured-attribute captions that agree with the pixels, CLI."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.data.readers import load_captioned
from llmgan.data.tables import decode_images
from llmgan.domains.digits import dataset as digits
from llmgan.errors import UserError


@pytest.fixture(scope="module")
def table():
    return digits.generate_digits(size=24)


def test_columns_and_images(table):
    assert tuple(table.column_names) == digits.COLUMNS
    assert table.num_rows == 1797
    assert sorted(set(table["label"].to_pylist())) == list(range(10))
    imgs = decode_images(table["image"].to_pylist()[:20])
    assert imgs.shape == (20, 24, 24, 3)
    assert (imgs[..., 0] == imgs[..., 1]).all() and (imgs[..., 1] == imgs[..., 2]).all()  # white ink on black
    assert imgs[:, 0, 0].max() < 40 and imgs.max() > 200
    assert len(set(table["id"].to_pylist())) == table.num_rows


def test_captions_name_class_and_measured_attributes(table):
    strokes = {"thin": "thin strokes", "regular": "medium strokes", "thick": "thick"}
    slants = {"leaning left": "to the left", "upright": "upright", "leaning right": "to the right"}
    for row in table.to_pylist():
        cap, label = row["caption"], row["label"]
        assert str(label) in cap or digits.NUMBER_WORDS[label] in cap, cap
        assert strokes[row["thickness"]] in cap and slants[row["slant"]] in cap, cap
        short = row["short_prompt"]
        assert str(label) in short or digits.NUMBER_WORDS[label] in short, short
        other = {"thin", "thick"} - {row["thickness"]}
        assert not any(w in short.split() for w in other), short
    assert len({r.split()[0] for r in table["caption"].to_pylist()}) >= 3


def test_attributes_agree_with_output_pixels(table):
    """Recompute ink and shear from the written PNGs, independently of the generator's 8x8 measurement."""
    imgs = decode_images(table["image"].to_pylist())[..., 0].astype(float) / 255
    h, w = imgs.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w]
    tot = imgs.sum((1, 2))
    xc, yc = (imgs * xs).sum((1, 2)) / tot, (imgs * ys).sum((1, 2)) / tot
    dx, dy = xs - xc[:, None, None], ys - yc[:, None, None]
    shear = -(imgs * dx * dy).sum((1, 2)) / (imgs * dy * dy).sum((1, 2))
    ink = imgs.mean((1, 2))
    labels = np.array(table["label"].to_pylist())
    thick = np.array(table["thickness"].to_pylist())
    slant = np.array(table["slant"].to_pylist())
    for k in range(10):
        sel = labels == k
        assert ink[sel & (thick == "thin")].mean() < ink[sel & (thick == "regular")].mean() < ink[
            sel & (thick == "thick")].mean()
        assert shear[sel & (slant == "leaning left")].mean() < shear[sel & (slant == "upright")].mean() < shear[
            sel & (slant == "leaning right")].mean()
    # each class splits roughly into thirds
    for values in (thick, slant):
        _, counts = np.unique(values, return_counts=True)
        assert counts.min() > 0.28 * len(values)


def test_measure_reads_slant_direction():
    img = np.zeros((1, 16, 16))
    for y in range(16):  # a stroke whose top is to the right: "/"
        img[0, y, 15 - y] = 1.0
    _, shear = digits.measure(img)
    assert shear[0] > 0.5
    _, shear_back = digits.measure(img[:, :, ::-1].copy())
    assert shear_back[0] < -0.5


def test_deterministic_and_sized():
    a = digits.generate_digits(size=16, seed=1, limit=30)
    assert a.equals(digits.generate_digits(size=16, seed=1, limit=30))
    assert decode_images(a["image"].to_pylist()[:1]).shape == (1, 16, 16, 3)
    with pytest.raises(UserError, match="size"):
        digits.generate_digits(size=4)


def test_cli_digits_round_trip(tmp_path):
    out = tmp_path / "digits.parquet"
    result = CliRunner().invoke(app, ["data", "digits", "--out", str(out), "--size", "16"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("wrote 1797 digits images (16x16")
    assert len(result.stdout.strip().splitlines()) == 1
    assert pq.read_table(out).num_rows == 1797
    data = load_captioned(str(out), 16)
    assert len(data) == 1797 and set(data.labels["label"]) == {str(k) for k in range(10)}
    assert set(data.labels) == {"label", "thickness", "slant"}
