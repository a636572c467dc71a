"""Training windows for the corner refiner: a posed plate, the box a detector would give
it, and the window around that box with the plate's exact corners.

:func:`render_corner_sample` draws a plate of any style (:func:`.plates.render_plate`),
24 to 320 pixels wide, posed the way cameras see plates: rotation, perspective and a
lean (the vertical sides sheared, as from a camera above and to the side: CCPD's plates
lean 2 to 12 degrees), on the recogniser crops' car-paint surround with its dark holder
(:func:`.crops.surround`) and through the same camera (:func:`.crops.camera`). The box
is the upright box around the plate with each side moved by a detector-sized error (a
loose box's for a quarter of them), and the sample is :func:`platelab.models.corner_refiner.window_around` that box,
straightened into :data:`~platelab.models.corner_refiner.WINDOW_SIZE`; the target is
the plate's true outer corners in the window's pixels.

Sample ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from platelab.data.synth.compose import apply_h, plate_homography, warp_into
from platelab.data.synth.crops import CROP_STYLE_WEIGHTS, camera, dirt, surround
from platelab.data.synth.plates import render_plate
from platelab.data.synth.scenes import make_rng
from platelab.geometry import warp_quad
from platelab.models.corner_refiner import WINDOW_SIZE, photo_to_window, window_around

PLATE_PX = (24.0, 320.0)  # plate widths in the photo, log-uniform
# A detector's box error per side: normal, as a share of the plate's width (left,
# right) and height (top, bottom), clipped at three spreads; a share WIDE_P of the
# boxes are off by the wider BOX_ERROR_WIDE (a loose box around a plate on a car of its
# colour, a box that takes in a badge or a sticker beside the plate).
BOX_ERROR = (0.04, 0.10)
BOX_ERROR_WIDE = (0.10, 0.25)
WIDE_P = 0.25
FLIP = [1, 0, 3, 2]  # TL, TR, BR, BL mirrored left-right: TR, TL, BL, BR


def pose(rng: np.random.Generator, pw: int, ph: int) -> np.ndarray:
    """The plate rectangle ``pw x ph`` posed: rotation N(0, 4 deg), a lean of the vertical
    sides (tan ~ N(0, 0.12)) and a mild perspective; a ``(4, 2)`` TL, TR, BR, BL quad
    around the origin, as wide as the plate."""
    rect = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64) - [pw / 2, ph / 2]
    yaw = float(np.clip(rng.normal(0, 0.12), -0.35, 0.35))
    pitch = float(np.clip(rng.normal(0, 0.08), -0.25, 0.25))
    lean = float(np.clip(rng.normal(0, 0.12), -0.36, 0.36))
    theta = np.deg2rad(float(np.clip(rng.normal(0, 4.0), -12, 12)))
    persp = np.array([[1, 0, 0], [0, 1, 0], [yaw / (pw / 2), pitch / (ph / 2), 1]])
    shear = np.array([[1, lean, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
    out = apply_h(rot @ shear @ persp, rect)
    return out * (pw / max(1.0, np.ptp(out[:, 0])))


def detector_box(rng: np.random.Generator, quad: np.ndarray, wide_p: float = WIDE_P) -> np.ndarray:
    """The upright box around ``quad`` with each side off by :data:`BOX_ERROR` (by
    :data:`BOX_ERROR_WIDE` with probability ``wide_p``)."""
    (x0, y0), (x1, y1) = quad.min(0), quad.max(0)
    w, h = x1 - x0, y1 - y0
    sx, sy = BOX_ERROR_WIDE if rng.random() < wide_p else BOX_ERROR
    ex = np.clip(rng.normal(0, sx, 2), -3 * sx, 3 * sx) * w
    ey = np.clip(rng.normal(0, sy, 2), -3 * sy, 3 * sy) * h
    return np.array([x0 + ex[0], y0 + ey[0], x1 + ex[1], y1 + ey[1]])


def render_corner_sample(rng_or_seed) -> tuple[np.ndarray, np.ndarray]:
    """One sample: ``(window (64, 160, 3) uint8 RGB, corners (4, 2) float window pixels)``."""
    rng = make_rng(rng_or_seed)
    names = list(CROP_STYLE_WEIGHTS)
    p = np.array([CROP_STYLE_WEIGHTS[n] for n in names], np.float64)
    style = names[int(rng.choice(len(names), p=p / p.sum()))]
    lo, hi = np.log(PLATE_PX[0]), np.log(PLATE_PX[1])
    plate = render_plate(style, rng, int(round(np.exp(rng.uniform(lo, hi)))))
    if rng.random() < 0.25:
        dirt(rng, plate.rgb)
    ph, pw = plate.rgb.shape[:2]
    quad = pose(rng, pw, ph)
    margin = 0.6 * ph + 0.3 * pw + 8  # room for the window around a box that is off
    quad += margin - quad.min(0)
    w, h = (int(np.ceil(v)) for v in quad.max(0) + margin)
    img = surround(rng, w, h, quad)
    warp_into(img, plate.rgb, plate.alpha, plate_homography(pw, ph, quad))
    img = camera(rng, img, ph, sharpen_p=0.5)
    window = window_around(detector_box(rng, quad))
    return warp_quad(img, window, WINDOW_SIZE), photo_to_window(quad, window)


def augment_windows(
    x: torch.Tensor, c: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random left-right flip, zoom (0.9-1.1) and shift (5% of the window) per sample;
    ``x`` ``[B, 3, H, W]`` float, ``c`` ``[B, 4, 2]`` window pixels."""
    b = x.shape[0]
    w, h = WINDOW_SIZE
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    c = torch.where(flip[:, None, None], torch.stack([w - c[:, FLIP, 0], c[:, FLIP, 1]], 2), c)
    zoom = 0.9 + 0.2 * torch.rand(b, generator=gen)
    shift = (torch.rand(b, 2, generator=gen) - 0.5) * 0.1 * 2  # normalised [-1, 1] units
    # output point u (normalised) samples input point zoom * u + shift
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = zoom
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    size = torch.tensor([w, h], dtype=c.dtype)
    u = c / size * 2 - 1  # input normalised
    u = (u - shift[:, None, :]) / zoom[:, None, None]
    return x, (u + 1) / 2 * size


def _one(index: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return render_corner_sample((seed, index))


def render_corner_samples(
    count: int, seed: int, workers: int = 0, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples: ``(images [N, 64, 160, 3] uint8, corners [N, 4, 2] float32)``;
    the same arrays for any ``workers`` (0: one per CPU)."""
    workers = workers or multiprocessing.cpu_count()
    images = np.zeros((count, WINDOW_SIZE[1], WINDOW_SIZE[0], 3), np.uint8)
    corners = np.zeros((count, 4, 2), np.float32)
    job = partial(_one, seed=seed)
    bar = tqdm(total=count, desc="corner windows", unit="win", disable=not progress)
    if workers == 1:
        results = map(job, range(count))
        for i, (im, c) in enumerate(results):
            images[i], corners[i] = im, c
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for i, (im, c) in enumerate(pool.map(job, range(count), chunksize=64)):
                images[i], corners[i] = im, c
                bar.update()
    bar.close()
    return images, corners
