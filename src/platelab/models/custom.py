"""A family of small depthwise-separable CNNs (MobileNet-v1 style), fast on CPU.

The seed's network was a stack of depthwise-separable conv blocks; this is the same
idea made regular: a 3x3 stride-2 stem, then blocks of depthwise 3x3 + BN + ReLU and
pointwise 1x1 + BN + ReLU, downsampling five times to stride 32. Plain ReLU and no
squeeze-excitation on purpose: both cost CPU latency far beyond their FLOPs
(efficientnet_b0 takes ~8x longer per FLOP than resnet18 on this CPU, see ECOSYSTEM.md).

Variants differ in width and depth (GFLOPs at 640x480 with the shared head, as
``platelab models`` counts them)::

    dwsep_tiny   0.20     dwsep_small  0.89     dwsep_base  1.50
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from torch import nn
from torchvision.ops import Conv2dNormActivation

from platelab.errors import PlatelabError
from platelab.models.backbones import SequentialFeatures, make_model
from platelab.models.registry import register_model

# (out_channels, stride, repeats) per stage at width_mult=1; the first block of a stage
# carries its stride. Every stage halves the resolution (stem 2 x 2^4 = stride 32): on
# CPU, full-resolution activations cost memory traffic far beyond their FLOPs, so unlike
# MobileNet-v1 no block runs at the stem's resolution (this halved dwsep_tiny's latency).
Stages = Sequence[tuple[int, int, int]]

_TINY: Stages = ((24, 2, 1), (48, 2, 2), (96, 2, 2), (192, 2, 2))
_SMALL: Stages = ((48, 2, 2), (96, 2, 2), (192, 2, 4), (384, 2, 2))
_BASE: Stages = ((64, 2, 2), (128, 2, 2), (256, 2, 4), (512, 2, 2))


def _round8(channels: float) -> int:
    """Round to a multiple of 8 (vector-friendly), never below 90% of ``channels`` (MobileNet)."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


class DWSepBlock(nn.Sequential):
    """Depthwise 3x3 (stride ``s``) + BN + ReLU, then pointwise 1x1 + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            Conv2dNormActivation(in_channels, in_channels, 3, stride, groups=in_channels),
            Conv2dNormActivation(in_channels, out_channels, 1),
        )


class DWSepNet(SequentialFeatures):
    """Stem conv 3x3 s2 + BN + ReLU, then :class:`DWSepBlock` stages; output stride 32.

    Args:
        stages: ``(out_channels, stride, repeats)`` per stage before the width multiplier.
        stem_channels: stem width before the width multiplier.
        width_mult: scales every width (rounded to a multiple of 8, like MobileNet).
    """

    classifier_prefixes: tuple[str, ...] = ()

    def __init__(self, stages: Stages, stem_channels: int = 16, width_mult: float = 1.0) -> None:
        super().__init__()
        if width_mult <= 0:
            raise PlatelabError(f"width_mult must be positive, got {width_mult}")
        c_in = _round8(stem_channels * width_mult)
        layers: list[nn.Module] = [Conv2dNormActivation(3, c_in, 3, stride=2)]
        stride = 2
        for channels, s, repeats in stages:
            c_out = _round8(channels * width_mult)
            for i in range(repeats):
                layers.append(DWSepBlock(c_in, c_out, s if i == 0 else 1))
                c_in = c_out
            stride *= s
        self.features = nn.Sequential(*layers)
        self.out_channels = c_in
        self.stride = stride
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._init_levels()


def _dwsep(
    name: str,
    stages: Stages,
    stem_channels: int,
    *,
    width_mult: float = 1.0,
    pretrained: bool = False,
    weights: str | Path | None = None,
    task: str = "localize",
    head_width: int = 128,
    neck_width: int = 64,
) -> nn.Module:
    if pretrained:
        raise PlatelabError(
            f"{name} has no library weights (pretrained=true); train it, or pass weights=PATH"
        )
    backbone = DWSepNet(stages, stem_channels=stem_channels, width_mult=width_mult)
    return make_model(
        name,
        backbone,
        task=task,
        weights=weights,
        width_mult=width_mult,
        head_width=head_width,
        neck_width=neck_width,
    )


# name: (stages, stem channels, head width). tiny: 7 blocks, 192 channels out; small: 10
# blocks, 384; base: 10 blocks, 512 (MobileNet-v1's widths, shallower).
_FAMILY = {
    "dwsep_tiny": (_TINY, 16, 64),
    "dwsep_small": (_SMALL, 24, 128),
    "dwsep_base": (_BASE, 32, 128),
}
for _name, (_stages, _stem, _head) in _FAMILY.items():
    register_model(_name)(functools.partial(_dwsep, _name, _stages, _stem, head_width=_head))
