"""Transparency end to end: RGBA training images -> a 4-channel GAN (decided by the data) -> RGBA PNGs in the job's
WebDataset shards -> the project's reader; the contact sheet shows alpha over a checkerboard; RGB data stays RGB."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from llmgan.data.readers import load_captioned
from llmgan.io.images import png_bytes

CAPTIONS = ("a glowing rune sprite", "a mossy stone sprite")


def _sprite(i: int, size: int = 32) -> np.ndarray:
    """A coloured disc (rune) or square (stone) on a transparent background; transparent pixels hold junk RGB."""
    rng = np.random.default_rng(i)
    img = np.zeros((size, size, 4), np.uint8)
    img[..., :3] = rng.integers(0, 255, (size, size, 3))  # what an editor leaves under alpha 0
    yy, xx = np.indices((size, size))
    r = 6 + i % 5
    inside = (np.hypot(yy - 16, xx - 16) < r) if i % 2 == 0 else ((abs(yy - 16) < r) & (abs(xx - 16) < r))
    img[inside] = (40 + 7 * i % 200, 200 if i % 2 == 0 else 90, 60, 255)
    return img


@pytest.fixture(scope="module")
def sprites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rgba") / "sprites.parquet"
    pq.write_table(pa.table({"image": [png_bytes(_sprite(i)) for i in range(40)],
                             "caption": [CAPTIONS[i % 2] for i in range(40)]}), path)
    return path


def test_alpha_is_kept_canonical_and_composited_on_request(sprites: Path) -> None:
    auto = load_captioned(str(sprites), 32, channels=None)
    assert auto.images.shape == (40, 32, 32, 4)
    alpha = auto.images[..., 3]
    assert (alpha == 0).any() and (alpha == 255).any()
    assert not auto.images[alpha == 0, :3].any()  # "nothing here" has one colour, not an editor's junk
    rgb = load_captioned(str(sprites), 32)  # the default: RGB, transparency composited onto white
    assert rgb.images.shape == (40, 32, 32, 3)
    assert (rgb.images[alpha == 0] == 255).all()
    np.testing.assert_array_equal(rgb.images[alpha == 255], auto.images[alpha == 255][:, :3])


def test_opaque_data_stays_rgb(tmp_path: Path) -> None:
    path = tmp_path / "opaque.parquet"
    opaque = [png_bytes(_sprite(i)[..., :3]) for i in range(4)]
    pq.write_table(pa.table({"image": opaque, "caption": ["x"] * 4}), path)
    assert load_captioned(str(path), 32, channels=None).images.shape[-1] == 3


def test_rgba_round_trip_train_generate_shards_reader(sprites: Path, tmp_path: Path) -> None:
    from llmgan.gan.config import GanConfig
    from llmgan.gan.inference import GanModel
    from llmgan.gan.trainer import LocalTrainOptions, train_local
    from llmgan.job.config import GenerateConfig
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    run = tmp_path / "run"
    train_local(str(sprites), str(run), GanConfig(image_size=32, g_width=8, d_width=8, batch_size=8),
                LocalTrainOptions(steps=4, checkpoint_every=4, sample_every=4, log_every=2, eval_every=4,
                                  threads=1, matcher=True, progress=False))
    meta = json.loads((run / "final" / "config.json").read_text())
    assert meta["model"]["channels"] == 4  # decided by the data
    assert Image.open(run / "samples" / "00000004.png").mode == "RGBA"
    model = GanModel.load(str(run / "final"))
    assert model.generate(np.zeros((2, model.config.text_dim), np.float32), model.noise([1, 2])).shape == (2, 32, 32, 4)

    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt": list(CAPTIONS), "n": pa.array([3, 3], pa.int32())}), prompts)
    out = tmp_path / "job"
    run_job(GenerateConfig(prompts=str(prompts), out=str(out), ckpt=str(run / "final"), expand=False, batch_size=8,
                           executor="local", consistency="auto", shard_size=4), LocalExecutor(), progress=False)
    tars = sorted((out / "shards").glob("*.tar"))
    with tarfile.open(tars[0]) as tar:
        png = next(m for m in tar.getmembers() if m.name.endswith(".png"))
        assert Image.open(io.BytesIO(tar.extractfile(png).read())).mode == "RGBA"
    back = load_captioned(str(out / "shards"), 32, channels=None)
    assert back.images.shape == (6, 32, 32, 4)
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.mode == "RGB"

    # the job beside its training data: each prompt's nearest real images are the ones captioned with it
    from llmgan.io.storage import Storage
    from llmgan.job.compare_sheet import comparison_panels

    auto = load_captioned(str(sprites), 32, channels=None)
    by_caption = {c: {png_bytes(img) for img, cc in zip(auto.images, auto.captions) if cc == c} for c in CAPTIONS}
    panels = comparison_panels(Storage(), str(out), str(sprites), rows=2, real=2, generated=3)
    assert {p for p, _ in panels} == set(CAPTIONS)
    for prompt, tiles in panels:
        assert len(tiles) == 6 and tiles[2] is None
        assert set(tiles[:2]) <= by_caption[prompt]
    from typer.testing import CliRunner

    from llmgan.cli.app import app

    result = CliRunner().invoke(app, ["compare", str(out), "--data", str(sprites), "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "c.png").mode == "RGB"


def test_checkerboard_shows_through_transparent_tiles() -> None:
    from llmgan.job.contact_sheet import on_checkerboard

    clear = Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA")
    shown = np.asarray(on_checkerboard(clear))
    assert shown.shape == (8, 8, 3)
    assert set(np.unique(shown)) == {204, 255}  # both squares of the board, nothing of the (black) hidden RGB
    solid = Image.fromarray(np.full((8, 8, 4), 255, np.uint8) * np.array([1, 0, 0, 1], np.uint8), "RGBA")
    assert (np.asarray(on_checkerboard(solid)) == [255, 0, 0]).all()


@pytest.mark.parametrize("model,prompts,word", [
    ("emoji", "doughnut\nred apple, twitter style\n", "emoji"),
    ("icons", "crossed swords\nred key on black\n", "icon"),
])
def test_a_shipped_real_asset_bundle_expands_generates_rgba_and_scores(tmp_path: Path, model: str, prompts: str,
                                                                       word: str) -> None:
    """`--model emoji|icons`: the shipped 64 px RGBA GAN, its matcher scorer and its caption LM, through the real
    job."""
    from typer.testing import CliRunner

    from llmgan.cli.app import app

    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text(prompts)
    out = tmp_path / model
    result = CliRunner().invoke(app, ["generate", str(prompt_file), "--model", model, "--executor", "local",
                                      "--n-per-prompt", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    done = json.loads((out / "_SUCCESS.json").read_text())
    assert done["images"] == 4
    with tarfile.open(sorted((out / "shards").glob("*.tar"))[0]) as tar:
        metas = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
        pngs = [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".png")]
    assert {Image.open(io.BytesIO(p)).size for p in pngs} == {(64, 64)}
    assert {Image.open(io.BytesIO(p)).mode for p in pngs} == {"RGBA"}
    assert all(word in m["caption"] for m in metas)  # expanded by the bundle's captioner, not the shapes one
    assert all(m["consistency"] is not None for m in metas)  # scored by the bundle's matcher
