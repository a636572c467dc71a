"""The detector's ONNX graph: the model and its post-processing in one, and its parity check.

A ``task=detect`` export holds :class:`~platelab.models.detector.Detector` followed by
:func:`platelab.tasks.detect_ops.postprocess` (score threshold, Cluster-NMS, ``max_det``),
so a user gets finished plates out of one ``session.run``:

* input ``images`` ``[batch, 3, H, W]``: as for the localiser (uint8 ``0..255`` or float32
  ``0..1``, letterboxed to the canvas, pad 114);
* ``boxes`` ``[batch, K, 4]`` float32, xyxy canvas pixels; ``scores`` ``[batch, K]``
  float32 in ``0..1``; ``corners`` ``[batch, K, 4, 2]`` float32, (x, y) canvas pixels of
  TL, TR, BR, BL; ``num`` ``[batch]`` int64, the plates kept. ``K = max_det``; the kept
  plates come first, by descending score, and the slots from ``num`` on hold zeros.

The post-processing settings are baked in and recorded in ``metadata_props`` (``conf``,
``iou``, ``max_det``, ``pre_nms``, ``nms_iterations``), beside ``task = "detect"``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from platelab.errors import PlatelabError
from platelab.geometry import Letterbox
from platelab.tasks.detect import DEPLOY
from platelab.tasks.detect_ops import PostprocessConfig, postprocess

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

POSTPROCESS_KEYS = ("conf", "iou", "max_det", "pre_nms", "nms_iterations", "vote_iou")


class ExportedDetector(nn.Module):
    """A detector and :func:`~platelab.tasks.detect_ops.postprocess` as one module.

    ``images`` ``[B, 3, H, W]`` (uint8 or float ``0..1``, letterboxed) ->
    ``(boxes [B, K, 4], scores [B, K], corners [B, K, 4, 2], num [B] int64)``, canvas
    pixels, ``K = cfg.max_det``. The exported graph and the parity reference are this
    same module, run by onnxruntime and by torch.

    Args:
        model: maps images to the detector's output dict (``logits``, ``boxes_xyxy``,
            ``corners``, ...; see :mod:`platelab.models.detector`).
        cfg: the post-processing settings baked into the graph.
    """

    def __init__(self, model: nn.Module, cfg: PostprocessConfig = DEPLOY) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dets = postprocess(self.model(images), self.cfg)
        return dets["boxes"], dets["scores"], dets["corners"], dets["num"]


def check_postprocess(cfg: PostprocessConfig) -> PostprocessConfig:
    """``cfg`` when its values make sense, else a one-line :class:`PlatelabError`."""
    if not 0.0 <= cfg.conf <= 1.0:
        raise PlatelabError(f"--conf must be within 0..1, got {cfg.conf}")
    if not 0.0 < cfg.iou <= 1.0:
        raise PlatelabError(f"--iou must be within (0, 1], got {cfg.iou}")
    if not 0.0 <= cfg.vote_iou <= 1.0:
        raise PlatelabError(f"vote_iou must be within 0..1 (0: off), got {cfg.vote_iou}")
    if cfg.max_det < 1 or cfg.pre_nms < 1 or cfg.nms_iterations < 1:
        raise PlatelabError(
            f"--max-det, pre_nms and nms_iterations must be >= 1, got {cfg.max_det}, "
            f"{cfg.pre_nms}, {cfg.nms_iterations}"
        )
    return cfg


def postprocess_metadata(cfg: PostprocessConfig) -> dict[str, str]:
    """The ``metadata_props`` that record ``cfg`` (numbers as strings)."""
    return {k: str(getattr(cfg, k)) for k in POSTPROCESS_KEYS}


def postprocess_from_metadata(meta: dict[str, str]) -> PostprocessConfig:
    """The :class:`PostprocessConfig` a detect export records (:data:`DEPLOY` for a missing key)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(PostprocessConfig):
        if f.name in meta:
            kind = int if isinstance(getattr(DEPLOY, f.name), int) else float
            try:
                values[f.name] = kind(meta[f.name])
            except ValueError:
                raise PlatelabError(f"bad '{f.name}' metadata: {meta[f.name]!r}") from None
    return dataclasses.replace(DEPLOY, **values)


def _match(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference between two sets of the same size, each row paired with its nearest.

    ``a``, ``b``: ``[n, D]`` (flattened boxes or corners). Order-free, so two plates whose
    scores tie and swap places between runtimes still pair up.
    """
    if len(a) == 0:
        return 0.0
    d = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2)  # [n, n]
    return float(max(d.min(axis=1).max(), d.min(axis=0).max()))


def parity_detect(
    wrapper: ExportedDetector,
    session: onnxruntime.InferenceSession,
    canvases: np.ndarray,
    letterboxes: Sequence[Letterbox] | None = None,
    *,
    input_dtype: str = "uint8",
    batch: int = 8,
    score_tolerance: float = 1e-3,
) -> dict[str, Any]:
    """Compare the detect graph in torch and in onnxruntime, image by image.

    For every canvas of ``canvases`` ``[N, H, W, 3]`` uint8, both runtimes' kept plates
    are compared as sets. A plate whose score lies within ``score_tolerance`` of the
    threshold may be kept by one runtime and not the other (float rounding), and so may
    one within it of the lowest score of a full output (``num == max_det``: a tie at the
    cut is broken either way); any other difference in the count is a mismatch. The remaining plates are paired with their
    nearest counterpart and the largest coordinate differences taken.

    Returns:
        ``plates`` (kept by torch, all images), ``mismatches`` (``[(image, torch count,
        onnxruntime count)]``), ``max_box_diff_px`` and ``max_corner_diff_px`` (canvas
        pixels), ``max_box_diff_orig_px`` and ``max_corner_diff_orig_px`` (photo pixels
        when ``letterboxes`` are given, else None) and ``max_score_diff``.
    """
    conf = wrapper.cfg.conf
    out: dict[str, Any] = {"plates": 0, "mismatches": [], "max_score_diff": 0.0}
    keys = ("box", "corner")
    for k in keys:
        out[f"max_{k}_diff_px"] = 0.0
        out[f"max_{k}_diff_orig_px"] = 0.0 if letterboxes else None
    for start in range(0, len(canvases), batch):
        chunk = np.ascontiguousarray(canvases[start : start + batch].transpose(0, 3, 1, 2))
        feed = chunk if input_dtype == "uint8" else chunk.astype(np.float32) / 255
        ort = session.run(None, {"images": feed})
        with torch.inference_mode():
            ref = [t.numpy() for t in wrapper(torch.from_numpy(feed))]
        k = ref[1].shape[1]
        for i in range(len(chunk)):
            # a full output (num == K) cut ties at its lowest score: those may differ too
            floor = max(
                (float(sc[i, k - 1]) for _, sc, _, num in (ort, ref) if int(num[i]) == k),
                default=-np.inf,
            )
            sets = []
            for boxes, scores, corners, num in (ort, ref):
                n = int(num[i])
                s = scores[i, :n].astype(np.float64)
                sure = (np.abs(s - conf) > score_tolerance) & (s - floor > score_tolerance)
                sets.append((boxes[i, :n][sure], corners[i, :n][sure].reshape(-1, 8), s[sure], n))
            (bo, co, so, no), (bt, ct, st, nt) = sets
            out["plates"] += nt
            if len(bo) != len(bt):
                out["mismatches"].append((start + i, nt, no))
                continue
            out["max_box_diff_px"] = max(out["max_box_diff_px"], _match(bo, bt))
            out["max_corner_diff_px"] = max(out["max_corner_diff_px"], _match(co, ct))
            out["max_score_diff"] = max(out["max_score_diff"], _match(so[:, None], st[:, None]))
            if letterboxes:
                lb = letterboxes[start + i]
                ob, tb = lb.boxes_to_original(bo), lb.boxes_to_original(bt)
                oc = lb.points_to_original(co.reshape(-1, 4, 2)).reshape(-1, 8)
                tc = lb.points_to_original(ct.reshape(-1, 4, 2)).reshape(-1, 8)
                out["max_box_diff_orig_px"] = max(out["max_box_diff_orig_px"], _match(ob, tb))
                out["max_corner_diff_orig_px"] = max(out["max_corner_diff_orig_px"], _match(oc, tc))
    return out
