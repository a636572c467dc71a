"""Box formats, letterboxing and clipping: the one place platelab does geometry.

Coordinate rules used everywhere:

* Pixel coordinates are continuous: the image spans ``[0, W] x [0, H]``; the
  centre of pixel ``(i, j)`` is ``(i + 0.5, j + 0.5)``.
* ``xyxy`` boxes are ``(x_min, y_min, x_max, y_max)`` in pixels.
* ``cxcywh_norm`` boxes are ``(cx, cy, w, h)`` divided by the image width/height
  (YOLO's label format).
* Corners are ``(N, 4, 2)`` arrays of ``(x, y)`` points in pixels.

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
