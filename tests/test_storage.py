"""Storage layer against local folders and a real S3 protocol server (moto in server mode)."""

from __future__ import annotations

import os
import socket
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmgan.errors import StorageError
from llmgan.io.storage import Storage, join, resolve_endpoint

from .conftest import FAKE_SECRET


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path) -> tuple[Storage, str]:
    if request.param == "local":
        return Storage(), str(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_server")
    return Storage(endpoint=endpoint), request.getfixturevalue("s3_url")


def test_round_trip_list_exists_delete(root: tuple[Storage, str]) -> None:
    st, base = root
    st.write_bytes(join(base, "a/one.bin"), b"\x00\x01payload")
    st.write_text(join(base, "two.txt"), "héllo")
    assert st.read_bytes(join(base, "a/one.bin")) == b"\x00\x01payload"
    assert st.read_text(join(base, "two.txt")) == "héllo"
    assert st.list(base) == ["a/one.bin", "two.txt"]
    assert st.exists(join(base, "two.txt")) and not st.exists(join(base, "missing"))
    st.delete(join(base, "two.txt"))
    st.delete(join(base, "two.txt"))  # idempotent
    assert st.list(base) == ["a/one.bin"]
    with pytest.raises(StorageError, match="not found"):
        st.read_bytes(join(base, "missing"))


def test_overwrite_is_whole(root: tuple[Storage, str]) -> None:
    st, base = root
    url = join(base, "obj")
    st.write_bytes(url, b"old" * 1000)
    st.write_bytes(url, b"new")
    assert st.read_bytes(url) == b"new"
    assert st.list(base) == ["obj"]  # no temp files left behind
    if not url.startswith("s3://"):
        assert os.stat(url).st_mode & 0o777 == 0o644  # readable like any other file, not mkstemp's 0600


def test_local_write_failure_leaves_old_content(tmp_path) -> None:
    st = Storage()
    url = str(tmp_path / "f.bin")
    st.write_bytes(url, b"committed")

    with pytest.raises(TypeError):  # the write fails after the temp file exists
        st.write_bytes(url, None)  # type: ignore[arg-type]
    assert st.read_bytes(url) == b"committed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_parquet_through_arrow_filesystem(root: tuple[Storage, str]) -> None:
    st, base = root
    table = pa.table({"prompt": ["a", "b", "c"]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    url = join(base, "p.parquet")
    st.write_bytes(url, sink.getvalue().to_pybytes())
    assert pq.ParquetFile(st.open_input(url)).read().equals(table)


def test_missing_bucket_names_bucket(s3_server: str) -> None:
    st = Storage(endpoint=s3_server)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        st.write_bytes("s3://no-such-bucket/x", b"1")
    with pytest.raises(StorageError, match="does not exist"):
        st.check_bucket("s3://no-such-bucket/x")


def test_unreachable_endpoint_fails_fast_and_names_it() -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    st = Storage(endpoint=endpoint)
    t0 = time.monotonic()
    with pytest.raises(StorageError) as info:
        st.read_bytes("s3://test-bucket/x")
    assert time.monotonic() - t0 < 60  # bounded retries, not minutes (generous: shared CI cores)
    assert endpoint in str(info.value)
    assert FAKE_SECRET not in str(info.value)


def test_endpoint_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://generic:1")
    assert resolve_endpoint() == "http://generic:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3-specific:2")
    assert resolve_endpoint() == "http://s3-specific:2"
    assert resolve_endpoint("http://explicit:3") == "http://explicit:3"


def test_storage_pickles_without_client(s3_server: str) -> None:
    import pickle

    st = Storage(endpoint=s3_server)
    _ = st.client
    clone = pickle.loads(pickle.dumps(st))
    assert clone.endpoint == s3_server and clone._client is None


def test_aws_max_attempts_overrides_the_default_and_a_bad_value_is_one_line(monkeypatch) -> None:
    from llmgan.errors import StorageError
    from llmgan.io.storage import MAX_ATTEMPTS, max_attempts

    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    assert max_attempts() == MAX_ATTEMPTS
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    assert max_attempts() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", bad)
        with pytest.raises(StorageError, match="AWS_MAX_ATTEMPTS"):
            max_attempts()
