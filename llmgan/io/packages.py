"""Public packages fetched by name from an npm registry (images and their metadata: the emoji sets, the game icons),
pinned by version and sha512 integrity, verified before anything is unpacked and unpacked once into the cache folder.

`fetch_package(pin)` returns `<cache>/packages/<name>@<version>/`, the tarball's `package/` root. The folder
appears only by an atomic rename after a verified download and a safe extraction (regular files and folders only;
absolute paths, `..`, links and devices are refused), so a folder that is there is complete and is reused with no
network access; an interrupted or failed fetch leaves only dot-named temporaries (swept on a later fetch). The
registry is the `registry` argument, else $LLMGAN_NPM_REGISTRY, else https://registry.npmjs.org; credentials in
its URL (`https://user:token@host/`) are sent as basic auth and never printed."""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from llmgan.errors import UserError
from llmgan.io.cache import ENV as CACHE_ENV
from llmgan.io.cache import cache_dir

REGISTRY_ENV = "LLMGAN_NPM_REGISTRY"
DEFAULT_REGISTRY = "https://registry.npmjs.org"
TIMEOUT_S = 30.0  # per connect and per read, not for the whole download
MAX_DOWNLOAD_BYTES = 1 << 30  # a registry that streams more than this is not serving the pinned tarball
MAX_UNPACKED_BYTES = 4 << 30
CHUNK = 1 << 16
STALE_S = 24 * 3600  # temporaries older than this were left by a killed fetch
_TMP_PREFIXES = (".download-", ".extract-")
_NAME = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")

Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class PinnedPackage:
    """An npm package pinned by version and Subresource Integrity (`sha512-<base64>`), with its licence and the
    attribution text to ship alongside anything built from it."""

    name: str
    version: str
    integrity: str
    license: str
    attribution: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise UserError(f"invalid npm package name {self.name!r}")
        if not _VERSION.match(self.version):
            raise UserError(f"invalid version {self.version!r} for package {self.name}")
        _sha512_digests(self)  # validates the integrity string

    @property
    def basename(self) -> str:
        """The name without its scope: `@iconify-json/game-icons` -> `game-icons`."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def folder_name(self) -> str:
        """The cache folder's name: `name@version`, a scope's `/` written as `+` (one folder, not two)."""
        return f"{self.name.replace('/', '+')}@{self.version}"

    def tarball_url(self, registry: str) -> str:
        return f"{registry.rstrip('/')}/{self.name}/-/{self.basename}-{self.version}.tgz"


def _sha512_digests(pkg: PinnedPackage) -> list[bytes]:
    """The sha512 digests of an SRI string (space-separated `alg-<base64>[?opts]`; other algorithms ignored)."""
    digests = []
    for token in pkg.integrity.split():
        alg, _, value = token.partition("-")
        if alg != "sha512":
            continue
        try:
            digest = base64.b64decode(value.split("?", 1)[0], validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 64:
            raise UserError(f"invalid sha512 integrity {token[:20]!r}... for package {pkg.name}@{pkg.version}")
        digests.append(digest)
    if not digests:
        raise UserError(f"package {pkg.name}@{pkg.version} needs a sha512-<base64> integrity, got "
                        f"{pkg.integrity[:20]!r}")
    return digests


EMOJI_PACKAGES: dict[str, PinnedPackage] = {
    "google": PinnedPackage(
        "emoji-datasource-google", "16.0.0",
        "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
        license="Apache-2.0",
        attribution="Noto Emoji by Google, Apache License 2.0, via emoji-datasource-google 16.0.0 "
                    "(emoji-data by Cal Henderson, MIT)"),
    "twitter": PinnedPackage(
        "emoji-datasource-twitter", "16.0.0",
        "sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==",
        license="CC-BY-4.0",
        attribution="Twemoji by Twitter, Inc and other contributors, CC-BY 4.0, via emoji-datasource-twitter "
                    "16.0.0 (emoji-data by Cal Henderson, MIT)"),
}

# one-colour game icons as SVG path bodies; info.json names the author "GameIcons" (the game-icons.net contributors)
GAME_ICONS_PACKAGE = PinnedPackage(
    "@iconify-json/game-icons", "1.2.4",
    "sha512-/HDDZxowXgDJcOEwPspUCq5RuDdl25OyZKdtxqqiPJQNTrWIym7r4StLzIVs77DyNzOWWhH5wDqwYR3WHeDfkg==",
    license="CC-BY-3.0",
    attribution="Game icons by GameIcons, the game-icons.net contributors (https://github.com/game-icons/icons), "
                "CC BY 3.0, via @iconify-json/game-icons 1.2.4; recoloured and rasterised by llmgan")


def registry_url(registry: str | None = None) -> str:
    """The registry to use: the argument, else $LLMGAN_NPM_REGISTRY, else the public npm registry."""
    url = (registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"npm registry must be an http(s) URL, got {safe_url(url)!r} (set ${REGISTRY_ENV} or "
                        "--registry)")
    return url.rstrip("/")


def safe_url(url: str) -> str:
    """The URL without user:password@ (for messages and logs)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _request(url: str) -> urllib.request.Request:
    """A GET request; credentials in the URL become a basic-auth header (urllib would not send them)."""
    parts = urllib.parse.urlsplit(url)
    headers = {"User-Agent": "llmgan", "Accept": "application/octet-stream"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.request.Request(safe_url(url), headers=headers)


def fetch_package(pkg: PinnedPackage, cache: str | os.PathLike[str] | None = None, registry: str | None = None,
                  progress: Progress | None = None) -> Path:
    """The pinned package's `package/` folder in `<cache>/packages/`, downloaded, verified and unpacked on the
    first call, reused with no network access afterwards. Failures are one-line UserErrors and keep nothing."""
    root = cache_dir(cache, "packages")
    target = root / pkg.folder_name
    if target.is_dir():
        return target
    if target.exists() or target.is_symlink():
        raise UserError(f"cache entry {target} is not a folder; remove it and run again")
    expected = _sha512_digests(pkg)
    registry = registry_url(registry)
    _sweep_stale(root)
    tgz: Path | None = None
    extract: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".tgz", dir=root)
        tgz = Path(tmp_name)
        with os.fdopen(fd, "wb") as out:
            got = _download(pkg, registry, out, progress, root)
        if got not in expected:
            raise UserError(
                f"integrity check failed for {pkg.name}@{pkg.version} from {safe_url(registry)}: expected "
                f"sha512-{_b64(expected[0])[:16]}..., got sha512-{_b64(got)[:16]}...; nothing was kept")
        extract = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
        _extract(pkg, tgz, extract, registry)
        extract.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
        try:
            os.rename(extract, target)
        except OSError:
            if not target.is_dir():  # not another process that got there first
                raise
        else:
            extract = None
        return target
    except OSError as exc:
        raise UserError(f"cannot write {pkg.name}@{pkg.version} to the cache folder {root}: "
                        f"{exc.strerror or exc}; choose another with --cache-dir or ${CACHE_ENV}") from None
    finally:
        if tgz is not None:
            tgz.unlink(missing_ok=True)
        if extract is not None:
            shutil.rmtree(extract, ignore_errors=True)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _download(pkg: PinnedPackage, registry: str, out: BinaryIO, progress: Progress | None, root: Path) -> bytes:
    """Stream the tarball into `out`; returns its sha512 digest. Network failures become UserErrors."""
    url = pkg.tarball_url(registry)
    where = safe_url(registry)
    elsewhere = (f"set ${REGISTRY_ENV} (or --registry) to a reachable registry or mirror, or copy a cache folder "
                 f"fetched elsewhere (its packages/{pkg.folder_name}/) and pass it with --cache-dir")
    digest = hashlib.sha512()
    done = 0
    try:
        with urllib.request.urlopen(_request(url), timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if progress:
                progress(0, total)
            while chunk := response.read(CHUNK):
                done += len(chunk)
                if done > MAX_DOWNLOAD_BYTES:
                    raise UserError(f"{safe_url(url)} sent more than {MAX_DOWNLOAD_BYTES >> 20} MB; not the "
                                    f"pinned {pkg.name}@{pkg.version}")
                digest.update(chunk)
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise UserError(f"cannot write {pkg.name}@{pkg.version} to the cache folder {root}: "
                                    f"{exc.strerror or exc}; choose another with --cache-dir or ${CACHE_ENV}"
                                    ) from None
                if progress:
                    progress(done, total)
            if total is not None and done != total:
                raise UserError(f"download of {pkg.name}@{pkg.version} from the npm registry {where} stopped after "
                                f"{done} of {total} bytes; run again, or {elsewhere}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise UserError(f"package {pkg.name}@{pkg.version} not found on the npm registry {where} "
                            f"(HTTP 404 for {safe_url(url)})") from None
        raise UserError(f"the npm registry {where} answered HTTP {exc.code} for {pkg.name}@{pkg.version}; "
                        f"{elsewhere}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        raise UserError(f"cannot reach the npm registry {where} ({reason}); {elsewhere}") from None
    except TimeoutError:
        raise UserError(f"the npm registry {where} timed out after {TIMEOUT_S:.0f}s; {elsewhere}") from None
    except (OSError, http.client.HTTPException) as exc:  # reset mid-download, TLS errors, truncated bodies
        why = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise UserError(f"download of {pkg.name}@{pkg.version} from the npm registry {where} failed ({why}); "
                        f"{elsewhere}") from None
    return digest.digest()


def _member_path(member: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's path below the tarball's top folder (npm's `package/`); None for the top folder itself.
    Raises ValueError for anything unsafe."""
    name = member.name
    if name.startswith("/") or "\\" in name or "\0" in name or re.match(r"^[A-Za-z]:", name):
        raise ValueError(f"absolute or odd path {name!r}")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"path with '..' {name!r}")
    if not (member.isreg() or member.isdir()):
        raise ValueError(f"{name!r} is a link, device or other special file")
    if len(parts) <= 1:
        if member.isdir():
            return None
        raise ValueError(f"file {name!r} outside the package folder")
    return PurePosixPath(*parts[1:])


def _extract(pkg: PinnedPackage, tgz: Path, dest: Path, registry: str) -> None:
    """Unpack the verified tarball's top folder into `dest`: regular files and folders only."""
    where = f"the tarball of {pkg.name}@{pkg.version} from {safe_url(registry)}"
    unpacked = 0
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            for member in tar:
                try:
                    rel = _member_path(member)
                except ValueError as exc:
                    raise UserError(f"{where} has an unsafe member: {exc}; nothing was kept") from None
                if rel is None:
                    continue
                path = dest.joinpath(*rel.parts)
                if member.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                unpacked += member.size
                if unpacked > MAX_UNPACKED_BYTES:
                    raise UserError(f"{where} unpacks to more than {MAX_UNPACKED_BYTES >> 30} GB; nothing was kept")
                path.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise tarfile.TarError(f"cannot read {member.name!r}")
                with source, open(path, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
    except UserError:
        raise
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UserError(f"{where} is corrupt or unreadable ({exc.__class__.__name__}: {exc}); nothing was kept"
                        ) from None
    except OSError as exc:
        if isinstance(exc, (gzip.BadGzipFile, FileExistsError, IsADirectoryError, NotADirectoryError)):
            raise UserError(f"{where} is corrupt or unreadable ({exc.strerror or exc}); nothing was kept") from None
        raise


def _sweep_stale(root: Path) -> None:
    """Remove temporaries a killed fetch left behind (only old ones: a live fetch may be writing a new one)."""
    now = time.time()
    for entry in root.iterdir():
        if not entry.name.startswith(_TMP_PREFIXES):
            continue
        try:
            if now - entry.lstat().st_mtime < STALE_S:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        except OSError:
            pass
