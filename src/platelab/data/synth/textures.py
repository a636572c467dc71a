"""Photographic surface textures: asphalt, concrete, grass, foliage, skies and skylines.

Each is built from fractal noise (:func:`noise_texture`) mapped through a few
colours, with fine grain on top, so surfaces have the irregular detail of a
photo instead of flat fills. All return or draw ``(h, w, 3)`` uint8 RGB.
"""

from __future__ import annotations

import cv2
import numpy as np

from platelab.data.synth.effects import grain


def noise_texture(rng: np.random.Generator, w: int, h: int, octaves: int = 4) -> np.ndarray:
    """``(h, w)`` float32 fractal noise with zero mean and unit-ish spread.

    Octaves are summed at a quarter of the size (the finest has at most 32 cells
    across) and upsampled once: a full-size cubic resize per octave was the
    generator's largest cost.
    """
    sw, sh = max(2, w // 4), max(2, h // 4)
    out = np.zeros((sh, sw), np.float32)
    for o in range(octaves):
        n = 2 ** (o + 2)
        small = rng.normal(0, 1, (max(2, n * h // max(w, h)), max(2, n * w // max(w, h))))
        out += cv2.resize(small.astype(np.float32), (sw, sh), interpolation=cv2.INTER_CUBIC) / (
            o + 1
        )
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def _colorize(lum: np.ndarray, dark, light) -> np.ndarray:
    """Map ``lum`` (0 dark .. 1 light, float) onto the colour ramp ``dark -> light``."""
    t = np.clip(lum, 0, 1)[..., None]
    return (1 - t) * np.asarray(dark, np.float32) + t * np.asarray(light, np.float32)


def _to_u8(f: np.ndarray) -> np.ndarray:
    return cv2.convertScaleAbs(np.maximum(f, 0, out=f))


def asphalt_texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Road surface: grey with a faint tint, stains and patches, fine aggregate grain."""
    base = rng.uniform(55, 130)
    tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.03, 3)
    lum = base + 10 * noise_texture(rng, w, h, 4)
    if rng.random() < 0.5:  # darker tyre tracks / repaired patches
        lum -= 14 * np.clip(noise_texture(rng, w, h, 2), 0, None)
    f = lum[..., None] * tint.astype(np.float32)
    f += grain(rng, (h, w, 1), rng.uniform(5, 12))
    return _to_u8(f)


def concrete(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Pale pavement with slab joints."""
    lum = rng.uniform(130, 200) + 12 * noise_texture(rng, w, h, 4)
    f = lum[..., None] * (np.array([1.0, 0.99, 0.96]) + rng.normal(0, 0.02, 3)).astype(np.float32)
    f += grain(rng, (h, w, 1), rng.uniform(3, 8))
    img = _to_u8(f)
    step = max(6, int(rng.uniform(0.08, 0.3) * max(w, h)))
    joint = tuple(int(v) for v in np.asarray(img[h // 2, w // 2], float) * 0.6)
    for y in range(int(rng.uniform(0, step)), h, max(3, step // 3)):
        cv2.line(img, (0, y), (w, y), joint, 1, cv2.LINE_AA)
    return img


def foliage(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Leaves and bushes: dark green shadows, sunlit yellow-green clumps, bright specks."""
    lum = 0.45 + 0.22 * noise_texture(rng, w, h, 5)
    lum += 0.15 * grain(rng, (h, w), 1.0)  # leaf-scale speckle
    dark = np.array([15, 35, 15]) * rng.uniform(0.7, 1.4)
    light = np.array([120, 160, 60]) * rng.uniform(0.7, 1.2)
    return _to_u8(_colorize(lum, dark, light))


def grass(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A verge: green to straw-coloured, fine texture."""
    lum = 0.5 + 0.15 * noise_texture(rng, w, h, 4) + 0.1 * grain(rng, (h, w), 1.0)
    dry = rng.uniform(0, 1)
    dark = (1 - dry) * np.array([30, 60, 20]) + dry * np.array([80, 70, 40])
    light = (1 - dry) * np.array([110, 150, 60]) + dry * np.array([190, 170, 110])
    return _to_u8(_colorize(lum, dark, light))


def ground_texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """What lies beside a road: grass, pavement or bushes."""
    return (grass, concrete, foliage)[int(rng.choice(3, p=[0.45, 0.4, 0.15]))](rng, w, h)


def sky(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A gradient sky from clear blue to overcast grey, with soft clouds."""
    grey = rng.uniform(0, 1)
    top = (1 - grey) * np.array((95, 145, 215)) + grey * rng.uniform(150, 210)
    bottom = np.array((215, 222, 230)) * rng.uniform(0.9, 1.05)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    cloud = np.clip(noise_texture(rng, w, h, 4) * 0.5 + rng.uniform(-0.4, 0.3), 0, 1)
    f = _colorize(np.broadcast_to(t, (h, w)).copy(), top, bottom)
    f += (cloud * rng.uniform(20, 70))[..., None]
    return _to_u8(f)


def skyline(rng: np.random.Generator, img: np.ndarray) -> None:
    """Fill ``img`` (the part above a horizon) with sky, buildings and trees, in place."""
    h, w = img.shape[:2]
    if h < 2:
        return
    img[:] = sky(rng, w, h)
    x = -int(rng.uniform(0, 0.2) * w)
    trees = np.zeros((h, w), np.uint8)
    while x < w:
        bw = int(rng.uniform(0.08, 0.35) * w) + 2
        top = int(rng.uniform(0.05, 0.9) * h)
        if rng.random() < 0.5:  # a building: a textured block with rows of darker windows
            col = np.array([rng.uniform(90, 210)] * 3) * (1 + rng.normal(0, 0.08, 3))
            x0, x1 = max(0, x), min(w, x + bw)
            if x1 > x0 and h > top:
                lum = 1 + 0.08 * noise_texture(rng, x1 - x0, h - top, 3)
                img[top:, x0:x1] = _to_u8(lum[..., None] * col.astype(np.float32))
                win = col * rng.uniform(0.35, 0.7)
                step = max(4, int(bw / rng.uniform(4, 12)))
                for wy in range(top + step // 2, h - step // 2, step):
                    for wx in range(x0 + step // 3, x1 - step // 2, step):
                        c = tuple(float(v) for v in win * rng.uniform(0.7, 1.3))  # lit, curtained
                        cv2.rectangle(img, (wx, wy), (wx + step // 2, wy + step // 2), c, -1)
        else:  # a clump of trees
            for _ in range(int(rng.integers(3, 9))):
                c = (int(x + rng.uniform(0, bw)), int(rng.uniform(top, h)))
                cv2.circle(trees, c, int(rng.uniform(0.1, 0.35) * bw + 3), 255, -1)
        x += bw
    if trees.any():
        edge = cv2.GaussianBlur(trees, (0, 0), 1.2).astype(np.float32)[..., None] / 255
        img[:] = (img * (1 - edge) + foliage(rng, w, h) * edge).astype(np.uint8)
