"""``platelab data prepare``: any mix of sources -> a letterboxed, split, manifested dataset.

    DATASET/images/<source>-<subset>-<stem>-<hash>.jpg   letterboxed to the canvas
    DATASET/{train,val,test}.csv                         one row per plate (data/manifest.py)
    DATASET/prepare_report.json                          canvas, counts, skipped inputs and why

Safe to re-run: an output image whose source file is unchanged (same size and
mtime, same canvas) is not decoded again, and images no manifest lists any more
are removed. Splits are deterministic for a seed and grouped by content hash, so
identical photos never straddle train and test; a source's own split (CCPD
``splits/*.txt``, YOLO split folders) is kept.

Nothing lost, nothing silently wrong: every input that does not become a dataset
image is in ``prepare_report.json`` under ``skipped`` with its reason (an
unreadable image, a malformed label, a plate box that does not fit the photo, a
photo without a label file). A file name that is not UTF-8 is used, and shown
in the manifest and report with ``\\xNN`` escapes (:func:`.records.display_path`).
A disk that fills up stops the run with :class:`~platelab.errors.DiskFullError`;
the images written so far are kept for the next run, the manifests are not written. OUT is locked while it is written
(:func:`platelab.locking.folder_lock`) and checked first (:mod:`.outdir`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from platelab.atomic import atomic_write_bytes
from platelab.data import outdir
from platelab.data.imageio import decode_image, encode_jpeg, image_size
from platelab.data.manifest import REPORT_NAME, SPLITS, ManifestImage, write_manifest
from platelab.data.outdir import CACHE_NAME
from platelab.data.records import (
    MISSING_LABEL,
    MISSING_LABEL_POLICIES,
    ImageRecord,
    Skip,
    display_path,
    fit_plates,
)
from platelab.errors import DiskFullError, PlatelabError, is_disk_full
from platelab.geometry import CROP_SIZE, Letterbox, resized_size
from platelab.locking import folder_lock

logger = logging.getLogger(__name__)

NO_SOURCES = "no sources given: pass at least one of --ccpd, --yolo, --voc, --crops"
MAX_CANVAS_SIDE = 8192  # a 8192x8192 canvas is 200 MB per decoded image: beyond is a typo
SPLIT_TOLERANCE = 1e-6


@dataclass
class PrepareConfig:
    """What ``prepare`` reads and how it writes.

    Attributes:
        ccpd, yolo, voc: source folders (any number of each).
        crops: folders of plate crops (:mod:`.sources.crops`); any makes a crop dataset.
        kind: ``"scenes"`` (letterboxed photos), ``"crops"`` (plate crops for ``task=read``,
            :mod:`.crop_prepare`: scene sources are cut into crops by their plates'
            corners or boxes) or ``"auto"`` (crops when ``crops`` is given).
        crop_size: the crops' ``(width, height)`` in a crop dataset.
        charset: the charset (name or file) a crop's text must be written in.
        out: the dataset folder to write.
        size: canvas ``(width, height)``.
        split: train/val/test fractions for images without a split of their own.
        seed: seeds the split.
        workers: decode/letterbox processes.
        quality: JPEG quality of the letterboxed images.
        yolo_classes: the plate classes of YOLO sources, ids or data.yaml names
            (None: by name, see :mod:`.sources.yolo`).
        voc_classes: the plate class names of VOC sources (None: the usual names).
        missing_labels: what a YOLO photo without a label file becomes: ``"skip"``
            (default: it may show an unlabelled plate) or ``"negative"``; counted either way.
    """

    out: Path
    ccpd: Sequence[Path] = ()
    yolo: Sequence[Path] = ()
    voc: Sequence[Path] = ()
    crops: Sequence[Path] = ()
    kind: str = "auto"
    crop_size: tuple[int, int] = CROP_SIZE
    charset: str = "plates"
    size: tuple[int, int] = (640, 480)
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    workers: int = 1
    quality: int = 95
    progress: bool = True
    yolo_classes: Sequence[int | str] | None = None
    voc_classes: Sequence[str] | None = None
    missing_labels: str = "skip"

    def sources(self) -> list[tuple[str, Path]]:
        """``[(kind, folder)]`` of every source, in the order they are read."""
        return [(k, Path(p)) for k in ("ccpd", "yolo", "voc", "crops") for p in getattr(self, k)]

    def is_crops(self) -> bool:
        """Whether this writes a crop dataset (``kind``, or ``auto`` with crop folders)."""
        return self.kind == "crops" or (self.kind == "auto" and bool(self.crops))

    def validate(self) -> None:
        """Refuse settings that would fail late or silently mean something else.

        Raises:
            PlatelabError: no source; split fractions that are negative or do not sum
                to 1; a canvas side outside ``1..MAX_CANVAS_SIDE``; an unknown
                ``missing_labels``; an OUT that clashes with a source (see :mod:`.outdir`).
        """
        if not self.sources():
            raise PlatelabError(NO_SOURCES)
        if self.kind not in ("auto", "scenes", "crops") or (self.kind == "scenes" and self.crops):
            raise PlatelabError(f"--kind must be auto, scenes or crops (crops with --crops), "
                                f"got {self.kind!r}")  # fmt: skip
        split = tuple(self.split)
        if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1) > SPLIT_TOLERANCE:
            raise PlatelabError(
                f"--split needs three non-negative fractions that sum to 1, got "
                f"{','.join(f'{v:g}' for v in split)} (sum {sum(split):g})"
            )
        if not all(1 <= int(v) <= MAX_CANVAS_SIDE for v in (*self.size, *self.crop_size)):
            raise PlatelabError(
                f"--size {self.size[0]}x{self.size[1]}: each side must be 1..{MAX_CANVAS_SIDE}"
            )
        if self.missing_labels not in MISSING_LABEL_POLICIES:
            raise PlatelabError(
                f"--missing-labels must be one of {', '.join(MISSING_LABEL_POLICIES)}, "
                f"got {self.missing_labels!r}"
            )
        outdir.check_out(Path(self.out), [p for _, p in self.sources()])


@dataclass
class _Done:
    """What processing one record produced (picklable, returned from workers)."""

    record: ImageRecord
    out_name: str
    sha1: str
    letterbox: Letterbox
    key: list  # the source's size, mtime and settings when it was read: the cache key


def read_sources(cfg: PrepareConfig) -> tuple[list[ImageRecord], list[Skip]]:
    """Run every requested reader.

    Raises:
        PlatelabError: a missing folder, a source without a plate class, or a source
            that yields no usable image (the message says what it found instead).
    """
    from platelab.data.sources import ccpd, crops, voc, yolo
    from platelab.text import get_charset

    readers = {
        "crops": (crops.read_crop_folder, {"charset": get_charset(cfg.charset)}),
        "ccpd": (ccpd.read_ccpd, {}),
        "yolo": (yolo.read_yolo, {"classes": cfg.yolo_classes,
                                  "missing_labels": cfg.missing_labels}),
        "voc": (voc.read_voc, {} if cfg.voc_classes is None else {"class_names": cfg.voc_classes}),
    }  # fmt: skip
    records: list[ImageRecord] = []
    skips: list[Skip] = []
    if not cfg.sources():
        raise PlatelabError(NO_SOURCES)
    for kind, root in cfg.sources():
        reader, kw = readers[kind]
        recs, sk = reader(root, **kw)
        if not recs:
            why = f"{len(sk)} files skipped, e.g. {sk[0].reason}" if sk else "no image files"
            raise PlatelabError(f"{kind} source {root}: no usable images ({why})")
        records += recs
        skips += sk
    return records, skips


def output_name(record: ImageRecord) -> str:
    """A readable, collision-free, UTF-8-safe file name for a record's letterboxed image.

    The hash is of the path's bytes (a name that is not UTF-8 hashes like any other);
    characters that are not word characters, including undecodable bytes, become ``_``.
    """
    digest = hashlib.sha1(os.fsencode(Path(record.path).resolve())).hexdigest()[:10]
    stem = re.sub(r"[^\w.&-]+", "_", display_path(Path(record.path).stem))[:60]
    return f"{record.source}-{record.subset}-{stem}-{digest}.jpg"


def write_image(path: Path, data: bytes) -> None:
    """Write one letterboxed image atomically (a seam for tests of a full disk)."""
    atomic_write_bytes(path, data)


def _source_key(path: Path, canvas: tuple[int, int], quality: int) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, list(canvas), quality]


def _process(
    record: ImageRecord, out_dir: Path, canvas: tuple[int, int], quality: int, cached: dict | None
) -> _Done | Skip:
    """Letterbox one photo and map its plates to the canvas (runs in a worker).

    A photo that cannot be read, or whose plates do not fit it, is a :class:`Skip`.
    A failed *write* is not the photo's fault and raises (a full disk stops the run).
    """
    path = Path(record.path)
    name = output_name(record)
    try:
        key = _source_key(path, canvas, quality)
        hit = bool(cached) and cached.get("key") == key and (out_dir / name).is_file()
        if hit:
            sha1, (w, h) = cached["sha1"], cached["orig_size"]
        else:
            data = path.read_bytes()
            sha1 = hashlib.sha1(data).hexdigest()
            w, h = image_size(data)
    except (OSError, ValueError) as e:
        return Skip(display_path(path), f"unreadable image: {e}")
    if record.size is not None and tuple(record.size) != (w, h):  # e.g. a header PIL and
        logger.warning(  # the decoder read differently: the decoded pixels are what is used
            "%s: annotation says %sx%s, image is %sx%s; trusting the image",
            display_path(path),
            *record.size,
            w,
            h,
        )
    plates, why = fit_plates(record.plates, w, h)
    if why is not None:  # never train on the photo as a negative: its plate is there
        return Skip(display_path(path), why)
    lb = Letterbox.fit(w, h, *canvas)
    if not hit:
        try:
            image = lb.apply(decode_image(data, min_size=resized_size(w, h, lb.scale)))
        except (MemoryError, ValueError) as e:
            return Skip(display_path(path), f"unreadable image: {e}")
        write_image(out_dir / name, encode_jpeg(image, quality))
    record.plates = plates
    return _Done(record, name, sha1, lb, key)


def to_manifest_image(done: _Done) -> ManifestImage:
    """Canvas-space rows of one processed record."""
    lb, rec = done.letterbox, done.record
    boxes_xyxy = lb.boxes_to_canvas(np.array([p.box_xyxy for p in rec.plates]).reshape(-1, 4))
    corners = np.array([p.corners_array() for p in rec.plates]).reshape(-1, 4, 2)
    corners = lb.points_to_canvas(corners)
    return ManifestImage(
        image=f"images/{done.out_name}",
        boxes_xyxy=boxes_xyxy,
        corners=corners,
        texts=[p.text or "" for p in rec.plates],
        source=rec.source,
        subset=rec.subset,
        letterbox=lb,
        orig_image=display_path(rec.path),
    )


def assign_splits(done: list[_Done], fractions: Sequence[float], seed: int) -> list[str]:
    """A split per processed record: the source's own when present, else seeded by content hash.

    Records with the same content hash form one group and always share a split.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(done):
        groups[d.sha1].append(i)
    own = {
        h: next((done[i].record.split for i in idx if done[i].record.split), None)
        for h, idx in groups.items()
    }
    free = sorted(h for h, s in own.items() if s is None)
    order = np.random.default_rng(seed).permutation(len(free))
    total = sum(fractions)  # 1 for a validated config; other callers may pass weights
    n_train = round(len(free) * fractions[0] / total)
    n_val = round(len(free) * fractions[1] / total)
    assigned = {}
    for rank, j in enumerate(order):
        assigned[free[j]] = (
            "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        )
    splits = [""] * len(done)
    for h, idx in groups.items():
        split = own[h] or assigned[h]
        for i in idx:
            splits[i] = split
    return splits


def prepare(cfg: PrepareConfig) -> dict:
    """Read, letterbox, split and write a dataset; returns the report that is also saved.

    Raises:
        PlatelabError: a setting or source the user must fix (see
            :meth:`PrepareConfig.validate`, :func:`read_sources`), or OUT is being
            written by another process.
        DiskFullError: the disk filled up; the message says what was kept.
    """
    cfg.validate()
    out = Path(cfg.out)
    with folder_lock(out, "dataset"):
        if cfg.is_crops():
            from platelab.data.crop_prepare import prepare_crops

            return prepare_crops(cfg, out)
        return _prepare(cfg, out)


def _prepare(cfg: PrepareConfig, out: Path) -> dict:
    records, skips = read_sources(cfg)
    (out / "images").mkdir(parents=True, exist_ok=True)
    outdir.remove_stray_temp(out)  # left by a run that was killed mid-write
    cache_path = out / CACHE_NAME
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}

    done: list[_Done] = []
    args = [(r, out / "images", cfg.size, cfg.quality, cache.get(output_name(r))) for r in records]
    try:
        _run(args, cfg, done, skips)
    except OSError as e:
        if not is_disk_full(e):
            raise PlatelabError(f"cannot write to {out / 'images'}: {e}") from None
        raise DiskFullError(
            f"the disk is full: stopped after letterboxing {len(done)} of {len(args)} images "
            f"into {out / 'images'} (kept; a re-run continues from them); no manifests written"
        ) from None
    finally:
        _save_cache(cache_path, cache, done)  # a re-run skips what was finished
        outdir.remove_stray_temp(out)  # workers killed by Ctrl-C cannot clean up after themselves

    splits = assign_splits(done, cfg.split, cfg.seed)
    by_split: dict[str, list[ManifestImage]] = {s: [] for s in SPLITS}
    for d, s in zip(done, splits, strict=True):
        by_split[s].append(to_manifest_image(d))
    report = _report(cfg, by_split, records, done, skips)
    try:
        for s, images in by_split.items():
            images.sort(key=lambda m: m.image)
            write_manifest(out / f"{s}.csv", images)
        text = json.dumps(report, indent=2, ensure_ascii=False)
        atomic_write_bytes(out / REPORT_NAME, text.encode())
    except OSError as e:
        if not is_disk_full(e):
            raise
        (out / REPORT_NAME).unlink(missing_ok=True)  # no one trains on a mix of old and new
        raise DiskFullError(
            f"the disk is full: all {len(done)} images are in {out / 'images'}, but the manifests "
            "could not be written; free space and re-run (nothing is decoded again)"
        ) from None
    listed = {Path(m.image).name for images in by_split.values() for m in images}
    removed = outdir.remove_unlisted_images(out / "images", listed)
    if removed:
        logger.info("removed %d images no manifest lists any more", len(removed))
    return report


def _run(args: list[tuple], cfg: PrepareConfig, done: list[_Done], skips: list[Skip]) -> None:
    """Process every record, in ``cfg.workers`` processes, appending to ``done``/``skips``."""
    bar = tqdm(total=len(args), desc="prepare", unit="img", disable=not cfg.progress)
    pool = ProcessPoolExecutor(cfg.workers) if cfg.workers > 1 and args else None
    try:
        if pool is not None:
            results = pool.map(_process, *zip(*args, strict=True), chunksize=8)
        else:
            results = (_process(*a) for a in args)
        for res in results:
            if isinstance(res, Skip):
                logger.warning("skipped %s: %s", res.path, res.reason)
                skips.append(res)
            else:
                done.append(res)
            bar.update()
    finally:
        bar.close()
        if pool is not None:  # on an error or Ctrl-C, photos not yet started are dropped
            pool.shutdown(wait=True, cancel_futures=True)


def _save_cache(path: Path, cache: dict, done: list[_Done]) -> None:
    for d in done:
        cache[d.out_name] = {
            "key": d.key,  # as read, not re-stat'ed: a file changed since is redone
            "sha1": d.sha1,
            "orig_size": [d.letterbox.orig_w, d.letterbox.orig_h],
        }
    try:
        atomic_write_bytes(path, json.dumps(cache).encode())
    except OSError as e:  # e.g. the disk is full: the run's own error says so
        logger.warning("could not save %s: %s", path, e)


def _report(
    cfg: PrepareConfig,
    by_split: dict[str, list[ManifestImage]],
    records: list[ImageRecord],
    done: list[_Done],
    skips: list[Skip],
) -> dict:
    counts = {
        s: {
            "images": len(imgs),
            "plates": sum(len(m.boxes_xyxy) for m in imgs),
            "negatives": sum(len(m.boxes_xyxy) == 0 for m in imgs),
        }
        for s, imgs in by_split.items()
    }
    hashes = Counter(d.sha1 for d in done)
    as_negatives = sum(bool(d.record.meta.get("missing_label")) for d in done)
    skipped_unlabelled = sum(s.reason.startswith(MISSING_LABEL) for s in skips)
    return {
        "canvas": list(cfg.size),
        "seed": cfg.seed,
        "split_fractions": list(cfg.split),
        "sources": {k: [display_path(p) for p in getattr(cfg, k)] for k in ("ccpd", "yolo", "voc")},
        "counts": counts,
        "by_source": dict(Counter(f"{d.record.source}/{d.record.subset}" for d in done)),
        "duplicate_images": sum(n - 1 for n in hashes.values() if n > 1),
        "missing_labels": {
            "policy": cfg.missing_labels,
            "photos": as_negatives + skipped_unlabelled,
            "negatives": as_negatives,
            "skipped": skipped_unlabelled,
        },
        "skipped": [{"path": s.path, "reason": s.reason} for s in skips],
    }
