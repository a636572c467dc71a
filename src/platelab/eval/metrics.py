"""Localisation and detection metrics for a one-box-per-image model, and the evaluator.

The model predicts ONE box and a plate-presence score per image; an image holds
0..N ground-truth plates. Every metric here is computed from three per-image
arrays (``M`` images):

* ``scores`` ``(M,)``: presence scores in ``[0, 1]`` (``sigmoid(logits)``).
* ``ious`` ``(M,)``: IoU of the predicted box with the best-matching plate of
  its image, NaN for an image without a plate (see :func:`best_ious`).
* ``num_plates`` ``(M,)``: how many plates each image holds.

Boxes are xyxy pixels, any one frame per call. :func:`evaluate` (used by training)
scores on the canvas; ``platelab eval`` (:mod:`platelab.eval.evaluate`) maps boxes
back to the original photos and clips predictions to them first. The letterbox is a
uniform scale plus a shift, which leaves IoU unchanged, so the two differ only where
a predicted box reaches into the padding (clipping it to the photo).

Empty inputs never crash, and no metric is NaN: one with nothing to average
(no image, no plate, no detection) is 0.0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn
from torchvision.ops import box_iou

from platelab.engine.trainer import to_device

# Images per box_iou call in best_ious: a (C, ~C) matrix stays small while the
# per-call overhead is paid once per chunk instead of once per image.
_CHUNK = 256


# -- per-image IoU ---------------------------------------------------------------
def best_matches(
    pred_boxes_xyxy: ArrayLike, gt_boxes_list: Sequence[ArrayLike]
) -> tuple[np.ndarray, np.ndarray]:
    """IoU of each image's predicted box with its best-matching plate, and which plate.

    Args:
        pred_boxes_xyxy: ``(M, 4)`` one predicted box per image, ``x_min <= x_max``,
            ``y_min <= y_max``.
        gt_boxes_list: M arrays of shape ``(N_i, 4)``, the plates of each image in the
            same pixel frame; ``N_i == 0`` for a negative.

    Returns:
        ``(ious, match)``: ``ious`` ``(M,)`` float64, the max IoU over the image's plates
        (``torchvision.ops.box_iou``), NaN for an image without plates; ``match`` ``(M,)``
        int64, the row of that plate in its image's array (the first on a tie), -1 for
        an image without plates. A non-finite predicted box, or a zero-area one on a
        zero-area plate, overlaps nothing and scores 0.

    Raises:
        ValueError: on mismatched lengths, wrong shapes or an inverted predicted box.
    """
    pred = torch.as_tensor(np.asarray(pred_boxes_xyxy, dtype=np.float64)).reshape(-1, 4)
    if len(gt_boxes_list) != len(pred):
        raise ValueError(f"{len(pred)} predicted boxes but {len(gt_boxes_list)} ground-truth lists")
    if bool(((pred[:, 2] < pred[:, 0]) | (pred[:, 3] < pred[:, 1])).any()):
        raise ValueError("predicted boxes must satisfy x_min <= x_max and y_min <= y_max")
    gts = [np.asarray(g, dtype=np.float64).reshape(-1, 4) for g in gt_boxes_list]
    counts = np.array([len(g) for g in gts], dtype=np.int64)
    out = np.full(len(pred), np.nan)
    match = np.full(len(pred), -1, dtype=np.int64)
    if counts.sum() == 0:
        return out, match
    gt_all = torch.as_tensor(np.concatenate(gts))
    owner = np.repeat(np.arange(len(pred)), counts)  # image of each plate
    offsets = np.concatenate([[0], np.cumsum(counts)])
    per_plate = np.empty(len(gt_all))
    for a in range(0, len(pred), _CHUNK):
        b = min(a + _CHUNK, len(pred))
        s, e = offsets[a], offsets[b]
        if s == e:
            continue
        iou = box_iou(pred[a:b], gt_all[s:e])  # (images in chunk, plates in chunk)
        per_plate[s:e] = iou[owner[s:e] - a, torch.arange(e - s)].numpy()
    per_plate = np.nan_to_num(per_plate, nan=0.0)  # 0/0 union: no overlap to speak of
    has = counts > 0
    out[has] = np.maximum.reduceat(per_plate, offsets[:-1][has])
    # Sorted by image, then IoU descending (stable: the first plate wins a tie), the
    # best plate of each image is the first of its run.
    order = np.lexsort((-per_plate, owner))
    match[has] = order[offsets[:-1][has]] - offsets[:-1][has]
    return out, match


def best_ious(pred_boxes_xyxy: ArrayLike, gt_boxes_list: Sequence[ArrayLike]) -> np.ndarray:
    """``(M,)`` IoU of each image's predicted box with its best-matching plate, NaN for a
    negative: the ``ious`` of :func:`best_matches` (same arguments and errors)."""
    return best_matches(pred_boxes_xyxy, gt_boxes_list)[0]


# -- metrics over per-image arrays -------------------------------------------------
def _per_image(*arrays: ArrayLike) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    if len({len(a) for a in out}) > 1:
        raise ValueError(f"per-image arrays differ in length: {[len(a) for a in out]}")
    return out


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else 0.0


def localization_metrics(ious: ArrayLike, has_plate: ArrayLike) -> dict[str, float]:
    """How well the box sits, over the images that hold a plate (scores ignored).

    Args:
        ious: ``(M,)`` best IoU per image (:func:`best_ious`).
        has_plate: ``(M,)`` truthy for an image with at least one plate.

    Returns:
        ``mean_iou``, ``median_iou``, and ``acc_iou50`` / ``acc_iou70``: the share of
        plate images with IoU strictly greater than 0.5 / 0.7. All 0.0 when no image
        holds a plate.
    """
    ious, has_plate = _per_image(ious, has_plate)
    x = ious[has_plate > 0]
    return {
        "mean_iou": _mean(x),
        "median_iou": float(np.median(x)) if len(x) else 0.0,
        "acc_iou50": _mean(x > 0.5),
        "acc_iou70": _mean(x > 0.7),
    }


def _true_positive(ious: np.ndarray, num_plates: np.ndarray, iou_thr: float) -> np.ndarray:
    # NaN (no plate) compares False: a box on a negative is never a hit.
    return (num_plates > 0) & (np.nan_to_num(ious, nan=0.0) > iou_thr)


def detection_metrics(
    scores: ArrayLike,
    ious: ArrayLike,
    num_plates: ArrayLike,
    iou_thr: float = 0.5,
    score_thr: float = 0.5,
) -> dict[str, float]:
    """Precision, recall and F1 at one score threshold, counting negatives.

    A prediction with ``score >= score_thr`` is a detection. It is a true positive
    when its image holds a plate and ``iou > iou_thr``; otherwise a false positive
    (a confident box on a negative included). One box matches at most one plate, so
    every other plate is a false negative: two plates and one good box give 1 TP, 1 FN.

    Args:
        scores, ious, num_plates: ``(M,)`` per-image arrays (module docstring).
        iou_thr: IoU a detection must exceed.
        score_thr: score a prediction must reach to count.

    Returns:
        ``precision = TP / (TP + FP)`` (0.0 with no detection), ``recall = TP / plates``
        (0.0 with no plate), ``f1`` their harmonic mean (0.0 when both are 0), and the
        counts ``tp``, ``fp``, ``fn``.
    """
    scores, ious, num_plates = _per_image(scores, ious, num_plates)
    detected = scores >= score_thr
    tp = int((detected & _true_positive(ious, num_plates, iou_thr)).sum())
    fp = int(detected.sum()) - tp
    total = int(num_plates.sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / total if total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": total - tp,
    }


def average_precision(
    scores: ArrayLike, ious: ArrayLike, num_plates: ArrayLike, iou_thr: float = 0.5
) -> float:
    """Area under the precision-recall curve swept over the score threshold.

    Predictions are ranked by score, highest first. Tied scores form one point of the
    curve (no threshold separates them), so the result does not depend on input order.
    Precision is made monotone (each point takes the best precision at any higher
    recall) and integrated over recall: the all-point interpolation of Pascal VOC
    2010+ (COCO samples the same envelope at 101 recall points). Recall is over all
    plates, so the second plate of an image caps recall below 1.

    Args:
        scores, ious, num_plates: ``(M,)`` per-image arrays (module docstring).
        iou_thr: IoU a prediction must exceed to be a true positive.

    Returns:
        AP in ``[0, 1]``; 0.0 when there is no plate at all (recall is undefined).
    """
    scores, ious, num_plates = _per_image(scores, ious, num_plates)
    total = num_plates.sum()
    if total == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    hit = _true_positive(ious, num_plates, iou_thr)[order]
    cum_tp, cum_fp = np.cumsum(hit), np.cumsum(~hit)
    last_of_tie = np.append(ranked[1:] != ranked[:-1], True)
    cum_tp, cum_fp = cum_tp[last_of_tie], cum_fp[last_of_tie]
    precision = cum_tp / (cum_tp + cum_fp)
    recall = cum_tp / total
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * envelope))


def _summarize_ious(scores: np.ndarray, ious: np.ndarray, num_plates: np.ndarray) -> dict:
    m = {**localization_metrics(ious, num_plates > 0)}
    for thr, suffix in ((0.5, ""), (0.7, "70")):
        d = detection_metrics(scores, ious, num_plates, iou_thr=thr, score_thr=0.5)
        m[f"precision{suffix}"] = d["precision"]
        m[f"recall{suffix}"] = d["recall"]
        m["f1" + (f"_{suffix}" if suffix else "")] = d["f1"]
    m["ap50"] = average_precision(scores, ious, num_plates, iou_thr=0.5)
    m["ap70"] = average_precision(scores, ious, num_plates, iou_thr=0.7)
    m["images"] = float(len(scores))
    m["plates"] = float(num_plates.sum())
    m["negatives"] = float((num_plates == 0).sum())
    return m


def summarize(
    scores: ArrayLike, pred_boxes_xyxy: ArrayLike, gt_boxes_list: Sequence[ArrayLike]
) -> dict[str, float]:
    """Every metric of a set of per-image predictions.

    Args:
        scores: ``(M,)`` presence scores.
        pred_boxes_xyxy: ``(M, 4)`` predicted boxes, pixels.
        gt_boxes_list: M arrays ``(N_i, 4)`` of plates in the same pixels.

    Returns:
        ``mean_iou, median_iou, acc_iou50, acc_iou70`` (:func:`localization_metrics`);
        ``precision, recall, f1`` at IoU 0.5 and ``precision70, recall70, f1_70`` at IoU
        0.7, both at score 0.5 (:func:`detection_metrics`); ``ap50, ap70``; and the counts
        ``images, plates, negatives``.
    """
    ious = best_ious(pred_boxes_xyxy, gt_boxes_list)
    num_plates = np.array([np.asarray(g).reshape(-1, 4).shape[0] for g in gt_boxes_list])
    (scores,) = _per_image(scores)
    return _summarize_ious(scores, ious, num_plates.astype(np.int64))


# -- the evaluator ---------------------------------------------------------------
@dataclass
class EvalResults:
    """Per-image predictions of one process, and the sums behind its averages.

    Attributes:
        index: ``(M,)`` int64 manifest order of each image.
        boxes_xyxy: ``(M, 4)`` float64 predicted boxes, canvas pixels.
        scores: ``(M,)`` float64 presence scores.
        gt_boxes_xyxy: M arrays ``(N_i, 4)`` float64, the plates in canvas pixels.
        loss_sums: each loss term summed as ``term * batch_size``.
        forward_s: seconds spent in the model's forward pass.
    """

    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    boxes_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gt_boxes_xyxy: list[np.ndarray] = field(default_factory=list)
    loss_sums: dict[str, float] = field(default_factory=dict)
    forward_s: float = 0.0


def gather_results(results: EvalResults) -> EvalResults:
    """Merge every rank's results so that each rank computes the same metrics.

    Uses ``torch.distributed.all_gather_object`` when a process group is initialised
    with more than one rank (with NCCL, ``torch.cuda.set_device`` must have been
    called, as ``torchrun`` set-ups do); otherwise returns ``results`` unchanged. The
    merged images are sorted by ``index``; loss sums and forward seconds are added.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return results
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, results)
    index = np.concatenate([p.index for p in parts])
    order = np.argsort(index, kind="stable")
    gts = [g for p in parts for g in p.gt_boxes_xyxy]
    loss_sums: dict[str, float] = {}
    for p in parts:
        for k, v in p.loss_sums.items():
            loss_sums[k] = loss_sums.get(k, 0.0) + v
    return EvalResults(
        index=index[order],
        boxes_xyxy=np.concatenate([p.boxes_xyxy for p in parts])[order],
        scores=np.concatenate([p.scores for p in parts])[order],
        gt_boxes_xyxy=[gts[i] for i in order],
        loss_sums=loss_sums,
        forward_s=sum(p.forward_s for p in parts),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _numpy(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()  # numpy has no bfloat16
    return np.asarray(x, dtype=dtype)


def _batch_gt(targets: dict, batch_size: int) -> list[np.ndarray]:
    """Every plate of each image; falls back to the primary box where a loader lacks the list."""
    if "all_boxes_xyxy" in targets:
        return [_numpy(b, np.float64).reshape(-1, 4) for b in targets["all_boxes_xyxy"]]
    boxes = _numpy(targets["boxes_xyxy"], np.float64).reshape(-1, 4)
    has = _numpy(targets["has_plate"], np.float64).reshape(-1) > 0
    return [boxes[i : i + 1] if has[i] else np.zeros((0, 4)) for i in range(batch_size)]


def _run(model, loader, device, amp_dtype, loss_fn) -> EvalResults:
    """One process's pass over ``loader``: per-image arrays, loss sums, forward time."""
    res = EvalResults()
    index, boxes, scores, seen = [], [], [], 0
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        b, (h, w) = images.shape[0], images.shape[-2:]
        autocast = torch.autocast(device.type, amp_dtype, enabled=amp_dtype is not None)
        _sync(device)  # time the forward pass alone, not queued copies
        start = time.perf_counter()
        with autocast:
            outputs = model(images)
        _sync(device)
        res.forward_s += time.perf_counter() - start
        if loss_fn is not None:
            with autocast:
                terms = loss_fn(outputs, to_device(targets, device))
            for k, v in terms.items():
                if (isinstance(v, torch.Tensor) and v.numel() == 1) or isinstance(v, float | int):
                    res.loss_sums[k] = res.loss_sums.get(k, 0.0) + float(v) * b
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=device)
        boxes.append(_numpy(outputs["boxes_norm_xyxy"].float() * scale, np.float64))
        scores.append(_numpy(torch.sigmoid(outputs["logits"].float()), np.float64))
        idx = targets.get("index")
        index.append(np.arange(seen, seen + b) if idx is None else _numpy(idx, np.int64))
        res.gt_boxes_xyxy += _batch_gt(targets, b)
        seen += b
    if seen:
        res.index = np.concatenate(index).reshape(-1)
        res.boxes_xyxy = np.concatenate(boxes).reshape(-1, 4)
        res.scores = np.concatenate(scores).reshape(-1)
    return res


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, dict]],
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    loss_fn: Callable[[dict, dict], dict] | None = None,
    collect: bool = False,
) -> dict[str, float] | tuple[dict[str, float], list[dict[str, float]]]:
    """Run ``model`` over ``loader`` and compute every metric, under ``inference_mode``.

    Args:
        model: maps ``images [B, 3, H, W]`` to ``{"boxes_norm_xyxy": [B, 4] (normalised
            to the input canvas), "logits": [B]}``. Put in eval mode for the run, then
            back in the mode it had.
        loader: any iterable of ``(images, targets)`` batches: ``images`` ``[B, 3, H, W]``
            as the model takes them; ``targets`` with ``all_boxes_xyxy`` (list of
            ``(N_i, 4)`` canvas pixels) or else ``boxes_xyxy [B, 4]`` + ``has_plate [B]``,
            and optionally ``index [B]`` (a running count otherwise).
        device: where the model runs; images and targets are moved there.
        amp_dtype: autocast dtype (e.g. ``torch.bfloat16``), None for full precision.
        loss_fn: ``loss_fn(outputs, targets) -> {"loss": ..., ...}``; each scalar term
            is averaged over images (weighted by batch size) as ``val_<term>``.
        collect: also return one record per image.

    Returns:
        :func:`summarize`'s metrics plus ``val_fps`` (images per second of forward pass
        alone, per process: loading is excluded) and ``val_loss`` etc. when ``loss_fn``
        is given (NaN over zero images). Under DDP the results of all ranks are
        gathered first, so every rank returns the same. With ``collect``, a tuple
        ``(metrics, records)``: one record per image in ``index`` order under DDP, loader
        order otherwise, with ``index``, ``score``, ``iou`` (NaN for a negative),
        ``plates`` and the predicted box ``x_min, y_min, x_max, y_max`` in canvas pixels
        (map it to the photo with the manifest's ``Letterbox.boxes_to_original``).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            res = _run(model, loader, device, amp_dtype, loss_fn)
    finally:
        model.train(was_training)
    res = gather_results(res)
    n = len(res.scores)
    ious = best_ious(res.boxes_xyxy, res.gt_boxes_xyxy)
    num_plates = np.array([len(g) for g in res.gt_boxes_xyxy], dtype=np.int64)
    metrics = _summarize_ious(res.scores, ious, num_plates)
    metrics["val_fps"] = n / res.forward_s if res.forward_s > 0 else 0.0
    if loss_fn is not None:
        for k, v in res.loss_sums.items():
            metrics[f"val_{k}"] = v / n if n else float("nan")
        metrics.setdefault("val_loss", float("nan"))
    if not collect:
        return metrics
    rows = zip(res.index, res.scores, ious, num_plates, res.boxes_xyxy.tolist(), strict=True)
    records = [
        {"index": int(i), "score": float(sc), "iou": float(iou), "plates": int(p)}
        | dict(zip(("x_min", "y_min", "x_max", "y_max"), box, strict=True))
        for i, sc, iou, p, box in rows
    ]
    return metrics, records
