"""``platelab eval``: score a checkpoint on a prepared dataset, in the original photos' pixels.

The checkpoint names its task (``localize`` or ``detect``); the task's ``collate`` builds
the batches (:func:`~platelab.data.stream.build_eval_loader`) and its ``evaluate`` runs the
model on the letterboxed canvases. What follows differs per task (:data:`TASK_EVALS`).

A localiser (:mod:`platelab.eval.evaluate_localize`): every predicted box is mapped from
canvas pixels back to its original photo with the manifest's
:class:`~platelab.geometry.Letterbox` and clipped to the photo; the plates are mapped the
same way and scored there (:func:`~platelab.eval.metrics.summarize`): overall, per
``source`` and per ``subset``. A detector (:mod:`platelab.eval.evaluate_detect`): every
detection, its box and its corners, scored the same way with COCO AP, P/R/F1 and the
corner error in photo pixels. A recogniser (:mod:`platelab.eval.evaluate_read`) reads
the crops of a crop dataset and scores the texts (accuracy, CER, breakdowns, coverage).

Outputs in ``out`` (each written atomically)::

    metrics.json     {"model", "checkpoint", "epoch", "dataset", "split", "canvas",
                      "skipped", "metrics", "by_source", "by_subset"}; a detector's adds
                      "task", "score_threshold", "iou_threshold", "max_det"
    predictions.csv  localiser: one row per image (PREDICTION_COLUMNS), original pixels;
                     detector: one row per detection (evaluate_detect.DETECTION_COLUMNS)
    worst.png        the worst cases drawn (platelab.eval.gallery); absent when none
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from platelab.atomic import atomic_open
from platelab.data.manifest import SPLITS, ManifestImage, dataset_canvas
from platelab.data.resize import ResizedLoader
from platelab.errors import PlatelabError
from platelab.eval import evaluate_detect, evaluate_localize, evaluate_read
from platelab.eval.evaluate_localize import (  # noqa: F401  (the localiser's names, as before)
    GT_COLUMNS,
    PRED_COLUMNS,
    PREDICTION_COLUMNS,
    XYXY,
    grouped_metrics,
    to_original,
    write_predictions_csv,
)
from platelab.eval.gallery import write_detection_gallery, write_gallery
from platelab.models.weights import load_model_from_checkpoint
from platelab.tasks import get_task

log = logging.getLogger(__name__)

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
            (original pixels), with the counts ``images``, ``plates``, ``negatives``;
            for a detector :meth:`~platelab.eval.detection.DetectionMetric.compute`'s
            figures with ``n_images``, ``n_plates``, ``n_negatives``.
        by_source, by_subset: the same metrics for each ``source`` / ``subset`` value.
        records: one dict per evaluated image, manifest order, keys ``index`` (into the
            concatenated manifests of the split(s)) plus :data:`PREDICTION_COLUMNS`;
            boxes in original pixels; ``iou`` and ``gt_*`` are None for a negative. For a
            detector: :func:`~platelab.eval.evaluate_detect.image_record`'s dicts.
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
    task: str = "localize"
    extra: dict[str, Any] = field(default_factory=dict)  # more metrics.json sections (read)


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
    ema: bool = True,
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
        ema: evaluate the EMA weights when the run kept them (what training validated);
            False for the raw weights.

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
    dev = resolve_device(device)
    model, info = load_model_from_checkpoint(checkpoint, device=dev, ema=ema)
    task = get_task(info.get("task"))
    how = TASK_EVALS[task.name]
    if task.name == "read":  # crops, not letterboxed photos: its own loader and records
        return evaluate_read.evaluate_crops(
            task, model, info, data, splits, split, out, batch_size=batch_size,
            workers=workers, device=dev, gallery=gallery,
        )  # fmt: skip
    loader = build_eval_loader(data, splits, batch_size, workers=workers, collate_fn=task.collate)
    images: list[ManifestImage] = loader.dataset.images
    if not images:
        raise PlatelabError(f"{data}: split {split!r} has no images")
    canvas = dataset_canvas(data)
    model_canvas = _model_canvas(info, canvas)
    if model_canvas != canvas:  # a size=WxH run: letterbox the batches as training did
        log.info(
            "the model runs at %dx%d: batches are letterboxed from %dx%d", *model_canvas, *canvas
        )
    split_of = _split_labels(data, splits, len(images))

    log.info(
        "evaluating %s (%s, task %s) on %s %s: %d images",
        info["path"],
        info["model"],
        task.name,
        data,
        split,
        len(images),
    )
    bar = tqdm(loader, desc=f"eval {split}", unit="batch", leave=False, dynamic_ncols=True)
    resized = ResizedLoader(bar, canvas, model_canvas) if model_canvas != canvas else None
    back = resized.lb if resized is not None else None
    records, metrics, by_source, by_subset = how.run(
        task, model, resized or bar, images, split_of, dev, back
    )
    seen = {r["index"] for r in records}
    skipped = [m.image for i, m in enumerate(images) if i not in seen]
    if not records:
        raise PlatelabError(f"{data}: none of the {len(images)} images of {split!r} could be read")
    if skipped:
        log.warning(
            "%d of %d images could not be read and were left out", len(skipped), len(images)
        )
    report = EvalReport(
        metrics=metrics,
        by_source=by_source,
        by_subset=by_subset,
        records=records,
        info=info,
        dataset=data,
        split=split,
        skipped=skipped,
        task=task.name,
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
    return TASK_EVALS[report.task].document(
        {
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
            **report.extra,
        }
    )


def write_outputs(
    report: EvalReport, out: Path, images: list[ManifestImage], gallery: int
) -> dict[str, Path | None]:
    """Write ``metrics.json``, ``predictions.csv`` and ``worst.png`` into ``out``."""
    how = TASK_EVALS[report.task]
    paths = {key: out / name for key, name in OUTPUT_FILES.items()}
    with atomic_open(paths["metrics_json"], "w", encoding="utf-8") as f:
        json.dump(metrics_document(report), f, indent=2, ensure_ascii=False)
    log.info("wrote %s", paths["metrics_json"])
    how.write_predictions(paths["predictions_csv"], report.records)
    log.info("wrote %s (%d images)", paths["predictions_csv"], len(report.records))
    written = how.write_gallery(report.dataset, images, report.records, paths["gallery"], gallery)
    if written is None:
        if paths["gallery"].exists():  # a previous run's picture would now be a lie
            paths["gallery"].unlink()
        log.info("no gallery: nothing to show")
    else:
        log.info("wrote %s", written)
    return {**paths, "gallery": written}


@dataclass(frozen=True)
class TaskEval:
    """What ``platelab eval`` does differently for one task.

    Attributes:
        run: ``(task, model, loader, images, split_of, device, back) -> (records,
            metrics, by_source, by_subset)`` in original pixels (``back``: the letterbox
            from the dataset canvas to the model's, None when they are the same).
        write_predictions: ``(path, records)``: ``predictions.csv``.
        write_gallery: :func:`~platelab.eval.gallery.write_gallery`'s signature.
        document: the ``metrics.json`` dict, given the common one.
        summary_lines: the terminal lines of the headline metrics.
        counts: the metric keys of the image, plate and negative counts.
        group_columns: the per-source/subset table of the terminal summary.
    """

    run: Callable[..., tuple[list[dict[str, Any]], dict, dict, dict]]
    write_predictions: Callable[[Path, list[dict[str, Any]]], None]
    write_gallery: Callable[..., Path | None]
    document: Callable[[dict[str, Any]], dict[str, Any]]
    summary_lines: Callable[[dict[str, float]], list[str]]
    counts: tuple[str, str, str]
    group_columns: tuple[str, ...]


TASK_EVALS = {
    "localize": TaskEval(
        run=evaluate_localize.run,
        write_predictions=evaluate_localize.write_predictions_csv,
        write_gallery=write_gallery,
        document=lambda doc: doc,
        summary_lines=evaluate_localize.summary_lines,
        counts=("images", "plates", "negatives"),
        group_columns=evaluate_localize.GROUP_COLUMNS,
    ),
    "detect": TaskEval(
        run=evaluate_detect.run,
        write_predictions=evaluate_detect.write_predictions_csv,
        write_gallery=write_detection_gallery,
        document=evaluate_detect.document,
        summary_lines=evaluate_detect.summary_lines,
        counts=("n_images", "n_plates", "n_negatives"),
        group_columns=evaluate_detect.GROUP_COLUMNS,
    ),
    "read": TaskEval(
        run=evaluate_read.run,
        write_predictions=evaluate_read.write_predictions_csv,
        write_gallery=evaluate_read.write_read_gallery,
        document=evaluate_read.document,
        summary_lines=evaluate_read.summary_lines,
        counts=("n_crops",),
        group_columns=evaluate_read.GROUP_COLUMNS,
    ),
}


def format_report(report: EvalReport) -> str:
    """A few lines for the terminal: the headline metrics and a per-source/subset table."""
    how = TASK_EVALS[report.task]
    m = report.metrics
    counted = [int(m[k]) for k in how.counts]
    what = (
        "{} images, {} plates, {} negatives".format(*counted)
        if len(counted) == 3
        else f"{counted[0]} crops"  # a recogniser
    )
    lines = [
        f"{report.info.get('model')} (epoch {report.info.get('epoch')}) on {report.dataset} "
        f"[{report.split}]: {what}"
        + (f", {len(report.skipped)} skipped" if report.skipped else ""),
        *how.summary_lines(m),
    ]
    cols = how.group_columns
    for title, groups in (("source", report.by_source), ("subset", report.by_subset)):
        width = max([len(title), *map(len, groups)])
        lines.append(f"{title:<{width}}  " + "  ".join(f"{c:>9}" for c in cols))
        for name, g in groups.items():
            cells = [f"{int(g[c]):>9d}" if c in how.counts else f"{g[c]:>9.4f}" for c in cols]
            lines.append(f"{name:<{width}}  " + "  ".join(cells))
    for key, path in report.paths.items():
        if path is not None:
            lines.append(f"{key}: {path}")
    return "\n".join(lines)
