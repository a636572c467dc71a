"""Synthetic plate crops for the recogniser: a plate photographed, then cut out as a detector would.

:func:`render_crop` renders one crop the way a real one comes to be:

1. a plate of any style (:func:`.plates.render_plate`, two-line plates included), 56 to
   320 pixels wide, sometimes dirty (smudges, a dark film);
2. posed in a small "photo": perspective, rotation, on a car-paint surround with a
   holder and bumper edges;
3. photographed: uneven light, shadows, white balance, over- or under-exposure, night,
   haze, defocus or motion blur, a low-resolution sensor, noise and JPEG;
4. cut out with :func:`platelab.geometry.warp_quad` into
   :data:`platelab.geometry.CROP_SIZE`, from corners jittered by a few per cent of the
   plate's width and height (a detector's corners are never exact) or, for half the
   crops (``box_p``), as the upright box around the tilted plate, its sides a little out
   or in (the LPRNet layout).

:func:`generate_crops` writes many in parallel (``platelab data synth OUT --formats crops``)::

    OUT/crops/<text>.jpg, <text>_<k>.jpg   named by text (the LPRNet layout); _1, _2, ...
                                           when a text repeats
    OUT/crops/labels.csv                   image,text,style,rows,row_split,split

Crop ``i`` depends only on ``(seed, i)``: the same files for any worker count.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from platelab.atomic import atomic_write_bytes
from platelab.data.imageio import encode_jpeg
from platelab.data.synth import effects
from platelab.data.synth.compose import apply_h, plate_homography, warp_into
from platelab.data.synth.plates import render_plate
from platelab.data.synth.scenes import make_rng
from platelab.geometry import CROP_SIZE, warp_quad

# Chinese plates weigh most: real evaluation sets (CCPD) are Chinese; every style is drawn.
CROP_STYLE_WEIGHTS = {"cn_blue": 0.35, "cn_green": 0.2, "cn_yellow": 0.12, "eu": 0.18, "us": 0.15}
# Share of crops the camera sharpens: without it the rendered crops were softer than real
# CCPD ones (benchmarks/crop_sharpness.py: median Laplacian-to-contrast ratio at 94x24,
# synthetic 1.07, real 1.36-1.64).
SHARPEN_P = 0.6
LABELS_NAME = "labels.csv"
LABEL_COLUMNS = ["image", "text", "style", "rows", "row_split", "split"]
JPEG_QUALITY = 92
_UNSAFE = re.compile(r"[^\w]|_", re.UNICODE)  # "_" and "-" start a suffix when read back


@dataclass(frozen=True)
class CropConfig:
    """What :func:`render_crop` draws.

    Attributes:
        size: the crop's ``(width, height)``.
        styles: plate style -> weight.
        plate_px: smallest and largest plate width in the photo, pixels (log-uniform).
        jitter: largest corner error as a share of the plate's ``(width, height)``.
        degrade: apply the camera effects (False: a clean, straight plate).
        box_p: share of crops cut as the upright box around the tilted plate, its sides
            a little out or in (the layout of LPRNet-style crop folders, cut from an
            annotation's or a detector's box) instead of straightened by its corners.
        sharpen_p: share of degraded crops the camera sharpens (:data:`SHARPEN_P`).
    """

    size: tuple[int, int] = CROP_SIZE
    styles: dict[str, float] = field(default_factory=lambda: dict(CROP_STYLE_WEIGHTS))
    plate_px: tuple[float, float] = (56.0, 320.0)
    jitter: tuple[float, float] = (0.03, 0.08)
    degrade: bool = True
    box_p: float = 0.5
    sharpen_p: float = SHARPEN_P


@dataclass
class PlateCrop:
    """A rendered crop: ``image`` ``(H, W, 3)`` uint8 RGB at the config's size, its text,
    style, rows (1 or 2) and, for two rows, where the top row ends (share of the height)."""

    image: np.ndarray
    text: str
    style: str
    rows: int = 1
    row_split: float | None = None


def render_crop(rng_or_seed, config: CropConfig | None = None) -> PlateCrop:
    """Render one crop (a Generator, an int seed or ``(seed, index)``)."""
    cfg = config or CropConfig()
    rng = make_rng(rng_or_seed)
    names = list(cfg.styles)
    p = np.array([cfg.styles[n] for n in names], np.float64)
    style = names[int(rng.choice(len(names), p=p / p.sum()))]
    lo, hi = np.log(cfg.plate_px[0]), np.log(cfg.plate_px[1])
    plate = render_plate(style, rng, int(round(np.exp(rng.uniform(lo, hi)))))
    if cfg.degrade and rng.random() < 0.25:
        dirt(rng, plate.rgb)
    ph, pw = plate.rgb.shape[:2]
    rect = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64)
    boxed = cfg.degrade and rng.random() < cfg.box_p
    quad = _pose(rng, rect, pw, ph, tilt_deg=7 if boxed else 4) if cfg.degrade else rect.copy()
    margin = rng.uniform(0.3, 0.9) * ph + 4
    quad += margin - quad.min(0)
    w, h = (int(np.ceil(v)) for v in quad.max(0) + margin)
    img = surround(rng, w, h, quad)
    warp_into(img, plate.rgb, plate.alpha, plate_homography(pw, ph, quad))
    if cfg.degrade:
        img = camera(rng, img, ph, cfg.sharpen_p)
        quad = quad + _corner_jitter(rng, quad, cfg.jitter)
    if boxed:
        quad = _box_around(rng, quad, img.shape[1], img.shape[0], plate.rows)
    crop = warp_quad(img, quad, cfg.size)
    return PlateCrop(crop, plate.text, style, plate.rows, plate.row_split)


# -- the photo ---------------------------------------------------------------------------------
def _pose(
    rng: np.random.Generator, rect: np.ndarray, pw: int, ph: int, tilt_deg: float = 4
) -> np.ndarray:
    """``rect`` under a mild perspective (yaw, pitch) and rotation about its centre
    (normal with ``tilt_deg`` degrees of spread, at most three spreads)."""
    c = rect.mean(0)
    yaw = float(np.clip(rng.normal(0, 0.12), -0.35, 0.35))
    pitch = float(np.clip(rng.normal(0, 0.08), -0.25, 0.25))
    theta = np.deg2rad(float(np.clip(rng.normal(0, tilt_deg), -3 * tilt_deg, 3 * tilt_deg)))
    persp = np.array([[1, 0, 0], [0, 1, 0], [yaw / (pw / 2), pitch / (ph / 2), 1]])
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
    to_c = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1]], np.float64)
    out = apply_h(rot @ persp @ to_c, rect)
    # Keep the plate's width: the pose changes its shape, not its resolution.
    return out * (pw / max(1.0, np.ptp(out[:, 0])))


def surround(rng: np.random.Generator, w: int, h: int, quad: np.ndarray) -> np.ndarray:
    """Car paint with a gradient and grain, bumper edges, and often a dark plate holder."""
    paint = rng.integers(0, 256, 3) if rng.random() < 0.6 else np.full(3, rng.integers(10, 240))
    t = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None] * rng.uniform(-40, 40)
    f = np.broadcast_to(paint.astype(np.float32), (h, w, 3)) + t
    f = f + effects.grain(rng, (h, w, 1), rng.uniform(2, 10))
    img = cv2.convertScaleAbs(np.maximum(f, 0))
    for _ in range(int(rng.integers(0, 4))):  # bumper and grille edges, roughly horizontal
        y = int(rng.uniform(0, h))
        shade = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.line(img, (0, y), (w, y + int(rng.normal(0, 3))), shade, int(rng.integers(1, 4)))
    if rng.random() < 0.5:
        centre = quad.mean(0)
        grow = 1 + rng.uniform(0.03, 0.15)
        holder = np.round(centre + (quad - centre) * grow).astype(np.int32)
        cv2.fillPoly(img, [holder], tuple(int(v) for v in rng.integers(0, 70, 3)), cv2.LINE_AA)
    return img


def dirt(rng: np.random.Generator, rgb: np.ndarray) -> None:
    """Mud spots and a dark film on the plate (in place)."""
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 8))):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (max(1, int(rng.uniform(0.02, 0.15) * w)), max(1, int(rng.uniform(0.05, 0.3) * h)))
        cv2.ellipse(mask, c, axes, rng.uniform(0, 180), 0, 360, rng.uniform(0.2, 0.7), -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.03 * h))
    mask += rng.uniform(0, 0.2)  # an even film of grime
    mud = np.asarray(rng.integers(40, 110, 3), np.float32) * [1.0, 0.85, 0.6]
    a = np.clip(mask, 0, 0.7)[..., None]
    rgb[:] = (rgb * (1 - a) + mud * a).astype(np.uint8)


def camera(rng: np.random.Generator, img: np.ndarray, plate_h: int, sharpen_p: float) -> np.ndarray:
    """Light and camera, with blur sizes relative to the plate's height in pixels; the
    camera sharpens with probability ``sharpen_p``."""
    k = plate_h / 40  # blur and motion scale with the plate
    if rng.random() < 0.6:
        img = effects.lighting(rng, img)
    if rng.random() < 0.25:
        img = effects.shadow(rng, img)
    if rng.random() < 0.8:
        img = effects.color(rng, img)
    r = rng.random()
    if r < 0.08:  # over-exposed: highlights clip, strokes bleed
        f = img.astype(np.float32) * rng.uniform(1.3, 2.0) + rng.uniform(0, 25)
        img = cv2.convertScaleAbs(f)
    elif r < 0.18:  # under-exposed
        img = cv2.convertScaleAbs(img.astype(np.float32) * rng.uniform(0.4, 0.75))
    elif r < 0.22:
        img = effects.night(rng, img)
    elif r < 0.27:
        img = effects.haze(rng, img)
    r = rng.random()
    if r < 0.45:  # mostly mild; one in ten strong
        strong = 1.8 if rng.random() < 0.05 else 1.0
        img = effects.defocus(rng, img, rng.uniform(0.3, 1.0) * k * strong)
    elif r < 0.55:
        img = effects.motion(rng, img, max(3, int(rng.uniform(0.03, 0.12) * plate_h)))
    if rng.random() < 0.12:
        img = effects.low_res(rng, img)
    if rng.random() < 0.6:
        img = effects.noise(rng, img)
    if rng.random() < sharpen_p:
        img = effects.sharpen(rng, img)
    if rng.random() < 0.5:
        img = effects.jpeg(rng, img)
    return img


def _box_around(
    rng: np.random.Generator, quad: np.ndarray, w: int, h: int, rows: int = 1
) -> np.ndarray:
    """The upright box around ``quad``, each side moved out by its own margin, inside the
    ``w x h`` image, as a TL, TR, BR, BL quad.

    A side's margin is drawn from -7% to 10% of the plate's width (left, right) or -8% to
    25% of its height (top, bottom; never negative on a two-row plate, whose small top
    row sits near the edge): a negative margin cuts into the plate, as a tight annotation
    or a detector's box does. LPRNet-style crops of CCPD cut the border and, now and
    then, the edge of the first or last character; -7% reaches a third of the way into
    a Chinese plate's first or last character (its cell starts 3.5% in, 10% wide).
    """
    (x0, y0), (x1, y1) = quad.min(0), quad.max(0)
    dx0, dx1 = rng.uniform(-0.07, 0.10, 2) * (x1 - x0)
    dy0, dy1 = rng.uniform(-0.08 if rows == 1 else 0.0, 0.25, 2) * (y1 - y0)
    x0, x1 = max(0.0, x0 - dx0), min(float(w), x1 + dx1)
    y0, y1 = max(0.0, y0 - dy0), min(float(h), y1 + dy1)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _corner_jitter(rng: np.random.Generator, quad: np.ndarray, jitter) -> np.ndarray:
    """Independent corner errors, uniform within ``jitter`` of the plate's width and height."""
    width = max(np.hypot(*(quad[1] - quad[0])), 1.0)
    height = max(np.hypot(*(quad[3] - quad[0])), 1.0)
    amount = rng.uniform(0, 1) * np.array([jitter[0] * width, jitter[1] * height])
    return rng.uniform(-1, 1, (4, 2)) * amount


# -- writing -----------------------------------------------------------------------------------
def safe_stem(text: str) -> str:
    """A file stem for ``text``: characters that are not letters or digits become ``x``
    (``labels.csv`` keeps the true text)."""
    return _UNSAFE.sub("x", text) or "x"


def _one(index: int, seed: int, config: CropConfig, split_fractions) -> dict:
    from platelab.data.synth import scene_split

    crop = render_crop((seed, index), config)
    return {
        "jpeg": encode_jpeg(crop.image, JPEG_QUALITY),
        "text": crop.text,
        "style": crop.style,
        "rows": crop.rows,
        "row_split": crop.row_split,
        "split": scene_split(index, split_fractions),
    }


def generate_crops(
    out: Path,
    count: int,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    *,
    config: CropConfig | None = None,
    split_fractions: tuple[float, float] = (0.1, 0.1),
) -> dict:
    """Render ``count`` crops into the folder ``out`` (see the module docstring).

    Names are given in index order in this process, so they do not depend on
    ``workers``. The caller checks that ``out`` may be written (``synth.generate``).

    Returns:
        ``{"crops": n, "by_style": ..., "by_rows": ..., "by_split": ...}``.
    """
    from platelab.data.synth import _init_worker

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    job = partial(_one, seed=seed, config=config or CropConfig(), split_fractions=split_fractions)
    seen: Counter[str] = Counter()
    rows: list[dict] = []
    with tqdm(total=count, desc="synth crops", unit="crop", disable=not progress) as bar:
        if workers > 1 and count > 1:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                results = pool.map(job, range(count), chunksize=max(1, min(64, count // workers)))
                for res in results:
                    rows.append(_write_one(out, res, seen))
                    bar.update()
        else:
            for i in range(count):
                rows.append(_write_one(out, job(i), seen))
                bar.update()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LABEL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / LABELS_NAME, buf.getvalue().encode("utf-8"))
    return {
        "crops": len(rows),
        "by_style": dict(Counter(r["style"] for r in rows)),
        "by_rows": dict(Counter(str(r["rows"]) for r in rows)),
        "by_split": dict(Counter(r["split"] for r in rows)),
    }


def _write_one(out: Path, res: dict, seen: Counter) -> dict:
    stem = safe_stem(res["text"])
    k = seen[stem]
    seen[stem] += 1
    name = f"{stem}.jpg" if k == 0 else f"{stem}_{k}.jpg"
    (out / name).write_bytes(res["jpeg"])
    split = res["row_split"]
    return {
        "image": name,
        "text": res["text"],
        "style": res["style"],
        "rows": res["rows"],
        "row_split": "" if split is None else f"{split:.4g}",
        "split": res["split"],
    }
