"""Drawing helpers shared by the plate renderers: canvases, borders, rivets, text, finish.

Plates are laid out in millimetres of the real plate; ``s`` is pixels per millimetre.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from platelab.data.synth import text as T


@dataclass
class PlateImage:
    """A rendered plate.

    Attributes:
        rgb: ``(h, w, 3)`` uint8 RGB, the whole plate front-on.
        alpha: ``(h, w)`` uint8, 255 on the plate (rounded corners fall to 0).
        text: the registration, see :mod:`platelab.data.synth.text` (two-line plates:
            the top row, then the bottom row).
        style: one of :data:`STYLE_WEIGHTS`.
        rows: 1, or 2 for a two-line plate.
        row_split: for a two-line plate, where its top row ends as a share of the
            plate's height (see :func:`platelab.geometry.two_line_to_one`); else None.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    text: str
    style: str
    rows: int = 1
    row_split: float | None = None


def jitter(rng: np.random.Generator, rgb, amount: float = 18) -> tuple[int, int, int]:
    c = np.asarray(rgb, np.float64) + rng.normal(0, amount / 2, 3) + rng.normal(0, amount)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def canvas(w: int, h: int, top, bottom=None) -> np.ndarray:
    """``(h, w, 3)`` uint8 filled with ``top`` or a vertical gradient ``top -> bottom``."""
    if bottom is None:
        return np.full((h, w, 3), top, np.uint8)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    col = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.ascontiguousarray(np.broadcast_to(col, (h, w, 3)), dtype=np.uint8)


def rounded_mask(w: int, h: int, radius: float) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    r = int(max(0, min(radius, h / 2 - 1, w / 2 - 1)))
    cv2.rectangle(m, (r, 0), (w - 1 - r, h - 1), 255, -1)
    cv2.rectangle(m, (0, r), (w - 1, h - 1 - r), 255, -1)
    for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
        cv2.circle(m, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return m


def border(img: np.ndarray, s: float, inset_mm: float, width_mm: float, color) -> None:
    h, w = img.shape[:2]
    t = max(1, int(round(width_mm * s)))
    i = int(round(inset_mm * s))
    cv2.rectangle(img, (i, i), (w - 1 - i, h - 1 - i), color, t, cv2.LINE_AA)


def rivets(img: np.ndarray, rng: np.random.Generator, s: float, xs_mm, y_mm: float) -> None:
    r = max(1, int(round(rng.uniform(3.5, 6) * s)))
    shade = int(rng.integers(120, 230))
    for x in xs_mm:
        c = (int(round(x * s)), int(round(y_mm * s)))
        cv2.circle(img, c, r, (shade, shade, shade), -1, cv2.LINE_AA)
        cv2.circle(img, c, max(1, r // 2), (shade // 2,) * 3, -1, cv2.LINE_AA)


def text_box(img, printed, box_mm, s, color, font, spacing=0.12, squeeze=1.0, emboss=False):
    x, y, w, h = (v * s for v in box_mm)
    if emboss:  # stamped characters throw a thin shadow below and right
        d = max(1.0, 0.025 * h)
        shadow = tuple(int(c * 0.6) for c in img[int(y), int(x)])
        T.draw_text_line(img, printed, (x + d, y + d, w, h), shadow, font, spacing, squeeze)
    T.draw_text_line(img, printed, (x, y, w, h), color, font, spacing, squeeze)


def finish(img: np.ndarray, rng: np.random.Generator, radius: float, text: str, style: str,
           rows: int = 1, row_split: float | None = None):  # fmt: skip
    h, w = img.shape[:2]
    f = img.astype(np.float32)
    # Uneven reflectance: dirt and wear as low-frequency noise, and a gloss gradient.
    noise = cv2.resize(rng.normal(0, 1, (4, 8)).astype(np.float32), (w, h))
    f *= (1 + rng.uniform(0, 0.08) * noise)[..., None]
    g = np.linspace(-1, 1, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
    f += (rng.uniform(0, 30) * g)[..., None]
    rgb = np.clip(f, 0, 255).astype(np.uint8)
    return PlateImage(rgb, rounded_mask(w, h, radius), text, style, rows, row_split)
