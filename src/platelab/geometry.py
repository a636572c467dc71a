"""Box formats, letterboxing, clipping and the plate crop: the one place platelab does geometry.

Coordinate rules used everywhere:

* Pixel coordinates are continuous: the image spans ``[0, W] x [0, H]``; the
  centre of pixel ``(i, j)`` is ``(i + 0.5, j + 0.5)``.
* ``xyxy`` boxes are ``(x_min, y_min, x_max, y_max)`` in pixels.
* ``cxcywh_norm`` boxes are ``(cx, cy, w, h)`` divided by the image width/height
  (YOLO's label format).
* Corners are ``(N, 4, 2)`` arrays of ``(x, y)`` points in pixels.

The perspective crop (:func:`warp_quad`) straightens a plate's 4 corners (TL, TR, BR,
BL) into the recogniser's :data:`CROP_SIZE`; :func:`two_line_to_one` lays the rows of
a two-line plate side by side.

The letterbox maps an original photo into a fixed canvas: scale to fit keeping
the aspect ratio, then pad evenly. A point maps as ``canvas = orig * scale + pad``
and back as ``orig = (canvas - pad) / scale``; the same :class:`Letterbox` that
prepares a training image maps a prediction back to the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How one original image sits in the canvas.

    Attributes:
        scale: original pixels -> canvas pixels, the same on both axes.
        pad_x: left padding in canvas pixels (the right padding takes the rest).
        pad_y: top padding in canvas pixels.
        orig_w, orig_h: size of the original image.
        canvas_w, canvas_h: size of the canvas.
    """

    scale: float
    pad_x: int
    pad_y: int
    orig_w: int
    orig_h: int
    canvas_w: int
    canvas_h: int

    @classmethod
    def fit(cls, orig_w: int, orig_h: int, canvas_w: int, canvas_h: int) -> Letterbox:
        """The letterbox that fits ``orig_w x orig_h`` into the canvas, centred."""
        if min(orig_w, orig_h, canvas_w, canvas_h) <= 0:
            raise ValueError(f"sizes must be positive: {orig_w}x{orig_h} -> {canvas_w}x{canvas_h}")
        scale = min(canvas_w / orig_w, canvas_h / orig_h)
        new_w, new_h = resized_size(orig_w, orig_h, scale)
        return cls(
            scale=scale,
            pad_x=(canvas_w - new_w) // 2,
            pad_y=(canvas_h - new_h) // 2,
            orig_w=orig_w,
            orig_h=orig_h,
            canvas_w=canvas_w,
            canvas_h=canvas_h,
        )

    # -- points and boxes ---------------------------------------------------
    def points_to_canvas(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` original-pixel points to canvas pixels."""
        pts = np.asarray(points, dtype=np.float64)
        return pts * self.scale + np.array([self.pad_x, self.pad_y], dtype=np.float64)

    def points_to_original(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` canvas-pixel points back to original pixels."""
        pts = np.asarray(points, dtype=np.float64)
        return (pts - np.array([self.pad_x, self.pad_y], dtype=np.float64)) / self.scale

    def boxes_to_canvas(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` original-pixel xyxy boxes to canvas pixels."""
        b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 2, 2)
        return self.points_to_canvas(b).reshape(-1, 4)

    def boxes_to_original(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` canvas-pixel xyxy boxes back to original pixels."""
        b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 2, 2)
        return self.points_to_original(b).reshape(-1, 4)

    # -- pixels ---------------------------------------------------------------
    def apply(self, image: np.ndarray, pad_value: int = PAD_VALUE) -> np.ndarray:
        """Letterbox an ``(H, W, C)`` uint8 image into the canvas.

        ``image`` is the original photo, or the photo already decoded at a reduced
        scale (a JPEG DCT-scaled decode); either way it is resized to the original
        size times :attr:`scale`, so the pixels land where the boxes map.
        """
        h, w = image.shape[:2]
        if abs(w / h - self.orig_w / self.orig_h) > 0.02 * self.orig_w / self.orig_h + 1 / h:
            raise ValueError(
                f"image is {w}x{h}, letterbox expects the shape of {self.orig_w}x{self.orig_h}"
            )
        new_w, new_h = resized_size(self.orig_w, self.orig_h, self.scale)
        if (new_w, new_h) != (w, h):
            # INTER_AREA for strong downscales avoids aliasing; INTER_LINEAR otherwise.
            interp = cv2.INTER_AREA if new_w < 0.5 * w else cv2.INTER_LINEAR
            image = cv2.resize(image, (new_w, new_h), interpolation=interp)
        canvas = np.full((self.canvas_h, self.canvas_w) + image.shape[2:], pad_value, np.uint8)
        canvas[self.pad_y : self.pad_y + new_h, self.pad_x : self.pad_x + new_w] = image
        return canvas


def resized_size(w: int, h: int, scale: float) -> tuple[int, int]:
    """Integer size of a ``w x h`` image scaled by ``scale`` (at least 1 pixel)."""
    return max(1, round(w * scale)), max(1, round(h * scale))


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"640x480"`` into ``(640, 480)`` (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return w, h


# -- box formats ---------------------------------------------------------------
def xyxy_to_cxcywh_norm(boxes_xyxy: np.ndarray, width: float, height: float) -> np.ndarray:
    """``(N, 4)`` pixel xyxy -> normalised ``(cx, cy, w, h)``."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    cx = (b[:, 0] + b[:, 2]) / 2 / width
    cy = (b[:, 1] + b[:, 3]) / 2 / height
    w = (b[:, 2] - b[:, 0]) / width
    h = (b[:, 3] - b[:, 1]) / height
    return np.stack([cx, cy, w, h], axis=1)


def cxcywh_norm_to_xyxy(boxes_cxcywh_norm: np.ndarray, width: float, height: float) -> np.ndarray:
    """Normalised ``(cx, cy, w, h)`` -> ``(N, 4)`` pixel xyxy."""
    b = np.asarray(boxes_cxcywh_norm, dtype=np.float64).reshape(-1, 4)
    x_min = (b[:, 0] - b[:, 2] / 2) * width
    y_min = (b[:, 1] - b[:, 3] / 2) * height
    x_max = (b[:, 0] + b[:, 2] / 2) * width
    y_max = (b[:, 1] + b[:, 3] / 2) * height
    return np.stack([x_min, y_min, x_max, y_max], axis=1)


def corners_to_xyxy(corners: np.ndarray) -> np.ndarray:
    """``(N, 4, 2)`` corner points -> ``(N, 4)`` enclosing xyxy boxes."""
    c = np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2)
    return np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1)


def quad_lean_deg(quad: np.ndarray) -> float:
    """The mean slant of a TL, TR, BR, BL quad's left and right sides from upright, degrees
    (positive when the top is further right than the bottom; a camera above and to the
    side makes a plate lean)."""
    q = np.asarray(quad, np.float64).reshape(4, 2)
    left = (q[0, 0] - q[3, 0]) / (q[3, 1] - q[0, 1])
    right = (q[1, 0] - q[2, 0]) / (q[2, 1] - q[1, 1])
    return float(np.degrees(np.arctan((left + right) / 2)))


def clip_boxes(boxes_xyxy: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clamp ``(N, 4)`` xyxy boxes to the image ``[0, width] x [0, height]``."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 0::2] = b[:, 0::2].clip(0, width)
    b[:, 1::2] = b[:, 1::2].clip(0, height)
    return b


def box_area(boxes_xyxy: np.ndarray) -> np.ndarray:
    """Areas of ``(N, 4)`` xyxy boxes; inverted boxes have area 0."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    return (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)


# -- the perspective crop (plate quad -> recogniser input) ------------------------------------
# The recogniser's input size, (width, height): 4:1 holds a Chinese plate (3.1:1) and an EU
# plate (4.7:1) with little distortion, and 32 rows keep a small CNN above 1,000 crops/s.
CROP_SIZE = (128, 32)
TWO_LINE_SPLIT = 0.4  # where the top row of a two-line crop ends, as a share of its height


def _shift(d: float) -> np.ndarray:
    return np.array([[1, 0, d], [0, 1, d], [0, 0, 1]], np.float64)


def quad_to_crop_matrix(corners: np.ndarray, size: tuple[int, int] = CROP_SIZE) -> np.ndarray:
    """The ``3x3`` homography taking continuous photo pixels to continuous crop pixels.

    The quad's corners TL, TR, BR, BL land exactly on the crop's outer corners
    ``(0, 0), (W, 0), (W, H), (0, H)``. Its inverse maps a crop point (e.g. a
    character's position) back to the photo.
    """
    w, h = size
    src = np.asarray(corners, np.float64).reshape(4, 2)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(
        np.float64
    )


def warp_quad(
    image: np.ndarray, corners: np.ndarray, size: tuple[int, int] = CROP_SIZE
) -> np.ndarray:
    """Straighten the plate quad ``corners`` of ``image`` into a ``size`` crop.

    The one perspective crop of platelab: training, evaluation, export checks and the
    reader all call it, so a recogniser sees the same pixels everywhere.

    Args:
        image: ``(H, W, C)`` or ``(H, W)`` uint8 photo.
        corners: ``(4, 2)`` float ``(x, y)`` TL, TR, BR, BL in continuous photo pixels
            (the photo spans ``[0, W] x [0, H]``; pixel ``(i, j)`` has its centre at
            ``(i + 0.5, j + 0.5)``), e.g. a plate's outer corners as a detector gives them.
        size: the crop's ``(width, height)``.

    Returns:
        ``(height, width[, C])`` uint8: the quad's corners are the crop's outer corners
        (so an axis-aligned quad ``[x0, x0 + width] x [y0, y0 + height]`` with integer
        ``x0, y0`` gives exactly ``image[y0:y0 + height, x0:x0 + width]``). Bilinear
        sampling; outside the photo the border pixels are replicated.
    """
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    q = np.asarray(corners, np.float64).reshape(4, 2)
    # A quad much larger than the crop is warped to k times the crop, then area-averaged
    # down: bilinear sampling alone would alias (skip pixels) on large plates.
    sx = max(np.hypot(*(q[1] - q[0])), np.hypot(*(q[2] - q[3]))) / w
    sy = max(np.hypot(*(q[3] - q[0])), np.hypot(*(q[2] - q[1]))) / h
    k = int(min(max(sx, sy), 4.0))
    if k < 2:
        return _warp(image, q, w, h)
    return cv2.resize(_warp(image, q, w * k, h * k), (w, h), interpolation=cv2.INTER_AREA)


def _warp(image: np.ndarray, corners: np.ndarray, w: int, h: int) -> np.ndarray:
    m = quad_to_crop_matrix(corners, (w, h))
    # OpenCV puts pixel centres at integers: conjugate by half a pixel on both sides.
    m_cv = _shift(-0.5) @ m @ _shift(0.5)
    return cv2.warpPerspective(
        image, m_cv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def two_line_to_one(crop: np.ndarray, split: float = TWO_LINE_SPLIT) -> np.ndarray:
    """Lay a two-line plate crop's rows side by side, top row left, at the same size.

    Rows ``[0, split * H)`` and ``[split * H, H)`` are each resized to half the
    width and the full height, so a left-to-right reader reads the top row first; a
    character in the left half (``x < W / 2``) came from the top row
    (:func:`platelab.text.rows_of`).

    Args:
        crop: ``(H, W[, C])`` uint8, a straightened two-line plate (:func:`warp_quad`).
        split: where the top row ends, as a share of the height (0.4 for Chinese
            two-line plates, whose upper characters are 60 of 220 mm; 0.5 for
            square plates with two equal rows).
    """
    h, w = crop.shape[:2]
    cut = int(round(min(max(split, 0.05), 0.95) * h))
    cut = min(max(cut, 1), h - 1)
    left = w // 2
    top = cv2.resize(crop[:cut], (left, h), interpolation=cv2.INTER_LINEAR)
    bottom = cv2.resize(crop[cut:], (w - left, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(np.concatenate([top, bottom], axis=1))
