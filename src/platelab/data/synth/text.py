"""Plate texts and glyphs: character sets, random registrations, fonts found by path.

Texts are recorded as the registration characters in reading order, without the
spaces, hyphens and separator dots printed between groups (``皖A12345``, ``AB12CDE``).
Chinese texts use only characters of the CCPD index tables, so every Chinese
plate can be written as a CCPD file name.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from platelab.errors import PlatelabError
from platelab.text import ADS, ALPHABETS, PROVINCES

# Only characters of the CCPD tables. "O" is the dataset's placeholder at the end of
# each table, and 警/学 are special plates: neither is drawn here.
CN_PROVINCES = tuple(c for c in PROVINCES if c not in ("警", "学", "O"))
CN_LETTERS = tuple(c for c in ALPHABETS if c != "O")
CN_ADS = tuple(c for c in ADS if c != "O")
CN_ADS_LETTERS = tuple(c for c in CN_ADS if c.isalpha())
DIGITS = "0123456789"
LATIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
# Fonts shipped with platelab (fonts/README.md: sources and licences), then the system's
# DejaVu, then matplotlib's copy of it (matplotlib is a dependency).
PACKAGE_FONTS = Path(__file__).parent / "fonts"
_DEJAVU_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
# Latin faces of EU and US plates, most likely first: Barlow SemiCondensed is close to
# DIN 1451 / FE-Schrift and to US plate lettering (Barlow is drawn after California's).
LATIN_FONTS = (
    "BarlowSemiCondensed-SemiBold.ttf",
    "DejaVuSans-Bold.ttf",
    "BarlowCondensed-Bold.ttf",
    "OSP-DIN.ttf",  # DIN 1451 Engschrift, the older German and several other plates' face
    "RobotoCondensed-Bold.ttf",
)
LATIN_FONT_P = (0.45, 0.2, 0.1, 0.15, 0.1)  # EU plates; US plates favour Barlow
# Letters and digits of Chinese plates: narrow, even-stroked faces (no free font is the
# GA 36 face; several close ones, drawn at several stroke weights, teach the reader the
# letters rather than one font's details). Glyphs are fitted into the plate's cells.
CN_LATIN_FONTS = (
    "BarlowCondensed-SemiBold.ttf",
    "BarlowCondensed-Bold.ttf",
    "RobotoCondensed-Regular.ttf",
    "RobotoCondensed-Medium.ttf",
    "RobotoCondensed-Bold.ttf",
    "OSP-DIN.ttf",
    "DejaVuSans-Bold.ttf",
)
# The provinces in a Hei face, as plates print them: Noto Sans CJK SC cut to the CCPD
# province characters (fonts/README.md), at three weights. The plates' strokes sit between
# Regular and Bold (Medium is closest). The system's WenQuanYi Micro Hei, a little
# emboldened, is one more face.
PLATE_CJK_FONTS = tuple(
    PACKAGE_FONTS / f"NotoSansCJKsc-{w}-provinces.otf" for w in ("Regular", "Medium", "Bold")
)
# Chinese plate strokes are up to this many pixels a side heavier or lighter at GLYPH_PX
# (glyph_mask's weight).
STROKE_PX = 2
GLYPH_PX = 128  # glyphs are rasterised once at this size, then resized into their cells
_BAR = np.full((4, 4), 255, np.uint8)


def cjk_font() -> Path:
    """The CJK font file; raises :class:`PlatelabError` when it is not installed."""
    if not CJK_FONT.is_file():
        raise PlatelabError(
            f"CJK font not found at {CJK_FONT}: install fonts-wqy-microhei "
            "(e.g. apt-get install fonts-wqy-microhei, or `make system-deps`)"
        )
    return CJK_FONT


@functools.cache
def latin_font(name: str) -> Path:
    """A Latin font by file name: shipped with platelab, or DejaVu from the system or matplotlib."""
    import matplotlib

    dirs = (PACKAGE_FONTS, *_DEJAVU_DIRS, Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise PlatelabError(
        f"font {name} not found in {', '.join(map(str, dirs))}: install fonts-dejavu-core"
    )


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@functools.lru_cache(maxsize=4096)
def glyph_mask(ch: str, font_path: Path, weight: int = 0) -> np.ndarray:
    """``(h, w)`` uint8 coverage of one character, cropped tight to its ink.

    ``weight`` thickens (> 0) or thins (< 0) every stroke by that many pixels a side at
    :data:`GLYPH_PX`: one font becomes several weights.
    """
    font = _font(font_path, GLYPH_PX)
    left, top, right, bottom = font.getbbox(ch)
    pad = 2 + abs(weight)
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(img).text((pad - left, pad - top), ch, font=font, fill=255)
    arr = np.asarray(img)
    if weight:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(weight) + 1,) * 2)
        arr = cv2.dilate(arr, kernel) if weight > 0 else cv2.erode(arr, kernel)
    ys, xs = np.nonzero(arr)
    if len(xs) == 0:
        return np.zeros((1, 1), np.uint8)
    return arr[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _stroke_glyph(paths: list[np.ndarray], weight: int, flat_top: bool = False) -> np.ndarray:
    """A glyph drawn as strokes 11% of :data:`GLYPH_PX` thick (the Chinese plate typeface's
    weight) along ``paths`` (``(x, y)`` points as shares of a ``0.5 * GLYPH_PX`` wide,
    ``GLYPH_PX`` tall cell); ``flat_top`` cuts the strokes' ends flat at the top."""
    h = GLYPH_PX
    w = int(round(0.5 * h))
    pad = 10
    img = np.zeros((h + 2 * pad, w + 2 * pad), np.uint8)
    shift = 4  # sub-pixel vertices
    thick = max(1, int(round(0.11 * h)) + 2 * weight)
    for pts in paths:
        xy = np.round((pts * (w, h) + pad) * (1 << shift)).astype(np.int32)
        cv2.polylines(img, [xy], False, 255, thick, cv2.LINE_AA, shift)
    if flat_top:
        img[: pad + thick // 4] = 0
    ys, xs = np.nonzero(img)
    return img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


@functools.lru_cache(maxsize=16)
def plate_w(weight: int = 0) -> np.ndarray:
    """The ``W`` of the Chinese plate typeface (GA 36), which no free font draws: outer
    strokes almost upright, pointed feet, the middle apex at a third of the height
    (a font's ``W`` slants its outer strokes, and blurred it reads as ``H`` or ``N``).
    ``weight`` as in :func:`glyph_mask`."""
    pts = np.array([(0.04, 0.0), (0.25, 1.0), (0.5, 0.34), (0.75, 1.0), (0.96, 0.0)])
    return _stroke_glyph([pts], weight, flat_top=True)


@functools.lru_cache(maxsize=16)
def plate_g(weight: int = 0) -> np.ndarray:
    """The ``G`` of the Chinese plate typeface: the ``0``'s rounded outline opened at the
    upper right, and a bar from the right side half way in at mid-height. The free
    fonts' ``G`` has a short spur instead, so the plate's ``G`` read as ``6``.
    ``weight`` as in :func:`glyph_mask`."""
    t = 0.11 / 0.5  # the stroke as a share of the cell's width
    r, cx = (1 - t) / 2, 0.5  # the centre line's radius, in widths
    aspect = 2.0  # the cell is twice as tall as wide: y shares are x shares / 2
    top, bottom = (t / 2 + r) / aspect, 1 - (t / 2 + r) / aspect
    arc = np.radians(np.linspace(25, 180, 24))  # from the opening over the top, y up
    upper = np.stack([cx + r * np.cos(arc), top - r * np.sin(arc) / aspect], 1)
    arc = np.radians(np.linspace(180, 360, 24))
    lower = np.stack([cx + r * np.cos(arc), bottom - r * np.sin(arc) / aspect], 1)
    right, mid = cx + r, 0.52  # the outline climbs the right side to the bar at ``mid``
    outline = np.concatenate([upper, lower, [(right, mid)]])
    return _stroke_glyph([outline, np.array([(right, mid), (0.5, mid)])], weight)


def cjk_glyph(ch: str, face: int | None = None, weight: int = 0) -> np.ndarray:
    """A province character's mask in ``PLATE_CJK_FONTS[face]``, or (``None``) in
    :func:`cjk_font` emboldened by a pixel (its strokes are lighter than Noto's Regular);
    ``weight`` as in :func:`glyph_mask`."""
    if face is not None:  # shipped in the package: a missing file is an install error
        return glyph_mask(ch, PLATE_CJK_FONTS[face], weight)
    return glyph_mask(ch, cjk_font(), 1 + weight)


def aspect(mask: np.ndarray) -> float:
    """Width over height of a glyph mask."""
    return mask.shape[1] / max(1, mask.shape[0])


def draw_text_line(
    canvas: np.ndarray,
    text: str,
    box: tuple[float, float, float, float],
    color: tuple[int, int, int],
    font_path: Path,
    spacing: float = 0.12,
    squeeze: float = 1.0,
) -> None:
    """Draw ``text`` as one line centred in ``box = (x, y, w, h)`` of an ``(H, W, 3)`` canvas.

    Each glyph is scaled to the box height (``squeeze < 1`` narrows it), the line
    shrinks horizontally if it would overflow; a space is half a digit wide.
    """
    x, y, w, h = box
    if h < 2 or w < 2:
        return
    masks = [None if c in " -" else glyph_mask(c, font_path) for c in text]
    zero = glyph_mask("0", font_path)
    ref_w = zero.shape[1] / zero.shape[0] * h * squeeze
    widths = [0.5 * ref_w if m is None else m.shape[1] / m.shape[0] * h * squeeze for m in masks]
    gap = spacing * h * squeeze
    total = sum(widths) + gap * (len(widths) - 1)
    k = min(1.0, w / max(total, 1e-6))
    cx = x + (w - total * k) / 2
    for c, m, gw in zip(text, masks, widths, strict=True):
        if m is not None:
            draw_glyph(canvas, m, (cx, y, gw * k, h), color)
        elif c == "-":  # a tight-cropped hyphen would stretch to the full height: draw a bar
            draw_glyph(canvas, _BAR, (cx, y + 0.44 * h, gw * k, 0.12 * h), color)
        cx += (gw + gap) * k


def draw_glyph(
    canvas: np.ndarray,
    mask: np.ndarray,
    box: tuple[float, float, float, float],
    color: tuple[int, int, int],
) -> None:
    """Blend a glyph ``mask`` stretched to ``box = (x, y, w, h)`` into ``canvas`` in place."""
    x, y, w, h = box
    x0, y0 = int(round(x)), int(round(y))
    gw, gh = max(1, int(round(w))), max(1, int(round(h)))
    interp = cv2.INTER_AREA if gh < mask.shape[0] else cv2.INTER_LINEAR
    m = cv2.resize(mask, (gw, gh), interpolation=interp)
    H, W = canvas.shape[:2]
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + gw, W), min(y0 + gh, H)
    if xa >= xb or ya >= yb:
        return
    a = m[ya - y0 : yb - y0, xa - x0 : xb - x0, None].astype(np.float32) / 255.0
    region = canvas[ya:yb, xa:xb].astype(np.float32)
    canvas[ya:yb, xa:xb] = (region * (1 - a) + np.asarray(color, np.float32) * a).astype(np.uint8)


# -- random registrations ---------------------------------------------------------------
def _pick(rng: np.random.Generator, chars, n: int = 1) -> str:
    return "".join(chars[int(i)] for i in rng.integers(0, len(chars), n))


def _alnum_tail(rng: np.random.Generator, n: int, max_letters: int) -> str:
    """``n`` CCPD ``ads`` characters, mostly digits, with at most ``max_letters`` letters."""
    n_letters = int(rng.integers(0, max_letters + 1))
    slots = set(rng.choice(n, size=n_letters, replace=False).tolist())
    return "".join(
        _pick(rng, CN_ADS_LETTERS) if i in slots else _pick(rng, DIGITS) for i in range(n)
    )


def cn_text(rng: np.random.Generator, length: int) -> str:
    """A Chinese registration of 7 (blue, yellow) or 8 (green new-energy) characters.

    Position 1 is a province, 2 a letter, the rest CCPD ``ads``; new-energy plates
    mostly carry D (electric) or F (hybrid) in position 3, as small cars do.
    """
    # CCPD is mostly Anhui (皖); keep that bias without making other provinces rare.
    head = "皖" if rng.random() < 0.3 else _pick(rng, CN_PROVINCES)
    head += _pick(rng, CN_LETTERS)
    if length == 8:
        third = "DF"[int(rng.integers(0, 2))] if rng.random() < 0.8 else _pick(rng, CN_ADS)
        return head + third + _alnum_tail(rng, 5, 1)
    return head + _alnum_tail(rng, length - 2, 2)


# Latin layouts: L = letter, D = digit, X = either; spaces and hyphens are printed only.
EU_LAYOUTS = (
    "LLDD LLL",
    "LL-DDD-LL",
    "L LL DDDD",
    "LL DDDLL",
    "DD-LLL-D",
    "LL DD LL DDDD",
    "LLL DDD",
    "DD-DDD-DD",
    "LLL-DDDD",
    "L DDDD LL",
)
US_LAYOUTS = ("LLL DDDD", "DLLLDDD", "LLL-DDD", "DDD LLL", "LL DDDDD", "DLL DDD", "LLLDDD")
US_STATES = (
    "CALIFORNIA",
    "TEXAS",
    "Florida",
    "NEW YORK",
    "Virginia",
    "OHIO",
    "Arizona",
    "GEORGIA",
    "Michigan",
    "ILLINOIS",
    "Oregon",
    "NEVADA",
    "Colorado",
    "MARYLAND",
)


def layout_text(rng: np.random.Generator, layout: str) -> str:
    """Fill a layout such as ``"LL-DDD-LL"``: the printed string, separators kept."""
    out = []
    for c in layout:
        if c == "L":
            out.append(_pick(rng, LATIN))
        elif c == "D":
            out.append(_pick(rng, DIGITS))
        elif c == "X":
            out.append(_pick(rng, LATIN + DIGITS))
        else:
            out.append(c)
    return "".join(out)


def registration(printed: str) -> str:
    """The recorded text of a printed plate line: letters and digits only."""
    return "".join(c for c in printed if c.isalnum())
