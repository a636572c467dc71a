"""What every platelab model shares: its registry name and arguments, and normalisation inside.

Input images are ``[B, 3, H, W]`` uint8 pixels or float in ``[0, 1]``; uint8 is
converted with ``float() / 255`` in :meth:`PlateModel.normalize`, so ``model(u8)``
equals ``model(u8.float() / 255)`` and an exported ONNX graph takes plain pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PlateModel(nn.Module):
    """Base of the localiser and the detector.

    Attributes:
        name: the registry name that built it.
        config: the architecture keyword arguments; ``create_model(name, **config)``
            rebuilds the same network (weights not included: a checkpoint stores them).
        mean, std: ``[1, 3, 1, 1]`` normalisation buffers (in the state dict).
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        *,
        name: str,
        config: dict[str, Any],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.name = name
        self.config = dict(config)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 or ``[0, 1]`` ``images`` -> ``(x - mean) / std`` in float."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"name={self.name!r}, config={self.config}"
