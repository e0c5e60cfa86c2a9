"""The game-icons dataset (llmgan.data.game_icons), its colour / background judge (llmgan.eval.color_judge) and
`llmgan data game-icons`, against a tiny package-shaped fixture served from 127.0.0.1: never the network."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from llmgan.data import game_icons as gi
from llmgan.data.config import GameIconsConfig
from llmgan.errors import UserError
from llmgan.eval.color_judge import judge_accuracy, judge_image, judge_images
from llmgan.io import packages
from llmgan.io.packages import GAME_ICONS_PACKAGE, PinnedPackage
from tests.test_packages import Registry, closed_port_url, leftovers, pin, registry, sandbox, tgz  # noqa: F401

SQUARE = '<path fill="currentColor" d="M16 16h32v32H16z"/>'
ICONS = {
    "crossed-swords": {"body": SQUARE},
    "round-shield": {"body": '<path fill="currentColor" d="M12 32a20 20 0 1 0 40 0a20 20 0 1 0-40 0"/>'},
    "framed-hole": {"body": '<path fill="currentColor" fill-rule="evenodd" d="M8 8h48v48H8zM24 24h16v16H24z"/>'},
    "broken": {"body": '<path fill="currentColor" d="M10 10L"/>'},
    "circle-tag": {"body": '<circle cx="32" cy="32" r="9"/>'},
    "old-name": {"body": SQUARE, "hidden": True},
}
GOOD = ("crossed-swords", "framed-hole", "round-shield")


def package_files(icons: dict[str, dict[str, object]] = ICONS) -> dict[str, bytes]:
    return {
        "package/package.json": json.dumps({"name": "@iconify-json/game-icons", "version": "1.2.4"}).encode(),
        "package/icons.json": json.dumps({"prefix": "game-icons", "icons": icons, "width": 64, "height": 64}).encode(),
        "package/info.json": json.dumps({"name": "Game Icons", "author": {"name": "GameIcons"}}).encode(),
        "package/metadata.json": json.dumps({"categories": {"Weapons": ["crossed-swords", "round-shield"],
                                                            "Armour": ["round-shield"]}}).encode(),
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The fixture package as fetch_package leaves it: the tarball's package/ folder."""
    for name, body in package_files().items():
        path = tmp_path / "pkg" / name.removeprefix("package/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return tmp_path / "pkg"


@pytest.fixture
def icons_registry(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:  # noqa: F811
    """The registry serves the fixture under the real name, and the pin is swapped for the fixture's integrity."""
    data = tgz(package_files())
    real = GAME_ICONS_PACKAGE
    fixture = PinnedPackage(real.name, real.version, pin(data).integrity, real.license, real.attribution)
    monkeypatch.setattr(packages, "GAME_ICONS_PACKAGE", fixture)
    registry.serve(fixture, data)
    return registry


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "RGBA"
        return np.asarray(img)


# ---------------------------------------------------------------- pairings and the held-out rule


def test_palette_is_the_shapes_palette_and_known_colour_words() -> None:
    from llmgan.domains.colors import lookup
    from llmgan.domains.shapes import vocab

    for name, rgb in vocab.COLORS.items():
        assert gi.COLORS[name] == rgb
    for name, rgb in vocab.BACKGROUNDS.items():
        assert gi.BACKGROUNDS[name] == rgb
    words = [*gi.COLORS, *(b for b in gi.BACKGROUNDS if b != gi.TRANSPARENT)]
    assert all(lookup(word) is not None for word in words)  # surveyed colour words
    assert all(c != b for c, b in gi.PAIRINGS) and len(gi.PAIRINGS) == len(set(gi.PAIRINGS))


def test_heldout_pairings_leave_every_colour_and_background_in_training() -> None:
    held = gi.heldout_pairings()
    assert held == gi.heldout_pairings() and len(held) == len(gi.BACKGROUNDS)
    assert {b for _, b in held} == set(gi.BACKGROUNDS) and len({c for c, _ in held}) == len(held)
    training = [p for p in gi.PAIRINGS if p not in held]
    assert {c for c, _ in training} == set(gi.COLORS) and {b for _, b in training} == set(gi.BACKGROUNDS)


def test_rows_follow_the_heldout_rule_whatever_the_counts() -> None:
    names = [f"icon-{i}" for i in range(300)]
    kinds = set()
    for name in names:
        reserved = gi.reserved_pairing(name)
        small, large = gi.rows_of(name, 3, 1), gi.rows_of(name, 10, 2)
        assert small[:3] == large[:3] and small[3] in large[10:]  # more pairings extend, never reshuffle
        for color, background, kind in large:
            pairing = (color, background)
            assert gi.split_of(name, color, background) == ("heldout" if kind else "train")
            if not kind:
                assert pairing not in gi.heldout_pairings() and pairing != reserved
            elif kind == "pairing":
                assert pairing in gi.heldout_pairings()
            else:
                assert pairing == reserved
        assert len({(c, b) for c, b, _ in large}) == len(large) == 12
        kinds.add(small[3][2])
    assert kinds == {"pairing", "combination"}
    # an unseen combination trains for other icons
    trained = {(c, b) for name in names for c, b, k in gi.rows_of(name, 3, 0)}
    assert all(gi.reserved_pairing(name) in trained for name in names[:20])


def test_captions_and_short_prompts() -> None:
    assert gi.caption_of("crossed-swords", "red", "black") == "crossed swords icon, red on a black background"
    assert gi.caption_of("crossed-swords", "red", "transparent", "weapons") == \
        "crossed swords icon, weapons, red on a transparent background"
    prompts = {gi.short_prompt_of(f"icon-{i}", "red", "black") for i in range(40)}
    assert {"icon 1", "red icon 1", "red icon 1 on black"} & prompts
    assert any(p.startswith("red ") and p.endswith(" on black") for p in prompts)
    assert gi.short_prompt_of("x", "red", "transparent") in ("x", "red x", "red x on a transparent background")


# ---------------------------------------------------------------- the builder


def test_build_all_splits_counts_skips_and_keeps_rgba(folder: Path) -> None:
    table, skipped = gi.build_game_icons_dataset(folder, GameIconsConfig(size=16, split="all"))
    assert skipped == {"corrupt svg": 1, "hidden (a deprecated name)": 1, "unsupported svg (<circle> element)": 1}
    rows = table.to_pylist()
    assert len(rows) == len(GOOD) * 4 and sorted({r["label"] for r in rows}) == sorted(GOOD)
    assert sum(r["split"] == "train" for r in rows) == len(GOOD) * 3
    for r in rows:
        assert r["split"] == gi.split_of(r["label"], r["color"], r["background"])
        assert r["caption"] == gi.caption_of(r["label"], r["color"], r["background"], r["category"])
        assert r["license"] == "CC-BY-3.0" and "game-icons.net" in r["attribution"]
        assert r["source"] == "@iconify-json/game-icons@1.2.4"
        img = decode(r["image"])
        assert img.shape == (16, 16, 4)
        if r["background"] == "transparent":
            assert img[0, 0, 3] == 0 and img[8, 8, 3] == (0 if r["label"] == "framed-hole" else 255)
            assert (img[..., :3][img[..., 3] == 0] == 0).all()
        else:
            assert (img[..., 3] == 255).all()
            assert tuple(img[0, 0, :3]) == gi.BACKGROUNDS[r["background"]]
    swords = next(r for r in rows if r["label"] == "crossed-swords")
    assert swords["category"] == "weapons" and ", weapons, " in swords["caption"]
    assert next(r for r in rows if r["label"] == "round-shield")["category"] == "armour, weapons"
    meta = table.schema.metadata
    assert meta[b"llmgan.dataset"] == b"game-icons" and b"CC-BY-3.0" in meta[b"llmgan.licenses"]


def test_build_is_deterministic_and_splits_partition(folder: Path) -> None:
    everything, _ = gi.build_game_icons_dataset(folder, GameIconsConfig(size=16, split="all"))
    again, _ = gi.build_game_icons_dataset(folder, GameIconsConfig(size=16, split="all"))
    assert everything.equals(again)
    train, _ = gi.build_game_icons_dataset(folder, GameIconsConfig(size=16, split="train"))
    held, _ = gi.build_game_icons_dataset(folder, GameIconsConfig(size=16, split="heldout", heldout_rows=2))
    assert set(train.column("split").to_pylist()) == {"train"} and set(held.column("split").to_pylist()) == {"heldout"}
    assert train.num_rows == 9 and held.num_rows == 6
    pairs = {(r["label"], r["color"], r["background"]) for r in train.drop_columns(["image"]).to_pylist()}
    for r in held.drop_columns(["image"]).to_pylist():
        assert (r["label"], r["color"], r["background"]) not in pairs
        if r["heldout_kind"] == "pairing":
            assert all((c, b) != (r["color"], r["background"]) for _, c, b in pairs)


def test_build_errors(tmp_path: Path, folder: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "icons.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable Iconify JSON file"):
        gi.build_game_icons_dataset(tmp_path / "bad")
    (folder / "icons.json").write_text(json.dumps({"icons": {"broken": ICONS["broken"]}, "width": 64, "height": 64}))
    with pytest.raises(UserError, match=r"no usable game icons \(corrupt svg: 1\)"):
        gi.build_game_icons_dataset(folder)
    with pytest.raises(UserError, match="--pairings must be at most"):
        gi.build_game_icons_dataset(folder, GameIconsConfig(pairings=gi.max_pairings() + 1))


def test_an_icon_subset_holds_out_exactly_the_full_builds_rows(folder: Path) -> None:
    full, _ = gi.build_game_icons_dataset(folder, GameIconsConfig(size=16, split="all", heldout_rows=2))
    subset = ("round-shield", "crossed-swords")
    part, skipped = gi.build_game_icons_dataset(folder, GameIconsConfig(size=16, split="all", heldout_rows=2,
                                                                        icons=subset))
    assert skipped == {} and part.schema.metadata[b"llmgan.icons"] == b"round-shield,crossed-swords"
    want = full.filter(pc.is_in(full.column("label"), pa.array(subset)))
    assert part.num_rows == 10 and part.replace_schema_metadata(None).sort_by("caption").equals(
        want.replace_schema_metadata(None).sort_by("caption"))
    with pytest.raises(UserError, match=r"--icons: 2 names not in the package: no-such-icon, zzz"):
        gi.build_game_icons_dataset(folder, GameIconsConfig(icons=("zzz", "crossed-swords", "no-such-icon")))


def test_parse_icons_reads_a_named_set_a_list_or_a_file(tmp_path: Path) -> None:
    assert gi.parse_icons(None) is None
    items = gi.parse_icons("items")
    assert items is not None and len(items) == len(set(items)) == 75 and "crossed-swords" in items
    assert gi.parse_icons(" key, crown ,,key") == ("key", "crown")
    listing = tmp_path / "mine.txt"
    listing.write_text("# my set\nkey\n\ncrown  # the king's\n")
    assert gi.parse_icons(f"@{listing}") == ("key", "crown")
    with pytest.raises(UserError, match=r"--icons @.*missing.txt: cannot read the file \(FileNotFoundError\)"):
        gi.parse_icons(f"@{tmp_path / 'missing.txt'}")


def test_rows_round_trip_through_the_training_reader(folder: Path, tmp_path: Path) -> None:
    from llmgan.data.readers import load_captioned
    from llmgan.data.tables import write_dataset

    table, _ = gi.build_game_icons_dataset(folder, GameIconsConfig(size=16, split="all"))
    write_dataset(table, str(tmp_path / "icons.parquet"))
    data = load_captioned(str(tmp_path / "icons.parquet"), 16, channels=None)
    assert data.images.shape == (table.num_rows, 16, 16, 4)  # transparent rows: the reader keeps alpha
    assert data.captions == table.column("caption").to_pylist()
    for key in ("label", "color", "background"):
        assert data.labels[key] == table.column(key).to_pylist()
    top = json.loads((folder / "icons.json").read_text())
    for i, r in enumerate(table.drop_columns(["image"]).to_pylist()):
        expected = gi.compose(gi.draw_icon(ICONS[r["label"]], top, 16), r["color"], r["background"])
        assert np.array_equal(data.images[i], expected)


# ---------------------------------------------------------------- the judge


def test_judge_names_every_pairing_of_a_synthetic_icon() -> None:
    alpha = gi.draw_icon({"body": ICONS["round-shield"]["body"]}, {"width": 64, "height": 64}, 32)
    images = [gi.compose(alpha, c, b) for c, b in gi.PAIRINGS]
    verdicts = judge_images(images)
    assert judge_accuracy(verdicts, [c for c, _ in gi.PAIRINGS], [b for _, b in gi.PAIRINGS]) == {
        "color": 1.0, "background": 1.0, "both": 1.0, "n": float(len(gi.PAIRINGS))}
    # RGB input (no alpha) and noise, as a generator's output might have
    rng = np.random.default_rng(0)
    for (c, b), img in zip(gi.PAIRINGS, images):
        if b == "transparent":
            continue
        noisy = np.clip(img[..., :3] + rng.normal(0, 12, img[..., :3].shape), 0, 255).astype(np.uint8)
        v = judge_image(noisy)
        assert (v.color, v.background) == (c, b)


def test_judge_edge_cases() -> None:
    empty = np.zeros((16, 16, 4), np.uint8)
    assert judge_image(empty).color == "" and judge_image(empty).background == "transparent"
    flat = np.full((16, 16, 3), (20, 25, 80), np.uint8)
    v = judge_image(flat)
    assert (v.color, v.background) == ("", "navy")
    off = np.full((16, 16, 3), (15, 15, 15), np.uint8)
    off[4:12, 4:12] = (255, 105, 180)  # hot pink: named, but far from every palette colour
    v = judge_image(off)
    assert v.background == "black" and v.color_distance > 20
    with pytest.raises(ValueError, match="square"):
        judge_image(np.zeros((8, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="as many"):
        judge_accuracy([v], ["red", "blue"], ["black"])


# ---------------------------------------------------------------- llmgan data game-icons


def run_icons(*args: str):  # noqa: ANN201
    from typer.testing import CliRunner

    from llmgan.cli.app import app

    return CliRunner().invoke(app, ["data", "game-icons", *args])


def test_cli_writes_rgba_parquet_then_reuses_the_cache(sandbox: Path, icons_registry: Registry,  # noqa: F811
                                                      tmp_path: Path) -> None:
    out = tmp_path / "out" / "icons.parquet"
    result = run_icons("--out", str(out), "--size", "16", "--split", "all", "--registry", icons_registry.url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wrote 12 game-icons images (16x16 RGBA, 3 icons, split all, ")
    assert lines[0].endswith("; licence CC-BY-3.0; skipped 3 icons (corrupt svg: 1, hidden (a deprecated name): 1, "
                             "unsupported svg (<circle> element): 1)")
    table = pq.read_table(out)
    assert table.num_rows == 12 and table.schema.metadata[b"llmgan.split"] == b"all"
    assert leftovers(sandbox) == ["@iconify-json+game-icons@1.2.4"] and len(icons_registry.requests) == 1

    icons_registry.stop()  # the default split from the cache, with the registry gone
    result = run_icons("--out", str(out), "--size", "16", "--pairings", "2", "--registry", closed_port_url())
    assert result.exit_code == 0, result.output
    assert "wrote 6 game-icons images" in result.stdout and "split train" in result.stdout
    assert set(pq.read_table(out).column("split").to_pylist()) == {"train"}
    result = run_icons("--out", str(out), "--size", "16", "--icons", "round-shield", "--registry", closed_port_url())
    assert result.exit_code == 0 and "wrote 3 game-icons images (16x16 RGBA, 1 icon," in result.stdout, result.output
    result = run_icons("--out", str(out), "--icons", "round-shield,nope", "--registry", closed_port_url())
    assert result.exit_code == 2 and result.stderr.strip() == "error: --icons: 1 name not in the package: nope"


def test_cli_unreachable_registry_fails_cleanly(sandbox: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "out" / "icons.parquet"
    url = closed_port_url()
    result = run_icons("--out", str(out), "--registry", url)
    assert result.exit_code == 2 and "Traceback" not in result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot reach the npm registry " + url), result.stderr
    assert not out.exists() and leftovers(sandbox) == []


def test_cli_integrity_mismatch_fails_cleanly(sandbox: Path, icons_registry: Registry,  # noqa: F811
                                              tmp_path: Path) -> None:
    icons_registry.serve(packages.GAME_ICONS_PACKAGE, tgz(package_files({"evil": {"body": SQUARE}})))
    out = tmp_path / "out" / "icons.parquet"
    result = run_icons("--out", str(out), "--registry", icons_registry.url)
    assert result.exit_code == 2
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: integrity check failed for @iconify-json/game-icons@1.2.4")
    assert not out.exists() and leftovers(sandbox) == []


@pytest.mark.parametrize("args,message", [
    (["--split", "test"], "--split must be one of"),
    (["--size", "512"], "--size must be between"),
    (["--pairings", "0"], "--pairings must be at least 1"),
    (["--pairings", "99"], "--pairings must be at most"),
    (["--heldout-rows", "3"], "--heldout-rows must be 0, 1 or 2"),
    (["--registry", "ftp://mirror"], "npm registry must be an http(s) URL"),
    (["--icons", " , "], "--icons names no icon"),
    (["--icons", "@no-such-list.txt"], "cannot read the file"),
], ids=["split", "size", "pairings-low", "pairings-high", "heldout", "registry", "icons-empty", "icons-file"])
def test_cli_bad_options_fail_before_any_download(sandbox: Path, registry: Registry, tmp_path: Path,  # noqa: F811
                                                  args: list[str], message: str) -> None:
    out = tmp_path / "out" / "icons.parquet"
    result = run_icons("--out", str(out), *args, *(["--registry", registry.url] if "--registry" not in args else []))
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert registry.requests == [] and not out.exists()


def test_cli_writes_to_s3(sandbox: Path, icons_registry: Registry, s3_server: str, s3_url: str) -> None:  # noqa: F811
    from llmgan.io.storage import Storage

    url = f"{s3_url}/icons.parquet"
    result = run_icons("--out", url, "--size", "8", "--registry", icons_registry.url, "--s3-endpoint", s3_server)
    assert result.exit_code == 0, result.output
    table = pq.read_table(io.BytesIO(Storage(s3_server).read_bytes(url)))
    assert table.num_rows == 9 and set(table.column("split").to_pylist()) == {"train"}


def test_benchmark_figures_of_icon_captions(folder: Path) -> None:
    """benchmarks.expand --captioned on game icons: its prompt sets and how it scores captions."""
    from benchmarks.expand import icon_caption_figures, icon_prompt_sets

    table, _ = gi.build_game_icons_dataset(folder, GameIconsConfig(size=16, split="all", heldout_rows=2))
    rows = table.drop_columns(["image"]).to_pylist()
    sets = icon_prompt_sets(rows, n_train=4, seed=0)
    held = [r for r in rows if r["split"] == "heldout"]
    full = sets["held-out colour + background"]
    assert len(full) == len(sets["held-out name only"]) == len(held) == 6 and len(sets["train sample"]) == 4
    assert all(it["color"] in it["prompt"] and it["name"] in it["prompt"] for it in full)
    assert {it["prompt"] for it in sets["held-out name only"]} == {"crossed swords", "framed hole", "round shield"}
    for it in sets["train sample"]:  # what a drawn prompt states is what the figures hold it to
        assert it["color"] is None or it["color"] in it["prompt"]
    item = {"name": "crossed swords", "color": "red", "background": "transparent"}
    caps = ["crossed swords icon, red on a transparent background",
            "crossed swords icon, weapons, red on a black background",
            "crossed icon, red on a transparent background", "crossed swords icon, mauve on a transparent background",
            "red crossed swords"]
    f = icon_caption_figures([item], [caps], {"red", "black"}, {"transparent", "black"})
    assert f == {"captions": 5, "name_exact": 0.6, "color_prompts": 5, "color_kept": 0.6, "background_prompts": 5,
                 "background_kept": 0.6, "well_formed": 0.6}
    unstated = icon_caption_figures([{**item, "color": None, "background": None}], [caps[:1]], {"red"},
                                    {"transparent"})
    assert unstated["color_prompts"] == unstated["background_prompts"] == 0 and unstated["well_formed"] == 1.0
