"""Scene-wide lighting: night, dusk, rain and haze, over-exposure, glare and vignetting.

These act on a composed scene before the camera effects of :mod:`.effects`.
Unlike a global darkening, they know where the scene's lamps are (head and tail
lights of the cars, street lamps: :class:`Light`) and where its plates are, so
at night a plate is lit by its own car's plate lamp and the headlights of the
camera car while the rest of the frame falls dark, and every lamp blooms.
Nothing here moves a pixel, so plate corners stay exact.

Light maps are computed on a grid a quarter of the image size and upsampled:
they are smooth, and a full-size Gaussian of a large sigma is slow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from platelab.data.synth.effects import grain

# Lighting conditions and their weights for scenes with and without road traffic.
CONDITIONS = ("day", "night", "dusk", "rain", "overexposed")
WEIGHTS_TRAFFIC = (0.5, 0.3, 0.1, 0.07, 0.03)
WEIGHTS_OTHER = (0.8, 0.08, 0.05, 0.04, 0.03)
_Q = 4  # light maps live on a grid this many times coarser than the image


@dataclass
class Light:
    """A lamp in the image: centre ``(x, y)`` and radius ``r`` in pixels, RGB ``color`` in
    [0, 1], ``power`` (1 = a headlight facing the camera)."""

    x: float
    y: float
    r: float
    color: tuple[float, float, float]
    power: float


HEADLIGHT = (1.0, 0.97, 0.88)
TAIL_LIGHT = (1.0, 0.16, 0.1)
SODIUM = (1.0, 0.72, 0.38)


def condition(rng: np.random.Generator, traffic: bool) -> str:
    """A lighting condition drawn with :data:`WEIGHTS_TRAFFIC` or :data:`WEIGHTS_OTHER`."""
    p = np.array(WEIGHTS_TRAFFIC if traffic else WEIGHTS_OTHER)
    return CONDITIONS[int(rng.choice(len(CONDITIONS), p=p / p.sum()))]


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h:_Q, 0:w:_Q].astype(np.float32)
    return xs + _Q / 2, ys + _Q / 2


def _up(small: np.ndarray, w: int, h: int) -> np.ndarray:
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _light_plates(gain: np.ndarray, plates, grow: float, level: float) -> None:
    """Raise ``gain`` (full size, ``(H, W, 3)``) to ``level`` over each plate quad grown by
    ``grow`` of its size, with a soft edge: the plate lamp lights the plate and a little
    of the bumper around it."""
    H, W = gain.shape[:2]
    for c in plates:
        c = np.asarray(c, np.float64)
        centre = c.mean(0)
        q = centre + (c - centre) * (1 + grow)
        size = c.max(0) - c.min(0)
        pad = int(max(2, size[1] * 1.5))
        x0, y0 = np.maximum(np.floor(q.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(q.max(0)).astype(int) + pad, (W, H))
        if x0 >= x1 or y0 >= y1:
            continue
        m = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.fillPoly(m, [np.round((q - (x0, y0)) * 4).astype(np.int32)], 1.0, cv2.LINE_AA, 2)
        m = cv2.GaussianBlur(m, (0, 0), max(0.6, 0.25 * size[1]))
        win = gain[y0:y1, x0:x1]
        np.maximum(win, (m * level)[..., None] * np.float32([1.0, 0.98, 0.92]), out=win)


def _halo(rng, shape, lights: list[Light], spread: float, strength: float) -> np.ndarray:
    """Coarse ``(h, w, 3)`` additive glow: a soft disc per lamp, wider for brighter lamps."""
    h, w = shape
    out = np.zeros((h, w, 3), np.float32)
    if not lights:
        return out
    xs, ys = _grid(h * _Q, w * _Q)
    for L in lights:
        s = max(1.5, L.r * spread * (0.6 + L.power))
        x0, x1 = int(max(0, (L.x - 4 * s) // _Q)), int(min(w, (L.x + 4 * s) // _Q + 1))
        y0, y1 = int(max(0, (L.y - 4 * s) // _Q)), int(min(h, (L.y + 4 * s) // _Q + 1))
        if x0 >= x1 or y0 >= y1:
            continue
        d2 = (xs[y0:y1, x0:x1] - L.x) ** 2 + (ys[y0:y1, x0:x1] - L.y) ** 2
        g = strength * L.power * np.exp(-d2 / (2 * s * s))
        out[y0:y1, x0:x1] += g[..., None] * np.asarray(L.color, np.float32)
    return out


def _cores_and_flares(rng, f: np.ndarray, lights: list[Light], flare: bool, wet: bool) -> None:
    """Saturated lamp cores, horizontal streaks and ghosts (lens flare), road reflections."""
    h, w = f.shape[:2]
    layer = np.zeros((h // 2 + 1, w // 2 + 1, 3), np.float32)  # half size: thin lines stay visible
    for L in lights:
        col = np.asarray(L.color, np.float32) * 255
        c = (int(L.x / 2), int(L.y / 2))
        r = max(1, int(round(L.r / 2)))
        cv2.circle(layer, c, r, tuple(float(v) for v in col * 1.5 * L.power + 120 * L.power), -1)
        if flare and L.power > 0.5 and rng.random() < 0.6:  # a horizontal streak
            n = int(L.r * rng.uniform(4, 14))
            cv2.line(layer, (c[0] - n, c[1]), (c[0] + n, c[1]), tuple(float(v) * 0.5 for v in col),
                     max(1, r // 3), cv2.LINE_AA)  # fmt: skip
        if wet:  # a smeared reflection on the wet road below the lamp
            n = int(L.r * rng.uniform(3, 10))
            cv2.line(layer, (c[0], c[1] + 2 * r), (c[0], c[1] + n), tuple(float(v) * 0.2 for v in col),
                     max(1, r), cv2.LINE_AA)  # fmt: skip
    if flare and lights and rng.random() < 0.3:  # faint ghosts mirrored through the centre
        L = max(lights, key=lambda li: li.power * li.r)
        for t in rng.uniform(-1.2, 0.6, int(rng.integers(2, 5))):
            gx, gy = w / 2 + (L.x - w / 2) * t, h / 2 + (L.y - h / 2) * t
            tint = rng.uniform(3, 12, 3) * L.power
            cv2.circle(layer, (int(gx / 2), int(gy / 2)), int(rng.uniform(0.5, 3) * L.r / 2 + 1),
                       tuple(float(v) for v in tint), -1, cv2.LINE_AA)  # fmt: skip
    layer = cv2.GaussianBlur(layer, (0, 0), 1.0)
    f += _up(layer, w, h)


def night(rng, img: np.ndarray, lights: list[Light], plates, dusk: bool = False,
          wet: bool = False, headlights: bool = True) -> np.ndarray:  # fmt: skip
    """Dark ambient light, lit plates, light pools and blooming lamps.

    Args:
        lights: the scene's lamps.
        plates: ``(4, 2)`` corner arrays of the plates (lit by their own lamps).
        dusk: a brighter, warmer ambient light and weaker lamps.
        wet: reflections of the lamps below them (a wet road).
        headlights: the camera car's own headlights light the lower middle of the frame.
    """
    h, w = img.shape[:2]
    gh, gw = (h + _Q - 1) // _Q, (w + _Q - 1) // _Q
    xs, ys = _grid(h, w)
    if dusk:
        amb = rng.uniform(0.3, 0.6)
        tint = np.array([1.05, 0.9, 0.85]) if rng.random() < 0.6 else np.array([0.85, 0.9, 1.05])
    else:
        amb = rng.uniform(0.05, 0.16)
        tint = np.array([0.8, 0.9, 1.2]) if rng.random() < 0.5 else np.array(SODIUM) * 1.2
    top = rng.uniform(0.4, 1.0)  # the sky and the far end are darker than the near road
    vert = top + (1 - top) * (ys / h)
    gain = (amb * vert)[..., None] * tint.astype(np.float32)
    if headlights:
        cx, rx, ry = (
            w * rng.uniform(0.4, 0.6),
            w * rng.uniform(0.35, 0.7),
            h * rng.uniform(0.3, 0.5),
        )
        pool = np.exp(-(((xs - cx) / rx) ** 2 + ((ys - h) / ry) ** 2))
        gain += (rng.uniform(0.25, 0.8) * (0.5 if dusk else 1) * pool)[..., None] * np.float32(
            HEADLIGHT
        )
    gain += _halo(rng, (gh, gw), lights, 6.0, rng.uniform(0.25, 0.6))  # light spilled around lamps
    gain = _up(gain, w, h)
    # Plate lamps and retro-reflection in the camera car's headlights.
    _light_plates(gain, plates, rng.uniform(0.1, 0.6), rng.uniform(0.55, 1.15))
    f = img.astype(np.float32) * gain
    glow = _halo(rng, (gh, gw), lights, 2.5, rng.uniform(0.4, 1.0) * (0.5 if dusk else 1.0))
    f += _up(glow, w, h) * 255
    _cores_and_flares(rng, f, lights, flare=not dusk or rng.random() < 0.3, wet=wet)
    f += grain(rng, f.shape, rng.uniform(2, 7))
    return cv2.convertScaleAbs(np.maximum(f, 0, out=f))


def rain(rng, img: np.ndarray) -> np.ndarray:
    """Rain streaks and a veil that thickens toward the top (the far end) of the frame."""
    h, w = img.shape[:2]
    layer = np.zeros((h, w), np.uint8)
    n = int(w * h / rng.uniform(1500, 6000))
    ang = rng.normal(0, 0.25)
    length = rng.uniform(0.015, 0.05) * h
    x0 = rng.uniform(-0.1, 1.1, n) * w
    y0 = rng.uniform(-0.05, 1.0, n) * h
    dx, dy = np.sin(ang) * length, np.cos(ang) * length
    for x, y in zip(x0.astype(int), y0.astype(int), strict=True):
        cv2.line(layer, (x, y), (int(x + dx), int(y + dy)), int(rng.integers(60, 160)), 1)
    layer = cv2.blur(layer, (1, 3))
    f = img.astype(np.float32)
    a = rng.uniform(0.15, 0.45) * (1 - np.linspace(0, 1, h, dtype=np.float32))[:, None, None] ** 2
    f = f * (1 - a) + a * rng.uniform(150, 210)
    f += layer[..., None].astype(np.float32) * rng.uniform(0.3, 0.7)
    return cv2.convertScaleAbs(f)


def overexpose(rng, img: np.ndarray) -> np.ndarray:
    """Too much exposure: a gain that clips the highlights, which then bloom."""
    f = img.astype(np.float32) * rng.uniform(1.35, 2.0) + rng.uniform(0, 30)
    h, w = img.shape[:2]
    bright = np.clip(f - 255, 0, 255)
    small = cv2.resize(bright, (max(1, w // _Q), max(1, h // _Q)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), rng.uniform(1, 4))
    f += _up(small, w, h) * rng.uniform(0.3, 0.8)
    return cv2.convertScaleAbs(f)


def sun_glare(rng, img: np.ndarray) -> np.ndarray:
    """A low sun just in or out of frame: a bright washed-out glow and a few ghosts."""
    h, w = img.shape[:2]
    L = Light(rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.2, 0.3) * h, 0.03 * max(w, h),
              (1.0, 0.95, 0.8), 1.0)  # fmt: skip
    gh, gw = (h + _Q - 1) // _Q, (w + _Q - 1) // _Q
    f = img.astype(np.float32)
    f += _up(_halo(rng, (gh, gw), [L], 8.0, rng.uniform(0.3, 0.8)), w, h) * 255
    _cores_and_flares(rng, f, [L], flare=True, wet=False)
    return cv2.convertScaleAbs(f)


def vignette(rng, img: np.ndarray) -> np.ndarray:
    """Corners darker than the centre, as through most lenses."""
    h, w = img.shape[:2]
    xs, ys = _grid(h, w)
    r2 = ((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2
    g = np.clip(1 - rng.uniform(0.1, 0.4) * r2 / 2, 0.4, 1)
    f = img.astype(np.float32) * _up(g.astype(np.float32), w, h)[..., None]
    return cv2.convertScaleAbs(f)


def apply(rng, img: np.ndarray, cond: str, lights: list[Light], plates, road: bool = False):
    """Light a composed scene under ``cond`` (one of :data:`CONDITIONS`); ``road``: the
    scene looks down a road (lamps may then be mirrored in it when wet)."""
    if cond == "night":
        img = night(rng, img, lights, plates, wet=road and rng.random() < 0.3,
                    headlights=rng.random() < 0.7)  # fmt: skip
        if rng.random() < 0.2:
            img = rain(rng, img)
    elif cond == "dusk":
        img = night(rng, img, lights, plates, dusk=True, headlights=rng.random() < 0.3)
    elif cond == "rain":
        img = rain(rng, img)
    elif cond == "overexposed":
        img = overexpose(rng, img)
    elif rng.random() < 0.04:
        img = sun_glare(rng, img)
    if rng.random() < 0.5:
        img = vignette(rng, img)
    return img
