"""What every source reader produces: one :class:`ImageRecord` per photo.

Readers (``data/sources/*.py``) know file formats; everything downstream sees
only these records. Coordinates are in the original photo's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
