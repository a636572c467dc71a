"""``platelab eval`` of a detector (``task=detect``): every plate, in the original photos' pixels.

The detector runs on the letterboxed canvases (``DETECT.evaluate(..., collect=True)``,
decoded with :data:`~platelab.tasks.detect.EVAL`: down to score 0.001, at most 100
plates per image). Every detection's box is mapped back to its photo with the manifest
image's :class:`~platelab.geometry.Letterbox` and clipped to the photo; its 4 corners
are mapped with ``points_to_original`` and not clipped (they are measured against the
plate's corners, which lie inside the photo). The plates (boxes clipped to the photo,
corners NaN when unknown) are mapped the same way, and
:class:`~platelab.eval.detection.DetectionMetric` scores them there, at the deployment
threshold :data:`~platelab.tasks.detect.SCORE_THRESHOLD` for P/R/F1 and the corner
error: overall, per ``source`` and per ``subset``. The size buckets of ``ap_small`` /
``ap_medium`` / ``ap_large`` are plate widths in photo pixels.

``predictions.csv`` (:data:`DETECTION_COLUMNS`): one row per detection, images in
manifest order and each image's detections by descending score; an image without any
detection has one row with the detection fields empty:

    image, split, orig_image, source, subset, orig_width, orig_height, plates
                        the image, as in the localiser's file (plates: how many it holds)
    rank                the detection's place in its image, 0 = highest score
    score               its score (all decoded detections, down to 0.001: the file
                        holds everything AP was computed from; filter on score >=
                        metrics.json's score_threshold for what deployment keeps)
    iou                 its highest IoU with any plate of the image (empty on a negative)
    tp                  1 when it is a true positive at IoU 0.5 and score >= the threshold
                        (greedy matching by score, as the metrics), 0 a false positive,
                        empty below the threshold
    x_min, y_min, x_max, y_max    its box, photo pixels, clipped to the photo
    x1, y1, ..., x4, y4           its corners TL, TR, BR, BL, photo pixels
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from platelab.atomic import atomic_open
from platelab.data.manifest import BOX_COLUMNS, CORNER_COLUMNS, ManifestImage
from platelab.eval.detection import DetectionMetric
from platelab.geometry import Letterbox, clip_boxes

IMAGE_COLUMNS = ["image", "split", "orig_image", "source", "subset"]
IMAGE_COLUMNS += ["orig_width", "orig_height", "plates"]
DETECTION_COLUMNS = [*IMAGE_COLUMNS, "rank", "score", "iou", "tp", *BOX_COLUMNS, *CORNER_COLUMNS]
MATCH_IOU = 0.5  # the IoU of P/R/F1, ``tp`` and the gallery's misses
# The per-group table of the terminal summary.
GROUP_COLUMNS = ("n_images", "n_plates", "ap50", "ap50_95", "precision", "recall", "f1")


def _thresholds() -> tuple[float, int]:
    from platelab.tasks.detect import EVAL, SCORE_THRESHOLD

    return SCORE_THRESHOLD, EVAL.max_det


def match_detections(
    boxes_xyxy: np.ndarray, scores: np.ndarray, gt_boxes_xyxy: np.ndarray, score_thr: float
) -> tuple[np.ndarray, list[int | None], int]:
    """One image's detections against its plates, in one pixel frame.

    Args:
        boxes_xyxy: ``(K, 4)`` detections, sorted by descending ``scores`` ``(K,)``.
        gt_boxes_xyxy: ``(M, 4)`` plates.
        score_thr: the score a detection needs to count as one.

    Returns:
        ``(ious, tp, misses)``: ``ious`` ``(K,)`` each detection's highest IoU with any
        plate (NaN when ``M == 0``); ``tp`` per detection 1 (it takes a plate at IoU >=
        0.5), 0 (it takes none) or None (below ``score_thr``), the detections taking the
        unmatched plate of highest IoU in score order, as COCO (and the metrics) match;
        ``misses`` the plates no detection took.
    """
    k, m = len(boxes_xyxy), len(gt_boxes_xyxy)
    if m == 0:
        iou = np.zeros((k, 0))
    else:
        pairs = box_iou(torch.as_tensor(boxes_xyxy), torch.as_tensor(gt_boxes_xyxy))
        iou = np.nan_to_num(pairs.numpy().reshape(k, m))  # 0/0 of degenerate boxes
    ious = iou.max(axis=1) if m else np.full(k, np.nan)
    taken = np.zeros(m, bool)
    tp: list[int | None] = []
    for i in range(k):
        if scores[i] < score_thr:
            tp.append(None)
            continue
        free = np.where(taken, -1.0, iou[i])
        j = int(free.argmax()) if m else -1
        hit = m > 0 and free[j] >= MATCH_IOU
        if hit:
            taken[j] = True
        tp.append(int(hit))
    return ious, tp, int(m - taken.sum())


def image_record(
    m: ManifestImage,
    split: str,
    canvas_record: dict[str, Any],
    back: Letterbox | None = None,
    score_thr: float | None = None,
) -> dict[str, Any]:
    """One image's detections and plates in its photo's pixels.

    Args:
        m: the manifest entry (plates in dataset-canvas pixels, its letterbox).
        split: its split.
        canvas_record: ``evaluate_detector(..., collect=True)``'s record: ``index``,
            ``boxes_xyxy`` ``[K, 4]``, ``scores`` ``[K]``, ``corners`` ``[K, 4, 2]`` in the
            model's canvas pixels.
        back: the letterbox from the dataset canvas to the model's canvas when they
            differ (a ``size=WxH`` run): its inverse maps the detections to the dataset
            canvas first.
        score_thr: the deployment threshold (None: :data:`~platelab.tasks.detect.SCORE_THRESHOLD`).

    Returns:
        ``index``, the image fields of :data:`IMAGE_COLUMNS`, and in photo pixels
        ``boxes_xyxy`` ``(K, 4)`` (clipped), ``scores`` ``(K,)``, ``corners``
        ``(K, 4, 2)`` by descending score; ``ious`` and ``tp`` (:func:`match_detections`);
        ``gt_boxes_xyxy`` ``(M, 4)`` (clipped), ``gt_corners`` ``(M, 4, 2)`` (NaN when
        unknown); ``misses`` (plates not found), ``fp`` (false positives at the
        threshold), ``top_iou`` (the best-scored detection's highest IoU with a plate, 0
        without a detection, None on a negative), ``max_score`` (0 without a detection).
    """
    thr = _thresholds()[0] if score_thr is None else score_thr
    lb = m.letterbox
    scores = np.asarray(canvas_record["scores"], np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    boxes = np.asarray(canvas_record["boxes_xyxy"], np.float64).reshape(-1, 4)[order]
    corners = np.asarray(canvas_record["corners"], np.float64).reshape(-1, 4, 2)[order]
    scores = scores[order]
    if back is not None:  # model canvas -> dataset canvas, the inverse of the resize
        boxes, corners = back.boxes_to_original(boxes), back.points_to_original(corners)
    boxes = clip_boxes(lb.boxes_to_original(boxes), lb.orig_w, lb.orig_h)
    corners = lb.points_to_original(corners).reshape(-1, 4, 2)
    gt_boxes = clip_boxes(lb.boxes_to_original(m.boxes_xyxy), lb.orig_w, lb.orig_h)
    gt_corners = lb.points_to_original(np.asarray(m.corners, np.float64)).reshape(-1, 4, 2)
    ious, tp, misses = match_detections(boxes, scores, gt_boxes, thr)
    n = len(gt_boxes)
    return {
        "index": int(canvas_record["index"]),
        "image": m.image,
        "split": split,
        "orig_image": m.orig_image,
        "source": m.source,
        "subset": m.subset,
        "orig_width": lb.orig_w,
        "orig_height": lb.orig_h,
        "plates": n,
        "boxes_xyxy": boxes,
        "scores": scores,
        "corners": corners,
        "ious": ious,
        "tp": tp,
        "gt_boxes_xyxy": gt_boxes,
        "gt_corners": gt_corners,
        "misses": misses,
        "fp": sum(t == 0 for t in tp),
        "top_iou": None if n == 0 else (float(ious[0]) if len(ious) else 0.0),
        "max_score": float(scores[0]) if len(scores) else 0.0,
    }


def score_records(
    records: list[dict[str, Any]], score_thr: float | None = None, max_det: int | None = None
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """``(metrics, by_source, by_subset)`` of :func:`image_record` records, photo pixels.

    Each dict is :meth:`~platelab.eval.detection.DetectionMetric.compute`'s, plus
    ``n_negatives`` (images without a plate); groups are sorted by name.
    """
    thr, det = _thresholds()
    metric = DetectionMetric(thr if score_thr is None else score_thr, max_det or det)
    metric.update(
        [{k: r[k] for k in ("boxes_xyxy", "scores", "corners")} for r in records],
        [{"boxes_xyxy": r["gt_boxes_xyxy"], "corners": r["gt_corners"]} for r in records],
    )

    def compute(idx: list[int] | None) -> dict[str, float]:
        chosen = records if idx is None else [records[i] for i in idx]
        return metric.compute(idx) | {"n_negatives": sum(r["plates"] == 0 for r in chosen)}

    def grouped(key: str) -> dict[str, dict[str, float]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            groups[r[key]].append(i)
        return {name: compute(idx) for name, idx in sorted(groups.items())}

    return compute(None), grouped("source"), grouped("subset")


def run(
    task: Any,
    model: torch.nn.Module,
    loader: Any,
    images: list[ManifestImage],
    split_of: list[str],
    device: torch.device,
    back: Letterbox | None,
) -> tuple[list[dict[str, Any]], dict[str, float], dict, dict]:
    """Evaluate a detector: ``(records, metrics, by_source, by_subset)``, photo pixels.

    ``loader`` yields ``task.collate`` batches of the manifest ``images`` (their
    ``index``); ``split_of`` is each image's split; ``back`` as in :func:`image_record`.
    """
    _, canvas_records = task.evaluate(model, loader, device=device, collect=True)
    canvas_records = sorted(canvas_records, key=lambda r: r["index"])
    records = [
        image_record(images[r["index"]], split_of[r["index"]], r, back) for r in canvas_records
    ]
    return records, *score_records(records)


def _num(v: float) -> float | str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def prediction_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``predictions.csv`` (:data:`DETECTION_COLUMNS`; module docstring)."""
    rows = []
    for r in records:
        head = {k: r[k] for k in IMAGE_COLUMNS}
        if not len(r["scores"]):
            rows.append(head | dict.fromkeys(DETECTION_COLUMNS[len(IMAGE_COLUMNS) :], ""))
        for rank, score in enumerate(r["scores"]):
            tp = r["tp"][rank]
            rows.append(
                head
                | {"rank": rank, "score": float(score), "iou": _num(r["ious"][rank])}
                | {"tp": "" if tp is None else tp}
                | dict(zip(BOX_COLUMNS, r["boxes_xyxy"][rank].tolist(), strict=True))
                | dict(zip(CORNER_COLUMNS, r["corners"][rank].reshape(8).tolist(), strict=True))
            )
    return rows


def write_predictions_csv(path: Path, records: list[dict[str, Any]]) -> None:
    """``predictions.csv`` of a detector (module docstring), written atomically."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=DETECTION_COLUMNS)
        writer.writeheader()
        writer.writerows(prediction_rows(records))


def document(doc: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json`` of a detector: the localiser's layout with ``task``, the thresholds,
    and NaN (a size bucket without plates, no corners to measure) as null."""
    thr, max_det = _thresholds()

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        return None if isinstance(x, float) and np.isnan(x) else x

    numbers = ("metrics", "by_source", "by_subset")
    out = {"model": doc["model"], "task": "detect"}
    out |= {k: v for k, v in doc.items() if k not in out and k not in numbers}
    out |= {"score_threshold": thr, "iou_threshold": MATCH_IOU, "max_det": max_det}
    return out | {k: clean(doc[k]) for k in numbers}


def _f(v: float, spec: str = ".4f") -> str:
    return "nan" if v is None or np.isnan(v) else format(v, spec)


def summary_lines(metrics: dict[str, float]) -> list[str]:
    """The terminal lines of a detector's headline metrics (after the header line)."""
    m, (thr, _) = metrics, _thresholds()
    return [
        f"AP50 {_f(m['ap50'])}  AP75 {_f(m['ap75'])}  AP50:95 {_f(m['ap50_95'])}  AR {_f(m['ar'])}",
        f"AP50:95 by plate width (photo px): <32 {_f(m['ap_small'])}  "
        f"32-96 {_f(m['ap_medium'])}  >=96 {_f(m['ap_large'])}",
        f"score >= {thr:g}, IoU 0.5: P {_f(m['precision'])}  R {_f(m['recall'])}  "
        f"F1 {_f(m['f1'])}  (TP {m['tp']}, FP {m['fp']}, FN {m['fn']}); corner error "
        f"{_f(m['corner_error_px'], '.2f')} px over {m['n_corner_pairs']} plates",
        f"top box: mean IoU {_f(m['mean_iou'])}  acc@0.5 {_f(m['acc_iou50'])}  "
        f"acc@0.7 {_f(m['acc_iou70'])}",
    ]
