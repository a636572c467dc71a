"""Prepared crop datasets (``task=read``): the layout and its manifests.

    DATASET/crops/<name>.jpg        plate crops, straightened, at the dataset's crop size
    DATASET/{train,val,test}.csv    one row per crop, columns :data:`CROP_COLUMNS`
    DATASET/prepare_report.json     "kind": "crops", "task": "read", "crop_size": [W, H],
                                    "charset", counts, skipped inputs and why

Columns:

| column | meaning |
|---|---|
| ``image`` | path relative to DATASET |
| ``text`` | the plate text, normalised (:meth:`platelab.text.Charset.normalize`); two-line plates top row first |
| ``rows`` | 1, or 2 for a two-line plate |
| ``row_split`` | for 2 rows, where the top row ends (share of the crop height), else empty |
| ``style`` | e.g. ``cn_blue`` for synthetic crops, empty when unknown |
| ``source``, ``subset`` | ``crops``/``ccpd``/``voc``/``yolo`` and the sub-dataset or folder |
| ``orig_image`` | the photo (or crop file) the crop was cut from |
| ``x1..y4`` | the plate quad TL, TR, BR, BL in ``orig_image`` pixels, empty for crop files |
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from platelab.atomic import atomic_open
from platelab.data.manifest import CORNER_COLUMNS, REPORT_NAME, SPLITS
from platelab.errors import PlatelabError

KIND = "crops"
CROPS_DIR = "crops"
CROP_COLUMNS = ["image", "text", "rows", "row_split", "style", "source", "subset", "orig_image",
                *CORNER_COLUMNS]  # fmt: skip


@dataclass
class CropItem:
    """One row of a crop manifest.

    Attributes:
        image: path relative to the dataset folder.
        text: normalised plate text.
        rows: 1 or 2.
        row_split: where the top row ends for 2 rows (share of the height), else None.
        style, source, subset, orig_image: as in the manifest.
        corners: the quad ``((x, y),) * 4`` in ``orig_image`` pixels, or None.
    """

    image: str
    text: str
    rows: int = 1
    row_split: float | None = None
    style: str = ""
    source: str = "crops"
    subset: str = ""
    orig_image: str = ""
    corners: tuple[tuple[float, float], ...] | None = None

    def row(self) -> dict[str, str]:
        out = {
            "image": self.image,
            "text": self.text,
            "rows": str(self.rows),
            "row_split": "" if self.row_split is None else repr(float(self.row_split)),
            "style": self.style,
            "source": self.source,
            "subset": self.subset,
            "orig_image": self.orig_image,
        }
        flat = [v for p in self.corners for v in p] if self.corners is not None else None
        for i, key in enumerate(CORNER_COLUMNS):
            out[key] = "" if flat is None else repr(float(flat[i]))
        return out


def write_crop_manifest(path: Path, items: Iterable[CropItem]) -> None:
    """Write a crop manifest atomically."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CROP_COLUMNS)
        writer.writeheader()
        writer.writerows(item.row() for item in items)


def _item(row: dict[str, str], where: str) -> CropItem:
    rows = (row.get("rows") or "1").strip()
    if rows not in ("1", "2"):
        raise PlatelabError(f"{where}: column 'rows' must be 1 or 2, got {rows!r}")
    split = (row.get("row_split") or "").strip()
    try:
        row_split = float(split) if split else None
        corners = None
        if all((row.get(k) or "").strip() for k in CORNER_COLUMNS):
            v = [float(row[k]) for k in CORNER_COLUMNS]
            if not all(math.isfinite(x) for x in v):
                raise ValueError("a corner is not finite")
            corners = tuple((v[i], v[i + 1]) for i in range(0, 8, 2))
    except ValueError as e:
        raise PlatelabError(f"{where}: {e}") from None
    return CropItem(
        image=row["image"],
        text=row["text"],
        rows=int(rows),
        row_split=row_split,
        style=row.get("style") or "",
        source=row.get("source") or "",
        subset=row.get("subset") or "",
        orig_image=row.get("orig_image") or "",
        corners=corners,
    )


def read_crop_manifest(path: Path) -> list[CropItem]:
    """Read a crop manifest.

    Raises:
        PlatelabError: the file is missing, lacks ``image``/``text``, or has a bad value.
    """
    path = Path(path)
    if not path.is_file():
        raise PlatelabError(f"manifest not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("image", "text") if c not in (reader.fieldnames or [])]
        if missing:
            raise PlatelabError(f"{path}: missing columns {', '.join(missing)}")
        return [_item(row, f"{path}:{n}") for n, row in enumerate(reader, start=2)]


def read_report(dataset: Path) -> dict:
    """``DATASET/prepare_report.json``.

    Raises:
        PlatelabError: it is missing or not JSON.
    """
    path = Path(dataset) / REPORT_NAME
    if not path.is_file():
        raise PlatelabError(f"{dataset} is not a prepared dataset (no {REPORT_NAME})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PlatelabError(f"{path}: unreadable ({e})") from None


def is_crop_dataset(dataset: Path) -> bool:
    """Whether ``dataset`` is a prepared crop dataset (its report says ``"kind": "crops"``)."""
    try:
        return read_report(dataset).get("kind") == KIND
    except PlatelabError:
        return False


def crop_size(dataset: Path) -> tuple[int, int]:
    """The crop ``(width, height)`` of a prepared crop dataset.

    Raises:
        PlatelabError: not a prepared crop dataset.
    """
    report = read_report(dataset)
    if report.get("kind") != KIND:
        raise PlatelabError(
            f"{dataset} is a scene dataset, not a crop dataset: prepare one with "
            "`platelab data prepare --crops DIR` or `--kind crops`"
        )
    w, h = report["crop_size"]
    return int(w), int(h)


def load_crop_split(dataset: Path, split: str) -> list[CropItem]:
    """The crops of one split of a prepared crop dataset, in manifest order."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise PlatelabError(f"dataset folder not found: {dataset}")
    if split not in SPLITS:
        raise PlatelabError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    crop_size(dataset)  # refuses a scene dataset with a clear message
    return read_crop_manifest(dataset / f"{split}.csv")
