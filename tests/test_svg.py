"""llmgan.io.svg: path data parsed in full, curves flattened, filled with the nonzero / evenodd rule, checked on shapes
whose coverage is known analytically and on real game-icons bodies against an independent renderer's figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmgan.io.svg import CorruptSvg, UnsupportedSvg, parse_path, rasterize_body

BOX = (0, 0, 64, 64)  # one user unit per pixel at 64 px


def draw(d: str, rule: str | None = None, size: int = 64, box: tuple[float, float, float, float] = BOX) -> np.ndarray:
    attr = f' fill-rule="{rule}"' if rule else ""
    return rasterize_body(f'<path fill="currentColor"{attr} d="{d}"/>', size, box)


def area(alpha: np.ndarray) -> float:
    return float(alpha.astype(np.float64).sum() / 255)


def test_square_on_pixel_edges_is_exact() -> None:
    alpha = draw("M16 16H48V48H16Z")
    expected = np.zeros((64, 64), np.uint8)
    expected[16:48, 16:48] = 255
    assert np.array_equal(alpha, expected)


def test_half_pixel_edges_are_half_covered() -> None:
    alpha = draw("M10.5 10.5h10v10h-10z")
    assert (alpha[11:20, 11:20] == 255).all()
    assert alpha[15, 10] == alpha[10, 15] == alpha[15, 20] == alpha[20, 15] == 128  # 0.5 of 255, rounded
    assert alpha[10, 10] == alpha[20, 20] == 64  # a quarter
    assert area(alpha) == pytest.approx(100, abs=0.1)  # uint8 rounding of the 40 rim pixels


@pytest.mark.parametrize("d", [
    "m16 16h32v32h-32z",  # relative
    "M16 16 48 16 48 48 16 48z",  # implicit linetos after M
    "M16,16L48,16,48,48,16,48Z",  # commas, implicit L
    "M16 16l32 0 0 32-32 0",  # implicit l, no separator before a minus, no Z (filling closes it)
    "M 16 16 V 48 H 48 V 16 z",  # the other winding direction
])
def test_path_forms_draw_the_same_square(d: str) -> None:
    assert np.array_equal(draw(d), draw("M16 16H48V48H16Z"))


def test_compact_numbers_and_exponents() -> None:
    assert parse_path("M0 0L1.5.5").lines[0] == (0.0, 0.0, 1.5, 0.5)
    assert parse_path("M10-5L-1e-3 2E1").lines[0] == (10.0, -5.0, -0.001, 20.0)
    # arc flags may touch the next number: large=0 sweep=1 then the end point (10, 10)
    assert parse_path("M0 0a10 10 0 0110 10").cubics[-1][-2:] == (10.0, 10.0)


def test_circle_from_arcs() -> None:
    circle = draw("M12 32A20 20 0 0 0 52 32A20 20 0 0 0 12 32Z")
    assert area(circle) == pytest.approx(math.pi * 400, rel=0.003)
    assert np.array_equal(circle, circle[::-1]) and np.array_equal(circle, circle[:, ::-1])
    assert np.array_equal(circle, circle.T)
    assert circle[32, 32] == 255 and circle[32, 10] == 0 and circle[10, 32] == 0
    # relative arcs, and radii too small for the chord are scaled up to fit (SVG's rule): the same circle
    assert np.abs(draw("M12 32a20 20 0 1 0 40 0a20 20 0 1 0-40 0").astype(int) - circle).max() <= 1
    assert np.abs(draw("M12 32A1 1 0 0 0 52 32A1 1 0 0 0 12 32").astype(int) - circle).max() <= 1


def test_rotated_ellipse() -> None:
    # rx 24, ry 12, rotated 45 degrees about the centre: its end points lie on the long axis
    e = 24 / math.sqrt(2)
    d = f"M{32 - e} {32 - e}A24 12 45 1 1 {32 + e} {32 + e}A24 12 45 1 1 {32 - e} {32 - e}Z"
    alpha = draw(d)
    assert area(alpha) == pytest.approx(math.pi * 24 * 12, rel=0.005)
    assert np.abs(alpha.astype(int) - alpha.T).max() <= 1  # symmetric about the main diagonal
    assert alpha[20, 20] == 255 and alpha[20, 44] == 0


def test_quadratic_and_smooth_curves() -> None:
    # parabola over a base of 64 with its control point 128 above: 2/3 of the control triangle's area
    assert area(draw("M0 64Q32-64 64 64Z")) == pytest.approx(2 / 3 * 64 * 128 / 2, rel=0.003)
    assert np.array_equal(draw("M0 32Q16 0 32 32T64 32V64H0Z"), draw("M0 32Q16 0 32 32Q48 64 64 32V64H0Z"))
    assert np.array_equal(draw("M0 32C0 0 32 0 32 32S64 64 64 32V64H0Z"),
                          draw("M0 32C0 0 32 0 32 32C32 64 64 64 64 32V64H0Z"))
    # S after a line: its first control point is the current point
    assert np.array_equal(draw("M0 64L0 32S64 0 64 32V64Z"), draw("M0 64L0 32C0 32 64 0 64 32V64Z"))


@pytest.mark.parametrize("inner,nonzero_area", [
    ("M24 24H40V40H24Z", 48 * 48),  # same direction as the outer square: nonzero fills the hole
    ("M24 24V40H40V24Z", 48 * 48 - 16 * 16),  # opposite direction: a hole under both rules
])
def test_hole_under_nonzero_and_evenodd(inner: str, nonzero_area: int) -> None:
    d = f"M8 8H56V56H8Z{inner}"
    assert area(draw(d)) == nonzero_area
    assert area(draw(d, "nonzero")) == nonzero_area
    holed = draw(d, "evenodd")
    assert area(holed) == 48 * 48 - 16 * 16 and holed[32, 32] == 0 and holed[12, 12] == 255


def test_several_paths_none_fill_and_view_box() -> None:
    two = rasterize_body('<path d="M0 0h8v8H0z"/><path fill="none" d="M8 8h8v8H8z"/><path d="M16 16h8v8h-8z"/>',
                         32, (0, 0, 32, 32))
    assert area(two) == 128 and two[4, 4] == 255 and two[12, 12] == 0 and two[20, 20] == 255
    # a 2:1 view box is centred in the square (xMidYMid meet): a full rectangle covers the middle band
    band = rasterize_body('<path d="M0 0h32v16H0z"/>', 64, (0, 0, 32, 16))
    assert (band[16:48] == 255).all() and (band[:16] == 0).all() and (band[48:] == 0).all()
    assert np.array_equal(rasterize_body('<path d="M10 10h8v8h-8z"/>', 16, (10, 10, 8, 8)), np.full((16, 16), 255))


@pytest.mark.parametrize("d", ["M10 10L", "L10 10", "10 10", "M10 10X5", "M10 10Z 5 5", "M10 10A5 5 0 2 0 20 20",
                               "M1e 2", "M10 10C1 2 3", "M0 0L1e999 5L5 5"])
def test_corrupt_path_data(d: str) -> None:
    with pytest.raises(CorruptSvg, match="path data"):
        draw(d)


@pytest.mark.parametrize("body,construct", [
    ('<circle cx="5" cy="5" r="5"/>', "<circle> element"),
    ('<g><path d="M0 0h5v5z"/></g>', "<g> element"),
    ('<path transform="rotate(5)" d="M0 0h5v5z"/>', "transform attribute"),
    ('<path stroke="#000" d="M0 0h5v5z"/>', "stroke attribute"),
    ('<path fill="#fff" d="M0 0h5v5z"/>', "a second colour"),
    ('<path fill-rule="inherit" d="M0 0h5v5z"/>', "fill-rule"),
])
def test_unsupported_constructs_are_named(body: str, construct: str) -> None:
    with pytest.raises(UnsupportedSvg, match=construct):
        rasterize_body(body, 16, BOX)


def test_malformed_xml() -> None:
    with pytest.raises(CorruptSvg, match="XML"):
        rasterize_body('<path d="M0 0h5v5z"', 16, BOX)


# Real bodies from @iconify-json/game-icons 1.2.4 (CC BY 3.0, game-icons.net), view box 512 x 512, and the alpha sum
# (in pixels) cairosvg 2.9.1 renders for each at 64 px: an independent renderer's answer.
REAL = {
    "logic-gate-and": ('<path fill="currentColor" d="M105 105v302h151c148 0 148-302 0-302zm-89 46v18h71v-18zm368.8 '
                       '96q.3 9 0 18H496v-18zM16 343v18h71v-18z"/>', 1201.39),
    "pounce": ('<path fill="currentColor" d="m196 16l60 60l60-60zm-30 90l90 90l90-90zm-30 120l120 120l120-120zm121.75 '
               '150.03A60 60 0 0 0 196 436a60 60 0 0 0 120 0a60 60 0 0 0-58.25-59.97"/>', 583.38),
    "dice-six-faces-one": ('<path fill="currentColor" d="M74.5 36A38.5 38.5 0 0 0 36 74.5v363A38.5 38.5 0 0 0 74.5 '
                           '476h363a38.5 38.5 0 0 0 38.5-38.5v-363A38.5 38.5 0 0 0 437.5 36zM256 206a50 50 0 0 1 0 '
                           '100a50 50 0 0 1 0-100"/>', 2882.44),
    "clubs": ('<path fill="currentColor" d="M477.443 295.143a104.45 104.45 0 0 1-202.26 36.67c-.08 68.73 4.33 114.46 '
              '69.55 149h-177.57c65.22-34.53 69.63-80.25 69.55-149a104.41 104.41 0 1 1-66.34-136.28a104.45 104.45 0 1 '
              '1 171.14 0a104.5 104.5 0 0 1 135.93 99.61"/>', 1799.05),
    "hearts": ('<path fill="currentColor" d="M480.25 156.355c0 161.24-224.25 324.43-224.25 324.43S31.75 317.595 31.75 '
               '156.355c0-91.41 70.63-125.13 107.77-125.13c77.65 0 116.48 65.72 116.48 65.72s38.83-65.73 116.48-65.73c'
               '37.14.01 107.77 33.72 107.77 125.14"/>', 2185.35),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_icon_bodies_match_an_independent_renderer(name: str) -> None:
    body, cairo_area = REAL[name]
    alpha = rasterize_body(body, 64, (0, 0, 512, 512))
    assert area(alpha) == pytest.approx(cairo_area, rel=0.005)


def test_real_icon_holes() -> None:
    dice = rasterize_body(REAL["dice-six-faces-one"][0], 64, (0, 0, 512, 512))
    assert dice[32, 32] == 0 and dice[10, 10] == 255 and dice[2, 2] == 0  # the pip is a hole, the margin is empty
