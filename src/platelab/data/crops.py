"""Samples and batches of plate crops (``task=read``): a sharded training stream and an eval set.

A sample is ``(image, target)``: ``image`` a contiguous ``uint8 Tensor[3, H, W]`` RGB
crop at the dataset's crop size, ``target`` ``{"text": str, "rows": int, "index":
int, "style": str}`` (``index``: the crop's position in the requested splits).
A two-line crop (``rows == 2``) is laid out by
:func:`platelab.geometry.two_line_to_one` after augmentation (top row in the left
half), so a left-to-right reader reads the top row first; ``two_line=False`` keeps
it as it is.

:class:`CropStream` is a :class:`~platelab.data.stream.PlateStream` over crops: the
same epoch permutation, rank-then-worker sharding, ``set_epoch`` and padding rules.

Augmentation (:class:`CropAugment`) never flips or mirrors (it would change the
text): random corner jitter re-cut with :func:`platelab.geometry.warp_quad` (a
detector's corner error: shift, scale, rotation and perspective in one), colour
jitter, blur, noise and JPEG.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import DataLoader

from platelab.data.augment import A
from platelab.data.crop_manifest import CropItem, crop_size, load_crop_split
from platelab.data.imageio import read_image
from platelab.data.stream import (
    PlateDataset,
    PlateStream,
    _loader,
    _splits,
    _to_chw,
    stack_images,
)
from platelab.geometry import TWO_LINE_SPLIT, two_line_to_one, warp_quad

logger = logging.getLogger(__name__)

Sample = tuple[torch.Tensor, dict]


class CropAugmentConfig(BaseModel):
    """Text-safe augmentation of crops; ``strength`` scales the magnitudes.

    ``jitter`` is the largest corner shift as a share of the crop's ``(width,
    height)``; colour amounts follow torchvision's ``ColorJitter``.
    """

    model_config = ConfigDict(extra="forbid")

    strength: float = Field(1.0, ge=0.0, le=3.0)
    jitter_p: float = Field(0.7, ge=0.0, le=1.0)
    jitter: tuple[float, float] = (0.04, 0.1)
    colour_p: float = Field(0.8, ge=0.0, le=1.0)
    brightness: float = Field(0.3, ge=0.0)
    contrast: float = Field(0.3, ge=0.0)
    saturation: float = Field(0.3, ge=0.0)
    hue: float = Field(0.02, ge=0.0, le=0.5)
    blur_p: float = Field(0.2, ge=0.0, le=1.0)
    noise_p: float = Field(0.2, ge=0.0, le=1.0)
    noise_std: float = Field(0.04, ge=0.0, le=1.0)
    jpeg_p: float = Field(0.2, ge=0.0, le=1.0)
    jpeg_quality_min: int = Field(30, ge=1, le=100)


class CropAugment:
    """``augment(image (H, W, 3) uint8) -> image`` of the same size; see the module docstring."""

    def __init__(self, cfg: CropAugmentConfig | None = None, seed: int | None = None):
        self.cfg = cfg = cfg or CropAugmentConfig()
        s = cfg.strength
        self._photo = A.Compose(
            [
                A.ColorJitter(
                    brightness=min(cfg.brightness * s, 1.0),
                    contrast=min(cfg.contrast * s, 1.0),
                    saturation=min(cfg.saturation * s, 1.0),
                    hue=min(cfg.hue * s, 0.5),
                    p=cfg.colour_p,
                ),
                A.OneOf(
                    [A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))],
                    p=cfg.blur_p,
                ),
                A.GaussNoise(std_range=(0.0, min(cfg.noise_std * s, 1.0)), p=cfg.noise_p),
                A.ImageCompression(
                    quality_range=(min(cfg.jpeg_quality_min, 95), 95), p=cfg.jpeg_p
                ),  # fmt: skip
            ]
        )
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        """Restart the random stream (the stream calls this per worker and epoch)."""
        self._rng = np.random.default_rng(seed)
        self._photo.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        cfg, rng = self.cfg, self._rng
        h, w = image.shape[:2]
        if rng.random() < cfg.jitter_p and cfg.strength > 0:
            quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
            amount = np.array(cfg.jitter) * (w, h) * cfg.strength * rng.uniform(0.3, 1.0)
            quad += rng.uniform(-1, 1, (4, 2)) * amount
            image = warp_quad(image, quad, (w, h))
        return self._photo(image=image)["image"]


class CropData:
    """The crops of some splits of a prepared crop dataset, and how to read one as a sample."""

    def __init__(self, dataset: Path, splits: str | Sequence[str], two_line: bool = True):
        self.root = Path(dataset)
        self.canvas = crop_size(self.root)
        self.two_line = two_line
        self.items: list[CropItem] = []
        for split in _splits(splits):
            self.items.extend(load_crop_split(self.root, split))
        self._reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.items)

    def read(self, index: int, augment: Callable | None = None) -> Sample | None:
        """Sample ``index``, or None (logged once per process) when its image is unreadable."""
        item = self.items[index]
        w, h = self.canvas
        try:
            image = read_image(self.root / item.image)
        except (OSError, ValueError) as err:
            if item.image not in self._reported:
                self._reported.add(item.image)
                logger.warning("skipping unreadable crop %s: %s", self.root / item.image, err)
            return None
        if image.shape[:2] != (h, w):  # a crop written at another size: straighten it here
            ih, iw = image.shape[:2]
            image = warp_quad(image, np.array([[0, 0], [iw, 0], [iw, ih], [0, ih]], float), (w, h))
        if augment is not None:
            image = augment(image)
        if item.rows == 2 and self.two_line:
            image = two_line_to_one(image, item.row_split or TWO_LINE_SPLIT)
        target = {"text": item.text, "rows": item.rows, "index": index, "style": item.style}
        return _to_chw(image), target


class CropStream(PlateStream):
    """A sharded, shuffled, augmented stream of crops (see :class:`PlateStream` for the rules).

    Args:
        augment: a :class:`CropAugmentConfig`, a ready callable, or None.
        two_line: lay two-line crops side by side (:func:`two_line_to_one`).
    """

    def __init__(self, dataset: Path, splits: str | Sequence[str] = "train",
                 augment: CropAugmentConfig | Callable | None = None, *,
                 two_line: bool = True, **kw):  # fmt: skip
        if isinstance(augment, CropAugmentConfig):
            augment = CropAugment(augment)
        super().__init__(dataset, splits, augment, data=CropData(dataset, splits, two_line), **kw)


class CropDataset(PlateDataset):
    """Map-style, unaugmented crops in manifest order, for evaluation (None when unreadable)."""

    def __init__(self, dataset: Path, splits: str | Sequence[str] = "val", two_line: bool = True):
        super().__init__(dataset, splits, data=CropData(dataset, splits, two_line))

    @property
    def items(self) -> list[CropItem]:
        return self.data.items


def collate_crops(
    samples: Sequence[Sample | None], canvas: tuple[int, int] | None = None
) -> tuple[torch.Tensor, dict]:
    """Stack crops into ``(images uint8[B, 3, H, W], targets)``; None samples are left out.

    ``targets``: ``texts`` ``list[str]``, ``rows`` int64 ``[B]``, ``index`` int64 ``[B]``,
    ``styles`` ``list[str]``. ``canvas`` ``(W, H)`` shapes an empty batch.
    """
    samples = [s for s in samples if s is not None]
    images = stack_images(samples, canvas)
    targets = {
        "texts": [t["text"] for _, t in samples],
        "rows": torch.tensor([t["rows"] for _, t in samples], dtype=torch.int64),
        "index": torch.tensor([t["index"] for _, t in samples], dtype=torch.int64),
        "styles": [t["style"] for _, t in samples],
    }
    return images, targets


def build_crop_loader(
    dataset: Path,
    split: str | Sequence[str],
    batch_size: int,
    *,
    workers: int = 0,
    augment: CropAugmentConfig | Callable | None = None,
    shuffle: bool = True,
    seed: int = 0,
    even: bool = False,
    drop_last: bool = False,
    two_line: bool = True,
    collate_fn: Callable[..., tuple[torch.Tensor, dict]] = collate_crops,
) -> DataLoader:
    """A ``DataLoader`` over a :class:`CropStream` (``len()`` exact; call
    ``loader.dataset.set_epoch(e)`` before each epoch). ``collate_fn``: the task's (it
    may add tensor targets); :func:`collate_crops` by default."""
    stream = CropStream(dataset, split, augment, two_line=two_line, shuffle=shuffle, seed=seed,
                        even=even)  # fmt: skip
    return _loader(stream, batch_size, workers, collate_fn=collate_fn, drop_last=drop_last)


def build_crop_eval_loader(
    dataset: Path,
    split: str | Sequence[str],
    batch_size: int,
    *,
    workers: int = 0,
    two_line: bool = True,
    collate_fn: Callable[..., tuple[torch.Tensor, dict]] = collate_crops,
) -> DataLoader:
    """A ``DataLoader`` over a :class:`CropDataset`: every crop once, in manifest order."""
    ds = CropDataset(dataset, split, two_line)
    return _loader(ds, batch_size, workers, collate_fn=partial(collate_fn, canvas=ds.canvas),
                   shuffle=False)  # fmt: skip
