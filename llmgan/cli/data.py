"""`llmgan data shapes|digits|prompt-pairs|emoji|game-icons`: the built-in datasets as Parquet (local path or s3://)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from llmgan.cli.common import OutFile, S3Endpoint, Seed, handle_errors, setup_logging
from llmgan.data.config import DigitsConfig, GameIconsConfig, ParquetOut, PromptPairsConfig, ShapesConfig
from llmgan.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa

# --size: both image datasets (the training and eval commands call it --image-size)
Size = Annotated[int, typer.Option("--size", help="Image side in pixels.")]

data_app = typer.Typer(
    help="Build the built-in captioned training datasets (shapes, digits, emoji, game icons) as Parquet.",
    no_args_is_help=True,
)


@contextmanager
def _bar(description: str, download: bool = False) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr (bytes and speed when `download`); yields `update(done, total=None)`."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    columns = (DownloadColumn(), TransferSpeedColumn()) if download else (MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(TextColumn("{task.description}"), BarColumn(), *columns, console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total=None: bar.update(task, completed=done, **({"total": total} if total else {}))


@contextmanager
def _progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A sample-count bar; yields a callback taking the number of samples done."""
    with _bar(description) as update:
        yield lambda done: update(done, total)


def _summary(kind: str, table: pa.Table, out: str, size: int, seconds: float, extra: str = "") -> str:
    mb = sum(len(b) for b in table["image"].to_pylist() if b) / 1e6
    return f"wrote {table.num_rows} {kind} images ({size}x{size}{extra}, {mb:.1f} MB of PNG) to {out} in {seconds:.1f}s"


@data_app.command("shapes")
@handle_errors
def shapes_command(
    n: Annotated[int, typer.Option("--n", help="Number of images.")],
    out: OutFile,
    size: Size = ShapesConfig.size,
    seed: Seed = ShapesConfig.seed,
    split: Annotated[str, typer.Option("--split", help="train (no held-out combinations), heldout, or all.")]
    = ShapesConfig.split,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Procedural shapes: one coloured shape per image, with a caption and a short prompt."""
    setup_logging()
    cfg, target = ShapesConfig(n=n, size=size, seed=seed, split=split), ParquetOut(out)
    from llmgan.data.tables import write_dataset
    from llmgan.domains import get_domain
    from llmgan.io.storage import Storage

    storage = Storage(s3_endpoint)
    storage.check_bucket(target.url)  # fail before the work, not after it
    start = time.perf_counter()
    with _progress("shapes", cfg.n) as progress:
        table = get_domain("shapes").datasets["shapes"](cfg, progress)
    write_dataset(table, target.url, storage)
    typer.echo(_summary("shapes", table, out, cfg.size, time.perf_counter() - start,
                        f", split {cfg.split}, seed {cfg.seed}"))


@data_app.command("prompt-pairs")
@handle_errors
def prompt_pairs_command(
    n: Annotated[int, typer.Option("--n", help="Number of (short prompt, caption) pairs.")],
    out: OutFile,
    seed: Seed = PromptPairsConfig.seed,
    detail: Annotated[float | None, typer.Option(
        "--detail", help="Shapes pairs: for half the pairs, the chance that the prompt states each of size, position, "
        f"background [default: {PromptPairsConfig.detail}].", show_default=False)] = None,
    split: Annotated[str, typer.Option("--split", help="all, train (no held-out rows or pairs) or heldout; with "
                                       "--from: the rows whose split column says so.")] = PromptPairsConfig.split,
    source: Annotated[str | None, typer.Option(
        "--from", help="A captioned Parquet file (local or s3://; a caption or text column, optionally short_prompt, "
        "name, style, split): pairs of its captions and short prompts drawn from each row's own words. Without it: "
        "shapes pairs.", show_default=False)] = None,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """(short prompt -> caption) pairs without images, training data for `llmgan train-lm`: shapes pairs, or with
    --from pairs from any captioned dataset."""
    setup_logging()
    from llmgan.data.tables import write_dataset
    from llmgan.io.storage import Storage

    storage = Storage(s3_endpoint)
    start = time.perf_counter()
    if source is not None:
        if detail is not None:
            raise UserError("--detail: applies to shapes pairs only (without --from)")
        cfg, target = PromptPairsConfig(n=n, seed=seed, split=split), ParquetOut(out)
        from llmgan.data.prompt_pairs import prompt_pairs_from, read_captioned

        storage.check_bucket(target.url)
        table = prompt_pairs_from(read_captioned(source, storage), cfg.n, cfg.seed, cfg.split, source)
        write_dataset(table, target.url, storage)
        rows = table.schema.metadata[b"llmgan.rows"].decode()
        typer.echo(f"wrote {table.num_rows} prompt pairs from {rows} rows of {source} (split {cfg.split}, seed "
                   f"{cfg.seed}) to {out} in {time.perf_counter() - start:.1f}s")
        return
    cfg = PromptPairsConfig(n=n, seed=seed, detail=PromptPairsConfig.detail if detail is None else detail, split=split)
    target = ParquetOut(out)
    from llmgan.domains import get_domain

    storage.check_bucket(target.url)
    table = get_domain("shapes").datasets["prompt-pairs"](cfg)
    write_dataset(table, target.url, storage)
    typer.echo(f"wrote {table.num_rows} prompt pairs (split {cfg.split}, seed {cfg.seed}, detail {cfg.detail}) "
               f"to {out} in {time.perf_counter() - start:.1f}s")


@data_app.command("digits")
@handle_errors
def digits_command(
    out: OutFile,
    size: Size = DigitsConfig.size,
    seed: Seed = DigitsConfig.seed,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Real handwritten digits (scikit-learn, 1,797 images, upscaled from 8x8) with measured thickness/slant
    captions; --seed picks the caption wording."""
    setup_logging()
    cfg, target = DigitsConfig(size=size, seed=seed), ParquetOut(out)
    from llmgan.data.tables import write_dataset
    from llmgan.domains import get_domain
    from llmgan.io.storage import Storage

    storage = Storage(s3_endpoint)
    storage.check_bucket(target.url)
    start = time.perf_counter()
    with _progress("digits", 1797) as progress:
        table = get_domain("digits").datasets["digits"](cfg, progress)
    write_dataset(table, target.url, storage)
    typer.echo(_summary("digits", table, out, cfg.size, time.perf_counter() - start))


def _styles(styles: str) -> list[str]:
    """`google,twitter` -> ["google", "twitter"] (order kept, duplicates dropped); unknown styles are a UserError."""
    from llmgan.io.packages import EMOJI_PACKAGES

    chosen = list(dict.fromkeys(s.strip() for s in styles.split(",") if s.strip()))
    unknown = [s for s in chosen if s not in EMOJI_PACKAGES]
    if unknown or not chosen:
        raise UserError(f"--styles: unknown style {unknown[0]!r}; choose from {', '.join(EMOJI_PACKAGES)}" if unknown
                        else f"--styles: choose at least one of {', '.join(EMOJI_PACKAGES)}")
    return chosen


# the options of the commands that fetch a pinned npm package
PackageCache = Annotated[str | None, typer.Option("--cache-dir", help="Cache folder for the fetched packages (default: "
                                                  "$LLMGAN_CACHE_DIR, else ~/.cache/llmgan).")]
Registry = Annotated[str | None, typer.Option("--registry", help="npm registry URL (default: $LLMGAN_NPM_REGISTRY, "
                                              "else https://registry.npmjs.org).")]


@data_app.command("emoji")
@handle_errors
def emoji_command(
    out: OutFile,
    size: Size = 64,
    styles: Annotated[str, typer.Option("--styles", help="Comma-separated drawing styles: google (Noto Emoji, "
                                        "Apache-2.0), twitter (Twemoji, CC-BY-4.0).")] = "google,twitter",
    split: Annotated[str, typer.Option("--split", help="train (no held-out concept x style pairs), heldout, or "
                                       "all.")] = "train",
    cache_dir: PackageCache = None,
    registry: Registry = None,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Real emoji (64 px RGBA, from the pinned emoji-datasource npm packages, fetched once into the cache folder
    and integrity-checked) captioned from their Unicode names; every row carries its licence and attribution."""
    setup_logging()
    from llmgan.data.config import MIN_SIZE, SPLITS

    chosen = _styles(styles)
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not MIN_SIZE <= size <= 256:  # the builder's limit: 64 px sources, at most 4x up
        raise UserError(f"--size must be between {MIN_SIZE} and 256 pixels, got {size}")
    target = ParquetOut(out)
    from llmgan.data.emoji import build_emoji_dataset
    from llmgan.data.tables import write_dataset
    from llmgan.io.packages import EMOJI_PACKAGES, fetch_package, registry_url
    from llmgan.io.storage import Storage

    storage = Storage(s3_endpoint)
    storage.check_bucket(target.url)  # fail before the download, not after it
    registry = registry_url(registry)  # a malformed --registry fails before anything else
    start = time.perf_counter()
    found = {}
    for style in chosen:
        pin = EMOJI_PACKAGES[style]
        with _bar(f"{pin.name}@{pin.version}", download=True) as progress:
            folder = fetch_package(pin, cache_dir, registry, progress)
        found[style] = (folder, f"{pin.name}@{pin.version}", pin.license, pin.attribution)
    with _progress("emoji", None) as progress:
        table, skipped = build_emoji_dataset(found, size=size, split=split, progress=progress)
    write_dataset(table, target.url, storage)
    licences = ", ".join(f"{style} {EMOJI_PACKAGES[style].license}" for style in chosen)
    dropped = sum(skipped.values())
    why = f"; skipped {dropped} ({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})" if dropped else ""
    typer.echo(_summary("emoji", table, out, size, time.perf_counter() - start,
                        f" RGBA, styles {'+'.join(chosen)}, split {split}") + f"; licences {licences}{why}")


@data_app.command("game-icons")
@handle_errors
def game_icons_command(
    out: OutFile,
    size: Size = GameIconsConfig.size,
    split: Annotated[str, typer.Option("--split", help="train (no held-out pairings or combinations), heldout, or "
                                       "all.")] = GameIconsConfig.split,
    pairings: Annotated[int, typer.Option("--pairings", help="Training rows per icon, each in another (colour, "
                                          "background) pairing.")] = GameIconsConfig.pairings,
    heldout_rows: Annotated[int, typer.Option("--heldout-rows", help="Held-out rows per icon: 0, 1 (an unseen pairing "
                                              "or an unseen icon x pairing combination) or 2 (both).")]
    = GameIconsConfig.heldout_rows,
    icons: Annotated[str | None, typer.Option("--icons", help="Only these icons: a named set (items: 75 classic "
                                              "inventory items), comma-separated names, or @FILE (one name a line). "
                                              "Default: all.")] = None,
    cache_dir: PackageCache = None,
    registry: Registry = None,
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Real game icons (game-icons.net, CC BY 3.0, from the pinned @iconify-json/game-icons npm package, fetched once
    into the cache folder and integrity-checked): SVG silhouettes rasterised RGBA and recoloured in (colour,
    background) pairings, captioned from their names ("crossed swords icon, red on a black background")."""
    setup_logging()
    from llmgan.data.game_icons import build_game_icons_dataset, check_config, parse_icons
    from llmgan.data.tables import write_dataset
    from llmgan.io.packages import GAME_ICONS_PACKAGE as pin
    from llmgan.io.packages import fetch_package, registry_url
    from llmgan.io.storage import Storage

    cfg = GameIconsConfig(size=size, split=split, pairings=pairings, heldout_rows=heldout_rows,
                          icons=parse_icons(icons))
    target = ParquetOut(out)

    check_config(cfg)
    storage = Storage(s3_endpoint)
    storage.check_bucket(target.url)  # fail before the download, not after it
    registry = registry_url(registry)
    start = time.perf_counter()
    with _bar(f"{pin.name}@{pin.version}", download=True) as progress:
        folder = fetch_package(pin, cache_dir, registry, progress)
    with _progress("game icons", None) as progress:
        table, skipped = build_game_icons_dataset(folder, cfg, f"{pin.name}@{pin.version}", pin.license,
                                                  pin.attribution, progress)
    write_dataset(table, target.url, storage)
    icons = len(set(table.column("label").to_pylist()))
    dropped = sum(skipped.values())
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
    why = f"; skipped {dropped} icon{'s' * (dropped != 1)} ({reasons})" if dropped else ""
    typer.echo(_summary("game-icons", table, out, cfg.size, time.perf_counter() - start,
                        f" RGBA, {icons} icon{'s' * (icons != 1)}, split {cfg.split}") + f"; licence {pin.license}{why}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
