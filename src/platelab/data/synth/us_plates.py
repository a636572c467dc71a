"""US plates (305x152 mm) in many designs, as the fifty states and their specials vary.

A design is a background, an ink scheme and a layout, drawn at random:

* backgrounds: plain white or pale, a vertical gradient, a graphic scene (sky
  gradient, a sun, mountain or hill bands along the bottom), coloured bands at
  the top and/or bottom, or a dark plate;
* inks: dark on light (navy, maroon, black, green), light on dark (white, yellow,
  gold on black, navy, dark green, maroon);
* layout: the state name above or below the characters (plain, serif or italic),
  a small slogan on the other side, sometimes two small letters stacked
  vertically before the serial, embossed (lit top edge, shadowed bottom edge) or flat
  characters, registration stickers, bolt holes.

The recorded text is every registration character in reading order, stacked
ones first (``AB`` stacked before ``1234`` reads ``AB1234``).
"""

from __future__ import annotations

import cv2
import numpy as np

from platelab.data.synth import plate_art as A
from platelab.data.synth import text as T
from platelab.data.synth.plate_art import PlateImage

SLOGANS = ("Sunshine State", "The Lone Star State", "Empire State", "Grand Canyon State",
           "Land of Lincoln", "Virginia is for Lovers", "Great Lakes", "Battle Born",
           "Dealer", "Peach State", "Pure Michigan", "Colorful Colorado", "Famous Potatoes",
           "First in Flight", "Live Free or Die", "Big Sky Country", "Garden State",
           "Wild, Wonderful", "Lake Tahoe", "dmv.ca.gov", "In God We Trust", "The Beehive State")  # fmt: skip
DESIGNS = {"classic": 0.3, "gradient": 0.15, "graphic": 0.25, "banded": 0.15, "dark": 0.15}
_DARK_INKS = ((20, 30, 110), (130, 20, 30), (15, 15, 15), (20, 80, 40), (60, 20, 90))
_LIGHT_INKS = ((245, 245, 240), (250, 210, 40), (225, 190, 90))
_DARK_BGS = ((18, 18, 20), (20, 35, 90), (20, 60, 35), (90, 20, 30))
_STATE_FONTS = ("DejaVuSerif-Bold.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif-BoldItalic.ttf",
                "DejaVuSans-BoldOblique.ttf")  # fmt: skip


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(0, len(seq)))]


def _mountains(rng: np.random.Generator, img: np.ndarray, s: float, hmm: float) -> None:
    """One to three hill or mountain bands along the bottom, nearer bands darker."""
    h, w = img.shape[:2]
    xs = np.arange(w, dtype=np.float64)
    base = _pick(rng, ((70, 110, 160), (60, 120, 70), (150, 100, 60), (110, 90, 140)))
    for band in range(int(rng.integers(1, 4))):
        level = hmm * rng.uniform(0.55, 0.8) + band * hmm * 0.08
        rough = rng.uniform(0.02, 0.15) * hmm
        prof = np.zeros(w)
        for k in (1, 2, 4, 8):
            prof += (
                np.sin(xs / max(w, 1) * np.pi * k * rng.uniform(0.8, 1.2) + rng.uniform(0, 6)) / k
            )
        top = (level - rough * prof) * s
        col = np.clip(np.asarray(base) * (0.85**band) + rng.normal(0, 10, 3), 0, 255)
        rows = np.arange(h)[:, None]
        mask = rows >= top[None, :]
        img[mask] = (0.55 * img[mask] + 0.45 * col).astype(np.uint8)  # printed, not opaque


def _background(rng: np.random.Generator, design: str, w: int, h: int, s: float, hmm: float):
    """``(image, light ink?)``: the plate's background and whether its characters are light."""
    if design == "dark":
        return A.canvas(w, h, A.jitter(rng, _pick(rng, _DARK_BGS), 10)), True
    white = A.jitter(rng, (245, 245, 240), 10)
    if design == "classic":
        return A.canvas(w, h, white), False
    if design == "gradient":
        other = _pick(rng, ((190, 215, 240), (245, 225, 150), (240, 200, 200), (200, 230, 200)))
        top, bottom = (white, A.jitter(rng, other, 20))[:: 1 if rng.random() < 0.6 else -1]
        return A.canvas(w, h, top, bottom), False
    if design == "graphic":
        sky = _pick(rng, ((120, 170, 230), (250, 180, 90), (170, 200, 240), (240, 150, 150)))
        img = A.canvas(w, h, A.jitter(rng, sky, 20), white)
        if rng.random() < 0.5:  # a sun
            c = (int(rng.uniform(0.15, 0.85) * w), int(rng.uniform(0.2, 0.5) * h))
            cv2.circle(img, c, max(1, int(rng.uniform(12, 30) * s)), A.jitter(rng, (250, 220, 120), 15),
                       -1, cv2.LINE_AA)  # fmt: skip
        _mountains(rng, img, s, hmm)
        return img, False
    img = A.canvas(w, h, white)  # banded: a coloured band at the top, maybe one at the bottom
    band = A.jitter(rng, _pick(rng, ((30, 50, 130), (160, 30, 40), (20, 90, 50), (10, 10, 10))), 15)
    img[: int(rng.uniform(22, 34) * s)] = band
    if rng.random() < 0.5:
        img[h - int(rng.uniform(14, 24) * s) :] = band
    return img, False


def render_us(rng: np.random.Generator, width_px: int) -> PlateImage:
    """A random US plate exactly ``width_px`` pixels wide."""
    wmm, hmm = 305.0, 152.0
    s = width_px / wmm
    w, h = width_px, max(4, int(round(hmm * s)))
    names = list(DESIGNS)
    design = names[int(rng.choice(len(names), p=np.array(list(DESIGNS.values()))))]
    img, light = _background(rng, design, w, h, s, hmm)
    ink = A.jitter(rng, _pick(rng, _LIGHT_INKS if light else _DARK_INKS), 10)
    state_ink = (
        ink
        if rng.random() < 0.4
        else A.jitter(
            rng,
            _pick(rng, _LIGHT_INKS if light else ((180, 30, 40), (20, 40, 140), (15, 15, 15))),
            10,
        )
    )
    if design == "banded":  # the state name goes white into the top band
        state_ink, state_top = (245, 245, 245), True
    else:
        state_top = rng.random() < 0.7
    state = _pick(rng, T.US_STATES)
    state_font = T.latin_font(_pick(rng, _STATE_FONTS))
    state_box = (50, 6, wmm - 100, 26) if state_top else (50, 120, wmm - 100, 26)
    A.text_box(img, state, state_box, s, state_ink, state_font, 0.08)
    if rng.random() < 0.75:  # a small slogan on the other side
        slogan = _pick(rng, SLOGANS)
        box = (70, 126, wmm - 140, 16) if state_top else (70, 9, wmm - 140, 16)
        A.text_box(img, slogan, box, s, state_ink, T.latin_font("DejaVuSans.ttf"), 0.05)
    font = T.latin_font(T.LATIN_FONTS[int(rng.choice(3, p=[0.5, 0.35, 0.15]))])
    y, th = (40, rng.uniform(62, 76)) if state_top else (22, rng.uniform(70, 86))
    left, stacked = 14.0, ""
    if rng.random() < 0.15:  # two small letters stacked before the serial
        stacked = T.layout_text(rng, "LL")
        for k, ch in enumerate(stacked):
            A.text_box(img, ch, (16, y + k * th / 2, 22, th / 2 - 2), s, ink, font, 0.0)
        left = 44.0
    printed = T.layout_text(rng, _pick(rng, T.US_LAYOUTS))
    emboss = rng.random() < 0.5
    box = (left, y, wmm - left - 14, th)
    if emboss:  # stamped: a lit top-left edge
        lit = tuple(int(min(255, c * 1.25 + 40)) for c in img[int(y * s), int(left * s)])
        A.text_box(img, printed, (box[0] - 0.8, box[1] - 0.8, *box[2:]), s, lit, font,
                   0.1, rng.uniform(0.7, 0.9))  # fmt: skip
    squeeze = rng.uniform(0.7, 0.9)
    A.text_box(img, printed, box, s, ink, font, rng.uniform(0.05, 0.14), squeeze, emboss=emboss)
    for corner in range(int(rng.integers(0, 3))):  # registration stickers
        sx = 10 if corner == 0 else wmm - 48
        sy = 8 if state_top else 122
        col = A.jitter(
            rng, _pick(rng, ((230, 60, 60), (60, 160, 60), (240, 200, 40), (60, 90, 200))), 15
        )
        cv2.rectangle(
            img, (int(sx * s), int(sy * s)), (int((sx + 38) * s), int((sy + 22) * s)), col, -1
        )
    A.border(img, s, 1.0, rng.uniform(1.0, 3.0), A.jitter(rng, (90, 90, 95), 20))
    if rng.random() < 0.5:
        A.rivets(img, rng, s, (wmm * 0.22, wmm * 0.78), 20 if state_top else 132)
    return A.finish(img, rng, 8 * s, stacked + T.registration(printed), "us")
