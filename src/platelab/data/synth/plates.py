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
* ``cn_yellow``: 440x140 mm, black on yellow (7 characters, trucks and buses); 30% are
  the 440x220 mm two-line plates of large trucks (``省A`` above ``12345``).
* ``eu``: 520x110 mm white or yellow with a blue band at the left (EU stars and a
  country code), black text; UK-style plates (white front, yellow rear, bold
  narrow characters, an optional dealer line), variants without the band
  (India, Israel), black plates with silver text, and two-line square plates.
* ``us``: 305x152 mm in many designs, see :mod:`.us_plates`.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from platelab.data.synth import plate_art as A
from platelab.data.synth import text as T
from platelab.data.synth.plate_art import PlateImage
from platelab.data.synth.us_plates import render_us
from platelab.errors import PlatelabError

# Chinese plates keep CCPD covered; EU-style and US plates cover the many countries of
# photo collections such as Kaggle's and US traffic.
STYLE_WEIGHTS = {"cn_blue": 0.3, "cn_green": 0.1, "cn_yellow": 0.05, "eu": 0.33, "us": 0.22}
# Shares of Chinese plates whose "1" (a plain stroke), "W" and "G" are the real typeface's.
CN_BAR_ONE = 0.7
CN_PLATE_W = 0.6
CN_PLATE_G = 0.6


def render_plate(style: str, rng: np.random.Generator, width_px: int) -> PlateImage:
    """Render a random plate of ``style`` exactly ``width_px`` pixels wide (at least 8).

    Raises:
        PlatelabError: an unknown style.
    """
    if style not in _RENDERERS:
        raise PlatelabError(f"unknown plate style {style!r}; choose from {', '.join(_RENDERERS)}")
    return _RENDERERS[style](rng, max(8, int(width_px)))


# -- Chinese -----------------------------------------------------------------------------
def _cn(rng: np.random.Generator, width_px: int, style: str) -> PlateImage:
    green = style == "cn_green"
    wmm, hmm = (480.0, 140.0) if green else (440.0, 140.0)
    s = width_px / wmm
    w, h = width_px, max(4, int(round(hmm * s)))
    text = T.cn_text(rng, 8 if green else 7)
    if style == "cn_blue":
        # Retro-reflective blue photographs bright and slightly cyan (CCPD crops: ~(40,110,230)).
        img = A.canvas(w, h, A.jitter(rng, (30, 95, 225), 22))
        ink = A.jitter(rng, (245, 245, 245), 8)
        A.border(img, s, 3.0, 2.0, ink)
    elif green:
        img = A.canvas(w, h, A.jitter(rng, (235, 245, 235), 10), A.jitter(rng, (60, 185, 90), 20))
        ink = A.jitter(rng, (15, 15, 15), 8)
        A.border(img, s, 1.0, 1.5, (40, 90, 50))
    else:
        img = A.canvas(w, h, A.jitter(rng, (245, 190, 20), 20))
        ink = A.jitter(rng, (15, 15, 15), 8)
        A.border(img, s, 3.0, 2.0, ink)
    n = len(text)
    cw, gap, sep = (43.0, 9.0, 47.0) if green else (45.0, 12.0, 34.0)
    x = (wmm - (n * cw + (n - 2) * gap + sep)) / 2
    face = _CnFace(rng)
    zero = face.glyph("0")
    emboss = rng.random() < 0.5
    for i, ch in enumerate(text):
        mask = face.province(ch) if i == 0 else face.glyph(ch)
        # Plate glyphs are tall and narrow: the province fills its cell, a "0" nearly
        # does whatever the font's width, others keep their proportions (a "1" stays thin).
        gw = cw if i == 0 else min(cw, T.aspect(mask) / T.aspect(zero) * cw * 0.92)
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
        A.rivets(img, rng, s, (wmm * 0.22, wmm * 0.78), 13)
    return A.finish(img, rng, 4 * s, text, style)


class _CnFace:
    """The typeface of one Chinese plate, drawn at random: a Latin font for letters and
    digits, a stroke weight, the province's face, whether ``1`` is the plain vertical
    stroke (no flag, no foot) of the plate typeface, drawn as the font's ``I``, and
    whether ``W`` and ``G`` are the plate typeface's (:func:`.text.plate_w`,
    :func:`.text.plate_g`)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.latin = T.latin_font(T.CN_LATIN_FONTS[int(rng.integers(0, len(T.CN_LATIN_FONTS)))])
        self.weight = int(rng.integers(-T.STROKE_PX, T.STROKE_PX + 1))
        # A Noto weight (three quarters) or, as None, WenQuanYi (the last quarter).
        face = int(rng.integers(0, len(T.PLATE_CJK_FONTS) + 1))
        self.cjk_face = face if face < len(T.PLATE_CJK_FONTS) else None
        self.bar_one = rng.random() < CN_BAR_ONE
        self.plate_w = rng.random() < CN_PLATE_W
        self.plate_g = rng.random() < CN_PLATE_G

    def glyph(self, ch: str) -> np.ndarray:
        if ch == "W" and self.plate_w:
            return T.plate_w(self.weight)
        if ch == "G" and self.plate_g:
            return T.plate_g(self.weight)
        return T.glyph_mask("I" if self.bar_one and ch == "1" else ch, self.latin, self.weight)

    def province(self, ch: str) -> np.ndarray:
        return T.cjk_glyph(ch, self.cjk_face, self.weight)


def _cn_yellow(rng: np.random.Generator, width_px: int) -> PlateImage:
    """A yellow plate: one line (small trucks, buses) or, for 30%, two lines (large trucks)."""
    return _cn_two_line(rng, width_px) if rng.random() < 0.3 else _cn(rng, width_px, "cn_yellow")


def _cn_two_line(rng: np.random.Generator, width_px: int) -> PlateImage:
    """A 440x220 mm two-line yellow plate: ``省 A`` above (60 mm tall), ``12345`` below
    (110 mm); the gap between the rows is centred at 40% of the height."""
    wmm, hmm = 440.0, 220.0
    s = width_px / wmm
    w, h = width_px, max(4, int(round(hmm * s)))
    text = T.cn_text(rng, 7)
    img = A.canvas(w, h, A.jitter(rng, (245, 190, 20), 20))
    ink = A.jitter(rng, (15, 15, 15), 8)
    A.border(img, s, 3.0, 2.0, ink)
    face = _CnFace(rng)
    zero = face.glyph("0")
    # Upper row: the province and the letter, squat and far apart, a dot between them.
    for mask, x in ((face.province(text[0]), 110.0), (face.glyph(text[1]), 255.0)):
        T.draw_glyph(img, mask, (x * s, 18 * s, 75 * s, 60 * s), ink)
    cv2.circle(img, (int(220 * s), int(48 * s)), max(1, int(5 * s)), ink, -1, cv2.LINE_AA)
    # Lower row: five tall characters.
    cw, gap = 65.0, 12.0
    x = (wmm - (5 * cw + 4 * gap)) / 2
    for ch in text[2:]:
        mask = face.glyph(ch)
        gw = min(cw, T.aspect(mask) / T.aspect(zero) * cw * 0.92)
        T.draw_glyph(img, mask, ((x + (cw - gw) / 2) * s, 98 * s, gw * s, 110 * s), ink)
        x += cw + gap
    if rng.random() < 0.6:
        A.rivets(img, rng, s, (40.0, wmm - 40.0), 48)
    return A.finish(img, rng, 4 * s, text, "cn_yellow", rows=2, row_split=88 / 220)


# -- European (and other single-line Latin plates) ----------------------------------------
_EU_CODES = ("D", "F", "GB", "NL", "I", "B", "PL", "E", "IND", "CZ", "A", "UK", "P", "S", "RO",
             "H", "SK", "IRL", "DK", "FIN", "LT", "GR", "IL")  # fmt: skip
_DEALERS = ("AUTOS LTD", "MOTOR GROUP", "CAR CENTRE", "GARAGE", "MOTORS")


def _eu(rng: np.random.Generator, width_px: int) -> PlateImage:
    two_line = rng.random() < 0.1
    wmm, hmm = (340.0, 200.0) if two_line else (520.0, rng.uniform(105, 125))
    s = width_px / wmm
    w, h = width_px, max(4, int(round(hmm * s)))
    r = rng.random()
    uk = not two_line and rng.random() < 0.3  # UK-style: yellow rear, white front, bold face
    if r < 0.06 and not uk:  # black plate, silver text (older plates in several countries)
        bg, ink = A.jitter(rng, (25, 25, 28), 8), A.jitter(rng, (220, 220, 220), 10)
    else:
        yellow = r < (0.5 if uk else 0.25)
        bg = A.jitter(rng, (250, 205, 20) if yellow else (242, 244, 242), 14)
        ink = A.jitter(rng, (15, 15, 20), 8)
    img = A.canvas(w, h, bg)
    band = rng.random() < (0.35 if uk else 0.6)
    left = 4.0
    if band:
        bw = 42.0 if not two_line else 36.0
        blue = A.jitter(rng, (0, 51, 153), 15)
        cv2.rectangle(img, (0, 0), (int(bw * s), h - 1), blue, -1)
        cx, cy, rad = bw / 2, hmm * 0.3, bw * 0.28
        for k in range(12):  # the ring of stars, as dots
            a = 2 * np.pi * k / 12
            p = (int((cx + rad * np.cos(a)) * s), int((cy + rad * np.sin(a)) * s))
            cv2.circle(img, p, max(1, int(2.2 * s)), (255, 204, 0), -1, cv2.LINE_AA)
        code = (
            ("UK", "GB")[int(rng.integers(0, 2))]
            if uk
            else _EU_CODES[int(rng.integers(0, len(_EU_CODES)))]
        )
        A.text_box(img, code, (3, hmm * 0.58, bw - 6, hmm * 0.3), s, (250, 250, 250),
              T.latin_font("DejaVuSans-Bold.ttf"))  # fmt: skip
        left = bw + 4
    font = T.latin_font(T.LATIN_FONTS[int(rng.choice(len(T.LATIN_FONTS), p=T.LATIN_FONT_P))])
    squeeze = rng.uniform(0.7, 0.95)
    if uk:
        font, squeeze = T.latin_font("DejaVuSans-Bold.ttf"), rng.uniform(0.62, 0.78)
    if two_line:
        top = T.layout_text(rng, ("LL DD", "DD LL", "LLL")[int(rng.integers(0, 3))])
        bottom = T.layout_text(rng, ("DDDD", "LL DDD", "DDD")[int(rng.integers(0, 3))])
        A.text_box(img, top, (left, 12, wmm - left - 8, 78), s, ink, font, 0.1, squeeze)
        A.text_box(img, bottom, (left, 108, wmm - left - 8, 78), s, ink, font, 0.1, squeeze)
        printed = top + bottom
    else:
        layout = "LLDD LLL" if uk else T.EU_LAYOUTS[int(rng.integers(0, len(T.EU_LAYOUTS)))]
        printed = T.layout_text(rng, layout)
        th = hmm * rng.uniform(0.62, 0.74)
        dealer = uk and rng.random() < 0.5
        y = (hmm - th) / 2 - (6 if dealer else 0)
        A.text_box(img, printed, (left + 2, y, wmm - left - 10, th), s, ink, font,
                   rng.uniform(0.06, 0.16), squeeze, emboss=rng.random() < 0.3)  # fmt: skip
        if dealer:  # the supplier's name in small print under the characters
            name = _DEALERS[int(rng.integers(0, len(_DEALERS)))]
            A.text_box(img, name, (wmm * 0.3, hmm - 14, wmm * 0.4, 8), s, ink,
                       T.latin_font("DejaVuSans.ttf"), 0.05)  # fmt: skip
    A.border(img, s, 0.5, rng.uniform(0.8, 2.5), (30, 30, 30))
    rows, split = (2, 0.5) if two_line else (1, None)  # two equal rows, 12-90 and 108-186 mm
    return A.finish(img, rng, 5 * s, T.registration(printed), "eu", rows, split)


_RENDERERS: dict[str, Callable[[np.random.Generator, int], PlateImage]] = {
    "cn_blue": lambda rng, w: _cn(rng, w, "cn_blue"),
    "cn_green": lambda rng, w: _cn(rng, w, "cn_green"),
    "cn_yellow": _cn_yellow,
    "eu": _eu,
    "us": render_us,
}
