"""Samples and batches from a prepared dataset: a sharded training stream and an ordered eval set.

A sample is ``(image, target)``: ``image`` a contiguous ``uint8 Tensor[3, H, W]``
RGB canvas, ``target`` a dict with ``boxes_xyxy`` float32 ``[N, 4]`` canvas pixels,
``corners`` float32 ``[N, 4, 2]`` (NaN where unknown) and ``index``, the image's
position in the requested splits (its manifest row order when there is one split).

Sharding (:class:`PlateStream`): each epoch's order (a permutation seeded by
``(seed, epoch)``, identical in every process, or manifest order without shuffle)
is dealt to the ranks first, ``order[rank::world_size]``, and each rank's share to
its loader workers, ``share[worker::num_workers]``. The ``world_size * num_workers``
shards are thus the disjoint slices ``order[rank + world_size * worker ::
world_size * num_workers]``, and every image comes out exactly once per epoch.
Dealing to ranks first makes a rank's share independent of its worker count.
Uneven remainders:

* default: ranks differ by at most one sample; nothing is repeated or lost.
* ``even=True``: the order is padded by repeating its first few entries up to a
  multiple of ``world_size``, so every rank yields ``ceil(N / world_size)``
  samples and, with the same worker count, the same number of batches. DDP
  needs this: a rank that runs out first leaves the others waiting in all-reduce.
  An unreadable image is then replaced by the next readable one, keeping counts.
* ``drop_last=True``: the order is cut to a multiple of ``world_size``.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate, get_worker_info
from torchvision.ops import box_area

from platelab.data.augment import AugmentConfig, build_augment, mosaic
from platelab.data.imageio import read_image
from platelab.data.manifest import ManifestImage, dataset_canvas, load_split

logger = logging.getLogger(__name__)

Sample = tuple[torch.Tensor, dict]
Augment = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _splits(splits: str | Sequence[str]) -> list[str]:
    return [splits] if isinstance(splits, str) else list(splits)


class _Images:
    """The images of some splits of a prepared dataset, and how to read one as a sample."""

    def __init__(self, dataset: Path, splits: str | Sequence[str]):
        self.root = Path(dataset)
        self.canvas = dataset_canvas(self.root)
        self.images: list[ManifestImage] = []
        for split in _splits(splits):
            self.images.extend(load_split(self.root, split))
        self._reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Image, boxes and corners of ``index``, or None (logged once) when unreadable."""
        m = self.images[index]
        w, h = self.canvas
        try:
            image = read_image(self.root / m.image)
            if image.shape != (h, w, 3):
                raise ValueError(f"is {image.shape[1]}x{image.shape[0]}, the canvas is {w}x{h}")
        except (OSError, ValueError) as err:
            if m.image not in self._reported:
                self._reported.add(m.image)
                logger.warning("skipping unreadable image %s: %s", self.root / m.image, err)
            return None
        return image, m.boxes_xyxy, m.corners

    def read(self, index: int, augment: Augment | None = None) -> Sample | None:
        """Sample ``index``, or None (logged once per process) when its image is unreadable."""
        loaded = self._load(index)
        return None if loaded is None else self._sample(index, *loaded, augment)

    def read_mosaic(
        self, indices: Sequence[int], augment: Augment | None, rng: np.random.Generator
    ) -> Sample | None:
        """A mosaic of 4 images (:func:`~platelab.data.augment.mosaic`), then ``augment``.

        The sample carries ``indices[0]``'s index. An unreadable partner is replaced by
        the first image; an unreadable first image gives None, like :meth:`read`.
        """
        first = self._load(indices[0])
        if first is None:
            return None
        tiles = [first] + [self._load(i) or first for i in indices[1:4]]
        cfg = getattr(augment, "cfg", None)
        kw = {"min_visible": cfg.min_visible, "min_size_px": cfg.min_size_px} if cfg else {}
        return self._sample(indices[0], *mosaic(tiles, rng, **kw), augment)

    def _sample(self, index, image, boxes, corners, augment: Augment | None) -> Sample:
        if augment is not None:
            image, boxes, corners = augment(image, boxes, corners)
        target = {
            "boxes_xyxy": torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)),
            "corners": torch.as_tensor(np.asarray(corners, np.float32).reshape(-1, 4, 2)),
            "index": index,
        }
        return _to_chw(image), target


def _to_chw(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` -> contiguous ``(3, H, W)``; cv2.split is ~6x faster than a strided copy."""
    return torch.from_numpy(np.stack(cv2.split(image)))


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        if dist.is_available() and dist.is_initialized():
            found = dist.get_rank(), dist.get_world_size()
        else:
            found = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        rank = found[0] if rank is None else rank
        world_size = found[1] if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


class PlateStream(IterableDataset):
    """A sharded, shuffled, augmented stream over splits of a prepared dataset.

    Call :meth:`set_epoch` before each epoch: the epoch lives in shared memory,
    so persistent loader workers see it too (as timm's ``reader_wds`` does).

    Args:
        dataset: the prepared dataset folder.
        splits: one split name or several (concatenated in the given order).
        augment: an :class:`AugmentConfig`, a ready augmentation callable, or None.
            A callable with a ``reseed(int)`` method is reseeded per epoch and shard.
        shuffle: permute each epoch; False keeps manifest order.
        seed: seeds the permutation, the shuffle buffer and the augmentation.
        shuffle_buffer: size of an extra per-worker shuffle buffer (0: none).
        even, drop_last: how uneven shards are handled (see the module docstring).
        rank, world_size: override torch.distributed / ``RANK``, ``WORLD_SIZE``.
        data: what to stream instead of the dataset's images: any object with
            ``len()``, ``canvas`` and ``read(index, augment) -> Sample | None`` (the
            crop stream of :mod:`.crops` passes its crops).
    """

    def __init__(
        self,
        dataset: Path,
        splits: str | Sequence[str] = "train",
        augment: AugmentConfig | Augment | None = None,
        *,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 0,
        even: bool = False,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        data=None,
    ):
        super().__init__()
        if even and drop_last:
            raise ValueError("choose one of even=True (pad) and drop_last=True (cut)")
        self.data = _Images(dataset, splits) if data is None else data
        if isinstance(augment, AugmentConfig):
            augment = build_augment(augment, *self.data.canvas)
        self.augment = augment
        self.shuffle, self.seed, self.shuffle_buffer = shuffle, seed, shuffle_buffer
        self.even, self.drop_last = even, drop_last
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        self._epoch = mp.Value("i", 0)

    @property
    def canvas(self) -> tuple[int, int]:
        """``(width, height)`` of every image."""
        return self.data.canvas

    @property
    def epoch(self) -> int:
        """The epoch the next iteration uses (shared with the loader workers)."""
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and augmentation the next iteration uses."""
        self._epoch.value = int(epoch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The whole epoch's image order, padded or cut as configured (same in every process)."""
        n = len(self.data)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
        else:
            order = np.arange(n)
        if self.even and n:
            order = np.resize(order, -(-n // self.world_size) * self.world_size)  # cyclic repeat
        elif self.drop_last:
            order = order[: n // self.world_size * self.world_size]
        return order

    def num_samples_per_rank(self) -> int:
        """Samples this rank yields per epoch (before any unreadable image is skipped)."""
        return len(self.epoch_order(0)[self.rank :: self.world_size])

    def num_batches(self, batch_size: int, num_workers: int = 0, drop_last: bool = False) -> int:
        """Batches a ``DataLoader`` over this stream yields per epoch on this rank.

        Each worker batches its own share, so this can exceed ``ceil(len / batch_size)``.
        """
        per_rank = self.num_samples_per_rank()
        counts = [len(range(w, per_rank, max(num_workers, 1))) for w in range(max(num_workers, 1))]
        if drop_last:
            return sum(c // batch_size for c in counts)
        return sum(-(-c // batch_size) for c in counts)

    def __len__(self) -> int:
        return self.num_samples_per_rank()

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        order = self.epoch_order(epoch)
        mine = order[self.rank :: self.world_size][worker::num_workers]
        shard_seed = np.random.SeedSequence([self.seed, epoch, self.rank, worker])
        rng = np.random.default_rng(shard_seed)
        if hasattr(self.augment, "reseed"):
            self.augment.reseed(int(shard_seed.generate_state(1)[0]))
        indices: Iterator[int] = iter(mine.tolist())
        if self.shuffle_buffer > 1:
            indices = _buffered(indices, self.shuffle_buffer, rng)
        # Mosaic partners come from the whole dataset, drawn by this shard's generator.
        mosaic_p = getattr(getattr(self.augment, "cfg", None), "mosaic_p", 0.0)
        if not hasattr(self.data, "read_mosaic"):
            mosaic_p = 0.0
        for i in indices:
            if mosaic_p > 0 and rng.random() < mosaic_p:
                partners = rng.integers(0, len(self.data), 3).tolist()
                sample = self.data.read_mosaic([i, *partners], self.augment, rng)
            else:
                sample = self.data.read(i, self.augment)
            if sample is None and self.even:
                sample = self._substitute(order, i)
            if sample is not None:
                yield sample

    def _substitute(self, order: np.ndarray, bad: int) -> Sample | None:
        """The next readable image after ``bad`` in the epoch order (keeps shard sizes equal)."""
        start = int(np.flatnonzero(order == bad)[0])
        for step in range(1, len(order)):
            sample = self.data.read(int(order[(start + step) % len(order)]), self.augment)
            if sample is not None:
                return sample
        return None


def _buffered(items: Iterator[int], size: int, rng: np.random.Generator) -> Iterator[int]:
    """Yield ``items`` through a shuffle buffer of ``size`` entries."""
    buf: list[int] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(size))
        yield buf[j]
        buf[j] = item
    rng.shuffle(buf)
    yield from buf


class PlateDataset(Dataset):
    """Map-style, unaugmented samples in manifest order, for evaluation.

    ``dataset[i]`` is the sample of manifest image ``i`` (splits concatenated in
    order), or None when its image is unreadable (logged); :func:`collate_batch`
    leaves those out, so their indices are simply missing from the batch.
    """

    def __init__(self, dataset: Path, splits: str | Sequence[str] = "val", data=None):
        # ``data``: what to read instead of the dataset's images, as for PlateStream
        self.data = _Images(dataset, splits) if data is None else data

    @property
    def canvas(self) -> tuple[int, int]:
        return self.data.canvas

    @property
    def images(self) -> list[ManifestImage]:
        return self.data.images

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Sample | None:
        if not 0 <= index < len(self.data):
            raise IndexError(index)
        return self.data.read(index)


def stack_images(samples: Sequence[Sample], canvas: tuple[int, int] | None = None) -> torch.Tensor:
    """The images of ``samples`` as uint8 ``[B, 3, H, W]``; ``[0, 3, H, W]`` of ``canvas``
    ``(W, H)`` when there are none (every image of a batch was unreadable)."""
    if not samples:
        w, h = canvas or (0, 0)
        return torch.zeros((0, 3, h, w), dtype=torch.uint8)
    # default_collate stacks straight into shared memory inside a loader worker,
    # saving the copy that sending a plain tensor to the main process costs.
    return default_collate([image for image, _ in samples])


def collate_batch(
    samples: Sequence[Sample | None], canvas: tuple[int, int] | None = None
) -> tuple[torch.Tensor, dict]:
    """Stack samples into ``(images uint8[B, 3, H, W], targets)`` (docs/architecture.md).

    The primary plate of an image is its largest-area box; a negative gets zeros
    and ``has_plate = 0``. ``boxes_norm_xyxy`` is ``boxes_xyxy / (W, H, W, H)``.
    None samples (unreadable images) are left out; ``canvas`` ``(W, H)`` shapes the
    images tensor when nothing is left.
    """
    samples = [s for s in samples if s is not None]
    images = stack_images(samples, canvas)
    h, w = images.shape[-2:]
    primary = torch.zeros((len(samples), 4), dtype=torch.float32)
    has_plate = torch.zeros(len(samples), dtype=torch.float32)
    for k, (_, target) in enumerate(samples):
        boxes = target["boxes_xyxy"]
        if len(boxes):
            primary[k] = boxes[int(box_area(boxes).argmax())]
            has_plate[k] = 1.0
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    targets = {
        "boxes_xyxy": primary,
        "boxes_norm_xyxy": primary / scale,
        "has_plate": has_plate,
        "all_boxes_xyxy": [t["boxes_xyxy"] for _, t in samples],
        "index": torch.tensor([t["index"] for _, t in samples], dtype=torch.int64),
    }
    return images, targets


def _worker_init(_: int) -> None:
    # One thread per worker: the workers are the parallelism; more threads only contend.
    # (OpenCV is already single-threaded: see data/imageio.py. Calling cv2.setNumThreads
    # here, after fork, can deadlock on a thread pool the parent left behind.)
    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group: only the main process handles it (it saves,
    # says how to resume and shuts the workers down), so no worker prints a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.excepthook = _quiet_lost_main


def _quiet_lost_main(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
    # The main process stopped (Ctrl-C) while taking a batch's shared memory from this
    # worker: multiprocessing's fd-sharing thread (resource_sharer, which reports through
    # sys.excepthook) loses its peer. The main process reports the interrupt, not us.
    if issubclass(exc_type, ConnectionError | EOFError):
        return
    sys.__excepthook__(exc_type, exc, tb)


class StreamLoader(DataLoader):
    """A ``DataLoader`` whose ``len()`` is the exact batch count of its :class:`PlateStream`.

    Each worker batches its own share, so a plain ``DataLoader`` can report up to
    ``num_workers - 1`` batches too few (and a OneCycle schedule would overrun).
    """

    def __len__(self) -> int:
        return self.dataset.num_batches(self.batch_size, self.num_workers, self.drop_last)


def _loader(dataset: Dataset, batch_size: int, workers: int, **kw) -> DataLoader:
    cls = StreamLoader if isinstance(dataset, PlateStream) else DataLoader
    return cls(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_worker_init if workers > 0 else None,
        **kw,
    )


def build_loader(
    dataset: Path,
    split: str | Sequence[str],
    batch_size: int,
    *,
    workers: int = 0,
    augment: AugmentConfig | None = None,
    shuffle: bool = True,
    seed: int = 0,
    even: bool = False,
    drop_last: bool = False,
    collate_fn: Callable[..., tuple[torch.Tensor, dict]] = collate_batch,
) -> DataLoader:
    """A ``DataLoader`` over a :class:`PlateStream` (training, or sharded evaluation).

    Args:
        even: pad shards so every rank yields as many batches (set it under DDP).
        drop_last: drop each worker's last incomplete batch (BatchNorm dislikes a
            batch of one).
        collate_fn: samples -> ``(images, targets)``; the task's (the localiser's
            :func:`collate_batch` by default).

    Returns:
        A :class:`StreamLoader` (``len()`` is exact); call ``loader.dataset.set_epoch(e)``
        before each epoch.
    """
    stream = PlateStream(dataset, split, augment, shuffle=shuffle, seed=seed, even=even)
    return _loader(stream, batch_size, workers, collate_fn=collate_fn, drop_last=drop_last)


def build_eval_loader(
    dataset: Path,
    split: str | Sequence[str],
    batch_size: int,
    *,
    workers: int = 0,
    collate_fn: Callable[..., tuple[torch.Tensor, dict]] = collate_batch,
) -> DataLoader:
    """A ``DataLoader`` over a :class:`PlateDataset`: every image once, in manifest order."""
    ds = PlateDataset(dataset, split)
    collate = partial(collate_fn, canvas=ds.canvas)
    return _loader(ds, batch_size, workers, collate_fn=collate, shuffle=False)
