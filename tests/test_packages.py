"""llmgan.io.packages (pinned npm packages, fetched once, integrity-checked, unpacked safely into the cache folder)
and `llmgan data emoji`, against a registry served from a thread on 127.0.0.1: never the network."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from llmgan.errors import UserError
from llmgan.io import packages
from llmgan.io.packages import EMOJI_PACKAGES, PinnedPackage, fetch_package

SECRET = "s3cr3t-token-DO-NOT-LEAK"


def png(color: tuple[int, int, int, int], size: int = 4) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def tgz(files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    """A gzipped tarball of `files` (paths as given, e.g. package/...) plus raw `extra` members (links etc.)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


def pin(data: bytes, name: str = "tiny-images", version: str = "1.0.0") -> PinnedPackage:
    sri = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    return PinnedPackage(name, version, sri, license="MIT", attribution="test fixture")


def tarball_path(name: str, version: str) -> str:
    return f"/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"


TINY = {
    "package/package.json": json.dumps({"name": "tiny-images", "version": "1.0.0"}).encode(),
    "package/img/red.png": png((255, 0, 0, 255)),
    "package/img/clear.png": png((0, 0, 255, 0)),
    "package/index.json": json.dumps([{"image": "red.png"}, {"image": "clear.png"}]).encode(),
}


class Registry:
    """An npm-shaped registry: GET {path} -> files[path], else 404; records paths and Authorization headers."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                registry.requests.append((self.path, self.headers.get("Authorization")))
                body = registry.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                body = body if body is not None else b'{"error":"Not found"}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, pkg: PinnedPackage, data: bytes) -> None:
        self.files[tarball_path(pkg.name, pkg.version)] = data

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Cache in tmp/cache; HOME, XDG and the working folder in tmp, checked empty afterwards; no proxies."""
    cache, home, work = tmp_path / "cache", tmp_path / "home", tmp_path / "work"
    for d in (home, work):
        d.mkdir()
    monkeypatch.setenv("LLMGAN_CACHE_DIR", str(cache))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("LLMGAN_NPM_REGISTRY", raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.chdir(work)
    yield cache
    assert not any(home.iterdir()), "wrote into HOME"
    assert not any(work.iterdir()), "wrote into the working folder"


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry()
    yield reg
    reg.stop()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def leftovers(cache: Path) -> list[str]:
    root = cache / "packages"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ---------------------------------------------------------------- fetch_package


def test_fetch_verifies_extracts_and_reports_progress(sandbox: Path, registry: Registry) -> None:
    data = tgz(TINY)
    pkg = pin(data)
    registry.serve(pkg, data)
    seen: list[tuple[int, int | None]] = []
    folder = fetch_package(pkg, registry=registry.url, progress=lambda done, total: seen.append((done, total)))
    assert folder == sandbox / "packages" / "tiny-images@1.0.0"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "img", "img/clear.png", "img/red.png", "index.json", "package.json"]
    for name, body in TINY.items():
        assert (folder / name.removeprefix("package/")).read_bytes() == body
    with Image.open(folder / "img" / "clear.png") as img:
        assert img.mode == "RGBA"
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert leftovers(sandbox) == ["tiny-images@1.0.0"]  # no .tgz, no temporaries


def test_second_fetch_reuses_the_cache_without_network(sandbox: Path, registry: Registry) -> None:
    data = tgz(TINY)
    pkg = pin(data)
    registry.serve(pkg, data)
    first = fetch_package(pkg, registry=registry.url)
    registry.stop()
    start = time.perf_counter()
    assert fetch_package(pkg, registry=registry.url) == first
    assert fetch_package(pkg, registry=closed_port_url()) == first
    assert time.perf_counter() - start < 1
    assert len(registry.requests) == 1


def test_registry_from_env_and_scoped_names(sandbox: Path, registry: Registry,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = tgz(TINY)
    pkg = pin(data, name="@iconify-json/game-icons", version="1.2.4")
    assert pkg.tarball_url("https://r.example/") == "https://r.example/@iconify-json/game-icons/-/game-icons-1.2.4.tgz"
    registry.serve(pkg, data)
    monkeypatch.setenv("LLMGAN_NPM_REGISTRY", registry.url + "/")
    folder = fetch_package(pkg)
    assert folder == sandbox / "packages" / "@iconify-json+game-icons@1.2.4"
    assert registry.requests[0][0] == "/@iconify-json/game-icons/-/game-icons-1.2.4.tgz"


def test_explicit_cache_argument(tmp_path: Path, sandbox: Path, registry: Registry) -> None:
    data = tgz(TINY)
    pkg = pin(data)
    registry.serve(pkg, data)
    folder = fetch_package(pkg, cache=tmp_path / "elsewhere", registry=registry.url)
    assert folder == tmp_path / "elsewhere" / "packages" / "tiny-images@1.0.0"
    assert leftovers(sandbox) == []


def test_integrity_mismatch_keeps_nothing(sandbox: Path, registry: Registry) -> None:
    data = tgz(TINY)
    good = pin(data)
    bad = pin(data + b"x")
    registry.serve(good, data)
    with pytest.raises(UserError) as err:
        fetch_package(bad, registry=registry.url)
    msg = str(err.value)
    assert "integrity" in msg and "expected sha512-" in msg and "got sha512-" in msg and "\n" not in msg
    assert base64.b64encode(hashlib.sha512(data).digest()).decode()[:16] in msg
    assert leftovers(sandbox) == []


def test_unreachable_registry_is_one_fast_line(sandbox: Path) -> None:
    url = closed_port_url()
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        fetch_package(pin(b"whatever"), registry=url)
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert url in msg and "LLMGAN_NPM_REGISTRY" in msg and "--cache-dir" in msg and "\n" not in msg
    assert leftovers(sandbox) == []


def test_credentials_are_sent_but_never_printed(sandbox: Path, registry: Registry) -> None:
    data = tgz(TINY)
    pkg = pin(data)
    registry.serve(pkg, data)
    authed = registry.url.replace("http://", f"http://reader:{SECRET}@")
    fetch_package(pkg, registry=authed)
    assert registry.requests[-1][1] == "Basic " + base64.b64encode(f"reader:{SECRET}".encode()).decode()
    for bad_url in (authed.replace(registry.url.rsplit(":", 1)[1], closed_port_url().rsplit(":", 1)[1]),):
        with pytest.raises(UserError) as err:
            fetch_package(pin(b"other", name="other"), registry=bad_url)
        assert SECRET not in str(err.value) and "reader" not in str(err.value)
    with pytest.raises(UserError) as err:
        fetch_package(pin(b"missing", name="missing"), registry=authed)
    assert "404" in str(err.value) and SECRET not in str(err.value)


def test_404_names_the_package(sandbox: Path, registry: Registry) -> None:
    with pytest.raises(UserError) as err:
        fetch_package(pin(b"x", name="no-such-package", version="9.9.9"), registry=registry.url)
    msg = str(err.value)
    assert "no-such-package@9.9.9 not found" in msg and registry.url in msg
    assert leftovers(sandbox) == []


@pytest.mark.parametrize("body", [b"this is not a tarball", tgz(TINY)[:-40], b"\x1f\x8b" + b"\0" * 64],
                         ids=["text", "truncated", "bad-gzip"])
def test_corrupt_tarball_keeps_nothing(sandbox: Path, registry: Registry, body: bytes) -> None:
    pkg = pin(body)  # the pin matches: the tarball itself is broken
    registry.serve(pkg, body)
    with pytest.raises(UserError) as err:
        fetch_package(pkg, registry=registry.url)
    assert "corrupt or unreadable" in str(err.value) and "\n" not in str(err.value)
    assert leftovers(sandbox) == []


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


@pytest.mark.parametrize("files,extra", [
    ({"package/../evil.txt": b"x"}, []),
    ({"package/img/../../evil.txt": b"x"}, []),
    ({"/tmp/evil.txt": b"x"}, []),
    ({}, [_link("package/link", "/etc/passwd", tarfile.SYMTYPE)]),
    ({"package/a.txt": b"x"}, [_link("package/hard", "package/a.txt", tarfile.LNKTYPE)]),
    ({}, [_device("package/tty")]),
    ({"evil.txt": b"x"}, []),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device", "top-level-file"])
def test_unsafe_members_are_refused(sandbox: Path, registry: Registry, tmp_path: Path,
                                    files: dict[str, bytes], extra: list[tarfile.TarInfo]) -> None:
    data = tgz({**TINY, **files}, extra)
    pkg = pin(data)
    registry.serve(pkg, data)
    with pytest.raises(UserError) as err:
        fetch_package(pkg, registry=registry.url)
    assert "unsafe member" in str(err.value)
    assert leftovers(sandbox) == []
    assert not (tmp_path / "evil.txt").exists() and not (sandbox / "evil.txt").exists()


def test_stale_temporaries_are_swept_fresh_ones_kept(sandbox: Path, registry: Registry) -> None:
    import os

    root = sandbox / "packages"
    root.mkdir(parents=True)
    stale, fresh = root / ".extract-old", root / ".download-new.tgz"
    stale.mkdir()
    (stale / "half.png").write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - 2 * packages.STALE_S
    os.utime(stale, (old, old))
    data = tgz(TINY)
    pkg = pin(data)
    registry.serve(pkg, data)
    fetch_package(pkg, registry=registry.url)
    assert leftovers(sandbox) == [".download-new.tgz", "tiny-images@1.0.0"]


def test_pins() -> None:
    assert set(EMOJI_PACKAGES) == {"google", "twitter"}
    for style, p in EMOJI_PACKAGES.items():
        assert p.name == f"emoji-datasource-{style}" and p.version == "16.0.0"
        assert p.integrity.startswith("sha512-") and p.attribution
    with pytest.raises(UserError):
        PinnedPackage("x", "1.0.0", "sha1-abc", "MIT", "")
    with pytest.raises(UserError):
        PinnedPackage("../x", "1.0.0", EMOJI_PACKAGES["google"].integrity, "MIT", "")


# ---------------------------------------------------------------- llmgan data emoji


def _heldout_label() -> str:
    """A concept whose twitter or google drawing the builder holds out (the split is a pure function of the name)."""
    from llmgan.data.emoji import heldout_style

    return next(f"concept{i}" for i in range(10_000) if heldout_style(f"concept{i}", ["google", "twitter"]))


def emoji_entries() -> list[dict[str, object]]:
    def entry(name: str, short: str, category: str, sub: str, image: str, order: int,
              google: bool = True, twitter: bool = True) -> dict[str, object]:
        return {"name": name, "short_name": short, "category": category, "subcategory": sub, "image": image,
                "has_img_google": google, "has_img_twitter": twitter, "sort_order": order}

    held = _heldout_label()
    return [
        entry("DOUGHNUT", "doughnut", "Food & Drink", "food-sweet", "1f369.png", 3),
        entry("GRINNING FACE", "grinning", "Smileys & Emotion", "face-smiling", "1f600.png", 1),
        entry("HEAVY BLACK HEART", "heart", "Smileys & Emotion", "heart", "2764-fe0f.png", 2),
        entry("EMOJI MODIFIER FITZPATRICK TYPE-1-2", "skin-tone-2", "Component", "skin-tone", "1f3fb.png", 4),
        entry("PIRATE FLAG", "pirate_flag", "Flags", "flag", "1f3f4-200d-2620-fe0f.png", 5, google=False),
        entry(held.upper(), held, "Objects", "tool", "held.png", 6),
    ]


def emoji_package(style: str, corrupt: str | None = None) -> bytes:
    """An emoji-datasource-{style} shaped tarball: package/emoji.json and package/img/{style}/64/*.png."""
    entries = emoji_entries()
    files = {"package/package.json": json.dumps({"name": f"emoji-datasource-{style}"}).encode(),
             "package/emoji.json": json.dumps(entries).encode()}
    for i, e in enumerate(entries):
        if e[f"has_img_{style}"]:
            body = b"\x89PNG\r\n\x1a\nnot really" if e["image"] == corrupt else png((40 * i, 200, 0, 128), 64)
            files[f"package/img/{style}/64/{e['image']}"] = body
    return tgz(files)


@pytest.fixture
def emoji_registry(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The registry serves both fixture packages under the real names, and the pins are swapped for theirs."""
    for style in ("google", "twitter"):
        data = emoji_package(style, corrupt="1f600.png" if style == "twitter" else None)
        real = EMOJI_PACKAGES[style]
        fixture = PinnedPackage(real.name, real.version, pin(data).integrity, real.license, real.attribution)
        monkeypatch.setitem(EMOJI_PACKAGES, style, fixture)
        registry.serve(fixture, data)
    return registry


def run_emoji(*args: str):  # noqa: ANN201
    from typer.testing import CliRunner

    from llmgan.cli.app import app

    return CliRunner().invoke(app, ["data", "emoji", *args])


def test_cli_emoji_writes_rgba_parquet_with_captions(sandbox: Path, emoji_registry: Registry,
                                                     tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "out" / "emoji.parquet"
    result = run_emoji("--out", str(out), "--size", "16", "--split", "all", "--registry", emoji_registry.url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    # google: doughnut, grinning, heart, held-out concept; twitter: the same + pirate flag, less the corrupt grinning
    assert lines[0].startswith("wrote 8 emoji images (16x16 RGBA, styles google+twitter, split all, ")
    assert "licences google Apache-2.0, twitter CC-BY-4.0" in lines[0] and "skipped 1 (corrupt image: 1)" in lines[0]
    table = pq.read_table(out)
    rows = table.to_pylist()
    assert len(rows) == 8
    assert {(r["style"], r["label"]) for r in rows} >= {("google", "doughnut"), ("twitter", "pirate_flag")}
    assert not any(r["category"] == "Component" for r in rows)
    doughnut = next(r for r in rows if r["label"] == "doughnut" and r["style"] == "twitter")
    assert doughnut["caption"] == "doughnut emoji, food sweet, twitter style"
    assert doughnut["license"] == "CC-BY-4.0" and "Twemoji" in doughnut["attribution"]
    assert doughnut["source"] == "emoji-datasource-twitter@16.0.0"
    for r in rows:
        with Image.open(io.BytesIO(r["image"])) as img:
            assert img.mode == "RGBA" and img.size == (16, 16)
    from llmgan.data.emoji import heldout_style

    both = {e["short_name"] for e in emoji_entries() if e["has_img_google"] and e["has_img_twitter"]}
    for r in rows:
        styles = ["google", "twitter"] if r["label"] in both else [r["style"]]
        assert r["split"] == ("heldout" if heldout_style(r["label"], styles) == r["style"] else "train")
    heldout = sum(r["split"] == "heldout" for r in rows)
    assert heldout >= 1 and (_heldout_label(), "heldout") in {(r["label"], r["split"]) for r in rows}
    assert len(emoji_registry.requests) == 2
    assert sorted(p.name for p in (sandbox / "packages").iterdir()) == [
        "emoji-datasource-google@16.0.0", "emoji-datasource-twitter@16.0.0"]

    # the default split leaves the held-out pair out; the packages come from the cache, the registry is gone
    emoji_registry.stop()
    result = run_emoji("--out", str(out), "--size", "16", "--registry", closed_port_url())
    assert result.exit_code == 0, result.output
    assert f"wrote {8 - heldout} emoji images" in result.stdout and "split train" in result.stdout
    assert set(pq.read_table(out).column("split").to_pylist()) == {"train"}


def test_cli_emoji_one_style_and_explicit_cache_dir(sandbox: Path, emoji_registry: Registry,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "out" / "google.parquet"
    result = run_emoji("--out", str(out), "--size", "8", "--styles", "google", "--cache-dir",
                       str(tmp_path / "mycache"), "--registry", emoji_registry.url)
    assert result.exit_code == 0, result.output
    assert "styles google," in result.stdout and "skipped" not in result.stdout
    assert (tmp_path / "mycache" / "packages" / "emoji-datasource-google@16.0.0" / "emoji.json").is_file()
    assert not (sandbox / "packages").exists()
    assert len(emoji_registry.requests) == 1


def test_cli_emoji_unreachable_registry_fails_cleanly(sandbox: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "emoji.parquet"
    url = closed_port_url()
    result = run_emoji("--out", str(out), "--registry", url)
    assert result.exit_code == 2
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot reach the npm registry " + url), result.stderr
    assert "Traceback" not in result.output and not out.exists()
    assert [p for p in (sandbox / "packages").iterdir()] == []


@pytest.mark.parametrize("args,message", [
    (["--styles", "google,apple"], "--styles: unknown style 'apple'"),
    (["--split", "test"], "--split must be one of"),
    (["--size", "512"], "--size must be between"),
    (["--registry", "ftp://mirror"], "npm registry must be an http(s) URL"),
], ids=["style", "split", "size", "registry"])
def test_cli_emoji_bad_options_fail_before_any_download(sandbox: Path, registry: Registry, tmp_path: Path,
                                                        args: list[str], message: str) -> None:
    out = tmp_path / "out" / "emoji.parquet"
    result = run_emoji("--out", str(out), *args, *(["--registry", registry.url] if "--registry" not in args else []))
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert registry.requests == [] and not out.exists()


def test_cli_emoji_output_folder_fails_before_any_download(sandbox: Path, registry: Registry,
                                                           tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    result = run_emoji("--out", str(tmp_path / "out"), "--registry", registry.url)
    assert result.exit_code == 2 and "is a directory" in result.stderr
    assert registry.requests == []
