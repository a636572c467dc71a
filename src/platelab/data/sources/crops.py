"""Folders of plate crops: the text is in the file name, or in a CSV beside the images.

Two layouts, as the usual recogniser projects keep them:

* **names** (LPRNet): ``皖A12345.jpg``; the text is the file stem up to the first
  ``_`` or ``-`` (``皖A12345_2.jpg`` and ``皖A12345-2.jpg`` are a second crop of the
  same text). A text with separators in it therefore needs the CSV layout.
* **CSV** (fast-plate-ocr): any ``*.csv`` in the folder with an image column
  (``image``, ``image_path``, ``filename``, ``file`` or ``path``; relative to the CSV's
  folder) and a text column (``text``, ``plate_text``, ``plate`` or ``label``). Optional
  columns: ``rows`` (1 or 2), ``row_split``, ``style``, ``split``
  (``platelab data synth --formats crops`` writes all of them). When a folder holds a
  CSV, only the images it lists are read.

Texts are normalised (:meth:`platelab.text.Charset.normalize`); a text with a
character outside the charset, an empty text or a listed image that does not exist
is a :class:`~platelab.data.records.Skip`. Whether an image decodes (corrupt, empty,
1x1) is found out when it is prepared.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from platelab.data.imageio import IMAGE_EXTS
from platelab.data.records import SPLIT_ALIASES, ImageRecord, Skip, display_path
from platelab.errors import PlatelabError
from platelab.text import Charset

logger = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "image_path", "filename", "file", "path")
TEXT_COLUMNS = ("text", "plate_text", "plate", "label")
SOURCE = "crops"


def text_from_name(path: Path | str) -> str:
    """The LPRNet layout's text of a crop file: its stem up to the first ``_`` or ``-``."""
    stem = Path(path).stem
    return stem.split("_")[0].split("-")[0]


def _record(path: Path, root: Path, text: str, meta: dict, split: str | None) -> ImageRecord:
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    subset = rel.parts[0] if len(rel.parts) > 1 else root.name
    if split is None:
        split = next((SPLIT_ALIASES[f.lower()] for f in rel.parts[:-1]
                      if f.lower() in SPLIT_ALIASES), None)  # fmt: skip
    return ImageRecord(path=path, source=SOURCE, subset=subset, split=split,
                       meta={"crop": {"text": text, **meta}})  # fmt: skip


def _check_text(text: str, charset: Charset, where: str) -> tuple[str | None, Skip | None]:
    norm = charset.normalize(text)
    if not norm:
        return None, Skip(where, f"empty plate text {text!r}")
    missing = charset.missing(norm)
    if missing:
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing[:3])
        return None, Skip(where, f"text {text!r} has {shown} outside the {charset.name!r} charset")
    return norm, None


def _column(fields: list[str], names: tuple[str, ...]) -> str | None:
    lower = {f.strip().lower(): f for f in fields}
    return next((lower[n] for n in names if n in lower), None)


def _read_csv(csv_path: Path, root: Path, charset: Charset, records: list, skips: list) -> None:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            fields = list(rows[0].keys()) if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        skips.append(Skip(display_path(csv_path), f"unreadable CSV: {e}"))
        return
    img_col, text_col = _column(fields, IMAGE_COLUMNS), _column(fields, TEXT_COLUMNS)
    if rows and (img_col is None or text_col is None):
        raise PlatelabError(
            f"{csv_path}: needs an image column ({'/'.join(IMAGE_COLUMNS)}) and a text column "
            f"({'/'.join(TEXT_COLUMNS)}); has {', '.join(fields)}"
        )
    for line, row in enumerate(rows, start=2):
        where = f"{display_path(csv_path)}:{line}"
        path = csv_path.parent / (row.get(img_col) or "").strip()
        if not (row.get(img_col) or "").strip() or not path.is_file():
            skips.append(Skip(where, f"image {row.get(img_col)!r} not found"))
            continue
        text, skip = _check_text(row.get(text_col) or "", charset, where)
        if skip:
            skips.append(skip)
            continue
        try:
            meta = _meta(row)
        except ValueError as e:
            skips.append(Skip(where, str(e)))
            continue
        split = SPLIT_ALIASES.get((row.get("split") or "").strip().lower())
        records.append(_record(path, root, text, meta, split))


def _meta(row: dict) -> dict:
    rows_text = (row.get("rows") or "1").strip() or "1"
    if rows_text not in ("1", "2"):
        raise ValueError(f"rows must be 1 or 2, got {rows_text!r}")
    split_text = (row.get("row_split") or "").strip()
    row_split = float(split_text) if split_text else None
    if row_split is not None and not 0 < row_split < 1:
        raise ValueError(f"row_split must be in (0, 1), got {split_text!r}")
    return {
        "rows": int(rows_text),
        "row_split": row_split,
        "style": (row.get("style") or "").strip(),
    }


def read_crop_folder(root: Path, charset: Charset) -> tuple[list[ImageRecord], list[Skip]]:
    """Read a crop folder in either layout (see the module docstring).

    Returns:
        ``(records, skips)``: one record per crop, sorted by path, with no plates and
        ``meta["crop"] = {"text", "rows", "row_split", "style"}``.

    Raises:
        PlatelabError: ``root`` is not a folder, or a CSV lacks an image or text column.
    """
    root = Path(root)
    if not root.is_dir():
        raise PlatelabError(f"crop folder not found: {root}")
    records: list[ImageRecord] = []
    skips: list[Skip] = []
    csvs = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".csv" and p.is_file())
    if csvs:
        for c in csvs:
            _read_csv(c, root, charset, records, skips)
    else:
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
            if not path.is_file():
                continue
            text, skip = _check_text(text_from_name(path), charset, display_path(path))
            if skip:
                skips.append(skip)
                continue
            records.append(_record(path, root, text, {"rows": 1, "row_split": None, "style": ""},
                                   None))  # fmt: skip
    records.sort(key=lambda r: str(r.path))
    logger.info("crops %s: %d crops, %d skipped", root, len(records), len(skips))
    return records, skips
