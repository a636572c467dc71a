"""Fake models with known outputs, and a tiny real checkpoint, for the infer tests."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from platelab.engine.checkpoint import checkpoint_header, save_checkpoint
from platelab.models import create_model
from platelab.models.weights import checkpoint_meta

SCORE = 0.75  # sigmoid(log 3)


class FixedBox(nn.Module):
    """Returns the same normalised canvas box and logit ``log 3`` for every image.

    Records the ``(shape, dtype)`` of every batch and keeps the last batch in ``last``.
    """

    def __init__(self, box_norm_xyxy=(0.375, 0.25, 0.625, 0.75)) -> None:
        super().__init__()
        self.register_buffer("box", torch.tensor(box_norm_xyxy, dtype=torch.float32))
        self.seen: list[tuple[tuple[int, ...], torch.dtype]] = []
        self.last: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append((tuple(images.shape), images.dtype))
        self.last = images.clone()
        b = images.shape[0]
        return {
            "boxes_norm_xyxy": self.box.expand(b, 4).clone(),
            "logits": torch.full((b,), math.log(3.0)),
        }


class RedSpot(nn.Module):
    """Finds the red square: the box around canvas pixels with R >= 200 and G, B <= 80.

    The logit is +4 when there is such a pixel, else -4 (score 0.018). Every image is
    handled on its own, so a batch gives exactly what single images give.
    """

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        r, g, b = images[:, 0].int(), images[:, 1].int(), images[:, 2].int()
        mask = (r >= 200) & (g <= 80) & (b <= 80)  # [B, H, W]
        _, h, w = mask.shape
        rows, cols = mask.any(2), mask.any(1)
        ys, xs = torch.arange(h), torch.arange(w)
        y0 = torch.where(rows, ys, h).min(1).values
        y1 = torch.where(rows, ys + 1, 0).max(1).values
        x0 = torch.where(cols, xs, w).min(1).values
        x1 = torch.where(cols, xs + 1, 0).max(1).values
        found = rows.any(1)
        boxes = torch.stack([x0 / w, y0 / h, x1 / w, y1 / h], 1).float() * found[:, None]
        return {"boxes_norm_xyxy": boxes, "logits": torch.where(found, 4.0, -4.0)}


def save_checkpoint_of(
    path: Path, model: nn.Module, canvas: tuple[int, int], epoch: int = 1
) -> Path:
    """Write ``model`` as ``platelab train`` would, trained on a ``canvas`` ``(W, H)``."""
    meta = checkpoint_meta(model, canvas)
    state = checkpoint_header(
        epoch=epoch, model=model.state_dict(), ema=None, meta=meta, metrics={}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, state)
    return path


def save_tiny_checkpoint(path: Path, canvas: tuple[int, int] = (96, 64)) -> nn.Module:
    """Write a ``dwsep_tiny`` checkpoint as ``platelab train`` would (untrained weights).

    Returns the model, in eval mode, whose weights the file holds.
    """
    torch.manual_seed(0)
    model = create_model("dwsep_tiny").eval()
    with torch.no_grad():  # the head starts image-blind (uniform heatmap): make it look
        model.head.heatmap.weight.normal_(std=0.5)
    save_checkpoint_of(path, model, canvas)
    return model


def seeing_detector(
    name: str = "dwsep_tiny", canvas: tuple[int, int] = (160, 120), seed: int = 0
) -> nn.Module:
    """A ``task=detect`` model with random weights that look at the picture, in eval mode.

    Fresh from ``create_model`` a detector is image-blind in eval mode (batch-norm
    statistics at their defaults shrink the features to nothing, so every location
    scores the prior): the statistics are recalibrated on random batches, and the output
    convolutions drawn so that scores and boxes vary with the picture and a few plates
    per image clear the deployment threshold.
    """
    torch.manual_seed(seed)
    model = create_model(name, task="detect")
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batches
    w, h = canvas
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randint(0, 256, (4, 3, h, w), dtype=torch.uint8))
        for head in model.heads:
            head.out.weight.normal_(std=0.1)
            head.out.bias[0] = -2.0  # 4-7 plates per random 160x120 canvas at conf 0.25
    return model.eval()
