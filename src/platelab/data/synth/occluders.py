"""Things in front: people, poles, posts and tree trunks.

Occluders are drawn after the cars. They keep off every plate, except that a
small share of scenes lets one post or pole cover part of one plate (at most
:data:`PARTIAL_MAX` of its box): real plates are sometimes partly hidden, and
their labels still span the whole plate.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from platelab.data.synth.compose import Frame, Warped, blend

PARTIAL_MAX = 0.3


def _shade_across(w: int, h: int, color, shine: float) -> np.ndarray:
    """``(h, w, 3)`` uint8: a cylinder's shading across its width, lit from one side."""
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
    g = (
        0.65
        + 0.35 * np.cos(np.clip(x - 0.3, -1.57, 1.57))
        + shine * np.exp(-(((x + 0.3) / 0.15) ** 2))
    )
    y = np.linspace(1.0, 0.85, h, dtype=np.float32)[:, None, None]
    return cv2.convertScaleAbs(np.asarray(color, np.float32) * g * y)


def pole(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A pole, post or trunk ``height x width`` pixels: ``(rgb, alpha)``."""
    kind = rng.random()
    if kind < 0.5:  # metal: grey, dark green or black
        col = (np.array([[120, 122, 125], [40, 70, 50], [30, 30, 32]])[int(rng.integers(0, 3))]
               * rng.uniform(0.7, 1.3))  # fmt: skip
        shine = rng.uniform(0.2, 0.6)
    elif kind < 0.8:  # a tree trunk
        col, shine = np.array([85, 65, 45]) * rng.uniform(0.6, 1.2), 0.0
    else:  # a yellow or striped bollard
        col, shine = np.array([220, 180, 40]) * rng.uniform(0.7, 1.1), 0.3
    rgb = _shade_across(width, height, col, shine)
    if kind >= 0.5 and kind < 0.8:  # bark
        noise = rng.normal(0, 1, (max(2, height // 6), max(2, width // 3))).astype(np.float32)
        bark = cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.convertScaleAbs(rgb.astype(np.float32) * (1 + 0.15 * bark)[..., None])
    return rgb, np.full((height, width), 255, np.uint8)


def person(rng: np.random.Generator, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A standing person ``height`` pixels tall, feet at the bottom centre: ``(rgb, alpha)``."""
    H = max(12, int(height))
    W = max(6, int(H * 0.42))
    rgb = np.zeros((H, W, 3), np.float32)
    alpha = np.zeros((H, W), np.uint8)
    skin = np.array([[235, 195, 160], [190, 140, 100], [120, 80, 55]][int(rng.integers(0, 3))])
    top = np.full(3, rng.uniform(25, 190)) + rng.normal(0, 25, 3)  # mostly greys and muted tints
    legs = np.array([[40, 55, 90], [25, 25, 28], [150, 130, 95]][int(rng.integers(0, 3))])
    cx = W / 2

    def poly(pts, col):
        p = np.round(np.asarray(pts, np.float64) * [W, H] * 16).astype(np.int32)
        cv2.fillPoly(rgb, [p], tuple(float(c) for c in col), cv2.LINE_AA, 4)
        cv2.fillPoly(alpha, [p], 255, cv2.LINE_AA, 4)

    sh = rng.uniform(0.28, 0.36)  # shoulder half-width, fraction of W
    poly([(0.5 - 0.09, 0.52), (0.5 - 0.02, 0.52), (0.5 - 0.04 + rng.normal(0, 0.02), 1.0),
          (0.5 - 0.13, 1.0)], legs)  # fmt: skip
    poly([(0.5 + 0.02, 0.52), (0.5 + 0.09, 0.52), (0.5 + 0.13, 1.0),
          (0.5 + 0.04 + rng.normal(0, 0.02), 1.0)], legs)  # fmt: skip
    poly([(0.5 - sh, 0.16), (0.5 + sh, 0.16), (0.5 + sh * 0.8, 0.55), (0.5 - sh * 0.8, 0.55)], top)
    for side in (-1, 1):  # arms hanging down
        poly([(0.5 + side * sh, 0.16), (0.5 + side * (sh + 0.12), 0.2),
              (0.5 + side * (sh + 0.1), 0.5), (0.5 + side * (sh - 0.02), 0.5)], top * 0.85)  # fmt: skip
    cv2.ellipse(rgb, (int(cx), int(0.08 * H)), (max(1, int(0.13 * W)), max(1, int(0.065 * H))), 0,
                0, 360, tuple(float(c) for c in skin), -1, cv2.LINE_AA)  # fmt: skip
    cv2.ellipse(alpha, (int(cx), int(0.08 * H)), (max(1, int(0.13 * W)), max(1, int(0.065 * H))),
                0, 0, 360, 255, -1, cv2.LINE_AA)  # fmt: skip
    cv2.ellipse(rgb, (int(cx), int(0.055 * H)), (max(1, int(0.14 * W)), max(1, int(0.04 * H))), 0,
                180, 360, (30, 25, 20), -1, cv2.LINE_AA)  # fmt: skip
    x = np.linspace(-1, 1, W, dtype=np.float32)[None, :, None]
    rgb *= 0.75 + 0.3 * np.cos(np.clip(x - 0.3, -1.57, 1.57))
    # Cloth folds and light from above: low-frequency noise and a vertical falloff.
    folds = cv2.resize(rng.normal(0, 1, (8, 4)).astype(np.float32), (W, H))
    rgb *= ((1 + 0.12 * folds) * np.linspace(1.1, 0.8, H, dtype=np.float32)[:, None])[..., None]
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, H / 300))
    return cv2.convertScaleAbs(rgb), alpha


def _window(fr: Frame, x0: int, y0: int, rgb, alpha) -> Warped | None:
    """Crop a source placed at ``(x0, y0)`` to the image."""
    H, W = fr.img.shape[:2]
    h, w = alpha.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if xa >= xb or ya >= yb:
        return None
    return Warped(xa, ya, rgb[ya - y0 : yb - y0, xa - x0 : xb - x0],
                  alpha[ya - y0 : yb - y0, xa - x0 : xb - x0])  # fmt: skip


def occlude(rng: np.random.Generator, fr: Frame, count: int,
            height_at: Callable[[float], float] | None = None, partial: bool = False) -> None:  # fmt: skip
    """Draw ``count`` people and poles that keep off the plates, and with ``partial`` one
    post over part of one plate.

    Args:
        height_at: the pixel height of a 1.75 m person standing on image row ``y``
            (a road scene's perspective); None draws heights at random.
    """
    H, W = fr.img.shape[:2]
    for _ in range(count):
        y = rng.uniform(0.55, 1.15) * H
        # Without a road's perspective: the lower the feet, the nearer and taller.
        tall = height_at(y) if height_at else max(0.0, y - 0.4 * H) * rng.uniform(0.6, 1.2)
        if tall < 8:
            continue
        if rng.random() < (0.6 if height_at else 0.4):
            rgb, alpha = person(rng, int(tall))
        else:
            rgb, alpha = pole(
                rng, int(tall * rng.uniform(1.5, 4)), max(2, int(tall * rng.uniform(0.04, 0.1)))
            )
        h, w = alpha.shape
        win = _window(fr, int(rng.uniform(-0.1, 1.0) * W), int(y - h), rgb, alpha)
        if win is not None and not any(win.covers(p.box_xyxy) for p in fr.placed):
            blend(fr.img, win)
    if partial and fr.placed:
        _partial(rng, fr)


def _partial(rng: np.random.Generator, fr: Frame) -> None:
    """A post in front of one end of one plate, hiding at most :data:`PARTIAL_MAX` of it."""
    target = fr.placed[int(rng.integers(0, len(fr.placed)))]
    x0, y0, x1, y1 = target.box_xyxy
    pw, ph = x1 - x0, y1 - y0
    width = max(2, int(pw * rng.uniform(0.06, 0.22)))
    height = int(ph * rng.uniform(4, 12))
    x = x0 - width * 0.5 if rng.random() < 0.5 else x1 - width * 0.5
    y_top = y1 + ph * rng.uniform(0.5, 3) - height
    rgb, alpha = pole(rng, height, width)
    win = _window(fr, int(round(x)), int(round(y_top)), rgb, alpha)
    if win is None:
        return
    others = [p for p in fr.placed if p is not target]
    if win.covered_fraction(target.box_xyxy) <= PARTIAL_MAX and not any(
        win.covers(p.box_xyxy) for p in others
    ):
        blend(fr.img, win)
