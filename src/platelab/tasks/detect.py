"""``task=detect``: every plate of an image, each with a box, a score and its 4 corners.

The model is :class:`~platelab.models.detector.Detector` on any registry backbone;
assignment, loss and post-processing are in :mod:`platelab.tasks.detect_ops`, the
metrics (COCO AP, AR, P/R/F1, corner error, top-box figures) in
:mod:`platelab.eval.detection`.

Batches (``collate``): ``images`` uint8 ``[B, 3, H, W]`` and targets
``{"boxes_xyxy": [B x float32[N_i, 4]], "corners": [B x float32[N_i, 4, 2]] (NaN when
unknown), "index": int64[B]}``: every plate of every image, canvas pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from platelab.engine.trainer import Trainer
from platelab.tasks.base import EvalTally, Task, gather_records
from platelab.tasks.detect_ops import DetectionLoss, PostprocessConfig, postprocess

# Decoding for evaluation: a low threshold and many boxes, as COCO AP needs the whole
# precision-recall curve. Deployment (predict, export) uses DEPLOY, its own threshold.
EVAL = PostprocessConfig(conf=0.001, iou=0.5, max_det=100, pre_nms=300)
DEPLOY = PostprocessConfig()
# The score at which P/R/F1 and the corner error are reported: the deployment threshold.
SCORE_THRESHOLD = DEPLOY.conf


def collate_detect(
    samples: Sequence[Any], canvas: tuple[int, int] | None = None
) -> tuple[torch.Tensor, dict]:
    """Stack ``(image, target)`` samples; None samples (unreadable images) are left out."""
    from platelab.data.stream import stack_images

    samples = [s for s in samples if s is not None]
    images = stack_images(samples, canvas)
    targets = {
        "boxes_xyxy": [t["boxes_xyxy"].reshape(-1, 4) for _, t in samples],
        "corners": [t["corners"].reshape(-1, 4, 2) for _, t in samples],
        "index": torch.tensor([t["index"] for _, t in samples], dtype=torch.int64),
    }
    return images, targets


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy().astype(np.float64)


def split_detections(dets: dict[str, torch.Tensor]) -> list[dict[str, np.ndarray]]:
    """:func:`postprocess`'s fixed-size batch -> per image ``{boxes_xyxy, scores, corners}``."""
    out = []
    for i, n in enumerate(dets["num"].tolist()):
        out.append(
            {
                "boxes_xyxy": _np(dets["boxes"][i, :n]),
                "scores": _np(dets["scores"][i, :n]),
                "corners": _np(dets["corners"][i, :n]),
            }
        )
    return out


def evaluate_detector(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, dict]],
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    loss_fn: Any = None,
    collect: bool = False,
) -> dict[str, float] | tuple[dict[str, float], list[dict]]:
    """Run the detector over ``loader`` and score it on the canvas, under ``inference_mode``.

    Returns:
        :meth:`DetectionMetric.compute`'s figures, ``val_fps`` (forward pass only) and
        ``val_<term>`` of ``loss_fn``. Under DDP every rank returns the same. With
        ``collect``, also one record per image, manifest order: ``index`` and the kept
        detections ``boxes_xyxy [K, 4]``, ``scores [K]``, ``corners [K, 4, 2]`` in
        canvas pixels (all of :data:`EVAL`'s, down to score 0.001).
    """
    from platelab.eval.detection import DetectionMetric

    metric = DetectionMetric(score_thr=SCORE_THRESHOLD, max_det=EVAL.max_det)
    tally, records = EvalTally(device, amp_dtype, loss_fn), []
    for outputs, targets in tally.batches(model, loader):
        preds = split_detections(postprocess(outputs, EVAL))
        index = targets["index"].tolist()
        gts = [
            {"boxes_xyxy": _np(bx), "corners": _np(c), "index": i}
            for bx, c, i in zip(targets["boxes_xyxy"], targets["corners"], index, strict=True)
        ]
        metric.update(preds, gts)
        if collect:
            records += [{"index": i} | p for i, p in zip(index, preds, strict=True)]
    metric.gather()
    metrics = tally.finish(metric.compute())
    return (metrics, gather_records(records)) if collect else metrics


class DetectTask(Task):
    name = "detect"
    monitor = "ap50"
    loss_class = DetectionLoss
    output_names = ("boxes", "scores", "corners", "num")

    def model_kwargs(self) -> dict[str, Any]:
        return {"task": "detect"}

    def collate(self, samples, canvas=None):
        return collate_detect(samples, canvas)

    def evaluate(self, model, loader, device="cpu", amp_dtype=None, loss_fn=None, collect=False):
        return evaluate_detector(model, loader, device, amp_dtype, loss_fn, collect)

    def metric_names(self, loss_fn: nn.Module) -> set[str]:
        from platelab.eval.detection import summarize

        names = {*summarize([], []), "val_fps", *Trainer.ROW_KEYS}
        terms = ("loss", "loss_cls", "loss_box", "loss_corners")
        return names | {f"{split}_{t}" for t in terms for split in ("train", "val")}


DETECT = DetectTask()
