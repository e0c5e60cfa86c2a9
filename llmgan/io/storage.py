"""All I/O on paths and URLs: local directories and s3://bucket/prefix, atomic writes, bounded retries.

Every other module reads and writes through `Storage`, so local and S3 behave the same and errors
are worded once. A `Storage` is cheap, picklable (Ray ships it to workers) and creates its boto3
client lazily in each process.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from llmgan.errors import StorageError

S3_PREFIX = "s3://"
# Fail an unreachable endpoint in seconds, not minutes: short connect timeout. Attempts per request (first
# try included): 8 makes a request that meets a 20% transient fault rate fail about once in 400,000, while
# botocore's standard-mode retry quota (per client, shared by a process) makes a dead endpoint fail fast.
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 30
MAX_ATTEMPTS = 8  # AWS_MAX_ATTEMPTS, the AWS SDKs' own variable, overrides it (see max_attempts)
# boto3 clients are thread-safe and costly to create: one per (process, endpoint), which also makes the
# retry quota process-wide (a dead endpoint stops being retried after ~35 failed retries).
_CLIENTS: dict[tuple[int, str | None], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def max_attempts() -> int:
    """Attempts per S3 request: AWS_MAX_ATTEMPTS when set (fewer fail a dead endpoint sooner, more ride out a
    flakier one), else MAX_ATTEMPTS."""
    value = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    if not value:
        return MAX_ATTEMPTS
    if not value.isdigit() or int(value) < 1:
        raise StorageError(f"AWS_MAX_ATTEMPTS must be a whole number >= 1, got {value!r}")
    return int(value)


def is_s3(url: str) -> bool:
    return str(url).startswith(S3_PREFIX)


def join(base: str, *parts: str) -> str:
    """Join URL/path parts with '/' (S3) or the OS separator (local)."""
    base = str(base)
    if is_s3(base):
        out = base.rstrip("/")
        for p in parts:
            out += "/" + str(p).strip("/")
        return out
    return str(Path(base, *parts))


def parse_s3(url: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b')."""
    rest = url[len(S3_PREFIX):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"invalid S3 URL {url!r}: no bucket name")
    return bucket, key


def redact_url(url: str | None) -> str | None:
    """Drop user:password@ and query strings (signed URLs) from a URL before it is used in a message."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def resolve_endpoint(explicit: str | None = None) -> str | None:
    """The S3 endpoint: explicit option, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS."""
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@dataclass
class Storage:
    """Read/write/list/delete on local paths and s3:// URLs. `endpoint=None` resolves from the env."""

    endpoint: str | None = None
    _client: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # user:password@ in an endpoint is never a credential S3 uses: drop it so it is never sent or shown
        self.endpoint = redact_url(resolve_endpoint(self.endpoint))

    def __getstate__(self) -> dict:
        return {"endpoint": self.endpoint}

    def __setstate__(self, state: dict) -> None:
        self.endpoint = state["endpoint"]
        self._client = None

    # ---- S3 plumbing -------------------------------------------------------------------------
    def _where(self) -> str:
        return self.endpoint or "AWS S3"

    @property
    def client(self) -> Any:
        if self._client is None:
            endpoint = self.endpoint
            key = (os.getpid(), endpoint)
            with _CLIENTS_LOCK:
                if key not in _CLIENTS:
                    import boto3
                    from botocore.config import Config

                    attempts = max_attempts()
                    cfg = Config(
                        connect_timeout=CONNECT_TIMEOUT_S,
                        read_timeout=READ_TIMEOUT_S,
                        retries={"max_attempts": attempts, "mode": "standard"},
                    )
                    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                    _CLIENTS[key] = boto3.client("s3", endpoint_url=endpoint, config=cfg, region_name=region)
                self._client = _CLIENTS[key]
        return self._client

    def _s3_error(self, exc: Exception, url: str) -> StorageError:
        """Translate a botocore exception into one line that names the endpoint, never credentials."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = self._where()
        if isinstance(exc, NoCredentialsError):
            return StorageError(f"no AWS credentials found for {url} (endpoint {where})")
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            bucket = parse_s3(url)[0]
            if code == "NoSuchBucket":
                return StorageError(f"S3 bucket {bucket!r} does not exist (endpoint {where})")
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return StorageError(f"access denied to {url} (endpoint {where}): {code}")
            if code in ("NoSuchKey", "404"):
                return StorageError(f"not found: {url}")
            return StorageError(f"S3 error {code or type(exc).__name__} on {url} (endpoint {where}, "
                                f"after retries)")
        if isinstance(exc, EndpointConnectionError) or "connect" in type(exc).__name__.lower():
            return StorageError(f"cannot reach S3 endpoint {where} for {url}")
        return StorageError(f"S3 request for {url} failed at endpoint {where}: {type(exc).__name__}")

    # ---- public API ----------------------------------------------------------------------------
    def read_bytes(self, url: str) -> bytes:
        if not is_s3(url):
            try:
                return Path(url).read_bytes()
            except FileNotFoundError:
                raise StorageError(f"not found: {url}") from None
            except IsADirectoryError:
                raise StorageError(f"is a directory, not a file: {url}") from None
        bucket, key = parse_s3(url)
        from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError

        for attempt in range(MAX_ATTEMPTS):
            try:
                return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except (ResponseStreamingError, IncompleteReadError, ReadTimeoutError) as exc:
                # botocore retries the request but not a body cut short while streaming: do that here
                if attempt + 1 == MAX_ATTEMPTS:
                    raise self._s3_error(exc, url) from None
                time.sleep(0.05 * 2 ** attempt)
            except Exception as exc:  # noqa: BLE001 - translated into one clear line
                raise self._s3_error(exc, url) from None
        raise AssertionError("unreachable")

    def write_bytes(self, url: str, data: bytes) -> None:
        """Atomic write: readers see the old object or the whole new one, never a partial file."""
        if not is_s3(url):
            path = Path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared like any file
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return
        bucket, key = parse_s3(url)
        try:  # a single PUT is atomic on S3; boto3 retries it on throttling/5xx/connection errors
            self.client.put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as exc:  # noqa: BLE001
            raise self._s3_error(exc, url) from None

    def read_text(self, url: str) -> str:
        return self.read_bytes(url).decode("utf-8")

    def write_text(self, url: str, text: str) -> None:
        self.write_bytes(url, text.encode("utf-8"))

    def exists(self, url: str) -> bool:
        if not is_s3(url):
            return Path(url).exists()
        bucket, key = parse_s3(url)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:  # noqa: BLE001
            from botocore.exceptions import ClientError

            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._s3_error(exc, url) from None

    def list(self, url: str) -> list[str]:
        """Sorted names of all files under `url` (recursive), relative to it, '/'-separated."""
        if not is_s3(url):
            root = Path(url)
            if not root.is_dir():
                return []
            return sorted(
                p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp")
            )
        bucket, key = parse_s3(url)
        prefix = key.rstrip("/") + "/" if key else ""
        names: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                names.extend(obj["Key"][len(prefix):] for obj in page.get("Contents", []))
        except Exception as exc:  # noqa: BLE001
            raise self._s3_error(exc, url) from None
        return sorted(names)

    def delete(self, url: str) -> None:
        """Delete one file; missing files are fine (idempotent)."""
        if not is_s3(url):
            Path(url).unlink(missing_ok=True)
            return
        bucket, key = parse_s3(url)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:  # noqa: BLE001
            raise self._s3_error(exc, url) from None

    def check_bucket(self, url: str) -> None:
        """Fail early, with one line, when the bucket is missing, forbidden or the endpoint is down."""
        if not is_s3(url):
            return
        bucket, _ = parse_s3(url)
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001
            from botocore.exceptions import ClientError

            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise StorageError(f"S3 bucket {bucket!r} does not exist (endpoint {self._where()})") from None
            raise self._s3_error(exc, url) from None

    def arrow_filesystem(self, url: str) -> tuple[Any, str]:
        """(pyarrow FileSystem, path) for streaming readers such as pyarrow.parquet.ParquetFile."""
        import pyarrow.fs as pafs

        if not is_s3(url):
            return pafs.LocalFileSystem(), str(Path(url).absolute())
        bucket, key = parse_s3(url)
        kwargs: dict[str, Any] = {
            "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            "connect_timeout": CONNECT_TIMEOUT_S,
            "request_timeout": READ_TIMEOUT_S,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts()),
        }
        endpoint = self.endpoint
        if endpoint:  # pyarrow ignores AWS_ENDPOINT_URL: pass it explicitly
            scheme, _, host = endpoint.partition("://")
            kwargs["endpoint_override"] = host or scheme
            kwargs["scheme"] = scheme if host else "https"
        return pafs.S3FileSystem(**kwargs), f"{bucket}/{key}"

    def open_input(self, url: str) -> Any:
        """A seekable pyarrow input file (ranged reads on S3, so large files are never fetched whole)."""
        fs, path = self.arrow_filesystem(url)
        if is_s3(url):
            self.check_bucket(url)
            if not self.exists(url):
                raise StorageError(f"not found: {url}")
        elif not Path(url).exists():
            raise StorageError(f"not found: {url}")
        elif Path(url).is_dir():
            raise StorageError(f"is a directory, not a file: {url}")
        return fs.open_input_file(path)
