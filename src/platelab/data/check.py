"""``platelab data check``: validate a prepared dataset before training on it.

Errors (exit 1): a manifest missing or malformed (NaN or infinite numbers
included), an image missing, unreadable or not of the canvas size, a box outside
the canvas, degenerate or not a number, the same box
twice on one image, an image listed in two splits. Warnings: tiny boxes, corners
outside the canvas, a split without images.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from platelab.data.imageio import read_image
from platelab.data.manifest import SPLITS, load_split
from platelab.errors import PlatelabError

TOLERANCE_PX = 1e-3  # float round-off allowed at the canvas border
TINY_PX = 2.0


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_dataset(dataset: Path, decode: bool = True, progress: bool = True) -> CheckReport:
    """Validate every split of ``dataset``.

    Args:
        dataset: a folder written by ``platelab data prepare``.
        decode: fully decode every image (catches truncated files); otherwise only
            check that the files exist.

    Raises:
        PlatelabError: ``dataset`` is not a folder.
    """
    dataset = Path(dataset)
    if not dataset.is_dir():  # a user mistake, not a finding in each of the splits
        raise PlatelabError(f"dataset folder not found: {dataset}")
    report = CheckReport()
    seen_in: dict[str, list[str]] = defaultdict(list)
    for split in SPLITS:
        try:
            images = load_split(dataset, split)
        except PlatelabError as e:
            report.errors.append(str(e))
            continue
        if not images:
            report.warnings.append(f"{split}: no images")
        report.counts[split] = {
            "images": len(images),
            "plates": sum(len(m.boxes_xyxy) for m in images),
            "negatives": sum(len(m.boxes_xyxy) == 0 for m in images),
        }
        for m in tqdm(images, desc=f"check {split}", unit="img", disable=not progress):
            seen_in[m.image].append(split)
            _check_image(dataset, split, m, decode, report)
    for image, splits in seen_in.items():
        if len(set(splits)) > 1:
            report.errors.append(
                f"{image}: listed in several splits ({', '.join(sorted(set(splits)))})"
            )
    return report


def _check_image(dataset: Path, split: str, m, decode: bool, report: CheckReport) -> None:
    where = f"{split}: {m.image}"
    lb = m.letterbox
    path = dataset / m.image
    if not path.is_file():
        report.errors.append(f"{where}: image file missing")
    elif decode:
        try:
            h, w = read_image(path).shape[:2]
            if (w, h) != (lb.canvas_w, lb.canvas_h):
                report.errors.append(
                    f"{where}: image is {w}x{h}, canvas is {lb.canvas_w}x{lb.canvas_h}"
                )
        except (OSError, ValueError) as e:
            report.errors.append(f"{where}: unreadable image ({e})")
    boxes = np.asarray(m.boxes_xyxy, dtype=np.float64)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        box = f"box {i} [{x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}]"
        if not np.isfinite(boxes[i]).all():  # NaN compares False with everything below
            report.errors.append(f"{where}: {box} has a coordinate that is not a number")
            continue
        if (
            x0 < -TOLERANCE_PX
            or y0 < -TOLERANCE_PX
            or x1 > lb.canvas_w + TOLERANCE_PX
            or (y1 > lb.canvas_h + TOLERANCE_PX)
        ):
            report.errors.append(f"{where}: {box} outside the {lb.canvas_w}x{lb.canvas_h} canvas")
        if x1 <= x0 or y1 <= y0:
            report.errors.append(f"{where}: {box} is degenerate")
        elif min(x1 - x0, y1 - y0) < TINY_PX:
            report.warnings.append(f"{where}: {box} is under {TINY_PX:g} px")
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if np.allclose(boxes[i], boxes[j], atol=0.5):
                report.errors.append(f"{where}: boxes {i} and {j} are duplicates")
    partial = np.isnan(m.corners).any(axis=(1, 2)) & ~np.isnan(m.corners).all(axis=(1, 2))
    if partial.any() or np.isinf(m.corners).any():
        report.errors.append(f"{where}: plate corners with a coordinate that is not a number")
    corners = m.corners[np.isfinite(m.corners).all(axis=(1, 2))]
    if len(corners):
        out = (corners[..., 0] < -1) | (corners[..., 0] > lb.canvas_w + 1)
        out |= (corners[..., 1] < -1) | (corners[..., 1] > lb.canvas_h + 1)
        if out.any():
            report.warnings.append(f"{where}: {int(out.sum())} plate corners outside the canvas")
