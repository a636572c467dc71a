"""Warping and blending things into a scene, shared by every scene layout.

Coordinates follow :mod:`platelab.geometry`: continuous pixels, the image spans
``[0, W] x [0, H]``. A homography maps continuous source pixels to continuous
image pixels; :func:`cv_homography` converts it to OpenCV's pixel-centre convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from platelab.data.synth.lighting import HEADLIGHT, TAIL_LIGHT, Light
from platelab.data.synth.vehicles import Vehicle
from platelab.geometry import corners_to_xyxy


@dataclass
class ScenePlate:
    """One plate in a scene.

    Attributes:
        corners: ``(4, 2)`` float64 integer-valued pixels, TL, TR, BR, BL of the
            plate's outer edge (its frame included, the holder around it not).
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


def apply_h(H: np.ndarray, pts) -> np.ndarray:
    """Points ``(N, 2)`` mapped by the homography ``H``."""
    return cv2.perspectiveTransform(np.asarray(pts, np.float64).reshape(-1, 1, 2), H).reshape(-1, 2)


def translate(H: np.ndarray, tx: float, ty: float) -> np.ndarray:
    """``H`` followed by a shift of ``(tx, ty)`` pixels."""
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64) @ H


def disjoint(a, b, margin: float = 2.0) -> bool:
    """Whether boxes ``a`` and ``b`` (xyxy) are more than ``margin`` apart on some axis."""
    return (
        a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1]
    )


def cv_homography(H: np.ndarray) -> np.ndarray:
    """OpenCV puts pixel centres at integers: conjugate a continuous homography by half a pixel."""
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], np.float64)
    return np.linalg.inv(half) @ H @ half


@dataclass
class Warped:
    """A source warped into the image window ``[x0, x0 + w) x [y0, y0 + h)``."""

    x0: int
    y0: int
    rgb: np.ndarray
    alpha: np.ndarray

    def _window(self, box_xyxy) -> np.ndarray:
        h, w = self.alpha.shape
        x0, y0 = max(int(box_xyxy[0]) - self.x0, 0), max(int(box_xyxy[1]) - self.y0, 0)
        x1 = min(int(np.ceil(box_xyxy[2])) - self.x0, w)
        y1 = min(int(np.ceil(box_xyxy[3])) - self.y0, h)
        return self.alpha[y0:y1, x0:x1] if x0 < x1 and y0 < y1 else self.alpha[:0, :0]

    def covers(self, box_xyxy, level: int = 64) -> bool:
        """Whether the warped alpha exceeds ``level`` anywhere in the pixel box."""
        win = self._window(box_xyxy)
        return win.size > 0 and int(win.max()) > level

    def covered_fraction(self, box_xyxy) -> float:
        """Share of the box's area this source hides (alpha-weighted)."""
        win = self._window(box_xyxy)
        x0, y0, x1, y1 = box_xyxy
        area = max(1.0, (x1 - x0) * (y1 - y0))
        return float(win.sum(dtype=np.float64)) / 255 / area


def warp(rgb: np.ndarray, alpha: np.ndarray, H: np.ndarray, size: tuple[int, int]) -> Warped | None:
    """Warp ``rgb``/``alpha`` by ``H`` (continuous source px -> image px), only over the
    window the source lands in (much cheaper than a full frame for small objects)."""
    sh, sw = alpha.shape
    q = apply_h(H, [[0, 0], [sw, 0], [sw, sh], [0, sh]])
    x0, y0 = np.floor(np.maximum(q.min(0), 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(q.max(0), size)).astype(int)
    if x0 >= x1 or y0 >= y1:
        return None
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    H_cv = cv_homography(shift @ H)
    win = (int(x1 - x0), int(y1 - y0))
    a = cv2.warpPerspective(
        alpha, H_cv, win, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    src = cv2.warpPerspective(
        rgb, H_cv, win, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return Warped(int(x0), int(y0), src, a)


def blend(img: np.ndarray, warped: Warped) -> None:
    """Alpha-blend a warped window into ``img`` in place."""
    h, w = warped.alpha.shape
    roi = img[warped.y0 : warped.y0 + h, warped.x0 : warped.x0 + w]
    a = warped.alpha[..., None].astype(np.float32) / 255
    roi[:] = (roi * (1 - a) + warped.rgb * a + 0.5).astype(np.uint8)


def warp_into(img: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, H: np.ndarray) -> None:
    """Warp and blend in one step."""
    warped = warp(rgb, alpha, H, img.shape[1::-1])
    if warped is not None:
        blend(img, warped)


def plate_homography(pw: int, ph: int, corners: np.ndarray) -> np.ndarray:
    """The homography taking a ``pw x ph`` plate image's corners exactly onto ``corners``."""
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    return cv2.getPerspectiveTransform(src, corners.astype(np.float32)).astype(np.float64)


def put_plate(img, plate, corners: np.ndarray, placed: list[ScenePlate]) -> None:
    """Warp ``plate`` (a :class:`~.plates.PlateImage`) onto ``corners`` and record it.

    The plate image's outer edge (frame included) lands on the corners, so the
    recorded box is tight to the visible plate.
    """
    ph, pw = plate.rgb.shape[:2]
    warp_into(img, plate.rgb, plate.alpha, plate_homography(pw, ph, corners))
    placed.append(ScenePlate(corners.astype(np.float64), plate.text, plate.style))


@dataclass
class Frame:
    """A scene being composed: the image and what has been placed on it so far.

    Attributes:
        img: ``(H, W, 3)`` uint8 RGB, drawn into in place.
        styles: plate style -> weight.
        placed: the plates drawn so far (their boxes must stay visible).
        lights: the lamps drawn so far (cars' head and tail lights, street lamps).
        occlusion: the largest share of a plate's box a later object may hide
            (0: none may touch a plate).
        livery_rate, wrap_rate: the share of cars drawn with a livery or a wrap.
    """

    img: np.ndarray
    styles: dict[str, float]
    placed: list[ScenePlate] = field(default_factory=list)
    lights: list[Light] = field(default_factory=list)
    occlusion: float = 0.0
    livery_rate: float = 0.0
    wrap_rate: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.img.shape[1], self.img.shape[0]

    def style(self, rng: np.random.Generator) -> str:
        """A plate style drawn by weight."""
        names = list(self.styles)
        p = np.array([self.styles[n] for n in names], np.float64)
        return names[int(rng.choice(len(names), p=p / p.sum()))]

    def hides_a_plate(self, warped: Warped) -> bool:
        """Whether ``warped`` would hide more of a placed plate than :attr:`occlusion` allows."""
        if self.occlusion <= 0:
            return any(warped.covers(p.box_xyxy) for p in self.placed)
        return any(warped.covered_fraction(p.box_xyxy) > self.occlusion for p in self.placed)


def car_lights(rng: np.random.Generator, car: Vehicle, H: np.ndarray, size) -> list[Light]:
    """The lamps of ``car`` warped by ``H``: white head lights, red tail (or brake) lights."""
    if not len(car.lights):
        return []
    power = rng.uniform(0.3, 0.55) if car.rear else rng.uniform(0.7, 1.0)
    if car.rear and rng.random() < 0.3:
        power = rng.uniform(0.7, 0.9)  # braking
    out = []
    for x, y, r in car.lights:
        (cx, cy), edge = apply_h(H, [[x, y], [x + r, y]])
        rad = float(np.hypot(*(edge - (cx, cy))))
        if -rad < cx < size[0] + rad and -rad < cy < size[1] + rad and rad > 0.3:
            out.append(
                Light(float(cx), float(cy), rad, TAIL_LIGHT if car.rear else HEADLIGHT, power)
            )
    return out


def draw_car(rng, fr: Frame, car: Vehicle, H: np.ndarray, plate=None, corners=None) -> bool:
    """Warp ``car`` into the frame by ``H`` and put ``plate`` on ``corners`` (if given).

    Returns False, drawing nothing, when the car would hide a plate placed earlier
    (beyond :attr:`Frame.occlusion`) or lands outside the image.
    """
    warped = warp(car.rgb, car.alpha, H, fr.size)
    if warped is None or fr.hides_a_plate(warped):
        return False
    blend(fr.img, warped)
    if plate is not None:
        put_plate(fr.img, plate, corners, fr.placed)
    fr.lights.extend(car_lights(rng, car, H, fr.size))
    return True
