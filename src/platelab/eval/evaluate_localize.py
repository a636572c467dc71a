"""``platelab eval`` of a localiser (``task=localize``): one box per image, in the photos' pixels.

The model runs on the letterboxed canvases (:func:`~platelab.eval.metrics.evaluate`).
Every predicted box is mapped from canvas pixels back to its original photo with the
manifest's :class:`~platelab.geometry.Letterbox` and clipped to the photo; the plates
are mapped the same way, and :func:`~platelab.eval.metrics.summarize` scores them
there: overall, per ``source`` and per ``subset``. ``predictions.csv`` holds one row
per image (:data:`PREDICTION_COLUMNS`), original pixels.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from platelab.atomic import atomic_open
from platelab.data.manifest import ManifestImage
from platelab.eval.metrics import best_matches, summarize
from platelab.geometry import Letterbox, clip_boxes

XYXY = ("x_min", "y_min", "x_max", "y_max")
PRED_COLUMNS = ["pred_x_min", "pred_y_min", "pred_x_max", "pred_y_max"]
GT_COLUMNS = ["gt_x_min", "gt_y_min", "gt_x_max", "gt_y_max"]
PREDICTION_COLUMNS = [
    "image",
    "split",
    "orig_image",
    "source",
    "subset",
    "orig_width",
    "orig_height",
    "plates",
    "score",
    "iou",
    *PRED_COLUMNS,
    *GT_COLUMNS,
]
# The per-group table of the terminal summary.
GROUP_COLUMNS = ("images", "plates", "mean_iou", "acc_iou70", "precision", "recall", "ap50")


def _box(values: np.ndarray, keys: list[str]) -> dict[str, float]:
    return {k: float(v) for k, v in zip(keys, values, strict=True)}


def to_original(
    images: list[ManifestImage], split_of: list[str], canvas_records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], np.ndarray, list[np.ndarray]]:
    """Map :func:`~platelab.eval.metrics.evaluate` records from canvas to original pixels.

    Args:
        images: the manifest entries, indexed by the records' ``index``.
        split_of: the split of each entry of ``images``.
        canvas_records: ``evaluate(..., collect=True)`` records (``index``, ``score``,
            predicted box ``x_min, y_min, x_max, y_max`` in canvas pixels).

    Returns:
        ``(records, pred_boxes_xyxy, gt_boxes_list)``: the report records (see
        :class:`EvalReport`), the ``(M, 4)`` predicted boxes and the M ``(N_i, 4)``
        plate arrays, all in original pixels and clipped to the photo.
    """
    canvas_records = sorted(canvas_records, key=lambda r: r["index"])
    preds, gts = [], []
    for r in canvas_records:
        lb = images[r["index"]].letterbox
        box = [[r["x_min"], r["y_min"], r["x_max"], r["y_max"]]]
        preds.append(clip_boxes(lb.boxes_to_original(box), lb.orig_w, lb.orig_h)[0])
        plates = lb.boxes_to_original(images[r["index"]].boxes_xyxy)
        gts.append(clip_boxes(plates, lb.orig_w, lb.orig_h))
    pred_boxes = np.asarray(preds, dtype=np.float64).reshape(-1, 4)
    ious, match = best_matches(pred_boxes, gts)
    records = []
    for k, r in enumerate(canvas_records):
        m, lb = images[r["index"]], images[r["index"]].letterbox
        has = match[k] >= 0
        records.append(
            {
                "index": int(r["index"]),
                "image": m.image,
                "split": split_of[r["index"]],
                "orig_image": m.orig_image,
                "source": m.source,
                "subset": m.subset,
                "orig_width": lb.orig_w,
                "orig_height": lb.orig_h,
                "plates": len(gts[k]),
                "score": float(r["score"]),
                "iou": float(ious[k]) if has else None,
                **_box(pred_boxes[k], PRED_COLUMNS),
                **(_box(gts[k][match[k]], GT_COLUMNS) if has else dict.fromkeys(GT_COLUMNS)),
            }
        )
    return records, pred_boxes, gts


def grouped_metrics(
    records: list[dict[str, Any]], pred_boxes: np.ndarray, gts: list[np.ndarray], key: str
) -> dict[str, dict[str, float]]:
    """:func:`~platelab.eval.metrics.summarize` per value of ``records[i][key]``, sorted by value."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[r[key]].append(i)
    return {
        name: summarize([records[i]["score"] for i in idx], pred_boxes[idx], [gts[i] for i in idx])
        for name, idx in sorted(groups.items())
    }


def run(
    task: Any,
    model: Any,
    loader: Any,
    images: list[ManifestImage],
    split_of: list[str],
    device: Any,
    back: Letterbox | None,
) -> tuple[list[dict[str, Any]], dict[str, float], dict, dict]:
    """Evaluate a localiser: ``(records, metrics, by_source, by_subset)``, original pixels.

    ``back``: the letterbox from the dataset canvas to the model's when they differ.
    """
    _, canvas_records = task.evaluate(model, loader, device=device, collect=True)
    if back is not None:  # model canvas -> dataset canvas, the inverse of the resize
        for r in canvas_records:
            box = back.boxes_to_original([[r[k] for k in XYXY]])[0]
            r.update(zip(XYXY, box.tolist(), strict=True))
    records, pred_boxes, gts = to_original(images, split_of, canvas_records)
    scores = [r["score"] for r in records]
    return (
        records,
        summarize(scores, pred_boxes, gts),
        grouped_metrics(records, pred_boxes, gts, "source"),
        grouped_metrics(records, pred_boxes, gts, "subset"),
    )


def write_predictions_csv(path: Path, records: list[dict[str, Any]]) -> None:
    """One row per record, :data:`PREDICTION_COLUMNS`; None is an empty field."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=PREDICTION_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({k: ("" if r[k] is None else r[k]) for k in PREDICTION_COLUMNS})


def summary_lines(m: dict[str, float]) -> list[str]:
    """The terminal lines of a localiser's headline metrics (after the header line)."""
    return [
        f"mean IoU {m['mean_iou']:.4f}  median {m['median_iou']:.4f}  "
        f"acc@0.5 {m['acc_iou50']:.4f}  acc@0.7 {m['acc_iou70']:.4f}",
        f"IoU 0.5: P {m['precision']:.4f}  R {m['recall']:.4f}  F1 {m['f1']:.4f}  AP {m['ap50']:.4f}",
        f"IoU 0.7: P {m['precision70']:.4f}  R {m['recall70']:.4f}  F1 {m['f1_70']:.4f}  "
        f"AP {m['ap70']:.4f}",
    ]
