"""CCPD (CCPD2019 and the green-plate CCPD2020): the annotation is the file name.

A name has seven ``-``-separated fields, e.g.::

    025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg
    area  tilt   box: LT_RB      vertices: RB_LB_LT_RT          plate indices      bright blur

* area: the plate's share of the photo, written as the digits after ``0.``
  (``025`` is 0.025, ``0130387931034`` is 0.0130387931034). The long forms look
  like hashes but are just more decimals: on the real samples they agree with the
  plate's polygon area over 720x1160 to within a factor of 1.6, while reading them
  as a hash plus a short area (``0326329022988`` -> ``88``) gives ratios no plate has.
* tilt: ``horizontal_vertical`` degrees.
* box: ``x1&y1_x2&y2``, left-top and right-bottom, in pixels.
* vertices: the 4 corners, starting at right-bottom and going clockwise
  (RB, LB, LT, RT); :attr:`CCPDName.corners` gives them as TL, TR, BR, BL.
* plate indices: province (:data:`PROVINCES`), letter (:data:`ALPHABETS`), then
  5 (blue plates) or 6 (green CCPD2020 plates) characters from :data:`ADS`.
* brightness, blur: integers.

Photos in a ``ccpd_np`` folder carry no plate and become negatives whatever their
name. CCPD's ``splits/`` (or ``split/``) folder of ``train.txt``/``val.txt``/
``test.txt`` (paths relative to the root) sets :attr:`ImageRecord.split`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from platelab.data.imageio import IMAGE_EXTS
from platelab.data.records import SPLIT_ALIASES, ImageRecord, Plate, Skip, display_path
from platelab.errors import PlatelabError
from platelab.text import ADS, ALPHABETS, PROVINCES  # the tables live with the charsets

logger = logging.getLogger(__name__)

NEGATIVE_SUBSET = "ccpd_np"
SPLIT_DIRS = ("splits", "split")
META_KEYS = ("area", "tilt_h", "tilt_v", "brightness", "blur")


def _tables(n: int) -> list[list[str]]:
    """The character table of each position of an ``n``-character plate."""
    if n not in (7, 8):
        raise ValueError(f"a CCPD plate has 7 or 8 characters, got {n}")
    return [PROVINCES, ALPHABETS] + [ADS] * (n - 2)


@dataclass(frozen=True)
class CCPDName:
    """Every field of a CCPD file name (pixels are the original photo's).

    Attributes:
        area: plate area / photo area, in ``[0, 1)``.
        tilt_h, tilt_v: horizontal and vertical tilt, degrees.
        box_xyxy: ``(x_min, y_min, x_max, y_max)`` as written (not recomputed from
            the vertices; CCPD's box is often a few pixels larger).
        vertices: 4 ``(x, y)`` points in CCPD's order RB, LB, LT, RT.
        indices: 7 (blue) or 8 (green) table indices.
        text: the decoded plate, e.g. ``皖AY339S``.
        brightness, blur: CCPD's integer scores.
    """

    area: float
    tilt_h: int
    tilt_v: int
    box_xyxy: tuple[int, int, int, int]
    vertices: tuple[tuple[int, int], ...]
    indices: tuple[int, ...]
    text: str
    brightness: int
    blur: int

    @property
    def corners(self) -> tuple[tuple[int, int], ...]:
        """The vertices clockwise from the top-left: TL, TR, BR, BL."""
        rb, lb, lt, rt = self.vertices
        return lt, rt, rb, lb


def indices_to_text(indices: Sequence[int]) -> str:
    """Decode 7 or 8 CCPD indices to the plate text. Raises ValueError when out of range."""
    tables = _tables(len(indices))
    for pos, (i, table) in enumerate(zip(indices, tables, strict=True)):
        if not 0 <= i < len(table):
            raise ValueError(f"plate index {i} at position {pos} is outside 0..{len(table) - 1}")
    return "".join(table[i] for i, table in zip(indices, tables, strict=True))


def text_to_indices(text: str) -> tuple[int, ...]:
    """Encode a 7- or 8-character plate text as CCPD indices (inverse of :func:`indices_to_text`)."""
    out = []
    for pos, (ch, table) in enumerate(zip(text, _tables(len(text)), strict=True)):
        if ch not in table:
            raise ValueError(f"{ch!r} at position {pos} of {text!r} is not in CCPD's table")
        out.append(table.index(ch))
    return tuple(out)


def _ints(text: str, sep: str, n: int, what: str) -> list[int]:
    parts = text.split(sep)
    if len(parts) != n or not all(p.isdigit() for p in parts):
        want = "an integer" if n == 1 else f"{n} integers joined by {sep!r}"
        raise ValueError(f"{what} must be {want}, got {text!r}")
    return [int(p) for p in parts]


def _points(text: str, n: int, what: str) -> list[tuple[int, int]]:
    parts = text.split("_")
    if len(parts) != n:
        raise ValueError(f"{what} must be {n} points x&y joined by '_', got {text!r}")
    return [tuple(_ints(p, "&", 2, what)) for p in parts]


def parse_ccpd_name(name: str) -> CCPDName:
    """Parse a CCPD file name (a bare name or a path; the image suffix is optional).

    Raises:
        ValueError: the name is not a CCPD annotation; the message says which field.
    """
    stem = Path(name).name
    if Path(stem).suffix.lower() in IMAGE_EXTS:
        stem = Path(stem).stem
    fields = stem.split("-")
    if len(fields) != 7:
        raise ValueError(f"expected 7 fields separated by '-', got {len(fields)} in {stem!r}")
    area_f, tilt_f, box_f, vert_f, idx_f, bright_f, blur_f = fields
    if not area_f.isdigit():
        raise ValueError(f"area must be digits (the decimals after '0.'), got {area_f!r}")
    tilt_h, tilt_v = _ints(tilt_f, "_", 2, "tilt")
    (x1, y1), (x2, y2) = _points(box_f, 2, "box")
    if x2 < x1 or y2 < y1:
        raise ValueError(f"box right-bottom ({x2}, {y2}) is left of or above left-top ({x1}, {y1})")
    vertices = tuple(_points(vert_f, 4, "vertices"))
    indices = tuple(_ints(idx_f, "_", len(idx_f.split("_")), "plate indices"))
    return CCPDName(
        area=float("0." + area_f),
        tilt_h=tilt_h,
        tilt_v=tilt_v,
        box_xyxy=(x1, y1, x2, y2),
        vertices=vertices,
        indices=indices,
        text=indices_to_text(indices),
        brightness=_ints(bright_f, "_", 1, "brightness")[0],
        blur=_ints(blur_f, "_", 1, "blur")[0],
    )


def format_ccpd_name(
    box_xyxy: Sequence[float],
    corners: Sequence[Sequence[float]],
    text: str,
    *,
    area: float,
    tilt: tuple[int, int] = (90, 90),
    brightness: int = 100,
    blur: int = 0,
    suffix: str = ".jpg",
) -> str:
    """Write a CCPD file name; :func:`parse_ccpd_name` reads it back.

    Args:
        box_xyxy: ``(x_min, y_min, x_max, y_max)`` in pixels; rounded to integers,
            as CCPD names hold only integers.
        corners: 4 ``(x, y)`` points clockwise from the top-left (TL, TR, BR, BL),
            the :class:`~platelab.data.records.Plate` order; rounded to integers
            and written in CCPD's order (RB, LB, LT, RT).
        text: 7 characters (blue plate) or 8 (green plate): a province from
            :data:`PROVINCES`, a letter from :data:`ALPHABETS`, the rest from :data:`ADS`.
        area: plate area / photo area in ``[0, 1)``; written with every decimal
            Python's ``repr`` keeps, so it reads back exactly.
        tilt: ``(horizontal, vertical)`` degrees, non-negative integers.
        brightness, blur: non-negative integers.
        suffix: the file extension, with its dot.

    Returns:
        e.g. ``025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg``

    Raises:
        ValueError: a character outside the tables, a negative number, area outside ``[0, 1)``.
    """
    if not 0 <= area < 1:
        raise ValueError(f"area is a ratio in [0, 1), got {area}")
    numbers = [round(v) for v in box_xyxy] + [round(v) for p in corners for v in p]
    numbers += [*tilt, brightness, blur]
    if len(corners) != 4 or len(box_xyxy) != 4 or min(numbers) < 0:
        raise ValueError("CCPD names need a 4-number box, 4 corners and no negative numbers")
    indices = text_to_indices(text)
    x1, y1, x2, y2 = (round(v) for v in box_xyxy)
    tl, tr, br, bl = ((round(x), round(y)) for x, y in corners)
    area_digits = format(Decimal(repr(float(area))), "f").partition(".")[2] or "0"
    fields = [
        area_digits,
        f"{tilt[0]}_{tilt[1]}",
        f"{x1}&{y1}_{x2}&{y2}",
        "_".join(f"{x}&{y}" for x, y in (br, bl, tl, tr)),
        "_".join(str(i) for i in indices),
        str(brightness),
        str(blur),
    ]
    return "-".join(fields) + suffix


def _read_splits(root: Path) -> dict[str, str]:
    """``{relative posix path: split}`` from ``root/splits/*.txt`` (or ``root/split``)."""
    out: dict[str, str] = {}
    for dirname in SPLIT_DIRS:
        for split in ("train", "val", "test"):
            path = root / dirname / f"{split}.txt"
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                rel = line.strip().replace("\\", "/").removeprefix("./")
                if rel and out.setdefault(rel, split) != split:
                    logger.warning(
                        "%s is listed in both %s and %s; keeping %s", rel, out[rel], split, out[rel]
                    )
    return out


def _subset_and_split(rel: Path, root: Path) -> tuple[str, str | None]:
    """The nearest ``ccpd*`` folder (else the first folder, else the root's name), and a
    ``train``/``val``/``test`` folder (CCPD2020's layout) when the image sits under one."""
    folders = rel.parts[:-1]
    subset = next((f for f in reversed(folders) if f.lower().startswith("ccpd")), None)
    subset = subset or (folders[0] if folders else root.name)
    split = next((SPLIT_ALIASES[f.lower()] for f in folders if f.lower() in SPLIT_ALIASES), None)
    return subset, split


def read_ccpd(root: Path, split_files: bool = True) -> tuple[list[ImageRecord], list[Skip]]:
    """Read a CCPD tree (walked recursively) into records, one per photo.

    Args:
        root: the CCPD folder (e.g. ``CCPD2019/`` holding ``ccpd_base/``, ``splits/``),
            or a single sub-dataset folder.
        split_files: honour ``root/splits/{train,val,test}.txt`` when present. Photos
            not listed there keep the split of a ``train/val/test`` folder above
            them (CCPD2020), else None.

    Returns:
        ``(records, skips)``: records sorted by path, with one plate each (box,
        corners TL, TR, BR, BL, text) or none for ``ccpd_np``; ``meta`` holds area,
        tilt_h, tilt_v, brightness, blur. A malformed name is a :class:`Skip`.

    Raises:
        PlatelabError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise PlatelabError(f"CCPD folder not found: {root}")
    listed = _read_splits(root) if split_files else {}
    records: list[ImageRecord] = []
    skips: list[Skip] = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
        if not path.is_file():
            continue
        rel = path.relative_to(root)
        subset, folder_split = _subset_and_split(rel, root)
        split = listed.get(rel.as_posix(), folder_split)
        record = ImageRecord(path=path, source="ccpd", subset=subset, split=split)
        if any(f.lower() == NEGATIVE_SUBSET for f in rel.parts[:-1]):
            records.append(record)
            continue
        try:
            name = parse_ccpd_name(path.name)
        except ValueError as e:
            skips.append(Skip(display_path(path), f"malformed CCPD name: {e}"))
            continue
        box = tuple(float(v) for v in name.box_xyxy)
        corners = tuple((float(x), float(y)) for x, y in name.corners)
        record.plates = [Plate(box_xyxy=box, corners=corners, text=name.text)]
        record.meta = {k: getattr(name, k) for k in META_KEYS}
        records.append(record)
    logger.info("CCPD %s: %d photos, %d skipped", root, len(records), len(skips))
    return records, skips
