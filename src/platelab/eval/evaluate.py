"""``platelab eval``: score a checkpoint on a prepared dataset, in the original photos' pixels.

The model runs on the letterboxed canvases (:func:`~platelab.eval.metrics.evaluate`
over :func:`~platelab.data.stream.build_eval_loader`). Every predicted box is then
mapped from canvas pixels back to its original photo with the manifest's
:class:`~platelab.geometry.Letterbox` and clipped to the photo; the plates are mapped
the same way, and :func:`~platelab.eval.metrics.summarize` scores them there: overall,
per ``source`` and per ``subset``.

Outputs in ``out`` (each written atomically)::

    metrics.json     {"model", "checkpoint", "epoch", "dataset", "split", "canvas",
                      "skipped", "metrics", "by_source", "by_subset"}
    predictions.csv  one row per image (PREDICTION_COLUMNS), original pixels
    worst.png        the worst cases drawn (platelab.eval.gallery); absent when none
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from platelab.atomic import atomic_open
from platelab.data.manifest import SPLITS, ManifestImage, dataset_canvas
from platelab.data.resize import ResizedLoader
from platelab.errors import PlatelabError
from platelab.eval.gallery import write_gallery
from platelab.eval.metrics import best_matches, evaluate, summarize
from platelab.geometry import clip_boxes
from platelab.models.weights import load_model_from_checkpoint

log = logging.getLogger(__name__)

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
OUTPUT_FILES = {
    "metrics_json": "metrics.json",
    "predictions_csv": "predictions.csv",
    "gallery": "worst.png",
}


@dataclass
class EvalReport:
    """What ``platelab eval`` found.

    Attributes:
        metrics: :func:`~platelab.eval.metrics.summarize` over every evaluated image
            (original pixels), with the counts ``images``, ``plates``, ``negatives``.
        by_source, by_subset: the same metrics for each ``source`` / ``subset`` value.
        records: one dict per evaluated image, manifest order, keys ``index`` (into the
            concatenated manifests of the split(s)) plus :data:`PREDICTION_COLUMNS`;
            boxes in original pixels; ``iou`` and ``gt_*`` are None for a negative.
        info: the checkpoint's info (``model``, ``epoch``, ``input_size``, ``path``, ...).
        dataset, split: what was evaluated.
        skipped: images of the manifest left out because they could not be read.
        paths: ``metrics_json``, ``predictions_csv``, ``gallery``: each file written,
            None where nothing was written (no ``out``, or an empty gallery).
    """

    metrics: dict[str, float]
    by_source: dict[str, dict[str, float]]
    by_subset: dict[str, dict[str, float]]
    records: list[dict[str, Any]]
    info: dict[str, Any]
    dataset: Path
    split: str
    skipped: list[str] = field(default_factory=list)
    paths: dict[str, Path | None] = field(default_factory=lambda: dict.fromkeys(OUTPUT_FILES))


def resolve_splits(data: Path, split: str) -> list[str]:
    """The manifest splits ``split`` names: itself, or for ``all`` every split present.

    Raises:
        PlatelabError: not a prepared dataset, an unknown split name, or a missing manifest.
    """
    if not data.is_dir():
        raise PlatelabError(f"dataset folder not found: {data}")
    dataset_canvas(data)  # "not a prepared dataset" before anything about splits
    if split == "all":
        found = [s for s in SPLITS if (data / f"{s}.csv").is_file()]
        if not found:
            raise PlatelabError(f"{data} holds no manifest ({', '.join(SPLITS)}.csv)")
        return found
    if split not in SPLITS:
        raise PlatelabError(f"unknown split {split!r}; choose from {', '.join(SPLITS)} or all")
    if not (data / f"{split}.csv").is_file():
        raise PlatelabError(f"{data} has no {split} split ({split}.csv not found)")
    return [split]


def _model_canvas(info: dict[str, Any], canvas: tuple[int, int]) -> tuple[int, int]:
    """The canvas the model runs at: its training size (``size=WxH`` runs), else the data's."""
    size = info.get("input_size")
    return canvas if size is None else (int(size[0]), int(size[1]))


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


def evaluate_checkpoint(
    checkpoint: Path | str,
    data: Path | str,
    split: str = "test",
    out: Path | str | None = None,
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "cpu",
    gallery: int = 16,
) -> EvalReport:
    """Evaluate a checkpoint on a prepared dataset, in original-photo pixels.

    Args:
        checkpoint: a ``.pth`` file, or a run folder (its best epoch).
        data: a prepared dataset (any canvas).
        split: ``train``, ``val``, ``test``, or ``all`` (every split present, in that order).
        out: a folder; when given, ``metrics.json``, ``predictions.csv`` and ``worst.png``
            are written there (a stale ``worst.png`` is removed when the gallery is empty).
        batch_size, workers: for the evaluation loader.
        device: ``cpu``, ``cuda`` or ``auto``.
        gallery: how many worst cases ``worst.png`` shows (0: no gallery).

    Returns:
        The :class:`EvalReport`.

    Raises:
        PlatelabError: a missing dataset or checkpoint, an unknown, missing or empty
            split.

    A checkpoint trained at another canvas (``size=WxH``) is evaluated as it was
    validated: the batches are letterboxed to its canvas, and its boxes mapped back.
    """
    from platelab.data.stream import build_eval_loader
    from platelab.engine.trainer import resolve_device

    data = Path(data)
    splits = resolve_splits(data, split)
    loader = build_eval_loader(data, splits, batch_size, workers=workers)
    images: list[ManifestImage] = loader.dataset.images
    if not images:
        raise PlatelabError(f"{data}: split {split!r} has no images")
    dev = resolve_device(device)
    model, info = load_model_from_checkpoint(checkpoint, device=dev)
    canvas = dataset_canvas(data)
    model_canvas = _model_canvas(info, canvas)
    if model_canvas != canvas:  # a size=WxH run: letterbox the batches as training did
        log.info(
            "the model runs at %dx%d: batches are letterboxed from %dx%d", *model_canvas, *canvas
        )
    split_of = _split_labels(data, splits, len(images))

    log.info(
        "evaluating %s (%s) on %s %s: %d images",
        info["path"],
        info["model"],
        data,
        split,
        len(images),
    )
    bar = tqdm(loader, desc=f"eval {split}", unit="batch", leave=False, dynamic_ncols=True)
    resized = ResizedLoader(bar, canvas, model_canvas) if model_canvas != canvas else None
    _, canvas_records = evaluate(model, resized or bar, device=dev, collect=True)
    if resized is not None:  # model canvas -> dataset canvas, the inverse of the resize
        for r in canvas_records:
            box = resized.lb.boxes_to_original([[r[k] for k in XYXY]])[0]
            r.update(zip(XYXY, box.tolist(), strict=True))
    records, pred_boxes, gts = to_original(images, split_of, canvas_records)
    seen = {r["index"] for r in records}
    skipped = [m.image for i, m in enumerate(images) if i not in seen]
    if not records:
        raise PlatelabError(f"{data}: none of the {len(images)} images of {split!r} could be read")
    if skipped:
        log.warning(
            "%d of %d images could not be read and were left out", len(skipped), len(images)
        )
    scores = [r["score"] for r in records]
    report = EvalReport(
        metrics=summarize(scores, pred_boxes, gts),
        by_source=grouped_metrics(records, pred_boxes, gts, "source"),
        by_subset=grouped_metrics(records, pred_boxes, gts, "subset"),
        records=records,
        info=info,
        dataset=data,
        split=split,
        skipped=skipped,
    )
    if out is not None:
        report.paths = write_outputs(report, Path(out), images, gallery)
    return report


def _split_labels(data: Path, splits: list[str], n: int) -> list[str]:
    """The split of each of the ``n`` images of ``splits`` concatenated in order."""
    if len(splits) == 1:
        return [splits[0]] * n
    from platelab.data.manifest import load_split

    return [s for s in splits for _ in load_split(data, s)]


def metrics_document(report: EvalReport) -> dict[str, Any]:
    """The ``metrics.json`` content: what was evaluated, and the numbers."""
    info = report.info
    size = info.get("input_size")
    return {
        "model": info.get("model"),
        "checkpoint": str(info.get("path")),
        "epoch": info.get("epoch"),
        "dataset": str(report.dataset),
        "split": report.split,
        "canvas": list(size) if size else None,
        "skipped": report.skipped,
        "metrics": report.metrics,
        "by_source": report.by_source,
        "by_subset": report.by_subset,
    }


def write_predictions_csv(path: Path, records: list[dict[str, Any]]) -> None:
    """One row per record, :data:`PREDICTION_COLUMNS`; None is an empty field."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=PREDICTION_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({k: ("" if r[k] is None else r[k]) for k in PREDICTION_COLUMNS})


def write_outputs(
    report: EvalReport, out: Path, images: list[ManifestImage], gallery: int
) -> dict[str, Path | None]:
    """Write ``metrics.json``, ``predictions.csv`` and ``worst.png`` into ``out``."""
    paths = {key: out / name for key, name in OUTPUT_FILES.items()}
    with atomic_open(paths["metrics_json"], "w", encoding="utf-8") as f:
        json.dump(metrics_document(report), f, indent=2, ensure_ascii=False)
    log.info("wrote %s", paths["metrics_json"])
    write_predictions_csv(paths["predictions_csv"], report.records)
    log.info("wrote %s (%d images)", paths["predictions_csv"], len(report.records))
    written = write_gallery(report.dataset, images, report.records, paths["gallery"], gallery)
    if written is None:
        if paths["gallery"].exists():  # a previous run's picture would now be a lie
            paths["gallery"].unlink()
        log.info("no gallery: nothing to show")
    else:
        log.info("wrote %s", written)
    return {**paths, "gallery": written}


def format_report(report: EvalReport) -> str:
    """A few lines for the terminal: the headline metrics and a per-source/subset table."""
    m = report.metrics
    lines = [
        f"{report.info.get('model')} (epoch {report.info.get('epoch')}) on {report.dataset} "
        f"[{report.split}]: {int(m['images'])} images, {int(m['plates'])} plates, "
        f"{int(m['negatives'])} negatives"
        + (f", {len(report.skipped)} skipped" if report.skipped else ""),
        f"mean IoU {m['mean_iou']:.4f}  median {m['median_iou']:.4f}  "
        f"acc@0.5 {m['acc_iou50']:.4f}  acc@0.7 {m['acc_iou70']:.4f}",
        f"IoU 0.5: P {m['precision']:.4f}  R {m['recall']:.4f}  F1 {m['f1']:.4f}  AP {m['ap50']:.4f}",
        f"IoU 0.7: P {m['precision70']:.4f}  R {m['recall70']:.4f}  F1 {m['f1_70']:.4f}  "
        f"AP {m['ap70']:.4f}",
    ]
    cols = ["images", "plates", "mean_iou", "acc_iou70", "precision", "recall", "ap50"]
    for title, groups in (("source", report.by_source), ("subset", report.by_subset)):
        width = max([len(title), *map(len, groups)])
        lines.append(f"{title:<{width}}  " + "  ".join(f"{c:>9}" for c in cols))
        for name, g in groups.items():
            cells = [
                f"{int(g[c]):>9d}" if c in ("images", "plates") else f"{g[c]:>9.4f}" for c in cols
            ]
            lines.append(f"{name:<{width}}  " + "  ".join(cells))
    for key, path in report.paths.items():
        if path is not None:
            lines.append(f"{key}: {path}")
    return "\n".join(lines)
