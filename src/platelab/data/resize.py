"""Letterbox whole batches into another canvas: for ``size=WxH`` runs and evaluations.

A dataset is prepared at one canvas; a model may train or be evaluated at another
(``platelab train size=320x240`` on a 640x480 dataset). :class:`ResizedLoader` wraps
any loader of ``(images, targets)`` batches and maps both with one
:class:`~platelab.geometry.Letterbox`, whatever the task's target layout: every
box and corner tensor it finds is mapped, so the localiser's and the detector's
batches go through the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from platelab.geometry import PAD_VALUE, Letterbox, resized_size

# Target keys holding canvas-pixel geometry: a tensor, or a list of per-image tensors.
BOX_KEYS = ("boxes_xyxy", "all_boxes_xyxy")
POINT_KEYS = ("corners",)


class ResizedLoader:
    """Letterboxes every ``(images, targets)`` batch of a loader into another canvas.

    Images are resized with antialiasing and padded with the dataset's pad value.
    ``boxes_xyxy`` / ``all_boxes_xyxy`` (``[..., 4]``, a tensor or a list of them) and
    ``corners`` (``[..., 4, 2]``, NaN stays NaN) are mapped with the same
    :class:`~platelab.geometry.Letterbox`; with ``has_plate`` present, a negative keeps
    all-zero boxes, and ``boxes_norm_xyxy`` is recomputed for the new canvas.
    ``set_epoch`` and ``len()`` pass through to the wrapped loader.
    """

    def __init__(self, loader: Iterable, src: tuple[int, int], dst: tuple[int, int]) -> None:
        self.loader, self.dst = loader, dst
        self.dataset = getattr(loader, "dataset", None)
        self.lb = Letterbox.fit(src[0], src[1], dst[0], dst[1])
        self.new_w, self.new_h = resized_size(src[0], src[1], self.lb.scale)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict]]:
        for images, targets in self.loader:
            yield self.resize(images, targets)

    def _boxes(self, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        mapped = self.lb.boxes_to_canvas(boxes_xyxy.numpy().reshape(-1, 4))
        return torch.from_numpy(mapped.astype(np.float32)).reshape(boxes_xyxy.shape)

    def _points(self, points: torch.Tensor) -> torch.Tensor:
        mapped = self.lb.points_to_canvas(points.numpy().reshape(-1, 2))
        return torch.from_numpy(mapped.astype(np.float32)).reshape(points.shape)

    def _map(self, value: Any, fn) -> Any:
        return [fn(v) for v in value] if isinstance(value, list) else fn(value)

    def resize(self, images: torch.Tensor, targets: dict) -> tuple[torch.Tensor, dict]:
        """``images`` uint8 ``[B, 3, H, W]`` of the source canvas -> ``[B, 3, h, w]`` of ``dst``."""
        lb, (w, h) = self.lb, self.dst
        small = F.interpolate(
            images.float(),
            size=(self.new_h, self.new_w),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        out = torch.full((images.shape[0], 3, h, w), PAD_VALUE, dtype=torch.uint8)
        out[:, :, lb.pad_y : lb.pad_y + self.new_h, lb.pad_x : lb.pad_x + self.new_w] = (
            small.round().clamp(0, 255).to(torch.uint8)
        )
        t = dict(targets)
        for key in BOX_KEYS:
            if key in t:
                t[key] = self._map(t[key], self._boxes)
        for key in POINT_KEYS:
            if key in t:
                t[key] = self._map(t[key], self._points)
        if "has_plate" in t and isinstance(t.get("boxes_xyxy"), torch.Tensor):
            t["boxes_xyxy"] = t["boxes_xyxy"] * t["has_plate"].reshape(-1, 1)
        if "boxes_norm_xyxy" in t:
            t["boxes_norm_xyxy"] = t["boxes_xyxy"] / torch.tensor([w, h, w, h], dtype=torch.float32)
        return out, t
