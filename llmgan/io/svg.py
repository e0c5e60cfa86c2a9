"""A small SVG rasteriser for one-colour icon bodies (Iconify's `<path d="..."/>` fragments): path data parsed in full
(M L H V C S Q T A Z, relative forms, implicit repeats, compact numbers such as `1.5.5` and compact arc flags),
curves flattened to line edges within a fraction of a sample, and a vectorised numpy scanline fill with the nonzero
or evenodd rule on a supersampled grid, averaged into an anti-aliased coverage (alpha) mask.

Only what one-colour icons use is supported: `<path>` elements (several are composited over each other),
`fill-rule`, and `fill` as a paint (or `none`). Anything else (transforms, strokes, groups, other shapes, cut-outs in
another colour) raises `UnsupportedSvg` naming the construct, so a dataset builder can skip and count it instead of
drawing a wrong silhouette. Malformed path data raises `CorruptSvg`.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

SVG_NS = "http://www.w3.org/2000/svg"
SUPERSAMPLE = 8  # samples per pixel side up to 64 px: 65 coverage levels
MIN_SUPERSAMPLE = 4  # above 64 px: 17 levels, so 128 px costs about what 64 px does (6 vs 5 ms an icon here)
TOLERANCE = 0.25  # largest distance of a flattened curve from the true one, in samples
MAX_SEGMENTS = 512  # per curve: bounds the work of a degenerate (huge) control polygon
MAX_GRID = 4096  # samples per side (size x supersample): bounds memory (a 4096^2 int grid is ~130 MB)
_ARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SEPARATORS = re.compile(r"[\s,]*")
_PAINT_ATTRS = {"d", "fill", "fill-rule"}  # the only path attributes that change a one-colour silhouette
_FILL_RULES = ("nonzero", "evenodd")


class SvgError(ValueError):
    """An icon body that cannot be drawn."""


class CorruptSvg(SvgError):
    """Malformed XML or path data."""


class UnsupportedSvg(SvgError):
    """Valid SVG using a construct this rasteriser does not draw (the message names it)."""


@dataclass
class PathSegments:
    """A path's drawing segments in user units: lines (N, 4), quadratic (N, 6) and cubic (N, 8) Béziers as flat
    coordinate rows (arcs are converted to cubics); subpaths are already closed, as filling closes them."""

    lines: list[tuple[float, ...]] = field(default_factory=list)
    quads: list[tuple[float, ...]] = field(default_factory=list)
    cubics: list[tuple[float, ...]] = field(default_factory=list)


class _Scanner:
    """A cursor over path data: numbers, arc flags and command letters, with separators skipped."""

    def __init__(self, d: str) -> None:
        self.d, self.i = d, 0
        self.skip()

    def skip(self) -> None:
        self.i = _SEPARATORS.match(self.d, self.i).end()  # type: ignore[union-attr]  # matches the empty string

    def done(self) -> bool:
        return self.i >= len(self.d)

    def at_number(self) -> bool:
        return not self.done() and self.d[self.i] in "+-.0123456789"

    def fail(self, what: str) -> CorruptSvg:
        return CorruptSvg(f"path data: {what} at offset {self.i} ({self.d[self.i:self.i + 12]!r})")

    def number(self) -> float:
        m = _NUMBER.match(self.d, self.i)
        if m is None:
            raise self.fail("expected a number")
        self.i = m.end()
        self.skip()
        return float(m.group())

    def flag(self) -> float:
        # arc flags are one character and may touch the next number ("a5 5 0 0110 10"), so not read as numbers
        if self.done() or self.d[self.i] not in "01":
            raise self.fail("expected an arc flag 0 or 1")
        value = float(self.d[self.i] == "1")
        self.i += 1
        self.skip()
        return value


def _arc_cubics(x1: float, y1: float, rx: float, ry: float, phi_deg: float, large: bool, sweep: bool,
                x2: float, y2: float) -> list[tuple[float, ...]]:
    """An elliptical arc as cubic Béziers of at most 90 degrees each (SVG 1.1 implementation notes F.6.5 for the centre;
    radii scaled up when too small). An arc with a zero radius is a line: the caller handles that."""
    phi = math.radians(phi_deg % 360)
    c, s = math.cos(phi), math.sin(phi)
    dx, dy = (x1 - x2) / 2, (y1 - y2) / 2
    xp, yp = c * dx + s * dy, -s * dx + c * dy
    lam = (xp / rx) ** 2 + (yp / ry) ** 2
    if lam > 1:
        rx, ry = rx * math.sqrt(lam), ry * math.sqrt(lam)
    num = (rx * ry) ** 2 - (rx * yp) ** 2 - (ry * xp) ** 2
    den = (rx * yp) ** 2 + (ry * xp) ** 2
    coef = math.sqrt(max(0.0, num / den)) if den > 0 else 0.0
    if large == sweep:
        coef = -coef
    cxp, cyp = coef * rx * yp / ry, -coef * ry * xp / rx
    cx, cy = c * cxp - s * cyp + (x1 + x2) / 2, s * cxp + c * cyp + (y1 + y2) / 2
    ux, uy = (xp - cxp) / rx, (yp - cyp) / ry
    vx, vy = (-xp - cxp) / rx, (-yp - cyp) / ry
    theta = math.atan2(uy, ux)
    delta = math.atan2(ux * vy - uy * vx, ux * vx + uy * vy)
    if sweep and delta < 0:
        delta += 2 * math.pi
    elif not sweep and delta > 0:
        delta -= 2 * math.pi
    n = max(1, math.ceil(abs(delta) / (math.pi / 2) - 1e-9))
    step = delta / n
    k = 4 / 3 * math.tan(step / 4)  # control-arm length of a unit-circle arc of `step` radians

    def at(u: float, v: float) -> tuple[float, float]:  # unit circle -> the ellipse in user space
        return cx + c * rx * u - s * ry * v, cy + s * rx * u + c * ry * v

    out = []
    for i in range(n):
        a0, a1 = theta + i * step, theta + (i + 1) * step
        p0 = at(math.cos(a0), math.sin(a0))
        p1 = at(math.cos(a0) - k * math.sin(a0), math.sin(a0) + k * math.cos(a0))
        p2 = at(math.cos(a1) + k * math.sin(a1), math.sin(a1) - k * math.cos(a1))
        p3 = (x2, y2) if i == n - 1 else at(math.cos(a1), math.sin(a1))
        out.append((*(p0 if i == 0 else out[-1][6:8]), *p1, *p2, *p3))
    out[0] = (x1, y1, *out[0][2:])  # exact endpoints: no hairline gaps between segments
    return out


def parse_path(d: str) -> PathSegments:
    """Path data -> its segments in user units. Raises CorruptSvg where the data stops making sense (a renderer would
    draw up to there; a dataset is better off without a half-drawn icon)."""
    seg = PathSegments()
    sc = _Scanner(d)
    cmd = ""
    x = y = sx = sy = 0.0  # current point and subpath start
    ctrl: tuple[float, float] | None = None  # last control point, for S / T reflection
    prev = ""  # previous command (upper case), for S / T
    open_path = False  # a subpath has drawn something since its M

    def close() -> None:
        nonlocal x, y
        if open_path and (x, y) != (sx, sy):
            seg.lines.append((x, y, sx, sy))
        x, y = sx, sy

    while not sc.done():
        if sc.at_number():
            if not cmd or cmd in "Zz":
                raise sc.fail("numbers without a command")
            if cmd in "Mm":  # pairs after a moveto are linetos
                cmd = "L" if cmd == "M" else "l"
        else:
            cmd = sc.d[sc.i]
            if cmd.upper() not in _ARGS:
                raise sc.fail(f"unknown command {cmd!r}")
            if prev == "" and cmd not in "Mm":
                raise sc.fail("path data must start with M or m")
            sc.i += 1
            sc.skip()
            if cmd in "Zz":
                close()
                open_path, ctrl, prev = False, None, "Z"
                continue
            if not sc.at_number():
                raise sc.fail(f"command {cmd!r} without arguments")
        up, rel = cmd.upper(), cmd.islower()
        ox, oy = (x, y) if rel else (0.0, 0.0)
        if up == "A":
            rx, ry, rot = abs(sc.number()), abs(sc.number()), sc.number()
            large, sweep = sc.flag(), sc.flag()
            args = [rx, ry, rot, large, sweep, sc.number() + ox, sc.number() + oy]
        else:
            args = [sc.number() for _ in range(_ARGS[up])]
        if up == "M":
            close()
            x, y = sx, sy = args[0] + ox, args[1] + oy
            open_path, ctrl = False, None
        elif up in "LHV":
            nx = x if up == "V" else args[0] + ox
            ny = y if up == "H" else args[-1] + oy
            seg.lines.append((x, y, nx, ny))
            x, y, ctrl = nx, ny, None
        elif up in "CS":
            if up == "C":
                c1 = (args[0] + ox, args[1] + oy)
                rest = args[2:]
            else:
                c1 = (2 * x - ctrl[0], 2 * y - ctrl[1]) if ctrl is not None and prev in "CS" else (x, y)
                rest = args
            c2, end = (rest[0] + ox, rest[1] + oy), (rest[2] + ox, rest[3] + oy)
            seg.cubics.append((x, y, *c1, *c2, *end))
            (x, y), ctrl = end, c2
        elif up in "QT":
            if up == "Q":
                q1, end = (args[0] + ox, args[1] + oy), (args[2] + ox, args[3] + oy)
            else:
                q1 = (2 * x - ctrl[0], 2 * y - ctrl[1]) if ctrl is not None and prev in "QT" else (x, y)
                end = (args[0] + ox, args[1] + oy)
            seg.quads.append((x, y, *q1, *end))
            (x, y), ctrl = end, q1
        else:  # A
            rx, ry, rot, large, sweep, ex, ey = args
            if (ex, ey) != (x, y):
                if rx == 0 or ry == 0:
                    seg.lines.append((x, y, ex, ey))
                else:
                    seg.cubics.extend(_arc_cubics(x, y, rx, ry, rot, bool(large), bool(sweep), ex, ey))
            x, y, ctrl = ex, ey, None
        open_path, prev = open_path or up != "M", up
    close()
    return seg


def _segment_counts(second_diff: np.ndarray, factor: float, tol: float) -> np.ndarray:
    """Segments per curve so the chord error stays within `tol` (error <= factor * |second difference| / n^2)."""
    n = np.ceil(np.sqrt(factor * second_diff / tol))
    return np.clip(n, 1, MAX_SEGMENTS).astype(np.int64)


def _flatten_curves(ctrl: np.ndarray, degree: int, tol: float) -> np.ndarray:
    """(K, degree+1, 2) Bézier control points -> (M, 4) line edges, every curve in its own number of pieces."""
    if degree == 2:
        dd = np.linalg.norm(ctrl[:, 0] - 2 * ctrl[:, 1] + ctrl[:, 2], axis=-1)
        n = _segment_counts(dd, 0.25, tol)  # B'' = 2 dd: error <= dd / (4 n^2)
    else:
        dd = np.maximum(np.linalg.norm(ctrl[:, 0] - 2 * ctrl[:, 1] + ctrl[:, 2], axis=-1),
                        np.linalg.norm(ctrl[:, 1] - 2 * ctrl[:, 2] + ctrl[:, 3], axis=-1))
        n = _segment_counts(dd, 0.75, tol)  # |B''| <= 6 dd: error <= 3 dd / (4 n^2)
    curve = np.repeat(np.arange(len(ctrl)), n)
    j = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    t = np.stack([j / n[curve], (j + 1) / n[curve]], axis=1)[..., None]  # (M, 2, 1): both ends of each piece
    p = ctrl[curve][:, None]  # (M, 1, degree+1, 2)
    u = 1 - t
    if degree == 2:
        pts = u ** 2 * p[:, :, 0] + 2 * u * t * p[:, :, 1] + t ** 2 * p[:, :, 2]
    else:
        pts = u ** 3 * p[:, :, 0] + 3 * u * u * t * p[:, :, 1] + 3 * u * t * t * p[:, :, 2] + t ** 3 * p[:, :, 3]
    # the exact end points, so consecutive segments share vertices bit for bit
    first, last = j == 0, j == n[curve] - 1
    pts[first, 0] = ctrl[curve[first], 0]
    pts[last, 1] = ctrl[curve[last], degree]
    return pts.reshape(-1, 4)


def path_edges(seg: PathSegments, scale: float, offset: tuple[float, float] = (0.0, 0.0),
               tol: float = TOLERANCE) -> np.ndarray:
    """(M, 4) line edges x0, y0, x1, y1 in sample units: user units shifted by -offset, times `scale`."""
    shift = np.array(offset * 2, dtype=np.float64)
    parts = [(np.array(seg.lines, dtype=np.float64).reshape(-1, 4) - shift) * scale]
    for rows, degree in ((seg.quads, 2), (seg.cubics, 3)):
        if rows:
            ctrl = (np.array(rows, dtype=np.float64).reshape(-1, degree + 1, 2) - shift[:2]) * scale
            parts.append(_flatten_curves(ctrl, degree, tol))
    return np.concatenate(parts)


def fill_coverage(edges: np.ndarray, size: int, supersample: int = SUPERSAMPLE, rule: str = "nonzero") -> np.ndarray:
    """Coverage in [0, 1] of a size x size pixel grid by the closed polygon(s) made of `edges` (sample units:
    size * supersample per side), under the nonzero or evenodd rule.

    Each edge adds its direction (+1 down, -1 up) at the first sample right of where it crosses each sample row's
    centre line; a running sum along the row is then every sample's winding number, all in a few array operations.
    """
    if rule not in _FILL_RULES:
        raise UnsupportedSvg(f"fill-rule {rule!r}")
    n = size * supersample
    if n > MAX_GRID:
        raise ValueError(f"size {size} x supersample {supersample} exceeds {MAX_GRID} samples per side")
    edges = edges[edges[:, 1] != edges[:, 3]]  # horizontal edges cross no row centre
    x0, y0, x1, y1 = edges.T
    lo = np.clip(np.ceil(np.minimum(y0, y1) - 0.5), 0, n).astype(np.int64)  # rows whose centre j + 0.5 is in
    hi = np.clip(np.ceil(np.maximum(y0, y1) - 0.5), 0, n).astype(np.int64)  # [ymin, ymax): half-open, no double count
    count = hi - lo
    edge = np.repeat(np.arange(len(edges)), count)
    row = np.repeat(lo, count) + np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    t = (row + 0.5 - y0[edge]) / (y1[edge] - y0[edge])
    x = x0[edge] + t * (x1[edge] - x0[edge])
    col = np.clip(np.floor(x - 0.5) + 1, 0, n).astype(np.int64)  # column n: right of every sample, dropped below
    direction = np.where(y1 > y0, 1, -1)[edge]
    delta = np.bincount(row * (n + 1) + col, weights=direction, minlength=n * (n + 1))
    winding = np.cumsum(np.rint(delta).astype(np.int32).reshape(n, n + 1), axis=1)[:, :n]
    inside = winding != 0 if rule == "nonzero" else (winding & 1).astype(bool)
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3), dtype=np.float32)


def _paths(body: str) -> list[tuple[str, str]]:
    """(path data, fill rule) of each painted `<path>` of an icon body; UnsupportedSvg / CorruptSvg otherwise."""
    try:
        root = ET.fromstring(f'<svg xmlns="{SVG_NS}">{body}</svg>')
    except ET.ParseError as exc:
        raise CorruptSvg(f"not well-formed XML ({exc})") from None
    if (root.text or "").strip():
        raise UnsupportedSvg("text content")
    out = []
    for el in root:
        tag = el.tag.rsplit("}", 1)[-1]
        if tag != "path":
            raise UnsupportedSvg(f"<{tag}> element")
        if len(el) or (el.text or "").strip():
            raise UnsupportedSvg("content inside <path>")
        extra = sorted(set(el.attrib) - _PAINT_ATTRS)
        if extra:
            raise UnsupportedSvg(f"{extra[0]} attribute")
        fill = el.get("fill", "currentColor").strip()
        if fill == "none":
            continue
        if fill.lower() not in ("currentcolor", "#000", "#000000", "black"):
            raise UnsupportedSvg(f"fill {fill!r} (a second colour)")  # e.g. a white cut-out drawn over the shape
        rule = el.get("fill-rule", "nonzero").strip()
        if rule not in _FILL_RULES:
            raise UnsupportedSvg(f"fill-rule {rule!r}")
        out.append((el.get("d", ""), rule))
    return out


def default_supersample(size: int) -> int:
    """Samples per pixel side: SUPERSAMPLE up to 64 px, then fewer (down to MIN_SUPERSAMPLE), about 512 a side."""
    return max(MIN_SUPERSAMPLE, min(SUPERSAMPLE, 512 // max(size, 1)))


def rasterize_body(body: str, size: int, view_box: tuple[float, float, float, float] = (0, 0, 16, 16),
                   supersample: int | None = None) -> np.ndarray:
    """An icon body (SVG markup inside `<svg viewBox=...>`) -> uint8 alpha mask (size, size), 255 = fully covered.

    The view box (left, top, width, height) is fitted into the square, centred, keeping its aspect ratio (SVG's
    default `xMidYMid meet`). Several paths are composited source-over: alpha = 1 - prod(1 - coverage)."""
    supersample = supersample or default_supersample(size)
    left, top, width, height = view_box
    if width <= 0 or height <= 0:
        raise CorruptSvg(f"view box {view_box} has no area")
    n = size * supersample
    scale = n / max(width, height)
    offset = (left - (max(width, height) - width) / 2, top - (max(width, height) - height) / 2)
    clear = np.ones((size, size), dtype=np.float32)
    for d, rule in _paths(body):
        edges = path_edges(parse_path(d), scale, offset)
        if not np.isfinite(edges).all():  # "1e999" parses as inf
            raise CorruptSvg("path data: coordinates out of range")
        clear *= 1 - fill_coverage(edges, size, supersample, rule)
    return np.rint((1 - clear) * 255).astype(np.uint8)
