"""Flat, front-on plate images in several national styles.

A plate is rendered straight to the pixel width the scene needs (no large master
image to shrink, so no aliasing), laid out in millimetres of the real plate and
scaled by pixels per millimetre (``s`` below). The plate's four corners are the image corners
``(0, 0), (w, 0), (w, h), (0, h)`` in continuous pixel coordinates; the alpha
mask rounds them off as real plates are.

Styles:

* ``cn_blue``: 440x140 mm, white on blue, ``省 A · 12345`` (7 characters).
* ``cn_green``: 480x140 mm new-energy plate, black on a white-to-green gradient
  (8 characters).
* ``cn_yellow``: 440x140 mm, black on yellow (7 characters, trucks and buses).
* ``eu``: 520x110 mm white or yellow with a blue band at the left, black text;
  variants without the band (India, Israel) and two-line square plates.
* ``us``: 305x152 mm, white-ish with a state name line, coloured text, a slogan
  line and registration stickers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from platelab.data.synth import text as T
from platelab.errors import PlatelabError

STYLE_WEIGHTS = {"cn_blue": 0.38, "cn_green": 0.14, "cn_yellow": 0.05, "eu": 0.28, "us": 0.15}


@dataclass
class PlateImage:
    """A rendered plate.

    Attributes:
        rgb: ``(h, w, 3)`` uint8 RGB, the whole plate front-on.
        alpha: ``(h, w)`` uint8, 255 on the plate (rounded corners fall to 0).
        text: the registration, see :mod:`platelab.data.synth.text`.
        style: one of :data:`STYLE_WEIGHTS`.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    text: str
    style: str


def render_plate(style: str, rng: np.random.Generator, width_px: int) -> PlateImage:
    """Render a random plate of ``style`` exactly ``width_px`` pixels wide (at least 8).

    Raises:
        PlatelabError: an unknown style.
    """
    if style not in _RENDERERS:
        raise PlatelabError(f"unknown plate style {style!r}; choose from {', '.join(_RENDERERS)}")
    return _RENDERERS[style](rng, max(8, int(width_px)))


# -- helpers ---------------------------------------------------------------------------
def _jitter(rng: np.random.Generator, rgb, amount: float = 18) -> tuple[int, int, int]:
    c = np.asarray(rgb, np.float64) + rng.normal(0, amount / 2, 3) + rng.normal(0, amount)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _canvas(w: int, h: int, top, bottom=None) -> np.ndarray:
    """``(h, w, 3)`` uint8 filled with ``top`` or a vertical gradient ``top -> bottom``."""
    if bottom is None:
        return np.full((h, w, 3), top, np.uint8)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    col = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.ascontiguousarray(np.broadcast_to(col, (h, w, 3)), dtype=np.uint8)


def _rounded_mask(w: int, h: int, radius: float) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    r = int(max(0, min(radius, h / 2 - 1, w / 2 - 1)))
    cv2.rectangle(m, (r, 0), (w - 1 - r, h - 1), 255, -1)
    cv2.rectangle(m, (0, r), (w - 1, h - 1 - r), 255, -1)
    for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
        cv2.circle(m, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return m


def _border(img: np.ndarray, s: float, inset_mm: float, width_mm: float, color) -> None:
    h, w = img.shape[:2]
    t = max(1, int(round(width_mm * s)))
    i = int(round(inset_mm * s))
    cv2.rectangle(img, (i, i), (w - 1 - i, h - 1 - i), color, t, cv2.LINE_AA)


def _rivets(img: np.ndarray, rng: np.random.Generator, s: float, xs_mm, y_mm: float) -> None:
    r = max(1, int(round(rng.uniform(3.5, 6) * s)))
    shade = int(rng.integers(120, 230))
    for x in xs_mm:
        c = (int(round(x * s)), int(round(y_mm * s)))
        cv2.circle(img, c, r, (shade, shade, shade), -1, cv2.LINE_AA)
        cv2.circle(img, c, max(1, r // 2), (shade // 2,) * 3, -1, cv2.LINE_AA)


def _text(img, printed, box_mm, s, color, font, spacing=0.12, squeeze=1.0, emboss=False):
    x, y, w, h = (v * s for v in box_mm)
    if emboss:  # stamped characters throw a thin shadow below and right
        d = max(1.0, 0.025 * h)
        shadow = tuple(int(c * 0.6) for c in img[int(y), int(x)])
        T.draw_text_line(img, printed, (x + d, y + d, w, h), shadow, font, spacing, squeeze)
    T.draw_text_line(img, printed, (x, y, w, h), color, font, spacing, squeeze)


def _finish(img: np.ndarray, rng: np.random.Generator, radius: float, text: str, style: str):
    h, w = img.shape[:2]
    f = img.astype(np.float32)
    # Uneven reflectance: dirt and wear as low-frequency noise, and a gloss gradient.
    noise = cv2.resize(rng.normal(0, 1, (4, 8)).astype(np.float32), (w, h))
    f *= (1 + rng.uniform(0, 0.08) * noise)[..., None]
    g = np.linspace(-1, 1, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
    f += (rng.uniform(0, 30) * g)[..., None]
    rgb = np.clip(f, 0, 255).astype(np.uint8)
    return PlateImage(rgb, _rounded_mask(w, h, radius), text, style)


# -- Chinese -----------------------------------------------------------------------------
def _cn(rng: np.random.Generator, width_px: int, style: str) -> PlateImage:
    green = style == "cn_green"
    wmm, hmm = (480.0, 140.0) if green else (440.0, 140.0)
    s = width_px / wmm
    w, h = width_px, max(4, int(round(hmm * s)))
    text = T.cn_text(rng, 8 if green else 7)
    if style == "cn_blue":
        # Retro-reflective blue photographs bright and slightly cyan (CCPD crops: ~(40,110,230)).
        img = _canvas(w, h, _jitter(rng, (30, 95, 225), 22))
        ink = _jitter(rng, (245, 245, 245), 8)
        _border(img, s, 3.0, 2.0, ink)
    elif green:
        img = _canvas(w, h, _jitter(rng, (235, 245, 235), 10), _jitter(rng, (60, 185, 90), 20))
        ink = _jitter(rng, (15, 15, 15), 8)
        _border(img, s, 1.0, 1.5, (40, 90, 50))
    else:
        img = _canvas(w, h, _jitter(rng, (245, 190, 20), 20))
        ink = _jitter(rng, (15, 15, 15), 8)
        _border(img, s, 3.0, 2.0, ink)
    n = len(text)
    cw, gap, sep = (43.0, 9.0, 47.0) if green else (45.0, 12.0, 34.0)
    x = (wmm - (n * cw + (n - 2) * gap + sep)) / 2
    cjk = T.cjk_font()
    latin = T.latin_font(
        ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSansMono-Bold.ttf")[
            int(rng.integers(0, 3))
        ]
    )
    emboss = rng.random() < 0.5
    for i, ch in enumerate(text):
        font = cjk if i == 0 else latin
        mask = T.glyph_mask(ch, font)
        # Plate glyphs are tall and narrow: the province fills its cell, others keep
        # their proportions up to the cell width (a "1" stays thin).
        gw = cw if i == 0 else min(cw, mask.shape[1] / mask.shape[0] * 90 * 0.62)
        box = ((x + (cw - gw) / 2) * s, 25 * s, gw * s, 90 * s)
        if emboss:
            d = max(1.0, 0.03 * box[3])
            T.draw_glyph(img, mask, (box[0] + d, box[1] + d, box[2], box[3]),
                         tuple(int(c * 0.5) for c in img[h // 2, 2]))  # fmt: skip
        T.draw_glyph(img, mask, box, ink)
        x += cw + (sep if i == 1 else gap)
        if i == 1:
            cv2.circle(img, (int((x - sep / 2) * s), int(70 * s)), max(1, int(5 * s)), ink, -1,
                       cv2.LINE_AA)  # fmt: skip
    if rng.random() < 0.6:
        _rivets(img, rng, s, (wmm * 0.22, wmm * 0.78), 13)
    return _finish(img, rng, 4 * s, text, style)


# -- European (and other single-line Latin plates) ----------------------------------------
_EU_CODES = ("D", "F", "GB", "NL", "I", "B", "PL", "E", "IND", "CZ", "A", "UK")


def _eu(rng: np.random.Generator, width_px: int) -> PlateImage:
    two_line = rng.random() < 0.1
    wmm, hmm = (340.0, 200.0) if two_line else (520.0, rng.uniform(105, 125))
    s = width_px / wmm
    w, h = width_px, max(4, int(round(hmm * s)))
    r = rng.random()
    if r < 0.06:  # black plate, silver text (older plates in several countries)
        bg, ink = _jitter(rng, (25, 25, 28), 8), _jitter(rng, (220, 220, 220), 10)
    else:
        bg = _jitter(rng, (250, 205, 20) if r < 0.3 else (242, 244, 242), 14)
        ink = _jitter(rng, (15, 15, 20), 8)
    img = _canvas(w, h, bg)
    band = rng.random() < 0.6
    left = 4.0
    if band:
        bw = 42.0 if not two_line else 36.0
        blue = _jitter(rng, (0, 51, 153), 15)
        cv2.rectangle(img, (0, 0), (int(bw * s), h - 1), blue, -1)
        cx, cy, rad = bw / 2, hmm * 0.3, bw * 0.28
        for k in range(12):  # the ring of stars, as dots
            a = 2 * np.pi * k / 12
            p = (int((cx + rad * np.cos(a)) * s), int((cy + rad * np.sin(a)) * s))
            cv2.circle(img, p, max(1, int(2.2 * s)), (255, 204, 0), -1, cv2.LINE_AA)
        code = _EU_CODES[int(rng.integers(0, len(_EU_CODES)))]
        _text(img, code, (3, hmm * 0.58, bw - 6, hmm * 0.3), s, (250, 250, 250),
              T.latin_font("DejaVuSans-Bold.ttf"))  # fmt: skip
        left = bw + 4
    font = T.latin_font(T.LATIN_FONTS[int(rng.choice(3, p=[0.6, 0.3, 0.1]))])
    squeeze = rng.uniform(0.7, 0.95)
    if two_line:
        top = T.layout_text(rng, ("LL DD", "DD LL", "LLL")[int(rng.integers(0, 3))])
        bottom = T.layout_text(rng, ("DDDD", "LL DDD", "DDD")[int(rng.integers(0, 3))])
        _text(img, top, (left, 12, wmm - left - 8, 78), s, ink, font, 0.1, squeeze)
        _text(img, bottom, (left, 108, wmm - left - 8, 78), s, ink, font, 0.1, squeeze)
        printed = top + bottom
    else:
        printed = T.layout_text(rng, T.EU_LAYOUTS[int(rng.integers(0, len(T.EU_LAYOUTS)))])
        th = hmm * rng.uniform(0.62, 0.74)
        _text(img, printed, (left + 2, (hmm - th) / 2, wmm - left - 10, th), s, ink, font,
              rng.uniform(0.06, 0.16), squeeze, emboss=rng.random() < 0.3)  # fmt: skip
    _border(img, s, 0.5, rng.uniform(0.8, 2.5), (30, 30, 30))
    return _finish(img, rng, 5 * s, T.registration(printed), "eu")


# -- United States ---------------------------------------------------------------------
_SLOGANS = ("Sunshine State", "The Lone Star State", "Empire State", "Grand Canyon State",
            "Land of Lincoln", "Virginia is for Lovers", "Great Lakes", "Battle Born",
            "Dealer", "Peach State", "Pure Michigan", "Colorful Colorado")  # fmt: skip


def _us(rng: np.random.Generator, width_px: int) -> PlateImage:
    wmm, hmm = 305.0, 152.0
    s = width_px / wmm
    w, h = width_px, max(4, int(round(hmm * s)))
    bg_top = _jitter(rng, (245, 245, 240), 10)
    tint = rng.random()
    if tint < 0.35:
        bg_bottom = _jitter(rng, (190, 215, 240), 25)  # pale blue sky
    elif tint < 0.55:
        bg_bottom = _jitter(rng, (245, 225, 150), 25)  # pale sunset
    else:
        bg_bottom = None
    img = _canvas(w, h, bg_top, bg_bottom)
    ink = _jitter(
        rng, [(20, 30, 110), (130, 20, 30), (15, 15, 15), (20, 80, 40)][int(rng.integers(0, 4))], 10
    )
    state_ink = _jitter(
        rng, [(180, 30, 40), (20, 40, 140), (15, 15, 15)][int(rng.integers(0, 3))], 10
    )
    state = T.US_STATES[int(rng.integers(0, len(T.US_STATES)))]
    _text(img, state, (60, 8, wmm - 120, 24), s, state_ink,
          T.latin_font(("DejaVuSerif-Bold.ttf", "DejaVuSans-Bold.ttf")[int(rng.integers(0, 2))]),
          0.08)  # fmt: skip
    printed = T.layout_text(rng, T.US_LAYOUTS[int(rng.integers(0, len(T.US_LAYOUTS)))])
    font = T.latin_font(T.LATIN_FONTS[int(rng.choice(3, p=[0.5, 0.35, 0.15]))])
    _text(img, printed, (14, 40, wmm - 28, rng.uniform(62, 76)), s, ink, font,
          rng.uniform(0.05, 0.14), rng.uniform(0.7, 0.9), emboss=rng.random() < 0.5)  # fmt: skip
    if rng.random() < 0.8:
        slogan = _SLOGANS[int(rng.integers(0, len(_SLOGANS)))]
        _text(img, slogan, (70, 124, wmm - 140, 17), s, state_ink,
              T.latin_font("DejaVuSans.ttf"), 0.05)  # fmt: skip
    for corner in range(int(rng.integers(0, 3))):  # registration stickers
        sx = 10 if corner == 0 else wmm - 48
        col = _jitter(
            rng,
            [(230, 60, 60), (60, 160, 60), (240, 200, 40), (60, 90, 200)][int(rng.integers(0, 4))],
            15,
        )
        cv2.rectangle(img, (int(sx * s), int(8 * s)), (int((sx + 38) * s), int(30 * s)), col, -1)
    _border(img, s, 1.0, rng.uniform(1.0, 3.0), _jitter(rng, (90, 90, 95), 20))
    _rivets(img, rng, s, (wmm * 0.22, wmm * 0.78), 20) if rng.random() < 0.5 else None
    return _finish(img, rng, 8 * s, T.registration(printed), "us")


_RENDERERS: dict[str, Callable[[np.random.Generator, int], PlateImage]] = {
    "cn_blue": lambda rng, w: _cn(rng, w, "cn_blue"),
    "cn_green": lambda rng, w: _cn(rng, w, "cn_green"),
    "cn_yellow": lambda rng, w: _cn(rng, w, "cn_yellow"),
    "eu": _eu,
    "us": _us,
}
