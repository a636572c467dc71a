"""Camera and lighting effects applied to a whole composed scene.

Each effect takes and returns an ``(H, W, 3)`` uint8 RGB image and never moves a
pixel by more than a blur radius, so plate corners stay where they were drawn.
:func:`degrade` chains them with probabilities tuned so that most scenes get a
little of everything and a few get a lot (night, haze, heavy blur, low quality),
as the CCPD subsets ``ccpd_blur``, ``ccpd_db`` (dark/bright) and ``ccpd_fn`` do.
"""

from __future__ import annotations

import cv2
import numpy as np

from platelab.data.imageio import decode_image, encode_jpeg


def grain(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean noise of standard deviation ``sigma``, float32, cheaply.

    The sum of two uniform bytes is triangular (sd 104.1): close enough to a
    Gaussian for sensor grain, and ~10x faster to draw than ``rng.normal``.
    """
    n = int(np.prod(shape))
    a = np.frombuffer(rng.bytes(n), np.uint8).astype(np.float32)
    a += np.frombuffer(rng.bytes(n), np.uint8)
    a -= 255.0
    a *= sigma / 104.1
    return a.reshape(shape)


def _gain(img: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``img * gain[..., None]`` saturated to uint8 (``gain`` is ``(H, W)`` float32)."""
    f = img.astype(np.float32)
    f *= gain[..., None]
    return cv2.convertScaleAbs(f)


def _soft_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blur a float mask at a quarter of its size (a large sigma is slow at full size)."""
    h, w = mask.shape
    small = cv2.resize(mask, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.3, sigma / 4))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def lighting(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A linear or radial light falloff, multiplied in (gain 0.45 .. 1.35)."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h:8, 0:w:8].astype(np.float32)  # coarse grid, upsampled below
    if rng.random() < 0.6:
        a = rng.uniform(0, 2 * np.pi)
        t = (xs / w - 0.5) * np.cos(a) + (ys / h - 0.5) * np.sin(a)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot((xs - cx) / w, (ys - cy) / h) - 0.5
    lo, hi = rng.uniform(0.45, 1.0), rng.uniform(1.0, 1.35)
    gain = np.clip((lo + hi) / 2 + t * (hi - lo), lo, hi)
    return _gain(img, cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR))


def shadow(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A soft-edged polygon darkening part of the scene (a building, a tree, a pole)."""
    h, w = img.shape[:2]
    n = int(rng.integers(3, 7))
    pts = np.stack([rng.uniform(-0.2, 1.2, n) * w, rng.uniform(-0.2, 1.2, n) * h], 1)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1.0)
    sigma = rng.uniform(0.002, 0.03) * max(w, h)
    return _gain(img, 1 - rng.uniform(0.25, 0.6) * _soft_mask(mask, sigma))


def color(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """White balance, contrast, saturation and gamma, through one lookup table per channel."""
    x = np.arange(256, dtype=np.float32) / 255
    gamma = np.exp(rng.normal(0, 0.25))
    contrast = rng.uniform(0.7, 1.25)
    luts = []
    for gain in rng.normal(1, 0.06, 3):
        y = (np.clip(x * gain, 0, 1) ** gamma - 0.5) * contrast + 0.5 + rng.normal(0, 0.03)
        luts.append(np.clip(y * 255, 0, 255).astype(np.uint8))
    out = cv2.merge([cv2.LUT(img[..., c], luts[c]) for c in range(3)])
    sat = rng.uniform(0.5, 1.3)
    if abs(sat - 1) > 0.05:
        gray = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        out = cv2.addWeighted(out, sat, gray, 1 - sat, 0)
    return out


def night(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Dark, blue-shifted, noisy: a photo in poor light."""
    f = img.astype(np.float32) * rng.uniform(0.15, 0.45) * np.array([0.85, 0.9, 1.1], np.float32)
    f += grain(rng, img.shape, rng.uniform(3, 9))
    return cv2.convertScaleAbs(np.maximum(f, 0, out=f))  # clamp first: it takes |x|


def haze(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Washed out: blend toward a bright grey (fog, over-exposure, a dirty lens)."""
    a = rng.uniform(0.2, 0.55)
    veil = np.full_like(img, int(rng.uniform(170, 250)))
    return cv2.addWeighted(img, 1 - a, veil, a, 0)


def defocus(rng: np.random.Generator, img: np.ndarray, strength: float) -> np.ndarray:
    """Gaussian blur with ``sigma = strength`` pixels."""
    return cv2.GaussianBlur(img, (0, 0), max(0.3, strength))


def motion(rng: np.random.Generator, img: np.ndarray, length: int) -> np.ndarray:
    """Linear motion blur over ``length`` pixels at a random angle.

    Rotate so the motion is horizontal, box-blur along rows, rotate back: a large
    line kernel in ``cv2.filter2D`` is ~30x slower here.
    """
    h, w = img.shape[:2]
    length = max(3, int(length))
    p = length
    padded = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REFLECT)
    ph, pw = padded.shape[:2]
    rot_m = cv2.getRotationMatrix2D((pw / 2, ph / 2), rng.uniform(0, 180), 1)
    # The rotated canvas is enlarged to hold the whole image: rotating within the same
    # canvas cut off the corners of non-square images (and plates there were lost).
    cos, sin = abs(rot_m[0, 0]), abs(rot_m[0, 1])
    nw, nh = int(np.ceil(ph * sin + pw * cos)), int(np.ceil(ph * cos + pw * sin))
    rot_m[:, 2] += (nw / 2 - pw / 2, nh / 2 - ph / 2)
    rot = cv2.warpAffine(padded, rot_m, (nw, nh), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    rot = cv2.blur(rot, (length, 1))
    back = cv2.warpAffine(rot, cv2.invertAffineTransform(rot_m), (pw, ph), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    return np.ascontiguousarray(back[p : p + h, p : p + w])


def sharpen(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """The camera's own sharpening (an unsharp mask, as phone and traffic-camera image
    processors apply before JPEG): crisp, slightly haloed edges, amplified noise."""
    sigma, amount = rng.uniform(0.6, 1.5), rng.uniform(0.5, 2.0)
    blurred = cv2.GaussianBlur(img, (0, 0), sigma)
    return cv2.addWeighted(img, 1 + amount, blurred, -amount, 0)  # saturates to uint8


def noise(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Sensor noise, drawn at half resolution (demosaicing correlates neighbours),
    sometimes stronger in the dark (shot-noise-like)."""
    h, w = img.shape[:2]
    n = grain(rng, ((h + 1) // 2, (w + 1) // 2, 3), rng.uniform(1, 10))
    n = cv2.resize(n, (w, h), interpolation=cv2.INTER_LINEAR)
    f = img.astype(np.float32)
    if rng.random() < 0.5:
        n *= 1.5 - f / 255
    f += n
    return cv2.convertScaleAbs(np.maximum(f, 0, out=f))  # clamp first: it takes |x|


def low_res(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Down- then up-sample: a small sensor or a digital zoom."""
    h, w = img.shape[:2]
    f = rng.uniform(0.3, 0.7)
    small = cv2.resize(img, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Re-encode at a low JPEG quality (blocking, ringing)."""
    return decode_image(encode_jpeg(img, quality=int(rng.integers(15, 70))))


def degrade(rng: np.random.Generator, img: np.ndarray, light: str = "day") -> np.ndarray:
    """The camera pipeline of a scene: light, shadow, colour, blur, noise, compression.

    ``light`` is the scene's lighting condition (:mod:`.lighting`): a scene already
    lit for night, dusk, rain or over-exposure is not darkened or hazed again.
    """
    scale = max(img.shape[:2]) / 640  # blur sizes grow with the image
    if rng.random() < 0.7:
        img = lighting(rng, img)
    if rng.random() < 0.3:
        img = shadow(rng, img)
    if rng.random() < 0.8:
        img = color(rng, img)
    r = rng.random() if light == "day" else 1.0
    if r < 0.05:
        img = night(rng, img)
    elif r < 0.11:
        img = haze(rng, img)
    r = rng.random()
    if r < 0.35:
        img = defocus(rng, img, rng.uniform(0.4, 1.2) * scale * (3 if rng.random() < 0.15 else 1))
    elif r < 0.47:
        img = motion(rng, img, rng.uniform(3, 12) * scale)
    if rng.random() < 0.15:
        img = low_res(rng, img)
    if rng.random() < 0.6:
        img = noise(rng, img)
    if rng.random() < 0.4:
        img = jpeg(rng, img)
    return img
