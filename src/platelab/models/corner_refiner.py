"""The corner stage: a plate's 4 corners found again at the plate's own resolution.

The detector's corners come from one location of a dense head at stride 8-32 of a
320x240 canvas: they follow the plate's box, but hardly its lean
(``benchmarks/corner_lean.py``: 0.26 times the true lean on synthetic close-ups). The
refiner looks at the plate only: a window around its box, cut from the full-resolution
photo and resized to :data:`WINDOW_SIZE`, and finds each corner as the expected
position of its own heatmap (soft-argmax, "integral regression", Sun et al. 2018), so
a corner lands between heatmap cells and the loss is a plain L1 on coordinates.

::

    window = window_around(box_xyxy)            # (4, 2) quad in the photo, TL TR BR BL
    crop = warp_quad(photo, window, WINDOW_SIZE)
    corners = refiner(crop[None])               # [1, 4, 2] in window pixels
    corners_in_photo = window_to_photo(corners[0], window)

:func:`refine_corners` does that for many plates of one photo in one batch.
:func:`export_corner_model` writes the model as ONNX (uint8 ``images [B, 3, 64, 160]``
-> ``corners [B, 4, 2]``), and :class:`OnnxCornerModel` runs that file in onnxruntime
wherever a :class:`CornerRefiner` is taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from platelab.errors import PlatelabError
from platelab.models.base import PlateModel
from platelab.models.necks import dwsep

WINDOW_SIZE = (160, 64)  # the refiner's input (width, height)
# The window around a box: this share of the box's width and height on every side,
# plus a few pixels, so a box a detector got 10-20% wrong still holds the whole plate.
WINDOW_GROW = (0.15, 0.30)
WINDOW_PAD = 2.0
HEATMAP_STRIDE = 4
KIND = "corner_refiner"  # a checkpoint's "kind": what load_refiner accepts


def window_around(box_xyxy: Sequence[float]) -> np.ndarray:
    """The ``(4, 2)`` window quad (TL, TR, BR, BL, photo pixels) the refiner sees for a box."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    gx = WINDOW_GROW[0] * w + WINDOW_PAD
    gy = WINDOW_GROW[1] * h + WINDOW_PAD
    a, b, c, d = x0 - gx, y0 - gy, x1 + gx, y1 + gy
    return np.array([[a, b], [c, b], [c, d], [a, d]], np.float64)


def photo_to_window(points: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Photo pixels -> the window's :data:`WINDOW_SIZE` pixels (an axis-aligned window)."""
    (a, b), (c, d) = window[0], window[2]
    scale = np.array([WINDOW_SIZE[0] / (c - a), WINDOW_SIZE[1] / (d - b)])
    return (np.asarray(points, np.float64) - [a, b]) * scale


def window_to_photo(points: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The inverse of :func:`photo_to_window`."""
    (a, b), (c, d) = window[0], window[2]
    scale = np.array([(c - a) / WINDOW_SIZE[0], (d - b) / WINDOW_SIZE[1]])
    return np.asarray(points, np.float64) * scale + [a, b]


def soft_argmax(heatmaps: Tensor, stride: int) -> Tensor:
    """``[B, K, h, w]`` logits -> ``[B, K, 2]`` expected (x, y) of each softmax, in input
    pixels (cell ``(i, j)`` sits at ``((j + 0.5) * stride, (i + 0.5) * stride)``)."""
    b, k, h, w = heatmaps.shape
    p = heatmaps.float().flatten(2).softmax(dim=2).view(b, k, h, w)
    xs = (torch.arange(w, device=p.device, dtype=p.dtype) + 0.5) * stride
    ys = (torch.arange(h, device=p.device, dtype=p.dtype) + 0.5) * stride
    x = (p.sum(dim=2) * xs).sum(dim=2)
    y = (p.sum(dim=3) * ys).sum(dim=2)
    return torch.stack([x, y], dim=2)


class CornerRefiner(PlateModel):
    """A small encoder-decoder: stride 2 -> 16 encoder, a top-down path back to stride 4,
    then 4 heatmaps (TL, TR, BR, BL) and their soft-argmax.

    Input ``[B, 3, 64, 160]`` uint8 or ``[0, 1]`` float (:data:`WINDOW_SIZE`), output
    ``[B, 4, 2]`` corners in window pixels. 66k parameters, 0.04 GFLOPs (width 32).
    """

    task = "corners"

    def __init__(self, *, width: int = 32, name: str = "corner_refiner") -> None:
        super().__init__(name=name, config={"width": width})
        c1, c2, c3, c4 = width // 2, width, width * 2, width * 3
        self.stem = nn.Sequential(
            Conv2dNormActivation(3, c1, 3, 2), Conv2dNormActivation(c1, c1, 3)
        )  # stride 2
        self.s4 = nn.Sequential(dwsep(c1, c2, 2), dwsep(c2, c2))
        self.s8 = nn.Sequential(dwsep(c2, c3, 2), dwsep(c3, c3))
        self.s16 = nn.Sequential(dwsep(c3, c4, 2), dwsep(c4, c4), dwsep(c4, c4))
        self.lat8 = nn.Conv2d(c3, c4, 1)
        self.up8 = dwsep(c4, c3)
        self.lat4 = nn.Conv2d(c2, c3, 1)
        self.up4 = nn.Sequential(dwsep(c3, c3), dwsep(c3, c3))
        self.head = nn.Conv2d(c3, 4, 1)

    def forward(self, images: Tensor) -> Tensor:
        x4 = self.s4(self.stem(self.normalize(images)))
        x8 = self.s8(x4)
        x16 = self.s16(x8)
        y8 = self.up8(self.lat8(x8) + F.interpolate(x16, size=x8.shape[-2:], mode="nearest"))
        y4 = self.up4(self.lat4(x4) + F.interpolate(y8, size=x4.shape[-2:], mode="nearest"))
        return soft_argmax(self.head(y4), HEATMAP_STRIDE)


def save_refiner(
    path: Path | str, model: CornerRefiner, meta: dict[str, Any] | None = None
) -> None:
    """Write ``model`` (atomic; loads with ``torch.load(weights_only=True)``)."""
    from platelab.engine.checkpoint import FORMAT, save_checkpoint

    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state = {"format": FORMAT, "kind": KIND, "config": dict(model.config), "model": weights}
    save_checkpoint(path, state | {"meta": meta or {}})


def load_refiner(path: Path | str, device: str = "cpu") -> CornerRefiner:
    """A :class:`CornerRefiner` from :func:`save_refiner`'s file, in eval mode.

    Raises:
        PlatelabError: a missing, unreadable or other kind of file.
    """
    from platelab.engine.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    if state.get("kind") != KIND:
        raise PlatelabError(f"{path} is not a platelab corner refiner checkpoint")
    model = CornerRefiner(**state["config"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()


class OnnxCornerModel:
    """An exported corner model in onnxruntime: ``model.corners(crops)`` as for a
    :class:`CornerRefiner` (``crops`` ``[N, 64, 160, 3]`` uint8 -> ``[N, 4, 2]``)."""

    def __init__(self, path: Path | str, threads: int | None = None) -> None:
        from platelab.infer.export import onnx_session, read_metadata

        meta = read_metadata(path)
        if meta.get("task") != "corners":
            raise PlatelabError(f"{path} is not an exported corner model (task={meta.get('task')})")
        self.path = Path(path)
        self.session = onnx_session(path, threads)

    def corners(self, crops: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(crops.transpose(0, 3, 1, 2))
        return self.session.run(["corners"], {"images": images})[0].astype(np.float64)


def window_corners(model: CornerRefiner | OnnxCornerModel, crops: np.ndarray) -> np.ndarray:
    """``crops`` ``[N, 64, 160, 3]`` uint8 windows -> ``[N, 4, 2]`` corners, window pixels."""
    if isinstance(model, OnnxCornerModel):
        return model.corners(crops)
    device = next(model.parameters()).device
    with torch.inference_mode():
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).to(device)
        return model(x).cpu().double().numpy()


def export_corner_model(model: CornerRefiner, out: Path | str, opset: int | None = None) -> Path:
    """Write ``model`` as ONNX (dynamic batch, uint8 input) and check it against PyTorch
    (corners within 0.01 window px on random windows).

    Raises:
        PlatelabError: onnx, onnxscript or onnxruntime missing, or a parity failure.
    """
    from platelab.infer.export import dynamo_export, write_onnx

    out = Path(out)
    w, h = WINDOW_SIZE
    proto = dynamo_export(model, torch.zeros(2, 3, h, w, dtype=torch.uint8), ["corners"], opset)
    meta = {"format": "platelab", "task": "corners", "model": model.name,
            "window": f"{w}x{h}", "window_grow": f"{WINDOW_GROW[0]},{WINDOW_GROW[1]}",
            "window_pad": str(WINDOW_PAD)}  # fmt: skip
    write_onnx(proto, out, meta, f"platelab corner model, window {w}x{h}")
    crops = np.random.default_rng(0).integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    gap = np.abs(OnnxCornerModel(out).corners(crops) - window_corners(model, crops)).max()
    if not gap < 0.01:
        out.unlink(missing_ok=True)
        raise PlatelabError(f"the ONNX corner model differs from PyTorch by {gap:.3g} px")
    return out


def refine_corners(
    model: CornerRefiner | OnnxCornerModel, image: np.ndarray, boxes_xyxy: Sequence[Sequence[float]]
) -> np.ndarray:
    """Each plate's corners from a window around its box: ``(N, 4, 2)`` photo pixels.

    Args:
        model: the refiner.
        image: ``(H, W, 3)`` uint8 RGB photo.
        boxes_xyxy: ``N`` plate boxes in the photo's pixels.
    """
    return refine_corners_many(model, [image] * len(boxes_xyxy), boxes_xyxy)


def refine_corners_many(
    model: CornerRefiner | OnnxCornerModel,
    images: Sequence[np.ndarray],
    boxes_xyxy: Sequence[Sequence[float]],
) -> np.ndarray:
    """:func:`refine_corners` with each box in its own photo (``images[i]`` for box ``i``)."""
    from platelab.geometry import warp_quad

    if not len(boxes_xyxy):
        return np.zeros((0, 4, 2), np.float64)
    windows = [window_around(b) for b in boxes_xyxy]
    crops = np.stack([warp_quad(im, w, WINDOW_SIZE) for im, w in zip(images, windows, strict=True)])
    out = window_corners(model, crops)
    return np.stack([window_to_photo(c, w) for c, w in zip(out, windows, strict=True)])
