"""What every source reader produces: one :class:`ImageRecord` per photo.

Readers (``data/sources/*.py``) know file formats; everything downstream sees
only these records. Coordinates are in the original photo's pixels.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from platelab.errors import PlatelabError

# Corners are stored clockwise from the top-left: TL, TR, BR, BL.
CORNER_ORDER = ("top_left", "top_right", "bottom_right", "bottom_left")
# Folder or list names that mean a split, mapped to platelab's split names.
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "test": "test"}


@dataclass
class Plate:
    """One plate in a photo.

    Attributes:
        box_xyxy: ``(x_min, y_min, x_max, y_max)`` in original pixels.
        corners: 4 ``(x, y)`` points in :data:`CORNER_ORDER`, or None when unknown.
        text: the plate text, or None when unknown.
    """

    box_xyxy: tuple[float, float, float, float]
    corners: tuple[tuple[float, float], ...] | None = None
    text: str | None = None

    def corners_array(self) -> np.ndarray:
        """``(4, 2)`` float array of the corners, NaN when unknown."""
        if self.corners is None:
            return np.full((4, 2), np.nan)
        return np.asarray(self.corners, dtype=np.float64).reshape(4, 2)


@dataclass
class ImageRecord:
    """One photo and its plates (an empty list is a negative).

    Attributes:
        path: the image file.
        source: ``ccpd``, ``yolo``, ``voc`` or ``synth``.
        subset: e.g. the CCPD sub-dataset (``ccpd_base``) or the source folder name.
        plates: the plates in the photo; empty for a photo without a plate.
        split: the source's own split (``train``/``val``/``test``) when it has one.
        size: ``(width, height)`` the annotation claims, when it claims one. Readers
            may leave it None; ``prepare`` trusts the decoded image over it.
        meta: source-specific fields kept for reference (CCPD tilt, blur, ...).
    """

    path: Path
    source: str
    subset: str
    plates: list[Plate] = field(default_factory=list)
    split: str | None = None
    size: tuple[int, int] | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Skip:
    """An input that a reader or ``prepare`` passed over, and why."""

    path: str
    reason: str


# A photo whose label file is missing: a Skip reason starts with this, or (with the
# "negative" policy) the record's meta["missing_label"] is True; prepare counts both.
MISSING_LABEL = "no label file"
MISSING_LABEL_POLICIES = ("skip", "negative")


# -- plate class names -----------------------------------------------------------------
# Class names are compared after :func:`class_key`: lower case, separators dropped, so
# "License-Plate", "license_plate", "licence plate" and "LicensePlate" are one name.
PLATE_CLASS_NAMES = (
    "plate", "plates", "licence", "license", "licence plate", "license plate",
    "licence plates", "license plates", "number plate", "number plates", "lp", "lpr",
    "car plate", "vehicle plate", "registration plate", "license plate number",
)  # fmt: skip


def class_key(name: object) -> str:
    """A class name as compared: ``"License-Plate"`` -> ``"licenseplate"``."""
    return re.sub(r"[\s_\-.]+", "", str(name).strip().lower())


def plate_class_keys(names: Iterable[str] | None = None) -> frozenset[str]:
    """The compared forms of ``names`` (default :data:`PLATE_CLASS_NAMES`)."""
    return frozenset(class_key(n) for n in (PLATE_CLASS_NAMES if names is None else names))


def no_plate_class_error(source: str, root: Path, seen: Counter, flag: str) -> PlatelabError:
    """The one-line error for a source none of whose objects is a plate class."""
    listed = ", ".join(f"{name} x{n}" for name, n in seen.most_common(10))
    more = f" and {len(seen) - 10} more" if len(seen) > 10 else ""
    return PlatelabError(
        f"{source} source {root}: no object matches a plate class (saw: {listed}{more}); "
        f"name the plate class with {flag}"
    )


# -- paths that are not valid UTF-8 ----------------------------------------------------
def display_path(path: Path | str) -> str:
    """``path`` as text that can be written to a UTF-8 manifest or report.

    A POSIX file name is bytes; Python keeps bytes that are not UTF-8 as lone
    surrogates, which no UTF-8 file can hold. Those bytes are written as ``\\xNN``
    escapes (``caf\\xe9.jpg``): readable and unambiguous, though not a name to reopen.
    """
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


# -- boxes against the image they were drawn on -----------------------------------------
OVERHANG = 0.05  # a box may overhang each image edge by this share of its own size


def fit_plates(plates: list[Plate], width: int, height: int) -> tuple[list[Plate], str | None]:
    """Clip plates to a ``width x height`` photo, or say why the photo cannot be used.

    A box that overhangs an edge by at most :data:`OVERHANG` of its own width (or
    height) is clipped: annotators drag a little past the border. More than that,
    or a box with no area, means the annotation does not describe this image (a
    wrong size, a YOLO ``w > 1``, swapped columns), and training on the rest of the
    photo would teach a plate as background: the caller skips the photo instead.

    Returns:
        ``(clipped plates, None)``, or ``([], reason)``.
    """
    out = []
    for plate in plates:
        x0, y0, x1, y1 = (float(v) for v in plate.box_xyxy)
        bw, bh = x1 - x0, y1 - y0
        box = [round(v, 2) for v in (x0, y0, x1, y1)]
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or bw <= 0 or bh <= 0:
            return [], f"plate box {box} has no area"
        over = max(-x0, x1 - width, 0) / bw, max(-y0, y1 - height, 0) / bh
        if max(over) > OVERHANG:
            return [], (
                f"plate box {box} lies outside the {width}x{height} image "
                f"(by {max(over):.0%} of its size; at most {OVERHANG:.0%} is clipped)"
            )
        clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
        out.append(replace(plate, box_xyxy=clipped))
    return out, None
