"""The recogniser's side of :class:`~platelab.infer.predictor.Predictor` (``task=read``).

A reading starts from a crop straightened to the model's crop size by
:func:`platelab.geometry.warp_quad`: from a plate's 4 corners (TL, TR, BR, BL) in a
photo, or, without corners, from the whole image (a crop file of any size). A two-line
plate (``rows=2``) is laid side by side by :func:`platelab.geometry.two_line_to_one`,
as in training. The model's ``logits`` and ``positions`` (torch, or the ONNX graph's
outputs, :mod:`platelab.infer.read_export`) are decoded by
:func:`platelab.tasks.read.decode` with the model's charset (from the checkpoint or
the ONNX metadata)::

    predictor = Predictor("runs/read/model.onnx")
    reading = predictor("crop.jpg")                         # TextPrediction(text, score, ...)
    reading = predictor.read(photo, corners=[quad], rows=[1])[0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from platelab.errors import PlatelabError
from platelab.geometry import TWO_LINE_SPLIT, two_line_to_one, warp_quad
from platelab.tasks.read import TextPrediction, decode, model_outputs

# (uint8 [B, 3, H, W] crops) -> (logits [B, T, C], positions [B, T]) as numpy
ReadRunner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def torch_read_runner(module: nn.Module, device: torch.device) -> ReadRunner:
    def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            logits, positions = model_outputs(module(torch.from_numpy(crops).to(device)))
        return logits.cpu().numpy(), positions.cpu().numpy()

    return run


def onnx_read_runner(session: Any, input_dtype: str) -> ReadRunner:
    name = session.get_inputs()[0].name
    if input_dtype not in ("uint8", "float32"):
        raise PlatelabError(f"unsupported ONNX input_dtype '{input_dtype}' (uint8 or float32)")

    def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feed = crops if input_dtype == "uint8" else crops.astype(np.float32) / 255
        logits, positions = session.run(["logits", "positions"], {name: feed})
        return np.asarray(logits, np.float32), np.asarray(positions, np.float32)

    return run


def make_crop(image: np.ndarray, corners: Any, size: tuple[int, int], rows: int = 1) -> np.ndarray:
    """``image`` ``(H, W, 3)`` RGB -> the ``size`` ``(W, H)`` crop the recogniser reads.

    Args:
        corners: the plate's quad ``[[x, y] x 4]`` (TL, TR, BR, BL) in ``image`` pixels, or
            None for the whole image.
        rows: 2 lays a two-line plate side by side (top row left).
    """
    h, w = image.shape[:2]
    quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    if corners is not None:
        quad = np.asarray(corners, np.float64).reshape(-1, 2)
        if quad.shape != (4, 2) or not np.isfinite(quad).all():
            raise PlatelabError(f"corners must be 4 finite (x, y) points, got shape {quad.shape}")
    crop = warp_quad(image, quad, size)
    return two_line_to_one(crop, TWO_LINE_SPLIT) if rows == 2 else crop


def read_crops(
    run: ReadRunner,
    images: Sequence[np.ndarray],
    size: tuple[int, int],
    decoder: str,
    charset: Any,
    corners: Sequence[Any] | None = None,
    rows: Sequence[int] | None = None,
) -> list[TextPrediction]:
    """Crop (:func:`make_crop`), run and decode one batch; each reading carries its
    image's ``width`` and ``height``."""
    n = len(images)
    corners = list(corners) if corners is not None else [None] * n
    rows = [int(r) for r in rows] if rows is not None else [1] * n
    if len(corners) != n or len(rows) != n:
        raise PlatelabError(f"give corners and rows for each of the {n} images")
    if n == 0:
        return []
    crops = [make_crop(im, c, size, r) for im, c, r in zip(images, corners, rows, strict=True)]
    crops = np.stack(crops)
    logits, positions = run(np.ascontiguousarray(crops.transpose(0, 3, 1, 2)))
    preds = decode(logits, positions, decoder, charset, rows)
    for p, im in zip(preds, images, strict=True):
        p.height, p.width = im.shape[:2]
    return preds


def draw_reading(image: np.ndarray, pred: TextPrediction, scale: int = 3) -> np.ndarray:
    """The image (a crop) enlarged ``scale`` times with the text and score written below."""
    import cv2
    from PIL import Image, ImageDraw

    from platelab.eval.evaluate_read import _font

    h, w = image.shape[:2]
    s = max(1, min(scale, 1024 // max(w, 1)))
    big = cv2.resize(image, (w * s, h * s), interpolation=cv2.INTER_NEAREST)
    tile = Image.new("RGB", (max(big.shape[1], 160), big.shape[0] + 28), (255, 255, 255))
    tile.paste(Image.fromarray(big), (0, 0))
    ImageDraw.Draw(tile).text((4, big.shape[0] + 4), f"{pred.text or '∅'}  {pred.score:.2f}",
                              fill=(200, 0, 0), font=_font(18))  # fmt: skip
    return np.asarray(tile)
