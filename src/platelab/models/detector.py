"""The multi-plate detector: normalise -> backbone (strides 8-32) -> :class:`LightPAN` -> head.

Dense and anchor-free, in the FCOS / YOLOX family. Every location of every level
(a point at its cell's centre, ``((j + 0.5) * s, (i + 0.5) * s)`` on the canvas)
predicts

* a plate logit (its sigmoid is the score);
* a box as centre offset and log size in units of the level's stride (YOLOX):
  ``cx = px + dx * s``, ``w = exp(lw) * s``: unlike FCOS's distances to the four
  sides, this also works for a point just outside a 12x4-pixel plate, which a
  stride-8 grid may not hit at all;
* the 4 corners (TL, TR, BR, BL) as offsets from the point in strides.

The model decodes those to canvas pixels itself (a few elementwise ops) so the loss,
the evaluation and the exported graph all see boxes and corners in pixels; target
assignment, loss and post-processing (score threshold, NMS, ``max_det``) live in
:mod:`platelab.tasks.detect`, outside the model, so an exported graph holds no loss code.

Output contract, ``N`` locations over all levels, finest level first::

    {"logits": [B, N], "boxes_xyxy": [B, N, 4], "corners": [B, N, 4, 2],
     "points": [N, 2], "strides": [N]}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from platelab.models.base import IMAGENET_MEAN, IMAGENET_STD, PlateModel
from platelab.models.necks import LightPAN, dwsep

# Where a new head starts: a plate ~4 strides wide and ~1.5 high (a plate's aspect
# at the size its level is assigned), score 0.01 (focal-loss prior, RetinaNet).
_PRIOR_W, _PRIOR_H, _PRIOR_P = 4.0, 1.5, 0.01
_MAX_LOG_SIZE = 6.0  # exp(6) = 403 strides: no overflow, any plate fits
NUM_OUTPUTS = 1 + 4 + 8  # logit, (dx, dy, lw, lh), 4 corners (x, y)


class DetectHead(nn.Module):
    """One level's head: two depthwise-separable blocks, then a 1x1 conv to 13 channels."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.tower = nn.Sequential(dwsep(width, width), dwsep(width, width))
        self.out = nn.Conv2d(width, NUM_OUTPUTS, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[0] = -math.log((1 - _PRIOR_P) / _PRIOR_P)
            self.out.bias[3] = math.log(_PRIOR_W)
            self.out.bias[4] = math.log(_PRIOR_H)
            # corners start at the prior box's corners: TL (-w/2, -h/2), TR, BR, BL
            hw, hh = _PRIOR_W / 2, _PRIOR_H / 2
            self.out.bias[5:] = torch.tensor([-hw, -hh, hw, -hh, hw, hh, -hw, hh])

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.tower(x))


def level_points(h: int, w: int, stride: int, device: torch.device) -> Tensor:
    """Cell centres of an ``h x w`` map, ``[h * w, 2]`` (x, y) canvas pixels, row-major."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    return torch.stack([xs.repeat(h), ys.repeat_interleave(w)], dim=1)


def decode_corners(raw: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """Corner offsets ``[B, N, 8]`` (strides, from each point) -> ``[B, N, 4, 2]`` canvas pixels."""
    b, n = raw.shape[:2]
    return points[None, :, None, :] + raw.reshape(b, n, 4, 2) * strides[None, :, None, None]


def encode_corners(corners: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """The inverse of :func:`decode_corners`: ``[B, N, 4, 2]`` pixels -> ``[B, N, 8]`` offsets."""
    offsets = (corners - points[None, :, None, :]) / strides[None, :, None, None]
    return offsets.flatten(2)


class Detector(PlateModel):
    """Normalise -> ``backbone.forward_features`` -> :class:`LightPAN` -> a head per level.

    Input ``images`` ``[B, 3, H, W]``: uint8 pixels or float in ``[0, 1]``
    (:class:`~platelab.models.base.PlateModel`: ``name``, ``config``, ``mean``, ``std``).

    Args:
        backbone: a module with ``feature_info`` ``[(channels, stride)]`` for strides
            8, 16, 32 and ``forward_features``.
        name, config: the registry name and the keyword arguments that rebuild it.
        neck_width: the neck's and heads' channels.
    """

    task = "detect"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        name: str,
        config: dict[str, Any],
        neck_width: int = 64,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__(name=name, config=config, mean=mean, std=std)
        self.backbone = backbone
        channels = [c for c, _ in backbone.feature_info]
        self.strides = [int(s) for _, s in backbone.feature_info]
        self.neck = LightPAN(channels, width=neck_width)
        self.heads = nn.ModuleList(DetectHead(neck_width) for _ in self.strides)

    @property
    def stride(self) -> int:
        """The finest level's stride."""
        return self.strides[0]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``images`` ``[B, 3, H, W]`` -> the output contract of the module docstring."""
        levels = self.neck(self.backbone.forward_features(self.normalize(images)))
        raw, points, strides = [], [], []
        for head, feat, s in zip(self.heads, levels, self.strides, strict=True):
            out = head(feat)  # [B, 13, h, w]
            h, w = out.shape[-2:]
            raw.append(out.flatten(2))
            points.append(level_points(h, w, s, out.device))
            strides.append(torch.full((h * w,), float(s), device=out.device))
        out = torch.cat(raw, dim=2).transpose(1, 2).float()  # [B, N, 13]; geometry in fp32
        pts, st = torch.cat(points), torch.cat(strides)
        s2 = st[None, :, None]
        centre = pts[None] + out[..., 1:3] * s2
        size = torch.exp(out[..., 3:5].clamp(max=_MAX_LOG_SIZE)) * s2
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=2)
        return {
            "logits": out[..., 0],
            "boxes_xyxy": boxes,
            "corners": decode_corners(out[..., 5:], pts, st),
            "points": pts,
            "strides": st,
        }
