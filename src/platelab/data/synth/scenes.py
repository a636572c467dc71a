"""Compose a scene: background and clutter, cars, plates warped into place, camera effects.

Coordinates follow :mod:`platelab.geometry`: continuous pixels, the image spans
``[0, W] x [0, H]``. Plate corners are TL, TR, BR, BL of the plate itself (so a
rotated plate keeps its own top-left first). Every corner is an integer point:
the plate's homography is solved to land exactly on the rounded corners, so a
label written with integer pixels (CCPD file names) is exact, not rounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from platelab.data.synth import backgrounds, effects, plates, vehicles
from platelab.geometry import corners_to_xyxy

# Output sizes (width, height) and how often each is drawn; "None" draws a random aspect.
SIZES = (((416, 416), 0.25), ((720, 1160), 0.2), ((640, 480), 0.2), ((1280, 720), 0.1),
         ((480, 640), 0.05), (None, 0.2))  # fmt: skip
CAR_CANVAS_MAX = 1000  # wider cars are drawn smaller and scaled up by their homography
CAR_PLATE_FRAC = (0.2, 0.3)  # plate width / car width on real cars
MIN_PLATE_PX = 16.0  # narrower plates are a smear of 3 pixels' height


@dataclass(frozen=True)
class SceneConfig:
    """What :func:`render_scene` draws.

    Attributes:
        negative_rate: share of scenes without any plate.
        multi_rate: share of plate scenes with 2-3 plated cars.
        plate_frac: smallest and largest plate width as a fraction of the image width.
        styles: plate style -> weight (default :data:`plates.STYLE_WEIGHTS`).
        degrade: apply the camera effects of :mod:`effects`.
    """

    negative_rate: float = 0.1
    multi_rate: float = 0.1
    plate_frac: tuple[float, float] = (0.04, 0.6)
    styles: dict[str, float] = field(default_factory=lambda: dict(plates.STYLE_WEIGHTS))
    degrade: bool = True


@dataclass
class ScenePlate:
    """One plate in a scene.

    Attributes:
        corners: ``(4, 2)`` float64 integer-valued pixels, TL, TR, BR, BL.
        text: the registration (see :mod:`platelab.data.synth.text`).
        style: the plate style name.
    """

    corners: np.ndarray
    text: str
    style: str

    @property
    def box_xyxy(self) -> tuple[float, float, float, float]:
        """The enclosing box of the corners, pixels."""
        return tuple(float(v) for v in corners_to_xyxy(self.corners)[0])  # type: ignore[return-value]


@dataclass
class Scene:
    """A rendered scene: ``image`` is ``(H, W, 3)`` uint8 RGB; ``plates`` empty for a negative."""

    image: np.ndarray
    plates: list[ScenePlate]
    kind: str


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


def render_scene(
    rng_or_seed, config: SceneConfig | None = None, size: tuple[int, int] | None = None
) -> Scene:
    """Render one random scene.

    Args:
        rng_or_seed: a ``numpy.random.Generator``, or a seed (an int or ``(seed, index)``).
        config: what to draw (defaults: :class:`SceneConfig`).
        size: output ``(width, height)``; drawn from :data:`SIZES` when None.
    """
    cfg = config or SceneConfig()
    rng = make_rng(rng_or_seed)
    w, h = size or sample_size(rng)
    negative = rng.random() < cfg.negative_rate
    r = rng.random()
    kind = (
        "negative" if negative else "closeup" if r < 0.5 else "street" if r < 0.82 else "plate_only"
    )
    img = backgrounds.background(rng, w, h, road=kind in ("closeup", "street"))
    backgrounds.clutter(rng, img, int(rng.integers(0, 12)))
    placed: list[ScenePlate] = []
    if negative:
        for _ in range(int(rng.integers(0, 3))):  # cars whose plates are missing or blank
            _car(rng, img, cfg, placed, _plate_px(rng, cfg, w, 0.1, 0.9), with_plate=False)
    else:
        if kind == "closeup":
            _car(rng, img, cfg, placed, _plate_px(rng, cfg, w, 0.35, 1.0), central=True)
        elif kind == "street":
            n = int(rng.integers(2, 4)) if rng.random() < cfg.multi_rate else 1
            sizes = sorted(_plate_px(rng, cfg, w, 0.0, 0.5) for _ in range(n))
            for px in sizes:  # far (small) cars first, so near cars never hide a plate
                _car(rng, img, cfg, placed, px)
            if rng.random() < 0.3:
                _car(rng, img, cfg, placed, _plate_px(rng, cfg, w, 0.0, 0.3), with_plate=False)
        else:
            n = int(rng.integers(2, 4)) if rng.random() < cfg.multi_rate else 1
            for _ in range(n):
                _loose_plate(rng, img, cfg, placed, _plate_px(rng, cfg, w, 0.1, 0.9))
        if not placed:  # every placement failed (rare): fall back to one loose plate
            _loose_plate(rng, img, cfg, placed, _plate_px(rng, cfg, w, 0.0, 0.3))
    if cfg.degrade:
        img = effects.degrade(rng, img)
    return Scene(
        np.ascontiguousarray(img), placed, kind if placed or kind == "negative" else "negative"
    )


# -- placement ---------------------------------------------------------------------------
def _plate_px(rng, cfg: SceneConfig, w: int, lo: float, hi: float) -> float:
    """A plate width in pixels, log-uniform over the ``[lo, hi]`` part of ``cfg.plate_frac``."""
    a, b = np.log(cfg.plate_frac[0]), np.log(cfg.plate_frac[1])
    u = rng.uniform(lo, hi)
    return max(MIN_PLATE_PX, float(np.exp(a + (b - a) * u)) * w)


def _pose(rng: np.random.Generator, pivot, scale: float, span) -> np.ndarray:
    """``3x3`` homography: perspective and rotation about ``pivot``, then ``scale``.

    ``span = (w, h)`` of the thing posed sets the perspective strength's units.
    """
    yaw = float(np.clip(rng.normal(0, 0.12), -0.35, 0.35))
    pitch = float(np.clip(rng.normal(0, 0.08), -0.25, 0.25))
    theta = np.deg2rad(np.clip(rng.normal(0, 6), -25, 25))
    to_pivot = np.array([[1, 0, -pivot[0]], [0, 1, -pivot[1]], [0, 0, 1]], np.float64)
    persp = np.array([[1, 0, 0], [0, 1, 0], [yaw / (span[0] / 2), pitch / (span[1] / 2), 1]])
    c, s = np.cos(theta) * scale, np.sin(theta) * scale
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return rot @ persp @ to_pivot


def _apply(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(np.asarray(pts, np.float64).reshape(-1, 1, 2), H).reshape(-1, 2)


def _translate(H: np.ndarray, tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64) @ H


def _place(rng, H0, quad_local, w, h, placed, mode: str, margin: float = 2.0):
    """Translate ``H0`` so the quad lands inside the image, ``margin`` px off every placed
    plate; returns ``(H, integer corners)`` or None.

    ``mode``: ``"central"`` (a close-up: the car centred, the plate low in the frame),
    ``"ground"`` (a car on the road: the plate in the lower part) or ``"any"``.
    """
    q = _apply(H0, quad_local)
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
        H = _translate(H0, *t)
        corners = np.round(_apply(H, quad_local))
        box = corners_to_xyxy(corners)[0]
        if all(_disjoint(box, p.box_xyxy, margin) for p in placed):
            return H, corners
    return None


def _disjoint(a, b, margin: float = 2.0) -> bool:
    return (
        a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1]
    )


# -- drawing ------------------------------------------------------------------------------
def _cv_homography(H: np.ndarray) -> np.ndarray:
    """OpenCV puts pixel centres at integers: conjugate a continuous homography by half a pixel."""
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], np.float64)
    return np.linalg.inv(half) @ H @ half


@dataclass
class _Warped:
    """A source warped into the image window ``[x0, x0 + w) x [y0, y0 + h)``."""

    x0: int
    y0: int
    rgb: np.ndarray
    alpha: np.ndarray

    def covers(self, box_xyxy, level: int = 64) -> bool:
        """Whether the warped alpha exceeds ``level`` anywhere in the pixel box."""
        h, w = self.alpha.shape
        x0, y0 = max(int(box_xyxy[0]) - self.x0, 0), max(int(box_xyxy[1]) - self.y0, 0)
        x1, y1 = (
            min(int(np.ceil(box_xyxy[2])) - self.x0, w),
            min(int(np.ceil(box_xyxy[3])) - self.y0, h),
        )
        return x0 < x1 and y0 < y1 and int(self.alpha[y0:y1, x0:x1].max()) > level


def _warp(
    rgb: np.ndarray, alpha: np.ndarray, H: np.ndarray, size: tuple[int, int]
) -> _Warped | None:
    """Warp ``rgb``/``alpha`` by ``H`` (continuous source px -> image px), only over the
    window the source lands in (much cheaper than a full frame for small objects)."""
    sh, sw = alpha.shape
    q = _apply(H, [[0, 0], [sw, 0], [sw, sh], [0, sh]])
    x0, y0 = np.floor(np.maximum(q.min(0), 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(q.max(0), size)).astype(int)
    if x0 >= x1 or y0 >= y1:
        return None
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    H_cv = _cv_homography(shift @ H)
    win = (int(x1 - x0), int(y1 - y0))
    a = cv2.warpPerspective(
        alpha, H_cv, win, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    src = cv2.warpPerspective(
        rgb, H_cv, win, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return _Warped(int(x0), int(y0), src, a)


def _blend(img: np.ndarray, warped: _Warped) -> None:
    """Alpha-blend a warped window into ``img`` in place."""
    h, w = warped.alpha.shape
    roi = img[warped.y0 : warped.y0 + h, warped.x0 : warped.x0 + w]
    a = warped.alpha[..., None].astype(np.float32) / 255
    roi[:] = (roi * (1 - a) + warped.rgb * a + 0.5).astype(np.uint8)


def _warp_into(img: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, H: np.ndarray) -> None:
    warped = _warp(rgb, alpha, H, img.shape[1::-1])
    if warped is not None:
        _blend(img, warped)


def _plate_homography(pw: int, ph: int, corners: np.ndarray) -> np.ndarray:
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    return cv2.getPerspectiveTransform(src, corners.astype(np.float32)).astype(np.float64)


def _style(rng, cfg: SceneConfig) -> str:
    names = list(cfg.styles)
    p = np.array([cfg.styles[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _put_plate(
    img, plate: plates.PlateImage, corners: np.ndarray, placed: list[ScenePlate]
) -> None:
    ph, pw = plate.rgb.shape[:2]
    _warp_into(img, plate.rgb, plate.alpha, _plate_homography(pw, ph, corners))
    placed.append(ScenePlate(corners.astype(np.float64), plate.text, plate.style))


def _car(rng, img, cfg: SceneConfig, placed, plate_px: float, with_plate: bool = True,
         central: bool = False) -> None:  # fmt: skip
    """Draw a car whose plate is ``plate_px`` wide; record the plate if there is one."""
    h, w = img.shape[:2]
    plate = plates.render_plate(_style(rng, cfg), rng, int(round(plate_px)))
    ph, pw = plate.rgb.shape[:2]
    frac = rng.uniform(*CAR_PLATE_FRAC)
    car_w = pw / frac
    canvas_w = int(min(car_w, CAR_CANVAS_MAX))
    car = vehicles.draw_vehicle(rng, canvas_w, pw / ph, frac, rear=rng.random() < 0.5)
    k = car_w / canvas_w
    pivot = car.slot.mean(0)
    H0 = _pose(rng, pivot, k, car.rgb.shape[1::-1])
    # The plate quad in canvas pixels: the slot, whose aspect is the plate's.
    found = _place(rng, H0, car.slot, w, h, placed, "central" if central else "ground")
    if found is None:
        return
    H, corners = found
    warped = _warp(car.rgb, car.alpha, H, (w, h))
    if warped is None or any(warped.covers(p.box_xyxy) for p in placed):
        return  # a car that would hide a plate drawn earlier is left out: labels stay visible
    _blend(img, warped)
    if with_plate:
        _put_plate(img, plate, corners, placed)
    elif rng.random() < 0.3:  # a blank plate or a sign in the holder
        blank = plates.render_plate(_style(rng, cfg), rng, pw)
        blank.rgb[:] = blank.rgb[blank.rgb.shape[0] // 2, 2]
        bh, bw = blank.rgb.shape[:2]
        _warp_into(img, blank.rgb, blank.alpha, _plate_homography(bw, bh, corners))


def _loose_plate(rng, img, cfg: SceneConfig, placed, plate_px: float) -> None:
    """A plate on its own (on a wall, a fence, a clutter background), maybe in a holder."""
    h, w = img.shape[:2]
    plate = plates.render_plate(_style(rng, cfg), rng, int(round(plate_px)))
    ph, pw = plate.rgb.shape[:2]
    quad = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64)
    m = rng.uniform(0.03, 0.12) * ph
    H0 = _pose(rng, (pw / 2, ph / 2), 1.0, (pw, ph))
    found = _place(rng, H0, quad, w, h, placed, "any", margin=2 * m + 2)
    if found is None:
        return
    H, corners = found
    if rng.random() < 0.5:  # a dark holder a little larger than the plate
        holder = np.array([[-m, -m], [pw + m, -m], [pw + m, ph + m], [-m, ph + m]])
        cv2.fillPoly(img, [np.round(_apply(H, holder)).astype(np.int32)],
                     tuple(int(v) for v in rng.integers(0, 80, 3)), cv2.LINE_AA)  # fmt: skip
    _put_plate(img, plate, corners, placed)
