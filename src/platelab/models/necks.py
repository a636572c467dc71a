"""A light feature pyramid over a backbone's strides 8, 16 and 32.

The classic FPN (torchvision's ``FeaturePyramidNetwork``) smooths every level with a
full 3x3 convolution; at stride 8 on a 640x480 canvas one such conv of 64 channels
costs 0.35 GFLOPs, more than a whole ``dwsep_tiny``. This neck keeps FPN's shape
(1x1 laterals, a top-down path of nearest upsampling and addition) and smooths with
a depthwise-separable 3x3 block instead, as the backbones in :mod:`.custom` do, for
about a tenth of the cost. A bottom-up path (PANet) then carries the fine levels'
localisation back to the coarse ones with stride-2 depthwise convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation


def dwsep(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (``stride``) + BN + ReLU, then pointwise 1x1 + BN + ReLU."""
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, 3, stride, groups=in_channels),
        Conv2dNormActivation(in_channels, out_channels, 1),
    )


class LightPAN(nn.Module):
    """FPN top-down + PAN bottom-up over ``len(in_channels)`` levels, ``width`` channels each.

    Args:
        in_channels: the backbone's channels per level, finest (stride 8) first.
        width: the channels of every output level.

    ``forward(features)`` takes the maps finest first and returns as many maps of
    ``width`` channels at the same resolutions. Sizes need not be exact multiples:
    upsampling goes to the lateral's own size, so a 240-pixel-high canvas (strides 8,
    16, 32 -> 30, 15, 8 rows) works.
    """

    def __init__(self, in_channels: Sequence[int], width: int = 64) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(Conv2dNormActivation(c, width, 1) for c in in_channels)
        n = len(in_channels)
        self.smooth = nn.ModuleList(dwsep(width, width) for _ in range(n))
        self.down = nn.ModuleList(dwsep(width, width, stride=2) for _ in range(n - 1))
        self.out_channels = width

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        top_down = [laterals[-1]]
        for lat in reversed(laterals[:-1]):
            up = F.interpolate(top_down[0], size=lat.shape[-2:], mode="nearest")
            top_down.insert(0, lat + up)
        smoothed = [conv(x) for conv, x in zip(self.smooth, top_down, strict=True)]
        outs = [smoothed[0]]
        for down, x in zip(self.down, smoothed[1:], strict=True):
            d = down(outs[-1])
            outs.append(x + d[..., : x.shape[-2], : x.shape[-1]])
        return outs
