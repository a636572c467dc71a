"""``platelab data prepare``: any mix of sources -> a letterboxed, split, manifested dataset.

    DATASET/images/<source>-<subset>-<stem>-<hash>.jpg   letterboxed to the canvas
    DATASET/{train,val,test}.csv                         one row per plate (data/manifest.py)
    DATASET/prepare_report.json                          canvas, counts, skipped inputs and why

Safe to re-run: an output image whose source file is unchanged (same size and
mtime, same canvas) is not decoded again. Splits are deterministic for a seed and
grouped by content hash, so identical photos never straddle train and test; a
source's own split (CCPD ``splits/*.txt``, YOLO split folders) is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from platelab.atomic import atomic_write_bytes
from platelab.data.imageio import decode_image, encode_jpeg, image_size
from platelab.data.manifest import REPORT_NAME, SPLITS, ManifestImage, write_manifest
from platelab.data.records import ImageRecord, Skip
from platelab.errors import PlatelabError
from platelab.geometry import Letterbox, box_area, clip_boxes, resized_size

logger = logging.getLogger(__name__)

CACHE_NAME = ".prepare_cache.json"


@dataclass
class PrepareConfig:
    """What ``prepare`` reads and how it writes.

    Attributes:
        ccpd, yolo, voc: source folders (any number of each).
        out: the dataset folder to write.
        size: canvas ``(width, height)``.
        split: train/val/test fractions for images without a split of their own.
        seed: seeds the split.
        workers: decode/letterbox processes.
        quality: JPEG quality of the letterboxed images.
    """

    out: Path
    ccpd: Sequence[Path] = ()
    yolo: Sequence[Path] = ()
    voc: Sequence[Path] = ()
    size: tuple[int, int] = (640, 480)
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    workers: int = 1
    quality: int = 95
    progress: bool = True
    yolo_classes: set[int] | None = None
    voc_classes: set[str] | None = None


@dataclass
class _Done:
    """What processing one record produced (picklable, returned from workers)."""

    record: ImageRecord
    out_name: str
    sha1: str
    letterbox: Letterbox
    key: list  # the source's size, mtime and settings when it was read: the cache key
    dropped: list[str] = field(default_factory=list)


def read_sources(cfg: PrepareConfig) -> tuple[list[ImageRecord], list[Skip]]:
    """Run every requested reader; a missing folder raises :class:`PlatelabError`."""
    from platelab.data.sources import ccpd, voc, yolo

    records: list[ImageRecord] = []
    skips: list[Skip] = []
    jobs = [(ccpd.read_ccpd, d, {}) for d in cfg.ccpd]
    jobs += [(yolo.read_yolo, d, {"classes": cfg.yolo_classes}) for d in cfg.yolo]
    voc_kw = {} if cfg.voc_classes is None else {"class_names": cfg.voc_classes}
    jobs += [(voc.read_voc, d, voc_kw) for d in cfg.voc]
    if not jobs:
        raise PlatelabError("no sources given: pass at least one of --ccpd, --yolo, --voc")
    for reader, root, kw in jobs:
        recs, sk = reader(Path(root), **kw)
        records += recs
        skips += sk
    return records, skips


def output_name(record: ImageRecord) -> str:
    """A readable, collision-free file name for a record's letterboxed image."""
    digest = hashlib.sha1(str(Path(record.path).resolve()).encode()).hexdigest()[:10]
    stem = re.sub(r"[^\w.&-]+", "_", Path(record.path).stem)[:60]
    return f"{record.source}-{record.subset}-{stem}-{digest}.jpg"


def _source_key(path: Path, canvas: tuple[int, int], quality: int) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, list(canvas), quality]


def _process(
    record: ImageRecord, out_dir: Path, canvas: tuple[int, int], quality: int, cached: dict | None
) -> _Done | Skip:
    """Letterbox one photo and map its plates to the canvas (runs in a worker)."""
    path = Path(record.path)
    name = output_name(record)
    try:
        key = _source_key(path, canvas, quality)
        if cached and cached.get("key") == key and (out_dir / name).is_file():
            sha1, (w, h) = cached["sha1"], cached["orig_size"]
            lb = Letterbox.fit(w, h, *canvas)
        else:
            data = path.read_bytes()
            sha1 = hashlib.sha1(data).hexdigest()
            w, h = image_size(data)
            lb = Letterbox.fit(w, h, *canvas)
            image = decode_image(data, min_size=resized_size(w, h, lb.scale))
            atomic_write_bytes(out_dir / name, encode_jpeg(lb.apply(image), quality))
    except (OSError, ValueError) as e:
        return Skip(str(path), f"unreadable image: {e}")
    if record.size is not None and tuple(record.size) != (w, h):  # e.g. a header PIL and
        logger.warning(  # the decoder read differently: the decoded pixels are what is used
            "%s: annotation says %sx%s, image is %sx%s; trusting the image",
            path,
            *record.size,
            w,
            h,
        )
    dropped = []
    plates = []
    for plate in record.plates:
        box = clip_boxes(np.asarray(plate.box_xyxy, dtype=np.float64), w, h)
        if box_area(box)[0] <= 0:
            dropped.append(f"{path}: degenerate box {list(plate.box_xyxy)} in a {w}x{h} image")
            continue
        plates.append(replace(plate, box_xyxy=tuple(float(v) for v in box[0])))
    record.plates = plates
    return _Done(record, name, sha1, lb, key, dropped)


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
        orig_image=str(rec.path),
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
    total = sum(fractions)
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
    """Read, letterbox, split and write a dataset; returns the report that is also saved."""
    if any(f < 0 for f in cfg.split) or sum(cfg.split) <= 0:
        raise PlatelabError(f"split fractions must be non-negative and sum above 0: {cfg.split}")
    records, skips = read_sources(cfg)
    out = Path(cfg.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cache_path = out / CACHE_NAME
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}

    done: list[_Done] = []
    dropped: list[str] = []
    args = [(r, out / "images", cfg.size, cfg.quality, cache.get(output_name(r))) for r in records]
    bar = tqdm(total=len(args), desc="prepare", unit="img", disable=not cfg.progress)
    try:
        if cfg.workers > 1:
            with ProcessPoolExecutor(cfg.workers) as pool:
                results = pool.map(_process, *zip(*args, strict=True), chunksize=8) if args else []
                for res in results:
                    _collect(res, done, skips, dropped)
                    bar.update()
        else:
            for a in args:
                _collect(_process(*a), done, skips, dropped)
                bar.update()
    finally:
        bar.close()
        # Keep what was finished even if the run is interrupted: a re-run skips it.
        for d in done:
            cache[d.out_name] = {
                "key": d.key,  # as read, not re-stat'ed: a file changed since is redone
                "sha1": d.sha1,
                "orig_size": [d.letterbox.orig_w, d.letterbox.orig_h],
            }
        atomic_write_bytes(cache_path, json.dumps(cache).encode())

    splits = assign_splits(done, cfg.split, cfg.seed)
    by_split: dict[str, list[ManifestImage]] = {s: [] for s in SPLITS}
    for d, s in zip(done, splits, strict=True):
        by_split[s].append(to_manifest_image(d))
    for s, images in by_split.items():
        images.sort(key=lambda m: m.image)
        write_manifest(out / f"{s}.csv", images)
    report = _report(cfg, by_split, done, skips, dropped)
    atomic_write_bytes(out / REPORT_NAME, json.dumps(report, indent=2, ensure_ascii=False).encode())
    return report


def _collect(res: _Done | Skip, done: list[_Done], skips: list[Skip], dropped: list[str]) -> None:
    if isinstance(res, Skip):
        logger.warning("skipped %s: %s", res.path, res.reason)
        skips.append(res)
    else:
        done.append(res)
        dropped += res.dropped


def _report(
    cfg: PrepareConfig,
    by_split: dict[str, list[ManifestImage]],
    done: list[_Done],
    skips: list[Skip],
    dropped: list[str],
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
    return {
        "canvas": list(cfg.size),
        "seed": cfg.seed,
        "split_fractions": list(cfg.split),
        "sources": {k: [str(p) for p in getattr(cfg, k)] for k in ("ccpd", "yolo", "voc")},
        "counts": counts,
        "by_source": dict(Counter(f"{d.record.source}/{d.record.subset}" for d in done)),
        "duplicate_images": sum(n - 1 for n in hashes.values() if n > 1),
        "skipped": [{"path": s.path, "reason": s.reason} for s in skips],
        "dropped_boxes": dropped,
    }
