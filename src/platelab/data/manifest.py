"""Prepared-dataset manifests: ``DATASET/{train,val,test}.csv``, one row per plate.

An image without any plate has one row with empty box fields. Boxes and corners
are canvas pixels; ``orig_*``, ``scale`` and ``pad_*`` map them back to the
original photo through :class:`platelab.geometry.Letterbox`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from platelab.atomic import atomic_open
from platelab.errors import PlatelabError
from platelab.geometry import Letterbox

SPLITS = ("train", "val", "test")
REPORT_NAME = "prepare_report.json"  # written by prepare; its "canvas" is the dataset's
BOX_COLUMNS = ["x_min", "y_min", "x_max", "y_max"]
CORNER_COLUMNS = [f"{axis}{i}" for i in range(1, 5) for axis in "xy"]
META_COLUMNS = ["orig_image", "orig_width", "orig_height", "scale", "pad_x", "pad_y"]
COLUMNS = ["image", *BOX_COLUMNS, *CORNER_COLUMNS, "text", "source", "subset", *META_COLUMNS]


@dataclass
class ManifestImage:
    """All rows of one image, grouped.

    Attributes:
        image: path relative to the dataset folder.
        boxes_xyxy: ``(N, 4)`` float32 canvas-pixel boxes; ``N == 0`` for a negative.
        corners: ``(N, 4, 2)`` float32 canvas-pixel corners, NaN where unknown.
        texts: N plate texts, ``""`` where unknown.
        source, subset: as in the manifest.
        letterbox: maps canvas coordinates back to ``orig_image``.
        orig_image: the original photo's path as given to ``prepare``.
    """

    image: str
    boxes_xyxy: np.ndarray
    corners: np.ndarray
    texts: list[str]
    source: str
    subset: str
    letterbox: Letterbox
    orig_image: str


def _fmt(v: float) -> str:
    # Enough digits that float64 -> text -> float64 is exact.
    return repr(float(v))


def image_rows(img: ManifestImage) -> list[dict[str, str]]:
    """The manifest rows of one image (one per plate; one empty-box row for a negative)."""
    lb = img.letterbox
    base = {
        "image": img.image,
        "source": img.source,
        "subset": img.subset,
        "orig_image": img.orig_image,
        "orig_width": str(lb.orig_w),
        "orig_height": str(lb.orig_h),
        "scale": _fmt(lb.scale),
        "pad_x": str(lb.pad_x),
        "pad_y": str(lb.pad_y),
    }
    if len(img.boxes_xyxy) == 0:
        return [{**base, **dict.fromkeys(BOX_COLUMNS + CORNER_COLUMNS + ["text"], "")}]
    rows = []
    for box, corners, text in zip(img.boxes_xyxy, img.corners, img.texts, strict=True):
        row = dict(base)
        row.update({k: _fmt(v) for k, v in zip(BOX_COLUMNS, box, strict=True)})
        known = not np.isnan(corners).any()
        flat = corners.reshape(-1)
        row.update(
            {k: (_fmt(v) if known else "") for k, v in zip(CORNER_COLUMNS, flat, strict=True)}
        )
        row["text"] = text or ""
        rows.append(row)
    return rows


def write_manifest(path: Path, images: Iterable[ManifestImage]) -> None:
    """Write a manifest atomically (temp file, then rename)."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for img in images:
            writer.writerows(image_rows(img))


def _float(row: dict[str, str], key: str, where: str) -> float:
    """A finite number: ``nan``/``inf`` parse as floats but place no box (unknown corners
    are written as empty fields, never as ``nan``)."""
    try:
        value = float(row[key])
    except (TypeError, ValueError):
        raise PlatelabError(f"{where}: column {key!r} is not a number: {row.get(key)!r}") from None
    if not math.isfinite(value):
        raise PlatelabError(f"{where}: column {key!r} is not a finite number: {row[key]!r}")
    return value


def read_manifest(path: Path) -> list[ManifestImage]:
    """Read a manifest, grouping rows by image in first-seen order.

    Raises:
        PlatelabError: the file is missing, lacks a required column, or has a
            malformed or non-finite value (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise PlatelabError(f"manifest not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PlatelabError(f"{path}: missing columns {', '.join(missing)}")
        grouped: dict[str, dict] = {}
        for line_no, row in enumerate(reader, start=2):
            where = f"{path}:{line_no}"
            g = grouped.get(row["image"])
            if g is None:
                lb = Letterbox(
                    scale=_float(row, "scale", where),
                    pad_x=int(_float(row, "pad_x", where)),
                    pad_y=int(_float(row, "pad_y", where)),
                    orig_w=int(_float(row, "orig_width", where)),
                    orig_h=int(_float(row, "orig_height", where)),
                    canvas_w=0,
                    canvas_h=0,
                )
                g = grouped[row["image"]] = dict(
                    row=row, letterbox=lb, boxes=[], corners=[], texts=[]
                )
            if row["x_min"] == "":
                continue  # a negative's row
            g["boxes"].append([_float(row, k, where) for k in BOX_COLUMNS])
            if row["x1"] == "":
                g["corners"].append([np.nan] * 8)
            else:
                g["corners"].append([_float(row, k, where) for k in CORNER_COLUMNS])
            g["texts"].append(row["text"])
    return [
        ManifestImage(
            image=name,
            boxes_xyxy=np.asarray(g["boxes"], dtype=np.float32).reshape(-1, 4),
            corners=np.asarray(g["corners"], dtype=np.float32).reshape(-1, 4, 2),
            texts=g["texts"],
            source=g["row"]["source"],
            subset=g["row"]["subset"],
            letterbox=g["letterbox"],
            orig_image=g["row"]["orig_image"],
        )
        for name, g in grouped.items()
    ]


def dataset_canvas(dataset: Path) -> tuple[int, int]:
    """The canvas ``(width, height)`` recorded in ``DATASET/prepare_report.json``."""
    report = Path(dataset) / REPORT_NAME
    if not report.is_file():
        raise PlatelabError(f"{dataset} is not a prepared dataset (no prepare_report.json)")
    w, h = json.loads(report.read_text())["canvas"]
    return int(w), int(h)


def load_split(dataset: Path, split: str) -> list[ManifestImage]:
    """The images of one split of a prepared dataset, with canvas-aware letterboxes."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise PlatelabError(f"dataset folder not found: {dataset}")
    if split not in SPLITS:
        raise PlatelabError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    w, h = dataset_canvas(dataset)
    images = read_manifest(dataset / f"{split}.csv")
    for img in images:
        lb = img.letterbox
        img.letterbox = Letterbox(lb.scale, lb.pad_x, lb.pad_y, lb.orig_w, lb.orig_h, w, h)
    return images
