"""Per-epoch logs of a run: ``metrics.csv`` (always) and TensorBoard (when installed).

Only the primary rank creates these (timm ``utils/summary.py``): the trainer never
builds them on other ranks.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from platelab.atomic import atomic_open

log = logging.getLogger(__name__)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return format(v, ".8g")
    return "" if v is None else str(v)


class MetricsCSV:
    """``metrics.csv``: one row per epoch, header written once, rows appended.

    The header is the keys of the first row ever written; later rows fill missing
    columns with ``""`` and drop keys the header lacks, so a file never changes shape.

    Args:
        path: the CSV file.
        start_epoch: the first epoch this run will write. Rows of an existing file with
            ``epoch >= start_epoch`` are dropped first (a resumed run re-trains them), so
            the file never repeats or loses an epoch. ``1`` starts afresh.
    """

    def __init__(self, path: Path | str, start_epoch: int = 1) -> None:
        self.path = Path(path)
        self.fieldnames: list[str] | None = None
        if self.path.is_file():
            self._truncate(start_epoch)

    def _truncate(self, start_epoch: int) -> None:
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fieldnames = list(reader.fieldnames or [])
            rows = [r for r in reader if r.get("epoch") and int(float(r["epoch"])) < start_epoch]
        if not rows:
            self.path.unlink()
            return
        self.fieldnames = fieldnames
        with atomic_open(self.path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        """Append one epoch's row (floats with 8 significant digits)."""
        new = self.fieldnames is None
        if new:
            self.fieldnames = list(row)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in self.fieldnames})

    def rows(self) -> list[dict[str, str]]:
        """Every row written so far, as strings."""
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))


def open_tensorboard(run_dir: Path | str) -> Any | None:
    """A ``SummaryWriter`` writing into ``run_dir``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed; logging to metrics.csv only")
        return None
    return SummaryWriter(log_dir=str(run_dir))
