"""Compose a scene: background and clutter, cars, plates warped into place, light, camera.

Coordinates follow :mod:`platelab.geometry`: continuous pixels, the image spans
``[0, W] x [0, H]``. Plate corners are TL, TR, BR, BL of the plate itself (so a
rotated plate keeps its own top-left first), on the plate's outer edge: its
frame is inside the box, the holder around it is not. Every corner is an integer
point: the plate's homography is solved to land exactly on the rounded corners,
so a label written with integer pixels (CCPD file names) is exact, not rounded.

Scene layouts (``Scene.kind``): ``closeup`` (one car filling much of the frame),
``traffic`` (a perspective road with 3-8 cars at many distances, :mod:`.traffic`),
``street`` (a few cars on a street or parking lot), ``plate_only`` (plates on
walls and clutter) and ``negative`` (no plate). Each scene is also lit by one of
:data:`.lighting.CONDITIONS` (``Scene.light``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from platelab.data.synth import backgrounds, effects, lighting, occluders, plates, traffic, vehicles
from platelab.data.synth.compose import (
    Frame,
    ScenePlate,
    apply_h,
    disjoint,
    draw_car,
    plate_homography,
    put_plate,
    translate,
    warp_into,
)
from platelab.geometry import corners_to_xyxy

__all__ = ["SIZES", "Scene", "SceneConfig", "ScenePlate", "make_rng", "render_scene", "sample_size"]

# Output sizes (width, height) and how often each is drawn; "None" draws a random aspect.
SIZES = (((416, 416), 0.25), ((720, 1160), 0.2), ((640, 480), 0.2), ((1280, 720), 0.1),
         ((480, 640), 0.05), (None, 0.2))  # fmt: skip
DASHCAM = (1280, 720)  # most traffic scenes are dashcam frames
CAR_PLATE_FRAC = (0.2, 0.3)  # plate width / car width on real cars
LEAN_STD = 0.12  # the vertical edges' lean (tan), about 7 degrees
MIN_PLATE_PX = 10.0  # narrower plates are a smear of 2 pixels' height
KIND_WEIGHTS = {"closeup": 0.36, "traffic": 0.3, "street": 0.22, "plate_only": 0.12}


@dataclass(frozen=True)
class SceneConfig:
    """What :func:`render_scene` draws.

    Attributes:
        negative_rate: share of scenes without any plate.
        multi_rate: share of ``street`` and ``plate_only`` scenes with 2-3 plates
            (``traffic`` scenes hold a plate per car anyway).
        plate_frac: smallest and largest plate width as a fraction of the image width
            (``closeup``, ``street`` and ``plate_only``; ``traffic`` follows its road).
        styles: plate style -> weight (default :data:`plates.STYLE_WEIGHTS`).
        kinds: scene layout -> weight (default :data:`KIND_WEIGHTS`).
        decal_rate: share of scenes with signs, words, badges and blank plates painted
            over everything (car bodies too, the plates never): the text that is not a
            plate (``POLICE``, dealer stickers, model badges).
        partial_rate: share of plate scenes where something in front (a post, a nearer
            car) may hide up to 30% of one plate.
        livery_rate: share of cars with a big word on the boot or bonnet (``POLICE``,
            ``TAXI``; :func:`.vehicles.livery`). Off by default, as is ``wrap_rate``:
            two detectors trained with 0.1 and 0.06 (``detect_transfer.py``, seeds 0
            and 1) scored Kaggle AP50 0.60 and 0.52, below all three draws without
            them (0.65-0.78).
        wrap_rate: share of cars in a patterned wrap (camouflage, a test car's
            triangles, stripes; :func:`.vehicles.wrap`).
        lighting: light scenes by a random condition (night, dusk, rain, over-exposure);
            False keeps daylight.
        degrade: apply the camera effects of :mod:`effects`.
    """

    negative_rate: float = 0.1
    multi_rate: float = 0.1
    plate_frac: tuple[float, float] = (0.025, 0.8)
    styles: dict[str, float] = field(default_factory=lambda: dict(plates.STYLE_WEIGHTS))
    kinds: dict[str, float] = field(default_factory=lambda: dict(KIND_WEIGHTS))
    partial_rate: float = 0.05
    decal_rate: float = 0.4
    livery_rate: float = 0.0
    wrap_rate: float = 0.0
    lighting: bool = True
    degrade: bool = True


@dataclass
class Scene:
    """A rendered scene: ``image`` is ``(H, W, 3)`` uint8 RGB; ``plates`` empty for a
    negative; ``light`` one of :data:`.lighting.CONDITIONS`."""

    image: np.ndarray
    plates: list[ScenePlate]
    kind: str
    light: str = "day"


def make_rng(rng_or_seed) -> np.random.Generator:
    """A Generator from a Generator, an int seed, or a sequence such as ``(seed, index)``."""
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(np.random.SeedSequence(rng_or_seed))


def sample_size(rng: np.random.Generator) -> tuple[int, int]:
    """An output ``(width, height)`` drawn from :data:`SIZES`."""
    p = np.array([w for _, w in SIZES])
    size = SIZES[int(rng.choice(len(SIZES), p=p / p.sum()))][0]
    if size is None:
        w = int(rng.integers(320, 1025))
        size = (w, int(w / rng.uniform(0.6, 1.8)))
    return size


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def render_scene(
    rng_or_seed, config: SceneConfig | None = None, size: tuple[int, int] | None = None
) -> Scene:
    """Render one random scene.

    Args:
        rng_or_seed: a ``numpy.random.Generator``, or a seed (an int or ``(seed, index)``).
        config: what to draw (defaults: :class:`SceneConfig`).
        size: output ``(width, height)``; drawn from :data:`SIZES` when None (most
            ``traffic`` scenes are :data:`DASHCAM` frames).
    """
    cfg = config or SceneConfig()
    rng = make_rng(rng_or_seed)
    negative = rng.random() < cfg.negative_rate
    kind = _pick(rng, cfg.kinds)
    if size is None:
        size = DASHCAM if kind == "traffic" and rng.random() < 0.6 else sample_size(rng)
    w, h = size
    fr = Frame(np.zeros((h, w, 3), np.uint8), cfg.styles, livery_rate=cfg.livery_rate,
               wrap_rate=cfg.wrap_rate)  # fmt: skip
    if not negative and rng.random() < cfg.partial_rate:
        fr.occlusion = occluders.PARTIAL_MAX
    height_at = None
    if kind == "traffic":
        road = traffic.traffic(rng, fr, with_plates=not negative)
        height_at = lambda y: 1.75 * road.ppm(y) if y > road.y_h else 0.0  # noqa: E731
    else:
        fr.img = backgrounds.background(rng, w, h, road=kind in ("closeup", "street"))
        backgrounds.clutter(rng, fr.img, int(rng.integers(0, 12)))
    if negative:
        for _ in range(int(rng.integers(0, 3)) if kind != "traffic" else 0):
            _car(rng, fr, _plate_px(rng, cfg, w, 0.1, 0.9), with_plate=False)
    elif kind == "closeup":
        _car(rng, fr, _plate_px(rng, cfg, w, 0.45, 1.0), central=True)
    elif kind == "street":
        n = int(rng.integers(2, 4)) if rng.random() < cfg.multi_rate else 1
        for px in sorted(_plate_px(rng, cfg, w, 0.0, 0.55) for _ in range(n)):
            _car(rng, fr, px)  # far (small) cars first, so near cars never hide a plate
        if rng.random() < 0.3:
            _car(rng, fr, _plate_px(rng, cfg, w, 0.0, 0.3), with_plate=False)
    elif kind == "plate_only":
        n = int(rng.integers(2, 4)) if rng.random() < cfg.multi_rate else 1
        for _ in range(n):
            _loose_plate(rng, fr, _plate_px(rng, cfg, w, 0.1, 0.9))
    if not negative and not fr.placed:  # every placement failed (rare): one loose plate
        _loose_plate(rng, fr, _plate_px(rng, cfg, w, 0.0, 0.3))
    if rng.random() < cfg.decal_rate:
        _decals(rng, fr, int(rng.integers(1, 5)))
    if rng.random() < (0.5 if kind == "traffic" else 0.25):
        occluders.occlude(rng, fr, int(rng.integers(1, 4)), height_at)
    if fr.occlusion:
        occluders.occlude(rng, fr, 0, partial=True)
    light = lighting.condition(rng, kind in ("traffic", "street")) if cfg.lighting else "day"
    img = fr.img
    if cfg.lighting:
        corners = [p.corners for p in fr.placed]
        img = lighting.apply(rng, img, light, fr.lights, corners, road=kind == "traffic")
    if cfg.degrade:
        img = effects.degrade(rng, img, light)
    kind = kind if fr.placed else "negative"
    return Scene(np.ascontiguousarray(img), fr.placed, kind, light)


# -- placement ---------------------------------------------------------------------------
def _plate_px(rng, cfg: SceneConfig, w: int, lo: float, hi: float) -> float:
    """A plate width in pixels, log-uniform over the ``[lo, hi]`` part of ``cfg.plate_frac``."""
    a, b = np.log(cfg.plate_frac[0]), np.log(cfg.plate_frac[1])
    u = rng.uniform(lo, hi)
    return max(MIN_PLATE_PX, float(np.exp(a + (b - a) * u)) * w)


def _pose(rng: np.random.Generator, pivot, scale: float, span) -> np.ndarray:
    """``3x3`` homography: shear, perspective and rotation about ``pivot``, then ``scale``.

    ``span = (w, h)`` of the thing posed sets the perspective strength's units. The
    shear leans the vertical edges (a camera above and to the side of the car: CCPD's
    plates lean by 2 to 12 degrees while their top and bottom stay level).
    """
    yaw = float(np.clip(rng.normal(0, 0.12), -0.35, 0.35))
    pitch = float(np.clip(rng.normal(0, 0.08), -0.25, 0.25))
    theta = np.deg2rad(np.clip(rng.normal(0, 6), -25, 25))
    lean = float(np.clip(rng.normal(0, LEAN_STD), -0.3, 0.3))  # tan of the lean
    to_pivot = np.array([[1, 0, -pivot[0]], [0, 1, -pivot[1]], [0, 0, 1]], np.float64)
    shear = np.array([[1, lean, 0], [0, 1, 0], [0, 0, 1]])
    persp = np.array([[1, 0, 0], [0, 1, 0], [yaw / (span[0] / 2), pitch / (span[1] / 2), 1]])
    c, s = np.cos(theta) * scale, np.sin(theta) * scale
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return rot @ persp @ shear @ to_pivot


def _place(rng, H0, quad_local, w, h, placed, mode: str, margin: float = 2.0):
    """Translate ``H0`` so the quad lands inside the image, ``margin`` px off every placed
    plate; returns ``(H, integer corners)`` or None.

    ``mode``: ``"central"`` (a close-up: the car centred, the plate low in the frame),
    ``"ground"`` (a car on the road: the plate in the lower part) or ``"any"``.
    """
    q = apply_h(H0, quad_local)
    lo, hi = np.ceil(-q.min(0)) + 1, np.floor([w, h] - q.max(0)) - 1
    if np.any(lo > hi):
        return None
    for _ in range(20):
        if mode == "central":
            t = np.array([rng.normal(w / 2, w * 0.12), rng.uniform(0.4, 0.85) * h])
        elif mode == "ground":
            t = np.array([rng.uniform(0, w), rng.uniform(0.45, 1.0) * h])
        else:
            t = rng.uniform(lo, hi)
        t = np.clip(t, lo, hi)
        H = translate(H0, *t)
        corners = np.round(apply_h(H, quad_local))
        box = corners_to_xyxy(corners)[0]
        if all(disjoint(box, p.box_xyxy, margin) for p in placed):
            return H, corners
    return None


def _car(rng, fr: Frame, plate_px: float, with_plate: bool = True, central: bool = False) -> None:
    """Draw a car whose plate is ``plate_px`` wide; record the plate if there is one."""
    w, h = fr.size
    plate = plates.render_plate(fr.style(rng), rng, int(round(plate_px)))
    ph, pw = plate.rgb.shape[:2]
    frac = rng.uniform(*CAR_PLATE_FRAC)
    car_w = pw / frac
    canvas_w = int(min(car_w, vehicles.CAR_CANVAS_MAX))
    car = vehicles.draw_vehicle(rng, canvas_w, pw / ph, frac, rear=rng.random() < 0.5,
                                livery_p=fr.livery_rate, wrap_p=fr.wrap_rate)  # fmt: skip
    k = car_w / canvas_w
    H0 = _pose(rng, car.slot.mean(0), k, car.rgb.shape[1::-1])
    # The plate quad in canvas pixels: the slot, whose aspect is the plate's.
    found = _place(rng, H0, car.slot, w, h, fr.placed, "central" if central else "ground")
    if found is None:
        return
    H, corners = found
    # A car that would hide a plate drawn earlier is left out: labels stay visible.
    if not draw_car(rng, fr, car, H, plate if with_plate else None, corners):
        return
    if not with_plate and rng.random() < 0.3:  # a blank plate or a sign in the holder
        blank = plates.render_plate(fr.style(rng), rng, pw)
        blank.rgb[:] = blank.rgb[blank.rgb.shape[0] // 2, 2]
        bh, bw = blank.rgb.shape[:2]
        warp_into(fr.img, blank.rgb, blank.alpha, plate_homography(bw, bh, corners))


def _decals(rng, fr: Frame, count: int) -> None:
    """``count`` pieces of clutter over the scene, cars included, each plate kept as it was."""
    before = fr.img.copy()
    backgrounds.clutter(rng, fr.img, count)
    if fr.placed:
        mask = np.zeros(fr.img.shape[:2], np.uint8)
        for p in fr.placed:
            cv2.fillPoly(mask, [np.round(p.corners).astype(np.int32)], 1)
        keep = cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0
        fr.img[keep] = before[keep]


def _loose_plate(rng, fr: Frame, plate_px: float) -> None:
    """A plate on its own (on a wall, a fence, a clutter background), maybe in a holder."""
    w, h = fr.size
    plate = plates.render_plate(fr.style(rng), rng, int(round(plate_px)))
    ph, pw = plate.rgb.shape[:2]
    quad = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64)
    m = rng.uniform(0.03, 0.12) * ph
    H0 = _pose(rng, (pw / 2, ph / 2), 1.0, (pw, ph))
    found = _place(rng, H0, quad, w, h, fr.placed, "any", margin=2 * m + 2)
    if found is None:
        return
    H, corners = found
    if rng.random() < 0.5:  # a dark holder a little larger than the plate
        holder = np.array([[-m, -m], [pw + m, -m], [pw + m, ph + m], [-m, ph + m]])
        cv2.fillPoly(fr.img, [np.round(apply_h(H, holder)).astype(np.int32)],
                     tuple(int(v) for v in rng.integers(0, 80, 3)), cv2.LINE_AA)  # fmt: skip
    put_plate(fr.img, plate, corners, fr.placed)
