"""The shared box head and :class:`Localizer`: normalise -> backbone -> head.

Every backbone declares ``out_channels`` and ``stride`` (like timm's ``feature_info``);
:class:`BoxHead` reads only ``out_channels``, so one head serves all of them.

Output contract (docs/architecture.md): ``{"boxes_norm_xyxy": [B, 4], "logits": [B]}``
with boxes in ``[0, 1]`` of the input canvas and ``x_min <= x_max``, ``y_min <= y_max``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation, box_convert

from platelab.models.base import IMAGENET_MEAN, IMAGENET_STD, PlateModel

# Starting size of the predicted box (normalised w, h): roughly a plate on a 640x480
# canvas. Starting near the answer gives the IoU-family loss overlap from step one.
_PRIOR_WH = (0.1, 0.05)


class BoxHead(nn.Module):
    """One box and one plate-presence logit from a backbone's last feature map.

    Why a soft-argmax: a plate covers one or two cells of a stride-32 map (20x15 at
    640x480), so global pooling blurs away *where* it is, and regressing the centre
    from pooled features asks an MLP to relearn the geometry of the map. Instead a
    1x1 conv scores every cell, a spatial softmax turns the scores into a heatmap,
    and the centre is the heatmap's expected cell centre (soft-argmax): translation
    equivariant, differentiable, and a few ONNX ops (Softmax, Mul, ReduceSum). The same
    heatmap pools the features at the plate (attention pooling); with global average
    and max pooling (max says "a plate is somewhere", for the presence logit) an MLP
    predicts the size, a sub-cell offset of the centre and the logit. On a toy task (a
    bright box on noise, 160x128, dwsep_tiny, 600 steps of batch 32) this reached mean
    IoU 0.66 where regressing the centre from pooled features reached 0.31.

    Cell ``(i, j)`` of an ``Hf x Wf`` map has normalised centre ``((j + 0.5) / Wf,
    (i + 0.5) / Hf)``: exact when the canvas is a multiple of the stride, and the
    learned offset (up to one cell either way) absorbs the rest.

    Validity by construction: ``w, h = sigmoid(.)`` in ``(0, 1)``, ``cx, cy`` in
    ``[0, 1]``; ``box_convert`` to xyxy, then a clamp to ``[0, 1]`` (monotone, so
    ``x_min <= x_max`` still holds).

    Args:
        in_channels: the backbone's ``out_channels``.
        width: channels after the 1x1 reduction.
        hidden: width of the MLP's hidden layer.
    """

    def __init__(self, in_channels: int, width: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.reduce = Conv2dNormActivation(in_channels, width, kernel_size=1)
        self.heatmap = nn.Conv2d(width, 1, kernel_size=1)
        self.mlp = nn.Sequential(
            nn.Linear(3 * width, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 5),  # w, h, dx, dy, logit
        )
        nn.init.zeros_(self.heatmap.weight)  # start from a uniform heatmap
        nn.init.zeros_(self.heatmap.bias)
        last = self.mlp[-1]
        nn.init.normal_(last.weight, std=0.01)
        with torch.no_grad():
            last.bias.zero_()
            last.bias[:2] = torch.tensor([math.log(p / (1 - p)) for p in _PRIOR_WH])

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        """Predict from ``features`` ``[B, C, Hf, Wf]``; returns the output contract."""
        x = self.reduce(features)  # [B, D, Hf, Wf]
        hf, wf = x.shape[-2:]
        weights = F.softmax(self.heatmap(x).flatten(1), dim=1)  # [B, Hf*Wf]
        ys = (torch.arange(hf, device=x.device, dtype=torch.float32) + 0.5) / hf
        xs = (torch.arange(wf, device=x.device, dtype=torch.float32) + 0.5) / wf
        grid = torch.stack([xs.repeat(hf), ys.repeat_interleave(wf)], dim=1)  # [Hf*Wf, 2]
        # soft-argmax as multiply + sum, not matmul: autocast would run a matmul in bf16/fp16
        centre = (weights.float().unsqueeze(2) * grid).sum(dim=1)  # [B, 2] (cx, cy)

        flat = x.flatten(2)  # [B, D, Hf*Wf]
        attended = (flat @ weights.unsqueeze(2)).squeeze(2)  # [B, D]
        pooled = torch.cat([attended, flat.mean(dim=2), flat.amax(dim=2)], dim=1)
        out = self.mlp(pooled).float()  # [B, 5]; box geometry in float32 even under autocast

        cells = torch.tensor([wf, hf], device=x.device, dtype=torch.float32)
        cxcy = (centre + torch.tanh(out[:, 2:4]) / cells).clamp(0.0, 1.0)  # offset <= 1 cell
        wh = torch.sigmoid(out[:, 0:2])
        boxes = box_convert(torch.cat([cxcy, wh], dim=1), in_fmt="cxcywh", out_fmt="xyxy")
        return {"boxes_norm_xyxy": boxes.clamp(0.0, 1.0), "logits": out[:, 4]}


class Localizer(PlateModel):
    """Normalise -> backbone -> :class:`BoxHead`; what ``create_model`` returns.

    Input ``images`` ``[B, 3, H, W]``: uint8 pixels, or float in ``[0, 1]``
    (:class:`~platelab.models.base.PlateModel`, which also holds ``name``, ``config``,
    ``mean`` and ``std``).

    Attributes:
        backbone: a module with ``out_channels`` and ``stride``; returns ``[B, C, H/s, W/s]``.
        head: the :class:`BoxHead`.
    """

    task = "localize"

    def __init__(
        self,
        backbone: nn.Module,
        *,
        name: str,
        config: dict[str, Any],
        head_width: int = 128,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__(name=name, config=config, mean=mean, std=std)
        self.backbone = backbone
        self.head = BoxHead(backbone.out_channels, width=head_width)

    @property
    def stride(self) -> int:
        """The backbone's output stride."""
        return int(self.backbone.stride)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``images`` ``[B, 3, H, W]`` -> ``{"boxes_norm_xyxy": [B, 4], "logits": [B]}``."""
        return self.head(self.backbone(self.normalize(images)))
