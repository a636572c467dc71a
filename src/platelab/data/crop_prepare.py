"""``platelab data prepare --crops DIR`` / ``--kind crops``: sources -> a prepared crop dataset.

Every input becomes plate crops at the dataset's crop size (layout and columns:
:mod:`.crop_manifest`), each through :func:`platelab.geometry.warp_quad`, the
perspective crop that training, evaluation and the reader share:

* a crop file (:mod:`.sources.crops`) is warped from its own four corners (a resize
  to the crop size);
* a photo of a scene source (``--ccpd``, ``--yolo``, ``--voc``, synthetic scenes
  included) gives one crop per plate with a text: from its 4 corners when known
  (CCPD, synthetic, YOLO-pose), else from its box. A plate without a text is skipped.

Bad inputs are one reported skip each (``prepare_report.json`` ``skipped``, and a
line on stderr) and the rest is read: an unreadable, corrupt or empty image, an
image smaller than :data:`MIN_SIDE` pixels, a text with a character outside the
charset. OUT is checked and locked as for scene datasets (:mod:`.outdir`); splits
are seeded and grouped by content hash (a source's own split is kept).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from platelab.atomic import atomic_write_bytes
from platelab.data import outdir
from platelab.data.crop_manifest import CROPS_DIR, KIND, CropItem, write_crop_manifest
from platelab.data.imageio import decode_image, encode_jpeg
from platelab.data.manifest import REPORT_NAME, SPLITS
from platelab.data.prepare import PrepareConfig, assign_splits, output_name, read_sources
from platelab.data.records import ImageRecord, Skip, display_path
from platelab.errors import DiskFullError, PlatelabError, is_disk_full
from platelab.geometry import warp_quad
from platelab.text import get_charset

logger = logging.getLogger(__name__)

MIN_SIDE = 4  # a crop file or plate narrower or lower than this holds no readable text


@dataclass
class _Done:
    """One input's crops (returned from a worker); ``record``/``sha1`` as ``assign_splits`` wants."""

    record: ImageRecord
    sha1: str
    items: list[CropItem] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)


def _quads(record: ImageRecord, w: int, h: int, charset) -> tuple[list, list[Skip]]:
    """``[(quad (4, 2), text, crop meta)]`` of a record's plates, and its skipped plates."""
    where = display_path(record.path)
    crop = record.meta.get("crop")
    if crop is not None:  # a crop file: the whole image is the plate
        quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
        return [(quad, crop["text"], crop)], []
    out, skips = [], []
    for k, plate in enumerate(record.plates):
        if not plate.text:
            skips.append(Skip(f"{where}#{k}", "plate without a text"))
            continue
        text = charset.normalize(plate.text)
        missing = charset.missing(text)
        if missing or not text:
            why = f"has {missing[0]!r} outside the {charset.name!r} charset" if missing else "empty"
            skips.append(Skip(f"{where}#{k}", f"plate text {plate.text!r} {why}"))
            continue
        c = plate.corners_array()
        if np.isnan(c).any():
            x0, y0, x1, y1 = plate.box_xyxy
            c = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        out.append((c, text, {"rows": 1, "row_split": None, "style": ""}))
    return out, skips


def _process(record: ImageRecord, out_dir: Path, size, quality: int, charset_name: str):
    """Decode one input and write its crops (runs in a worker). Bad input is a Skip."""
    path = Path(record.path)
    where = display_path(path)
    try:
        data = path.read_bytes()
        if not data:
            return Skip(where, "unreadable image: empty file (0 bytes)")
        image = decode_image(data)
    except (OSError, ValueError, MemoryError) as e:
        return Skip(where, f"unreadable image: {e}")
    h, w = image.shape[:2]
    if min(w, h) < MIN_SIDE:
        return Skip(where, f"image is {w}x{h}: too small for a plate (sides >= {MIN_SIDE} px)")
    quads, skips = _quads(record, w, h, get_charset(charset_name))
    done = _Done(record, hashlib.sha1(data).hexdigest(), skips=skips)
    stem = output_name(record)[: -len(".jpg")]
    for k, (quad, text, meta) in enumerate(quads):
        side = min(np.ptp(quad[:, 0]), np.ptp(quad[:, 1]))
        if side < MIN_SIDE:
            done.skips.append(Skip(f"{where}#{k}", f"plate is {side:.1f} px across: too small"))
            continue
        name = f"{stem}.jpg" if record.meta.get("crop") else f"{stem}-{k}.jpg"
        atomic_write_bytes(out_dir / name, encode_jpeg(warp_quad(image, quad, size), quality))
        done.items.append(
            CropItem(
                image=f"{CROPS_DIR}/{name}",
                text=text,
                rows=int(meta["rows"]),
                row_split=meta["row_split"],
                style=meta["style"],
                source=record.source,
                subset=record.subset,
                orig_image=where,
                corners=None if record.meta.get("crop") else tuple(map(tuple, quad.tolist())),
            )
        )
    return done


def prepare_crops(cfg: PrepareConfig, out: Path) -> dict:
    """Write a crop dataset into ``out`` (the caller validated ``cfg`` and holds OUT's lock).

    Raises:
        PlatelabError: a source the user must fix, or a write that failed.
        DiskFullError: the disk filled up.
    """
    charset = get_charset(cfg.charset)  # an unknown charset fails before any reading
    records, skips = read_sources(cfg)
    for s in skips:  # the readers' skips (a text outside the charset, a missing file)
        logger.warning("skipped %s: %s", s.path, s.reason)
    crop_dir = out / CROPS_DIR
    crop_dir.mkdir(parents=True, exist_ok=True)
    outdir.remove_stray_temp(out, CROPS_DIR)
    done: list[_Done] = []
    try:
        _run(records, cfg, crop_dir, done, skips)
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(f"the disk is full: stopped after {len(done)} inputs; "
                                "no manifests written") from None  # fmt: skip
        raise PlatelabError(f"cannot write to {crop_dir}: {e}") from None
    finally:
        outdir.remove_stray_temp(out, CROPS_DIR)
    kept = [d for d in done if d.items]
    splits = assign_splits(kept, cfg.split, cfg.seed)
    by_split: dict[str, list[CropItem]] = {s: [] for s in SPLITS}
    for d, s in zip(kept, splits, strict=True):
        by_split[s].extend(d.items)
    for s, items in by_split.items():
        items.sort(key=lambda it: it.image)
        write_crop_manifest(out / f"{s}.csv", items)
    report = _report(cfg, charset.name, by_split, skips)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    atomic_write_bytes(out / REPORT_NAME, text.encode())
    listed = {Path(it.image).name for items in by_split.values() for it in items}
    outdir.remove_unlisted_images(crop_dir, listed)
    return report


def _run(records, cfg: PrepareConfig, crop_dir: Path, done: list, skips: list) -> None:
    args = [(r, crop_dir, tuple(cfg.crop_size), cfg.quality, cfg.charset) for r in records]
    bar = tqdm(total=len(args), desc="prepare crops", unit="img", disable=not cfg.progress)
    pool = ProcessPoolExecutor(cfg.workers) if cfg.workers > 1 and args else None
    try:
        if pool is not None:
            results = pool.map(_process, *zip(*args, strict=True), chunksize=16)
        else:
            results = (_process(*a) for a in args)
        for res in results:
            new = [res] if isinstance(res, Skip) else res.skips
            for s in new:
                logger.warning("skipped %s: %s", s.path, s.reason)
            skips.extend(new)
            if not isinstance(res, Skip):
                done.append(res)
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _report(cfg: PrepareConfig, charset: str, by_split: dict, skips: list[Skip]) -> dict:
    items = [it for its in by_split.values() for it in its]
    return {
        "kind": KIND,
        "task": "read",
        "crop_size": list(cfg.crop_size),
        "canvas": list(cfg.crop_size),  # tools that read any dataset's canvas get the crop size
        "charset": charset,
        "seed": cfg.seed,
        "split_fractions": list(cfg.split),
        "sources": {
            k: [display_path(p) for p in getattr(cfg, k)] for k in ("crops", "ccpd", "yolo", "voc")
        },  # fmt: skip
        "counts": {
            s: {"crops": len(its), "two_line": sum(it.rows == 2 for it in its)}
            for s, its in by_split.items()
        },
        "by_source": dict(Counter(f"{it.source}/{it.subset}" for it in items)),
        "by_style": dict(Counter(it.style or "unknown" for it in items)),
        "skipped": [{"path": s.path, "reason": s.reason} for s in skips],
    }
