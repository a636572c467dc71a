"""Bbox- and corner-aware augmentation of letterboxed canvases, on albumentations 2.0.8.

albumentations moves boxes (``BboxParams``) and points (``KeypointParams``) with
the pixels; measured here it runs ~10x faster than torchvision v2 for the same
pipeline (../shared/ECOSYSTEM.md). The pipeline, in order:

    [mosaic of 4 images] -> horizontal flip -> affine (scale, translate, rotate,
    shear) -> perspective -> colour jitter -> gaussian/motion blur -> gaussian
    noise -> JPEG quality

The mosaic (:func:`mosaic`, ``mosaic_p``; YOLOv4/ultralytics) needs four images, so
the stream draws it (:class:`~platelab.data.stream.PlateStream`) and hands the
result to this pipeline like any canvas. It is meant for the detector: a localiser
learns one box per image.

Box rules, applied after the geometry:

* Every plate travels as 4 keypoints: its corners when known, else its box's
  corners. A plate's box becomes the enclosing box of its moved corners when the
  corners are known (tighter than the enclosing box of a rotated box), else the
  box albumentations moved; either way it is clamped to the canvas.
* The visible fraction of a plate is the clamped area of that enclosing box over
  its unclamped area. A plate below ``min_visible``, or thinner than
  ``min_size_px`` after clamping, is dropped.
* If every plate of a positive image is dropped, the draw is retried with fresh
  randomness (``retries`` times); if all fail, the sample gets the flip and
  photometric transforms only. Augmentation therefore never turns a positive
  image into a negative: the dataset's positive/negative balance is its own.
* Corners are never clamped (a corner may sit slightly off the canvas). A
  horizontal flip mirrors the plate, so corner ``TL`` lands where ``TR`` should
  be; the order is restored to clockwise-from-top-left (``TL, TR, BR, BL``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from platelab.geometry import PAD_VALUE, box_area, clip_boxes, corners_to_xyxy

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it checks online for updates otherwise
import albumentations as A  # noqa: E402

# After a horizontal mirror the point that was TR is top-left, TL is top-right, and so on.
MIRRORED_ORDER = (1, 0, 3, 2)


class AugmentConfig(BaseModel):
    """Augmentation settings; ``strength`` scales every magnitude (not the probabilities).

    Angles are degrees; ``scale``, ``translate`` and ``perspective`` are fractions
    (``scale=0.2`` draws a zoom in ``[0.8, 1.2]``, ``translate=0.1`` a shift of up to
    10% of the canvas side); colour amounts follow torchvision's ``ColorJitter``.
    """

    model_config = ConfigDict(extra="forbid")

    strength: float = Field(1.0, ge=0.0, le=3.0)
    flip_p: float = Field(0.5, ge=0.0, le=1.0)
    affine_p: float = Field(0.7, ge=0.0, le=1.0)
    scale: float = Field(0.2, ge=0.0, lt=1.0)
    translate: float = Field(0.1, ge=0.0, le=0.5)
    rotate_deg: float = Field(8.0, ge=0.0, le=45.0)
    shear_deg: float = Field(5.0, ge=0.0, le=30.0)
    perspective_p: float = Field(0.3, ge=0.0, le=1.0)
    perspective: float = Field(0.04, ge=0.0, le=0.2)
    colour_p: float = Field(0.8, ge=0.0, le=1.0)
    brightness: float = Field(0.3, ge=0.0, le=1.0)
    contrast: float = Field(0.3, ge=0.0, le=1.0)
    saturation: float = Field(0.4, ge=0.0, le=1.0)
    hue: float = Field(0.03, ge=0.0, le=0.5)
    blur_p: float = Field(0.2, ge=0.0, le=1.0)
    blur_max_kernel: int = Field(5, ge=3, le=31)
    noise_p: float = Field(0.2, ge=0.0, le=1.0)
    noise_std: float = Field(0.04, ge=0.0, le=0.5)
    jpeg_p: float = Field(0.3, ge=0.0, le=1.0)
    jpeg_quality_min: int = Field(40, ge=1, le=100)
    mosaic_p: float = Field(0.0, ge=0.0, le=1.0)
    min_visible: float = Field(0.4, ge=0.0, le=1.0)
    min_size_px: float = Field(2.0, ge=0.0)
    retries: int = Field(3, ge=0, le=20)


@dataclass
class AugmentResult:
    """One augmented sample.

    Attributes:
        image: ``(H, W, 3)`` uint8, the canvas size.
        boxes_xyxy: ``(M, 4)`` float32 canvas pixels, clamped to the canvas.
        corners: ``(M, 4, 2)`` float32 canvas pixels, NaN where unknown, not clamped.
        kept: ``(M,)`` int64 indices of the input plates that survived, in input order.
    """

    image: np.ndarray
    boxes_xyxy: np.ndarray
    corners: np.ndarray
    kept: np.ndarray


def _odd(k: float) -> int:
    k = max(3, int(round(k)))
    return k if k % 2 else k + 1


def _geometric(cfg: AugmentConfig) -> list:
    s = cfg.strength
    out = []
    if cfg.affine_p > 0 and s > 0:
        out.append(
            A.Affine(
                scale=(1 - cfg.scale * s, 1 + cfg.scale * s),
                translate_percent=(-cfg.translate * s, cfg.translate * s),
                rotate=(-cfg.rotate_deg * s, cfg.rotate_deg * s),
                shear=(-cfg.shear_deg * s, cfg.shear_deg * s),
                keep_ratio=True,
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_VALUE,
                p=cfg.affine_p,
            )
        )
    if cfg.perspective_p > 0 and cfg.perspective * s > 0:
        out.append(
            A.Perspective(
                scale=(0.0, cfg.perspective * s),
                keep_size=True,
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_VALUE,
                p=cfg.perspective_p,
            )
        )
    return out


def _photometric(cfg: AugmentConfig) -> list:
    s = cfg.strength
    out = []
    if cfg.colour_p > 0 and s > 0:
        out.append(
            A.ColorJitter(
                brightness=min(cfg.brightness * s, 1.0),
                contrast=min(cfg.contrast * s, 1.0),
                saturation=min(cfg.saturation * s, 1.0),
                hue=min(cfg.hue * s, 0.5),
                p=cfg.colour_p,
            )
        )
    if cfg.blur_p > 0 and s > 0:
        k = _odd(3 + (cfg.blur_max_kernel - 3) * min(s, 1.0))
        out.append(
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, k)), A.MotionBlur(blur_limit=(3, k))],
                p=cfg.blur_p,
            )
        )
    if cfg.noise_p > 0 and cfg.noise_std * s > 0:
        out.append(A.GaussNoise(std_range=(0.0, min(cfg.noise_std * s, 1.0)), p=cfg.noise_p))
    if cfg.jpeg_p > 0 and s > 0:
        q_min = int(round(100 - (100 - cfg.jpeg_quality_min) * min(s, 1.0)))
        out.append(A.ImageCompression(quality_range=(min(q_min, 95), 95), p=cfg.jpeg_p))
    return out


def mosaic(
    tiles: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.5, 1.0),
    min_visible: float = 0.4,
    min_size_px: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four canvases in one, split at a random centre (YOLOv4's mosaic).

    Each tile ``(image (H, W, 3) uint8, boxes_xyxy (N, 4), corners (N, 4, 2))`` is
    scaled by its own factor from ``scale`` and a random window of it fills one
    quadrant (top-left, top-right, bottom-right, bottom-left); a tile smaller than
    its quadrant sits against the centre, the rest is pad. A plate cut by its
    quadrant keeps its clipped box if at least ``min_visible`` of it shows, but loses
    its corners (they would point into another tile); less visible or thinner than
    ``min_size_px`` after clipping, it is dropped.

    Returns:
        ``(image (H, W, 3) uint8, boxes_xyxy (M, 4) float32, corners (M, 4, 2) float32)``.
    """
    h, w = tiles[0][0].shape[:2]
    xc = int(round(rng.uniform(0.3, 0.7) * w))
    yc = int(round(rng.uniform(0.3, 0.7) * h))
    out = np.full((h, w, 3), PAD_VALUE, np.uint8)
    regions = ((0, 0, xc, yc), (xc, 0, w, yc), (xc, yc, w, h), (0, yc, xc, h))
    all_boxes, all_corners = [], []
    for k, ((image, boxes, corners), (x0, y0, x1, y1)) in enumerate(
        zip(tiles, regions, strict=True)
    ):
        rw, rh = x1 - x0, y1 - y0
        if rw <= 0 or rh <= 0:
            continue
        s = rng.uniform(*scale)
        sw, sh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        # The part of the scaled tile shown: a random window where the tile is larger than
        # the quadrant, else the whole tile, placed against the mosaic's centre. Only that
        # part is resized (resizing whole tiles was most of a mosaic's cost).
        cw, ch = min(rw, sw), min(rh, sh)
        src_w, src_h = min(w, int(round(cw / s))), min(h, int(round(ch / s)))
        sx = int(rng.integers(0, w - src_w + 1))
        sy = int(rng.integers(0, h - src_h + 1))
        px = x0 if (sw >= rw or k in (1, 2)) else x1 - cw  # left quadrants hug the centre
        py = y0 if (sh >= rh or k in (2, 3)) else y1 - ch
        out[py : py + ch, px : px + cw] = cv2.resize(
            image[sy : sy + src_h, sx : sx + src_w], (cw, ch), interpolation=cv2.INTER_AREA
        )
        k_xy = np.array([cw / src_w, ch / src_h])  # this tile's scale, per axis
        shift = np.array([px, py]) - np.array([sx, sy]) * k_xy
        b = np.asarray(boxes, np.float64).reshape(-1, 4) * np.tile(k_xy, 2) + np.tile(shift, 2)
        c = np.asarray(corners, np.float64).reshape(-1, 4, 2) * k_xy + shift
        window = np.array([px, py, px + cw, py + ch], np.float64)
        clipped = np.concatenate(
            [np.maximum(b[:, :2], window[:2]), np.minimum(b[:, 2:], window[2:])], 1
        )
        clipped[:, 2:] = np.maximum(clipped[:, 2:], clipped[:, :2])
        visible = box_area(clipped) / np.maximum(box_area(b), 1e-9)
        thick = np.minimum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1])
        keep = (visible >= min_visible) & (thick >= max(min_size_px, 1e-6))
        c[visible < 1 - 1e-6] = np.nan
        all_boxes.append(clipped[keep])
        all_corners.append(c[keep])
    boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4))
    corners = np.concatenate(all_corners) if all_corners else np.zeros((0, 4, 2))
    return out, boxes.astype(np.float32), corners.astype(np.float32)


def _signed_area(quads: np.ndarray) -> np.ndarray:
    """Shoelace area of ``(N, 4, 2)`` quads; positive for clockwise TL,TR,BR,BL (y down)."""
    x, y = quads[..., 0], quads[..., 1]
    return 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)


class PlateAugment:
    """The callable :func:`build_augment` returns; see the module docstring for the rules."""

    def __init__(self, cfg: AugmentConfig, canvas_w: int, canvas_h: int, seed: int | None = None):
        self.cfg = cfg
        self.canvas_w, self.canvas_h = int(canvas_w), int(canvas_h)
        # Always present (p may be 0): a Compose without a box-moving transform warns.
        flip = [A.HorizontalFlip(p=cfg.flip_p)]
        params = {
            # The label field carries each box's plate index, so survivors stay matched to corners.
            "bbox_params": A.BboxParams(
                format="pascal_voc",
                label_fields=["plate_ids"],
                clip=True,
                filter_invalid_bboxes=True,
            ),
            "keypoint_params": A.KeypointParams(format="xy", remove_invisible=False),
        }
        self._full = A.Compose([*flip, *_geometric(cfg), *_photometric(cfg)], **params)
        # The fallback can never lose a plate: a flip keeps every box whole.
        self._safe = A.Compose([*flip, *_photometric(cfg)], **params)
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Restart the random stream (``None``: fresh OS entropy).

        The stream calls this per worker and epoch, so workers do not repeat each
        other. One generator pair is shared by every transform: albumentations'
        own ``seed=`` gives each transform an identically seeded generator, which
        correlates their draws.
        """
        rng, py = np.random.default_rng(seed), random.Random(seed)
        self._full.set_random_state(rng, py)
        self._safe.set_random_state(rng, py)

    def __call__(
        self, image: np.ndarray, boxes_xyxy: np.ndarray, corners: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Augment one canvas.

        Args:
            image: ``(H, W, 3)`` uint8 RGB, the canvas size.
            boxes_xyxy: ``(N, 4)`` canvas pixels.
            corners: ``(N, 4, 2)`` canvas pixels, TL,TR,BR,BL; NaN rows where unknown.

        Returns:
            ``(image, boxes_xyxy (M, 4) float32, corners (M, 4, 2) float32)`` with
            ``M <= N`` (see :meth:`transform` for which plates survived).
        """
        r = self.transform(image, boxes_xyxy, corners)
        return r.image, r.boxes_xyxy, r.corners

    def transform(
        self, image: np.ndarray, boxes_xyxy: np.ndarray, corners: np.ndarray
    ) -> AugmentResult:
        """Like ``__call__``, also saying which input plates survived (for texts, ids)."""
        if image.shape[:2] != (self.canvas_h, self.canvas_w):
            raise ValueError(
                f"image is {image.shape[1]}x{image.shape[0]}, augment expects the canvas "
                f"{self.canvas_w}x{self.canvas_h}"
            )
        boxes = clip_boxes(boxes_xyxy, self.canvas_w, self.canvas_h)
        corners = np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2)
        if len(corners) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(corners)} corner sets")
        valid = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
        boxes, corners = boxes[valid], corners[valid]
        known = ~np.isnan(corners).any(axis=(1, 2))
        # A box's own corners, clockwise from top-left: (x0,y0), (x1,y0), (x1,y1), (x0,y1).
        box_quads = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 2)
        quads = np.where(known[:, None, None], corners, box_quads)
        inputs = {
            "image": image,
            "bboxes": boxes,
            "plate_ids": np.arange(len(boxes)),
            # albumentations puts pixel centres on integers (a flip maps x to W - 1 - x);
            # platelab puts them at +0.5 (geometry.py), so shift on the way in and out.
            "keypoints": quads.reshape(-1, 2) - 0.5,
        }
        for _ in range(self.cfg.retries + 1):
            result = self._apply(self._full, inputs, quads, known)
            if len(result.kept) or not len(boxes):
                break
        else:
            # Nothing here can shrink a plate, so no filter: every input plate comes back.
            result = self._apply(self._safe, inputs, quads, known, sanitise=False)
        result.kept = valid[result.kept]
        return result

    def _apply(
        self,
        compose: A.Compose,
        inputs: dict,
        quads: np.ndarray,
        known: np.ndarray,
        sanitise: bool = True,
    ) -> AugmentResult:
        out = compose(**inputs)
        moved = np.asarray(out["keypoints"], dtype=np.float64)[:, :2].reshape(-1, 4, 2) + 0.5
        alb_boxes = {
            int(i): b
            for i, b in zip(out["plate_ids"], np.asarray(out["bboxes"]).reshape(-1, 4), strict=True)
        }
        w, h = self.canvas_w, self.canvas_h
        enclosing = corners_to_xyxy(moved)
        clamped = clip_boxes(enclosing, w, h)
        visible = box_area(clamped) / np.maximum(box_area(enclosing), 1e-9)
        mirrored = np.sign(_signed_area(moved)) != np.sign(_signed_area(quads))
        keep, out_boxes, out_corners = [], [], []
        for i in range(len(quads)):
            if known[i]:
                box = clamped[i]
            elif i in alb_boxes:
                box = clip_boxes(alb_boxes[i], w, h)[0]
            else:
                continue  # albumentations dropped it: nothing of it is left on the canvas
            too_thin = min(box[2] - box[0], box[3] - box[1]) < max(self.cfg.min_size_px, 1e-6)
            if sanitise and (visible[i] < self.cfg.min_visible or too_thin):
                continue
            c = moved[i][list(MIRRORED_ORDER)] if mirrored[i] else moved[i]
            keep.append(i)
            out_boxes.append(box)
            out_corners.append(c if known[i] else np.full((4, 2), np.nan))
        return AugmentResult(
            image=np.ascontiguousarray(out["image"]),
            boxes_xyxy=np.asarray(out_boxes, dtype=np.float32).reshape(-1, 4),
            corners=np.asarray(out_corners, dtype=np.float32).reshape(-1, 4, 2),
            kept=np.asarray(keep, dtype=np.int64),
        )


def build_augment(
    cfg: AugmentConfig, canvas_w: int, canvas_h: int, seed: int | None = None
) -> PlateAugment:
    """The training augmentation for a ``canvas_w x canvas_h`` canvas.

    Returns:
        A callable ``aug(image (H, W, 3) uint8, boxes_xyxy (N, 4), corners (N, 4, 2))
        -> (image, boxes_xyxy (M, 4), corners (M, 4, 2))``; the image keeps the canvas
        size. ``seed=None`` draws fresh entropy; :meth:`PlateAugment.reseed` restarts it.
    """
    return PlateAugment(cfg, canvas_w, canvas_h, seed)
