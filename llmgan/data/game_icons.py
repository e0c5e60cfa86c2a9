"""The game-icons dataset: the one-colour SVG icons of game-icons.net (the @iconify-json/game-icons npm package),
rasterised as silhouettes and recoloured in (colour, background) pairings, RGBA, with a held-out split.

Caption: "crossed swords icon, red on a black background" (the package's categories after the name when it has
any). Short prompt: the name, "red crossed swords" or "red crossed swords on black", in the `short_prompt` column.
`label` is the icon's name ("crossed-swords"); `color` and `background` are the pairing ("transparent": alpha 0
outside the silhouette). Every row carries the licence and attribution.

Held out, as pure functions of names (never of build options, so any build holds out the same rows):
- a fixed set of pairings, one per background, each in a different colour (`heldout_pairings()`), that no icon ever
  trains in (every colour and background still trains in other pairings);
- per icon, one more pairing (`reserved_pairing(icon)`) the icon never trains in, though other icons do.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from llmgan.data.config import GameIconsConfig
from llmgan.errors import UserError
from llmgan.io.images import png_bytes
from llmgan.io.packages import GAME_ICONS_PACKAGE
from llmgan.io.svg import SvgError, UnsupportedSvg, rasterize_body

log = logging.getLogger(__name__)

RGB = tuple[int, int, int]
# the shapes domain's colours and backgrounds (same words, same sRGB: one meaning of "red" across datasets) plus black
# icons and a white background, the classic icon looks
COLORS: dict[str, RGB] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 230), "yellow": (240, 220, 40),
    "purple": (150, 60, 200), "orange": (245, 140, 30), "white": (240, 240, 240), "cyan": (40, 210, 220),
    "black": (15, 15, 15),
}
TRANSPARENT = "transparent"
BACKGROUNDS: dict[str, RGB | None] = {
    TRANSPARENT: None, "black": (15, 15, 15), "white": (240, 240, 240), "gray": (110, 110, 110),
    "navy": (20, 25, 80), "dark green": (20, 70, 30),
}
PAIRINGS: tuple[tuple[str, str], ...] = tuple((c, b) for b in BACKGROUNDS for c in COLORS if c != b)
HELDOUT_KINDS = ("pairing", "combination")
ICONIFY_DEFAULT_SIDE = 16  # IconifyJSON's default width and height
_UNSUPPORTED_KEYS = ("rotate", "hFlip", "vFlip")  # per-icon transforms (none in the pinned package)
MAX_LOGGED_SKIPS = 20
# `--icons items`: 75 classic inventory and scene items with distinct silhouettes (chosen by name, before any training,
# as a studio would pick its own set); the size of set a GAN trained on two CPU cores for an afternoon can learn
ICON_SETS: dict[str, tuple[str, ...]] = {"items": tuple("""
    anchor arrow-cluster battle-axe beer-stein bottle-vapors bow-arrow bread broadsword campfire candle-flame carrot
    castle cat cauldron cheese-wedge chest clownfish coins crossed-bones crossed-swords crown crystal-ball death-skull
    dice-six-faces-five dragon-head feather fire flame ghost gems gold-bar hanging-spider heart-bottle heart-inside
    helmet horse-head hourglass house key lantern-flame leather-boot magic-potion maple-leaf meat moon mushroom
    open-book open-treasure-chest padlock palm-tree pine-tree plain-dagger pocket-bow potion-ball rabbit ring
    ringing-bell round-shield sailboat scroll-unfurled shield shiny-apple spell-book star-formation stone-tower sun
    torch trident visored-helm war-axe warhammer water-drop wine-bottle wizard-staff wolf-head""".split())}

SCHEMA = pa.schema([
    ("image", pa.binary()), ("caption", pa.string()), ("short_prompt", pa.string()), ("label", pa.string()),
    ("color", pa.string()), ("background", pa.string()), ("category", pa.string()), ("split", pa.string()),
    ("heldout_kind", pa.string()), ("license", pa.string()), ("attribution", pa.string()), ("source", pa.string()),
])


def _rank(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


@functools.cache
def heldout_pairings() -> tuple[tuple[str, str], ...]:
    """The pairings no icon trains in: for each background, the colour ranked first by hash among those not yet used."""
    used: set[str] = set()
    out = []
    for bg in BACKGROUNDS:
        free = [c for c in COLORS if c != bg and c not in used]
        colour = min(free, key=lambda c: _rank(f"game-icons-pairing:{c}/{bg}"))
        used.add(colour)
        out.append((colour, bg))
    return tuple(out)


@functools.cache
def _training_pairings() -> tuple[tuple[str, str], ...]:
    held = set(heldout_pairings())
    return tuple(p for p in PAIRINGS if p not in held)


def max_pairings() -> int:
    """The most training pairings an icon can have (all but the held-out ones and its reserved one)."""
    return len(_training_pairings()) - 1


def pairing_order(icon: str) -> list[tuple[str, str]]:
    """The icon's training-set pairings in its own hash order: the first is reserved (held out), the next train."""
    return sorted(_training_pairings(), key=lambda p: _rank(f"game-icons:{icon}:{p[0]}/{p[1]}"))


def reserved_pairing(icon: str) -> tuple[str, str]:
    """The pairing this icon never trains in although other icons do: its unseen combination."""
    return pairing_order(icon)[0]


def split_of(icon: str, color: str, background: str) -> str:
    """"heldout" for a held-out pairing or the icon's reserved pairing, else "train"."""
    pairing = (color, background)
    return "heldout" if pairing in heldout_pairings() or pairing == reserved_pairing(icon) else "train"


def rows_of(icon: str, pairings: int, heldout_rows: int) -> list[tuple[str, str, str]]:
    """(color, background, heldout kind or "") of the rows an icon gets: `pairings` training pairings, then up to two
    held-out rows, the kind first decided by the icon's hash."""
    order = pairing_order(icon)
    rows = [(c, b, "") for c, b in order[1:1 + pairings]]
    kinds = HELDOUT_KINDS if _rank(f"game-icons-kind:{icon}") % 2 == 0 else HELDOUT_KINDS[::-1]
    for kind in kinds[:heldout_rows]:
        if kind == "combination":
            c, b = order[0]
        else:
            c, b = min(heldout_pairings(), key=lambda p: _rank(f"game-icons-heldout:{icon}:{p[0]}/{p[1]}"))
        rows.append((c, b, kind))
    return rows


def icon_words(icon: str) -> str:
    """'crossed-swords' -> 'crossed swords'."""
    return " ".join(icon.replace("-", " ").replace("_", " ").split())


def background_words(background: str) -> str:
    return "a transparent background" if background == TRANSPARENT else f"a {background} background"


def caption_of(icon: str, color: str, background: str, categories: str = "") -> str:
    middle = f", {categories}" if categories else ""
    return f"{icon_words(icon)} icon{middle}, {color} on {background_words(background)}"


def short_prompt_of(icon: str, color: str, background: str) -> str:
    """What a user might type: the name, with the colour, or with colour and background (by hash)."""
    name = icon_words(icon)
    form = _rank(f"game-icons-prompt:{icon}:{color}/{background}") % 3
    if form == 0:
        return name
    if form == 1:
        return f"{color} {name}"
    return f"{color} {name} on " + (background_words(background) if background == TRANSPARENT else background)


def compose(alpha: np.ndarray, color: str, background: str) -> np.ndarray:
    """A uint8 coverage mask (S, S) -> RGBA (S, S, 4): the colour over the background, or alone with alpha = coverage
    (and RGB 0 where alpha is 0, the readers' canonical "nothing here") on a transparent background."""
    fg = np.array(COLORS[color], dtype=np.float32)
    bg = BACKGROUNDS[background]
    out = np.empty((*alpha.shape, 4), dtype=np.uint8)
    if bg is None:
        out[..., :3] = np.where(alpha[..., None] > 0, fg.astype(np.uint8), 0)
        out[..., 3] = alpha
    else:
        a = alpha[..., None].astype(np.float32) / 255.0
        out[..., :3] = np.rint(a * fg + (1 - a) * np.array(bg, dtype=np.float32)).astype(np.uint8)
        out[..., 3] = 255
    return out


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file() and not required:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable Iconify JSON file ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a readable Iconify JSON file (not an object)")
    return data


def _categories(*sources: Mapping[str, Any]) -> dict[str, list[str]]:
    """Icon name -> its category names, from IconifyJSON / metadata `categories` ({category: [icons]}) when present."""
    out: dict[str, list[str]] = {}
    for src in sources:
        cats = src.get("categories")
        if isinstance(cats, dict):
            for cat, icons in sorted(cats.items()):
                for icon in icons if isinstance(icons, list) else []:
                    out.setdefault(str(icon), []).append(" ".join(str(cat).lower().split()))
    return out


def _view_box(icon: Mapping[str, Any], top: Mapping[str, Any]) -> tuple[float, float, float, float]:
    def get(key: str, default: float) -> float:
        value = icon.get(key, top.get(key, default))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{key} {value!r}")
        return float(value)

    return (get("left", 0), get("top", 0), get("width", ICONIFY_DEFAULT_SIDE), get("height", ICONIFY_DEFAULT_SIDE))


def draw_icon(icon: Mapping[str, Any], top: Mapping[str, Any], size: int) -> np.ndarray:
    """An IconifyJSON icon entry -> uint8 alpha (size, size). Raises SvgError (UnsupportedSvg names the construct)."""
    for key in _UNSUPPORTED_KEYS:
        if icon.get(key, top.get(key)):
            raise UnsupportedSvg(f"{key} transform")
    body = icon.get("body")
    if not isinstance(body, str):
        raise SvgError("no body")
    try:
        box = _view_box(icon, top)
    except ValueError as exc:
        raise SvgError(f"view box: {exc}") from None
    return rasterize_body(body, size, box)


def _skip_reason(exc: SvgError) -> str:
    return f"unsupported svg ({exc})" if isinstance(exc, UnsupportedSvg) else "corrupt svg"


def build_game_icons_dataset(
    folder: str | Path,
    cfg: GameIconsConfig | None = None,
    source: str = f"{GAME_ICONS_PACKAGE.name}@{GAME_ICONS_PACKAGE.version}",
    license: str = GAME_ICONS_PACKAGE.license,  # noqa: A002 - the column's name
    attribution: str = GAME_ICONS_PACKAGE.attribution,
    progress: Callable[[int], None] | None = None,
) -> tuple[pa.Table, dict[str, int]]:
    """-> (table in SCHEMA, skipped icon counts by reason) from an extracted package folder (`icons.json`, optional
    `metadata.json` with categories). Hidden (deprecated) icons and bodies that cannot be drawn are skipped, counted
    and logged; no drawable icon at all is a UserError."""
    cfg = cfg or GameIconsConfig()
    check_config(cfg)
    folder = Path(folder)
    data = _read_json(folder / "icons.json", required=True)
    icons = data.get("icons")
    if not isinstance(icons, dict) or not icons:
        raise UserError(f"{folder / 'icons.json'}: no icons (not an Iconify icon set)")
    categories = _categories(data, _read_json(folder / "metadata.json", required=False))
    if cfg.icons is not None:
        unknown = sorted(set(cfg.icons) - set(icons))
        if unknown:
            raise UserError(f"--icons: {len(unknown)} name{'s' * (len(unknown) != 1)} not in the package: "
                            f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}")
        icons = {name: icons[name] for name in cfg.icons}

    columns: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    skipped: dict[str, int] = {}

    def skip(name: str, reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1
        if sum(skipped.values()) <= MAX_LOGGED_SKIPS:
            log.warning("game icon %r skipped: %s", name, reason)

    for done, name in enumerate(sorted(icons), 1):
        entry = icons[name]
        rows = [r for r in rows_of(name, cfg.pairings, cfg.heldout_rows)
                if cfg.split == "all" or (cfg.split == "heldout") == bool(r[2])]
        if not isinstance(entry, dict):
            skip(name, "corrupt svg")
        elif entry.get("hidden"):
            skip(name, "hidden (a deprecated name)")
        elif rows:
            try:
                alpha = draw_icon(entry, data, cfg.size)
            except SvgError as exc:
                skip(name, _skip_reason(exc))
                rows = []
            else:
                if not alpha.any():
                    skip(name, "empty drawing")
                    rows = []
            cats = ", ".join(categories.get(name, []))
            for color, background, kind in rows:
                for key, value in (
                        ("image", png_bytes(compose(alpha, color, background))),
                        ("caption", caption_of(name, color, background, cats)),
                        ("short_prompt", short_prompt_of(name, color, background)), ("label", name),
                        ("color", color), ("background", background), ("category", cats),
                        ("split", "heldout" if kind else "train"), ("heldout_kind", kind), ("license", license),
                        ("attribution", attribution), ("source", source)):
                    columns[key].append(value)
        if progress is not None and (done % 64 == 0 or done == len(icons)):
            progress(done)
    if not columns["image"]:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "no rows in this split"
        raise UserError(f"no usable game icons ({detail})")
    if sum(skipped.values()) > MAX_LOGGED_SKIPS:
        log.warning("skipped %d game icons in all: %s", sum(skipped.values()),
                    ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())))
    table = pa.table(columns, schema=SCHEMA)
    held = "; ".join(f"{c} on {b}" for c, b in heldout_pairings())
    return table.replace_schema_metadata({
        "llmgan.dataset": "game-icons", "llmgan.licenses": f"{license} ({attribution})",
        "llmgan.image_size": str(cfg.size), "llmgan.split": cfg.split, "llmgan.pairings": str(cfg.pairings),
        "llmgan.heldout_rows": str(cfg.heldout_rows), "llmgan.heldout_pairings": held,
        "llmgan.icons": ",".join(cfg.icons) if cfg.icons is not None else "all"}), skipped


def parse_icons(value: str | None) -> tuple[str, ...] | None:
    """`--icons`: a named set (ICON_SETS), comma-separated icon names, or @FILE with one name per line ('#' comments)."""
    if value is None:
        return None
    if value in ICON_SETS:
        return ICON_SETS[value]
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--icons {value}: cannot read the file ({exc.__class__.__name__})") from None
        names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    else:
        names = value.split(",")
    return tuple(dict.fromkeys(n.strip() for n in names if n.strip()))


def check_config(cfg: GameIconsConfig) -> None:
    """The limits that depend on the palette (the config checks the rest)."""
    if cfg.pairings > max_pairings():
        raise UserError(f"--pairings must be at most {max_pairings()} (the training pairings an icon can have), got "
                        f"{cfg.pairings}")
