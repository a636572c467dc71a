"""Metrics for the multi-plate detector (task ``detect``): COCO AP/AR, P/R/F1, corners, top box.

Inputs are per image, in one pixel frame for all of them (pass original-photo pixels:
the size buckets below are plate widths in that frame). Each image is a pair of dicts,
as the detector's decoded output and the data stream's target give them (tensors or
arrays alike):

* prediction: ``boxes_xyxy`` ``[N, 4]`` (``x_min <= x_max``, ``y_min <= y_max``),
  ``scores`` ``[N]``, and optionally ``corners`` ``[N, 4, 2]`` (TL, TR, BR, BL; ``x, y``).
* ground truth: ``boxes_xyxy`` ``[M, 4]``, optionally ``corners`` ``[M, 4, 2]`` with NaN
  where unknown (YOLO and VOC sources), and optionally ``index`` (the image's manifest
  position, which makes :meth:`DetectionMetric.gather` order and de-duplicate images).

``N`` or ``M`` may be 0; ``M == 0`` is a negative image.

Matching follows ``pycocotools`` ``COCOeval`` for one class, and its AP/AR agree with it
(tests/eval/test_detection.py cross-checks): per image, the ``max_det`` best-scored
predictions are taken in descending score (stable on ties) and each is matched to the
unmatched plate of highest IoU at or above the threshold (``box_iou`` with no +1 pixel),
the last of equal IoUs winning, as in ``COCOeval.evaluateImg``. AP is the mean of the
101-point interpolated precision at recall ``0, 0.01, ..., 1`` of the precision envelope;
AR is the final recall; both are averaged over the IoU thresholds ``0.50:0.05:0.95``.

Size buckets work like COCO's area ranges but on the box WIDTH: plates outside a bucket
are ignored (matching one costs nothing and earns nothing), and so are unmatched
predictions outside it. The buckets are half-open, so each plate falls in exactly one:
small ``[0, 32)``, medium ``[32, 96)``, large ``[96, inf)`` pixels wide (COCO's ranges
are closed at both ends, so a plate exactly on a boundary counts in both there).

Undefined values: with no plate at all, ``ap*``, ``ar``, ``recall`` are 0.0 (as in
:mod:`platelab.eval.metrics`, so a monitored ``ap50`` stays finite); a size bucket with
no plate gives NaN for its AP (COCO's -1: "not measured", not "failed"); so does
``corner_error_px`` with no pair to measure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from platelab.engine import distributed

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's exact values (linspace, not arange)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
# name -> [min, max) plate width in pixels; "all" first (index 0 is used for P/R/F1).
SIZE_RANGES = {
    "all": (0.0, np.inf),
    "small": (0.0, 32.0),
    "medium": (32.0, 96.0),
    "large": (96.0, np.inf),
}
_BOUNDS = np.array(list(SIZE_RANGES.values()))  # (A, 2)
_CHUNK = 512  # images matched together in one padded array


@dataclass
class _Image:
    """One image's arrays: predictions sorted by descending score, truncated to ``max_det``."""

    boxes: np.ndarray  # (N, 4) float64
    scores: np.ndarray  # (N,)
    corners: np.ndarray  # (N, 4, 2), NaN when the prediction has none
    gt_boxes: np.ndarray  # (M, 4)
    gt_corners: np.ndarray  # (M, 4, 2), NaN where unknown


def _array(x: Any, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()  # numpy has no bfloat16
    return np.asarray(x, dtype=np.float64).reshape(shape)


def _corners(d: Mapping, n: int) -> np.ndarray:
    c = d.get("corners")
    return np.full((n, 4, 2), np.nan) if c is None else _array(c, (n, 4, 2))


def _image(pred: Mapping, gt: Mapping, max_det: int) -> _Image:
    boxes, scores = _array(pred["boxes_xyxy"], (-1, 4)), _array(pred["scores"], (-1,))
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} predicted boxes but {len(scores)} scores")
    gt_boxes = _array(gt["boxes_xyxy"], (-1, 4))
    for name, b in (("predicted", boxes), ("ground-truth", gt_boxes)):
        if ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
            raise ValueError(f"{name} boxes must satisfy x_min <= x_max and y_min <= y_max")
    if not np.isfinite(gt_boxes).all():
        raise ValueError("ground-truth boxes must be finite")
    order = np.argsort(-scores, kind="stable")[:max_det]
    corners = _corners(pred, len(boxes))
    return _Image(
        boxes[order], scores[order], corners[order], gt_boxes, _corners(gt, len(gt_boxes))
    )


def _images(preds: Sequence[Mapping], gts: Sequence[Mapping], max_det: int) -> list[_Image]:
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground truths")
    return [_image(p, g, max_det) for p, g in zip(preds, gts, strict=True)]


# -- matching -----------------------------------------------------------------------
def _batched_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(I, D, G)`` IoU of ``a`` ``(I, D, 4)`` with ``b`` ``(I, G, 4)``, xyxy; no +1 pixel.

    The per-image form of ``torchvision.ops.box_iou`` (which has no batch axis); 0/0 and
    non-finite boxes give 0.
    """
    a, b = a[:, :, None, :], b[:, None, :, :]
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area_a + area_b - inter)
    return np.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0)


def _last_best(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the max along the last axis, the LAST one on a tie (COCOeval), and whether
    any entry is finite."""
    return s.shape[-1] - 1 - np.argmax(s[..., ::-1], axis=-1), np.isfinite(s.max(axis=-1))


@dataclass
class _Matches:
    """Every kept prediction, in image order then descending score (COCOeval's order).

    ``matched``/``ignored`` are ``(A, T, D)`` over size ranges and IoU thresholds;
    ``gt`` ``(D,)`` is the matched plate's row in its image at "all" and IoU 0.5 (-1 none);
    ``num_plates`` ``(A,)`` counts the plates inside each range; ``top_iou`` ``(P,)`` is,
    for each image holding a plate, the best IoU of its top-scored box with its plates
    (0 without a box): :func:`platelab.eval.metrics.best_ious` of that box.
    """

    matched: np.ndarray
    ignored: np.ndarray
    gt: np.ndarray
    num_plates: np.ndarray
    top_iou: np.ndarray
    image: np.ndarray | None = None
    scores: np.ndarray | None = None


def _width_in(width: np.ndarray) -> np.ndarray:
    """``(A, *width.shape)``: whether each width lies in each size range."""
    shape = (-1,) + (1,) * width.ndim
    lo, hi = _BOUNDS[:, 0].reshape(shape), _BOUNDS[:, 1].reshape(shape)
    return (width >= lo) & (width < hi)


def _match_chunk(images: Sequence[_Image]) -> _Matches:
    n, num_a, num_t = len(images), len(SIZE_RANGES), len(IOU_THRESHOLDS)
    nd = np.array([len(im.scores) for im in images])
    ng = np.array([len(im.gt_boxes) for im in images])
    d_max, g_max = int(nd.max(initial=0)), int(ng.max(initial=0))
    det_valid = np.arange(d_max) < nd[:, None]  # (n, D)
    gt_valid = np.arange(g_max) < ng[:, None]
    det = np.zeros((n, d_max, 4))
    gt = np.zeros((n, g_max, 4))
    det[det_valid] = np.concatenate([im.boxes for im in images] or [np.zeros((0, 4))])
    gt[gt_valid] = np.concatenate([im.gt_boxes for im in images] or [np.zeros((0, 4))])
    iou = np.where(gt_valid[:, None, :], _batched_iou(det, gt), -np.inf)  # padding never matches
    gt_in = _width_in(gt[..., 2] - gt[..., 0]).transpose(1, 0, 2)[:, :, None, :]  # (n, A, 1, G)
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]  # (T, 1), as COCOeval caps it
    taken = np.zeros((n, num_a, num_t, g_max), bool)
    matched = np.zeros((n, num_a, num_t, d_max), bool)
    on_ignored = np.zeros_like(matched)
    gt_of = np.full((n, d_max), -1)
    a_idx, t_idx = np.arange(num_a)[None, :, None], np.arange(num_t)[None, None, :]
    for k in range(d_max if g_max else 0):
        # only the images whose k-th box reaches the lowest threshold on some plate
        r = np.flatnonzero(det_valid[:, k] & (iou[:, k].max(axis=-1) >= thr[0, 0]))
        if not len(r):
            continue
        iou_k = iou[r, k, None, None, :]  # (r, 1, 1, G)
        ok = (iou_k >= thr) & ~taken[r]
        # A plate inside the range wins over any ignored one (COCOeval's sort and break).
        best, found = _last_best(np.where(ok & gt_in[r], iou_k, -np.inf))
        best_ig, found_ig = _last_best(np.where(ok & ~gt_in[r], iou_k, -np.inf))
        pick = np.where(found, best, best_ig)  # (r, A, T)
        hit = found | found_ig
        matched[r, ..., k] = hit
        on_ignored[r, ..., k] = found_ig & ~found
        taken[r[:, None, None], a_idx, t_idx, pick] |= hit
        gt_of[r, k] = np.where(hit[:, 0, 0], pick[:, 0, 0], -1)
    widths = np.nan_to_num(det[..., 2] - det[..., 0], nan=0.0)
    det_out = ~_width_in(widths).transpose(1, 0, 2)[:, :, None, :]  # (n, A, 1, D)
    ignored = on_ignored | (~matched & det_out)
    # (n, A, T, D) -> (A, T, kept predictions in image-then-rank order)
    flat = [x.transpose(1, 2, 0, 3)[:, :, det_valid] for x in (matched, ignored)]
    num_plates = (_width_in(gt[..., 2] - gt[..., 0]) & gt_valid).sum(axis=(1, 2))
    top = iou[:, 0, :].max(axis=-1, initial=0.0) if d_max else np.zeros(n)  # padded plates: -inf
    top = np.where(nd > 0, top, 0.0)
    return _Matches(*flat, gt_of[det_valid], num_plates, top[ng > 0])


def _match(images: Sequence[_Image]) -> _Matches:
    """Greedy COCO matching of every image, at every size range and IoU threshold."""
    starts = range(0, max(len(images), 1), _CHUNK)  # one empty chunk for no image
    parts = [_match_chunk(images[i : i + _CHUNK]) for i in starts]
    counts = [len(im.scores) for im in images]
    return _Matches(
        matched=np.concatenate([p.matched for p in parts], axis=-1),
        ignored=np.concatenate([p.ignored for p in parts], axis=-1),
        gt=np.concatenate([p.gt for p in parts]),
        num_plates=sum(p.num_plates for p in parts),
        top_iou=np.concatenate([p.top_iou for p in parts]),
        image=np.repeat(np.arange(len(images)), counts),
        scores=np.concatenate([im.scores for im in images] or [np.zeros(0)]),
    )


# -- metrics --------------------------------------------------------------------------
def _ap_ar(m: _Matches) -> tuple[np.ndarray, np.ndarray]:
    """``(A, T)`` AP and AR, as ``COCOeval.accumulate``; NaN where a range has no plate."""
    num_a, num_t = len(SIZE_RANGES), len(IOU_THRESHOLDS)
    ap, ar = np.full((num_a, num_t), np.nan), np.full((num_a, num_t), np.nan)
    order = np.argsort(-m.scores, kind="stable")  # across images; ties keep image order
    tp = (m.matched & ~m.ignored)[..., order]
    fp = (~m.matched & ~m.ignored)[..., order]
    nd = len(order)
    for a in range(num_a):
        total = m.num_plates[a]
        if total == 0:
            continue
        if nd == 0:
            ap[a], ar[a] = 0.0, 0.0
            continue
        tps, fps = np.cumsum(tp[a], axis=-1), np.cumsum(fp[a], axis=-1)  # (T, D)
        recall = tps / total
        precision = tps / (tps + fps + np.spacing(1))
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=-1)[:, ::-1]
        for t in range(num_t):
            idx = np.searchsorted(recall[t], RECALL_POINTS, side="left")
            q = np.where(idx < nd, envelope[t, np.minimum(idx, nd - 1)], 0.0)
            ap[a, t] = q.mean()
        ar[a] = recall[:, -1]
    return ap, ar


def _corner_error(images: Sequence[_Image], m: _Matches, hit: np.ndarray) -> tuple[float, int]:
    """Mean corner distance over ``hit`` predictions whose plate's 4 corners are known."""
    if not hit.any():
        return float("nan"), 0
    pred = np.concatenate([im.corners for im in images])[hit]
    start = np.cumsum([0] + [len(im.gt_boxes) for im in images])
    gt = np.concatenate([im.gt_corners for im in images])[start[m.image[hit]] + m.gt[hit]]
    err = np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)  # (pairs,) mean over 4 corners
    err = err[np.isfinite(err)]  # unknown plate corners, or a prediction without any
    return (float(err.mean()) if len(err) else float("nan")), len(err)


def _summarize(images: Sequence[_Image], score_thr: float) -> dict[str, float]:
    m = _match(images)
    ap, ar = _ap_ar(m)
    n_plates = int(m.num_plates[0])
    zero = np.nan_to_num  # no plate at all: the headline figures are 0.0, not NaN
    out = {
        "ap50": float(zero(ap[0, 0])),
        "ap75": float(zero(ap[0, 5])),
        "ap50_95": float(zero(ap[0].mean())),
        "ar": float(zero(ar[0].mean())),
        **{f"ap_{name}": float(ap[a].mean()) for a, name in enumerate(SIZE_RANGES) if a},
    }
    kept = m.scores >= score_thr
    hit = kept & m.matched[0, 0]  # the "all" range ignores nothing
    tp, fp = int(hit.sum()), int((kept & ~hit).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_plates if n_plates else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out |= {"precision": precision, "recall": recall, "f1": f1}
    out["corner_error_px"], n_pairs = _corner_error(images, m, hit)
    top = m.top_iou
    out |= {
        "acc_iou50": float((top > 0.5).mean()) if len(top) else 0.0,
        "acc_iou70": float((top > 0.7).mean()) if len(top) else 0.0,
        "mean_iou": float(top.mean()) if len(top) else 0.0,
    }
    out |= {"n_images": len(images), "n_plates": n_plates, "n_corner_pairs": n_pairs}
    return out | {"tp": tp, "fp": fp, "fn": n_plates - tp}


def coco_ap(
    preds: Sequence[Mapping], gts: Sequence[Mapping], max_det: int = 100
) -> dict[str, float]:
    """COCO AP and AR of one class (the plate), with size buckets by plate width.

    Args:
        preds: one dict per image, ``boxes_xyxy`` ``[N, 4]`` and ``scores`` ``[N]``.
        gts: one dict per image, ``boxes_xyxy`` ``[M, 4]``, same pixel frame.
        max_det: predictions kept per image, the best-scored (COCO's ``maxDets``).

    Returns:
        ``ap50``, ``ap75`` (IoU 0.5 / 0.75), ``ap50_95`` (mean over 0.50:0.05:0.95),
        ``ar`` (AR@``max_det``, same mean), and ``ap_small``, ``ap_medium``, ``ap_large``
        (AP50:95 over plates ``[0, 32)``, ``[32, 96)``, ``[96, inf)`` pixels wide).
        Module docstring: matching, buckets and undefined values.

    Raises:
        ValueError: on mismatched lengths, an inverted box or a non-finite plate box.
    """
    keys = ("ap50", "ap75", "ap50_95", "ar", "ap_small", "ap_medium", "ap_large")
    m = _summarize(_images(preds, gts, max_det), score_thr=np.inf)
    return {k: m[k] for k in keys}


def summarize(
    preds: Sequence[Mapping], gts: Sequence[Mapping], score_thr: float = 0.5, max_det: int = 100
) -> dict[str, float]:
    """Every detection metric of a set of images.

    Args:
        preds, gts: one dict per image (module docstring).
        score_thr: score a prediction must reach for P/R/F1 and the corner error.
        max_det: predictions kept per image, the best-scored.

    Returns:
        The dict of :meth:`DetectionMetric.compute`.
    """
    return _summarize(_images(preds, gts, max_det), score_thr)


class DetectionMetric:
    """Accumulates per-image predictions over an eval loop, then computes every metric.

    Under DDP, each rank calls :meth:`update` on its share, then :meth:`gather` once;
    every rank's :meth:`compute` then returns the same figures.

    Args:
        score_thr: score a prediction must reach for P/R/F1 and the corner error.
        max_det: predictions kept per image, the best-scored.
    """

    def __init__(self, score_thr: float = 0.5, max_det: int = 100) -> None:
        self.score_thr, self.max_det = score_thr, max_det
        self.reset()

    def reset(self) -> None:
        """Forget every image."""
        self.images: list[_Image] = []
        self.groups: list[str | None] = []
        self.indices: list[int | None] = []
        self._gathered = False

    def update(
        self,
        preds: Sequence[Mapping],
        gts: Sequence[Mapping],
        groups: Sequence[str] | None = None,
    ) -> None:
        """Add a batch of images (module docstring for the dicts).

        Args:
            preds: per-image predictions; only the ``max_det`` best-scored are kept.
            gts: per-image ground truth; an ``index`` key identifies the image.
            groups: per-image label for :meth:`breakdown` (e.g. source or subset).
        """
        if groups is not None and len(groups) != len(gts):
            raise ValueError(f"{len(groups)} groups for {len(gts)} images")
        self.images += _images(preds, gts, self.max_det)
        self.groups += list(groups) if groups is not None else [None] * len(gts)
        self.indices += [None if g.get("index") is None else int(g["index"]) for g in gts]

    def gather(self) -> DetectionMetric:
        """Merge every rank's images into each rank (a no-op in a single process).

        With every image carrying an ``index``, the merged images are sorted by it and a
        repeated index (a sampler padding ranks to equal length) counts once. Calling it
        again does nothing.
        """
        if self._gathered or not distributed.is_distributed():
            return self
        parts = distributed.all_gather_object((self.images, self.groups, self.indices))
        images = [x for p in parts for x in p[0]]
        groups = [x for p in parts for x in p[1]]
        indices = [x for p in parts for x in p[2]]
        keep = list(range(len(images)))
        if all(i is not None for i in indices):
            first: dict[int, int] = {}
            for j in sorted(keep, key=indices.__getitem__):
                first.setdefault(indices[j], j)
            keep = list(first.values())
        self.images = [images[j] for j in keep]
        self.groups = [groups[j] for j in keep]
        self.indices = [indices[j] for j in keep]
        self._gathered = True
        return self

    def compute(self, subset: Sequence[int] | np.ndarray | None = None) -> dict[str, float]:
        """Every metric, over all images or the ``subset`` (positions or a boolean mask).

        Returns:
            COCO figures (:func:`coco_ap`): ``ap50, ap75, ap50_95, ar, ap_small, ap_medium,
            ap_large``. At IoU 0.5 and ``score >= score_thr``, with the same greedy matching
            (a lower-scored box never takes a plate from a higher-scored one, so this equals
            matching the kept boxes alone):
            ``precision = TP / (TP + FP)`` where a kept prediction matching no plate is a FP
            (every kept box on a negative image included), ``recall = TP / n_plates``,
            ``f1``, and the counts ``tp, fp, fn``. ``corner_error_px``: over those TPs whose
            plate has all 4 corners known (and that predict corners), the mean over the 4
            corners of the Euclidean distance, averaged over plates; ``n_corner_pairs`` of
            them (NaN when 0). Top box, over images holding a plate, the best-scored box
            whatever its score: ``acc_iou50``/``acc_iou70`` the share whose best IoU with any
            plate is > 0.5 / > 0.7, ``mean_iou`` its mean (an image without predictions
            scores 0), as :func:`platelab.eval.metrics.best_ious`. ``n_images, n_plates``.
        """
        images = self.images
        if subset is not None:
            sel = np.asarray(subset)
            idx = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64).reshape(-1)
            images = [images[i] for i in idx]
        return _summarize(images, self.score_thr)

    def breakdown(self) -> dict[str, dict[str, float]]:
        """:meth:`compute` for each group given to :meth:`update` (unlabelled images skipped)."""
        named = dict.fromkeys(g for g in self.groups if g is not None)
        return {
            str(g): self.compute([i for i, x in enumerate(self.groups) if x == g]) for g in named
        }
