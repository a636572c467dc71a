"""Backgrounds and clutter: streets, parking lots, walls, textures, and a few real photos.

Every function draws into ``(H, W, 3)`` uint8 RGB arrays with pixel coordinates
(``x`` right, ``y`` down). Clutter adds what real photos are full of and plates
must be told apart from: signs with text, plate-sized blank rectangles, stripes,
poles, blobs. None of it is a plate, so a scene's labels stay exact.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from platelab.data.imageio import read_image
from platelab.data.synth import text as T
from platelab.data.synth import textures
from platelab.data.synth.textures import noise_texture

# Real photos that ship inside installed packages (used when present, never required).
_PHOTO_FILES = (
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/astronaut.png"),
)
_WORDS = ("PARKING", "EXIT", "SALE", "HOTEL", "OPEN", "STOP", "TAXI", "BUS", "NO ENTRY", "CAFE",
          "停车场", "出口", "入口", "超市", "银行", "禁止停车", "SERVICE", "AUTO", "WASH", "24H",
          "POLICE", "SCHOOL", "P", "SHOP", "酒店", "欢迎光临")  # fmt: skip


@functools.cache
def package_photos() -> tuple[Path, ...]:
    """Paths of the sample photos found in installed packages (may be empty)."""
    found = []
    for pkg, rel in _PHOTO_FILES:
        spec = importlib.util.find_spec(pkg)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            if (Path(loc) / rel).is_file():
                found.append(Path(loc) / rel)
    return tuple(found)


@functools.lru_cache(maxsize=8)
def _load_photo(path: Path) -> np.ndarray:
    return read_image(path)


def _rand_color(rng: np.random.Generator, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _earth_color(rng: np.random.Generator, lo: int = 40, hi: int = 210) -> tuple[int, int, int]:
    """A muted colour: natural surfaces are far less saturated than random RGB."""
    c = np.asarray(_rand_color(rng, lo, hi), np.float64)
    c = c.mean() + (c - c.mean()) * rng.uniform(0.15, 0.6)
    return tuple(int(v) for v in c)


def _some_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """Mostly muted colours, sometimes a saturated one (signs, paint, clothes)."""
    return _rand_color(rng) if rng.random() < 0.25 else _earth_color(rng)


def _tint(gray: np.ndarray, rgb) -> np.ndarray:
    return np.clip(gray[..., None] * (np.asarray(rgb, np.float32) / 128.0), 0, 255).astype(np.uint8)


def asphalt(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Grey road surface: fine grain, stains, and painted lines or parking bays."""
    img = textures.asphalt_texture(rng, w, h)
    paint = (235, 235, 230) if rng.random() < 0.7 else (230, 200, 60)
    for _ in range(int(rng.integers(0, 4))):
        x0, x1 = rng.uniform(-0.2, 1.2, 2) * w
        thick = max(2, int(rng.uniform(0.01, 0.05) * w))
        cv2.line(img, (int(x0), 0), (int(x1), h), paint, thick, cv2.LINE_AA)
    if rng.random() < 0.15:  # a zebra crossing or parking bay hatch
        ang, gap = rng.uniform(-0.5, 0.5), rng.uniform(0.06, 0.15) * w
        for k in range(-10, 10):
            x = w / 2 + k * gap
            cv2.line(
                img, (int(x), 0), (int(x + np.tan(ang) * h), h), paint, int(gap / 3), cv2.LINE_AA
            )
    return img


def street(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Sky, buildings or trees above a horizon, road or pavement below."""
    horizon = int(h * rng.uniform(0.2, 0.6))
    img = np.empty((h, w, 3), np.uint8)
    img[horizon:] = (
        asphalt(rng, w, h - horizon)
        if rng.random() < 0.75
        else textures.concrete(rng, w, h - horizon)
    )
    textures.skyline(rng, img[: horizon + 1])
    return img


def wall(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Bricks or tiles with mortar lines and grime."""
    col = np.array(_earth_color(rng, 60, 220), np.float32)
    g = 128 + 10 * noise_texture(rng, w, h, 4)
    img = _tint(g, col)
    bh = max(4, int(rng.uniform(0.02, 0.1) * h))
    bw = int(bh * rng.uniform(1, 3))
    mortar = tuple(int(v) for v in np.clip(col * rng.uniform(0.5, 1.4), 0, 255))
    for r, y in enumerate(range(0, h, bh)):
        cv2.line(img, (0, y), (w, y), mortar, max(1, bh // 8))
        for x in range((r % 2) * bw // 2, w, bw):
            cv2.line(img, (x, y), (x, y + bh), mortar, max(1, bh // 8))
    return img


def texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Fractal noise around one colour: foliage, gravel, fabric, blurred crowds.

    Mostly luminance with a little chroma, as natural surfaces are (independent
    noise per channel looks psychedelic).
    """
    lum = noise_texture(rng, w, h, int(rng.integers(2, 6)))[..., None] * rng.uniform(15, 45)
    chroma = np.stack([noise_texture(rng, w // 4 + 1, h // 4 + 1, 2) for _ in range(3)], -1)
    chroma = cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR) * rng.uniform(3, 12)
    mix = lum + chroma + np.array(_earth_color(rng), np.float32)
    return np.clip(mix, 0, 255).astype(np.uint8)


def photo(rng: np.random.Generator, w: int, h: int) -> np.ndarray | None:
    """A random crop of a packaged photo, flipped and colour-shifted; None if there is none."""
    photos = package_photos()
    if not photos:
        return None
    img = _load_photo(photos[int(rng.integers(0, len(photos)))])
    ph, pw = img.shape[:2]
    frac = rng.uniform(0.3, 1.0)
    cw, ch = int(pw * frac), int(ph * frac)
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    crop = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.clip(crop * rng.uniform(0.7, 1.3, 3), 0, 255).astype(np.uint8)


def background(rng: np.random.Generator, w: int, h: int, road: bool = False) -> np.ndarray:
    """A random background of one of the kinds above, ``(h, w, 3)`` uint8.

    ``road`` favours streets and road surfaces (for scenes with cars on the ground).
    """
    kinds = (street, asphalt, wall, texture, photo, textures.foliage, textures.concrete)
    p = np.array([0.45, 0.3, 0.04, 0.05, 0.03, 0.06, 0.07] if road
                 else [0.22, 0.15, 0.15, 0.15, 0.08, 0.13, 0.12])  # fmt: skip
    img = kinds[int(rng.choice(len(kinds), p=p))](rng, w, h)
    if img is None:
        img = texture(rng, w, h)
    # Grime and uneven light over everything, so no area is perfectly flat.
    g = 1 + rng.uniform(0.03, 0.12) * noise_texture(rng, w, h, 3)
    f = img.astype(np.float32)
    f *= g[..., None]
    return cv2.convertScaleAbs(np.maximum(f, 0, out=f))


# -- clutter -----------------------------------------------------------------------------
def sign(rng: np.random.Generator, img: np.ndarray, x: int, y: int, size: int) -> None:
    """A sign: a filled panel with one to three lines of words (never a plate layout)."""
    lines = int(rng.integers(1, 4))
    words = [_WORDS[int(rng.integers(0, len(_WORDS)))] for _ in range(lines)]
    aspect = rng.uniform(0.6, 2.5)
    sw, sh = int(size * aspect), int(size * lines * rng.uniform(0.5, 0.8))
    bg, ink = _some_color(rng), _some_color(rng)
    cv2.rectangle(img, (x, y), (x + sw, y + sh), bg, -1)
    if rng.random() < 0.5:
        cv2.rectangle(img, (x, y), (x + sw, y + sh), ink, max(1, size // 20))
    lh = sh / lines
    for i, word in enumerate(words):
        font = (
            T.cjk_font() if any(ord(c) > 127 for c in word) else T.latin_font("DejaVuSans-Bold.ttf")
        )
        T.draw_text_line(
            img, word, (x + sw * 0.08, y + lh * (i + 0.2), sw * 0.84, lh * 0.6), ink, font
        )


def free_text(rng: np.random.Generator, img: np.ndarray, x: int, y: int, size: int) -> None:
    """Loose words (stickers, shop fronts, painted road text), at most half the image wide."""
    word = _WORDS[int(rng.integers(0, len(_WORDS)))]
    cjk = any(ord(c) > 127 for c in word)
    font = T.cjk_font() if cjk else T.latin_font(T.LATIN_FONTS[int(rng.integers(0, 3))])
    size = min(size, int(img.shape[1] / 2 / len(word)) + 4)
    T.draw_text_line(img, word, (x, y, size * len(word), size), _some_color(rng), font)


def blank_plate(rng: np.random.Generator, img: np.ndarray, x: int, y: int, size: int) -> None:
    """A plate-shaped rectangle without characters: a holder, a label, a panel."""
    pw, ph = int(size * rng.uniform(2, 4.7)), size
    col = _rand_color(rng) if rng.random() < 0.5 else (235, 235, 230)
    cv2.rectangle(img, (x, y), (x + pw, y + ph), col, -1, cv2.LINE_AA)
    cv2.rectangle(img, (x, y), (x + pw, y + ph), _rand_color(rng), max(1, size // 15), cv2.LINE_AA)
    if rng.random() < 0.5:  # a logo or a stripe, but no registration
        cv2.circle(img, (x + pw // 2, y + ph // 2), ph // 3, _rand_color(rng), -1, cv2.LINE_AA)


def shapes(rng: np.random.Generator, img: np.ndarray, x: int, y: int, size: int) -> None:
    """Blobs, poles, stripes and outlines."""
    col = _some_color(rng)
    k = int(rng.integers(0, 4))
    if k == 0:
        cv2.circle(img, (x, y), size // 2, col, -1 if rng.random() < 0.7 else 2, cv2.LINE_AA)
    elif k == 1:
        cv2.rectangle(img, (x, y), (x + size // 6 + 2, y + size * 4), col, -1)  # a pole
    elif k == 2:
        cv2.line(img, (x, y), (x + int(rng.normal(0, size)), y + int(rng.normal(0, size))), col,
                 int(rng.integers(1, 8)), cv2.LINE_AA)  # fmt: skip
    else:
        pts = (np.array([x, y]) + rng.normal(0, size / 2, (int(rng.integers(3, 7)), 2))).astype(
            np.int32
        )
        cv2.fillPoly(img, [pts], col, cv2.LINE_AA)


def clutter(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    """Scatter ``count`` distractors over ``img`` in place."""
    h, w = img.shape[:2]
    painters = (sign, free_text, blank_plate, shapes)
    p = np.array([0.2, 0.2, 0.15, 0.45])
    for _ in range(count):
        size = int(np.exp(rng.uniform(np.log(8), np.log(max(9, min(w, h) / 4)))))
        x, y = int(rng.uniform(-0.1, 1) * w), int(rng.uniform(-0.1, 1) * h)
        painters[int(rng.choice(len(painters), p=p))](rng, img, x, y, size)
