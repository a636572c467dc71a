"""Checkpoints: atomic saves, safe loads, RNG capture, and the top-k rotation of best epochs.

A checkpoint is a plain nested dict of tensors, dicts, lists, strings and numbers, so it
loads with ``torch.load(weights_only=True)``: no pickled classes. Layout (keys the
engine writes; callers may add more through ``meta``)::

    format, format_version, platelab_version
    epoch            last completed epoch, 1-based
    step             optimiser steps taken so far
    model            state_dict of the unwrapped model (the raw weights)
    ema              AveragedModel state_dict (keys "module.*", "n_averaged"), or None
    meta             what rebuilds the model without the code that trained it
                     (platelab stores name, kwargs, input_size [W, H], mean, std)
    metrics          the epoch's metrics (dict[str, float])
    hparams          the resolved run config (plain dict)
    optimizer, scheduler, scaler   their state_dicts
    rng              one dict per rank: torch, cuda, numpy, python states
    saver            CheckpointSaver.state_dict(): monitor, mode, top-k list
"""

from __future__ import annotations

import math
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from platelab import __version__
from platelab.atomic import atomic_open
from platelab.errors import DiskFullError, PlatelabError, is_disk_full, reason

FORMAT = "platelab"
FORMAT_VERSION = 1
LAST = "last.pth"
BEST_PATTERN = "best_model_epoch_{}.pth"

_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(obj: Any, where: str = "state") -> None:
    """Raise TypeError naming the first value ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise TypeError(f"checkpoint key {where}[{k!r}] is a {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"checkpoint value {where} is a {type(obj).__name__}; store plain data")


def save_checkpoint(path: Path | str, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, fsync, rename.

    A crash or kill at any moment leaves either the previous file or the new one at
    ``path``, never a torn one (at worst a stray ``.NAME.*.tmp`` beside it).

    Raises:
        TypeError: ``state`` holds something other than tensors, dicts, lists, tuples,
            strings, numbers, bools or None (it would not load with ``weights_only``).
    """
    _check_plain(state)
    with atomic_open(path, "wb", durable=True) as f:
        torch.save(state, f)


def load_checkpoint(path: Path | str) -> dict:
    """Load a platelab checkpoint onto the CPU with ``weights_only=True``.

    Raises:
        PlatelabError: the file is missing, or damaged or not a platelab checkpoint. The
            one line says why in a few words and, for a file of a run folder, which
            other checkpoint of the run still loads (or that none does).
    """
    path = Path(path)
    if not path.is_file():
        raise PlatelabError(f"checkpoint not found: {path}")
    try:
        state = _load(path)
    except Exception as e:  # torn zip, pickle errors, refused globals: all "unreadable"
        raise PlatelabError(
            f"{path} is damaged or not a platelab checkpoint ({_why_unreadable(path, e)})"
            f"{_intact_hint(path)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PlatelabError(
            f"{path} is not a platelab checkpoint (a torch file without platelab's "
            f"'format' key){_intact_hint(path)}"
        )
    return state


def _load(path: Path) -> Any:
    with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it all
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def _why_unreadable(path: Path, e: Exception) -> str:
    """A few words for why ``torch.load(path)`` failed; never advice to unpickle."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        return reason(err)
    if not head:
        return "the file is empty"
    if head == b"PK\x03\x04":  # a torch zip archive
        if "weights only" in str(e).lower():
            return "it holds pickled Python objects, which platelab never loads"
        return "a truncated or corrupt torch archive"
    if head[:1] == b"\x80" and "weights only" in str(e).lower():
        return "a pickle of Python objects, which platelab never loads"
    return "not a torch file"


def _run_checkpoints(folder: Path) -> list[Path]:
    """``last.pth`` and the ``best_model_epoch_N.pth`` files of a run, newest epoch first."""
    best = []
    for f in folder.glob(BEST_PATTERN.format("*")):
        m = re.fullmatch(BEST_PATTERN.format(r"(\d+)").replace(".", r"\."), f.name)
        if m:
            best.append((int(m.group(1)), f))
    return [folder / LAST, *(f for _, f in sorted(best, reverse=True))]


def _intact_hint(path: Path) -> str:
    """``"; RUN/best_model_epoch_3.pth loads"`` for a damaged checkpoint of a run folder."""
    run = _run_checkpoints(path.parent)
    if path.name not in {f.name for f in run}:
        return ""  # a file of its own, not a run's: nothing to point to
    for other in run:
        if other.name == path.name or not other.is_file():
            continue
        try:
            state = _load(other)
        except Exception:
            continue
        if isinstance(state, dict) and state.get("format") == FORMAT:
            epoch = state.get("epoch")
            return f"; {other} loads" + (f" (epoch {epoch})" if epoch is not None else "")
    return f"; no other checkpoint of {path.parent} loads"


def find_checkpoint(run_or_file: Path | str, which: str = "best") -> Path:
    """The checkpoint file a path means: itself, or a run folder's best (or last) epoch.

    Args:
        run_or_file: a ``.pth`` file or a run folder.
        which: ``"best"`` (the top of the run's top-k list, falling back to ``last.pth``
            when the run kept none) or ``"last"``.
    """
    p = Path(run_or_file)
    if p.is_file():
        return p
    if not p.is_dir():
        what = (
            "checkpoint not found" if p.suffix in (".pth", ".pt") else "no checkpoint or run folder"
        )
        raise PlatelabError(f"{what}: {p}")
    last = p / LAST
    if not last.is_file():
        raise PlatelabError(f"{p} holds no {LAST}: not a run folder, or no epoch finished")
    if which == "last":
        return last
    best = load_checkpoint(last).get("saver", {}).get("best", [])
    for epoch, _ in best:
        f = p / BEST_PATTERN.format(int(epoch))
        if f.is_file():
            return f
    return last


def run_finished(run: Path | str, epochs: int) -> bool:
    """True when the run folder ``run`` holds a ``last.pth`` of at least ``epochs`` epochs
    (a benchmark that finds it skips training)."""
    last = Path(run) / LAST
    return last.is_file() and int(load_checkpoint(last).get("epoch") or 0) >= epochs


# -- RNG --------------------------------------------------------------------------
def capture_rng_state() -> dict:
    """torch (CPU and CUDA), numpy and python ``random`` states as plain data."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global RNG and python ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- top-k ------------------------------------------------------------------------
class CheckpointSaver:
    """Writes ``last.pth`` every epoch and keeps the top-k epochs as ``best_model_epoch_{N}.pth``.

    Modelled on timm's ``utils/checkpoint_saver.py``: a list of ``(epoch, value)``
    sorted best first; an epoch that enters it is copied (atomically) from the
    just-written ``last.pth``, as a file of its own: never a hard link, so damage to one
    file cannot reach its backup. The one pushed out is deleted. Ties keep the earlier
    epoch. A non-finite monitored value never enters the list.

    A full disk while saving raises :class:`~platelab.errors.DiskFullError` naming the
    files that are still intact (atomic writes leave the previous ones whole).

    Args:
        run_dir: the run folder.
        keep_best: k; 0 keeps no best files.
        monitor: the metric key to rank by.
        mode: ``"max"`` (higher is better) or ``"min"``.
    """

    def __init__(
        self, run_dir: Path | str, keep_best: int = 3, monitor: str = "mean_iou", mode: str = "max"
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.run_dir = Path(run_dir)
        self.keep_best = keep_best
        self.monitor = monitor
        self.mode = mode
        self.best: list[tuple[int, float]] = []
        self.last_epoch = 0  # the epoch last.pth holds (the trainer sets it on resume)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.run_dir.glob(".*.pth.*.tmp"):  # left by a kill mid-save
            stale.unlink(missing_ok=True)

    @property
    def last_path(self) -> Path:
        return self.run_dir / LAST

    def best_path(self, epoch: int) -> Path:
        return self.run_dir / BEST_PATTERN.format(epoch)

    @property
    def best_epoch(self) -> int | None:
        return self.best[0][0] if self.best else None

    @property
    def best_value(self) -> float | None:
        return self.best[0][1] if self.best else None

    def _sort_key(self, item: tuple[int, float]) -> tuple[float, int]:
        epoch, value = item
        return (-value if self.mode == "max" else value, epoch)

    def value_of(self, metrics: dict[str, float]) -> float:
        """The monitored value in ``metrics``.

        Raises:
            PlatelabError: the monitored key is not among the metrics.
        """
        if self.monitor not in metrics:
            names = ", ".join(sorted(metrics))
            raise PlatelabError(f"monitor {self.monitor!r} is not a metric; choose from {names}")
        return float(metrics[self.monitor])

    def save(self, epoch: int, metrics: dict[str, float], state: dict) -> bool:
        """Write ``last.pth`` for ``epoch`` and rotate the top-k files.

        ``state`` is stored with this saver's updated list under ``"saver"``, so a
        resumed run continues the same ranking.

        Returns:
            True when ``epoch`` entered the top-k.
        """
        value = self.value_of(metrics)
        ranked = list(self.best)
        if self.keep_best > 0 and math.isfinite(value):
            ranked = sorted([*ranked, (epoch, value)], key=self._sort_key)
        kept, dropped = ranked[: self.keep_best], ranked[self.keep_best :]
        entered = any(e == epoch for e, _ in kept)
        previous, self.best = self.best, kept
        try:
            save_checkpoint(self.last_path, {**state, "saver": self.state_dict()})
        except Exception as e:
            self.best = previous
            self._raise_if_disk_full(e, self.last_path, epoch)
            raise
        self.last_epoch = epoch
        if entered:
            try:
                _copy_atomic(self.last_path, self.best_path(epoch))
            except Exception as e:
                self.best = [x for x in kept if x[0] != epoch]
                self._raise_if_disk_full(e, self.best_path(epoch), epoch)
                raise
        for e, _ in dropped:
            self.best_path(e).unlink(missing_ok=True)
        return entered

    def _raise_if_disk_full(self, e: BaseException, path: Path, epoch: int) -> None:
        """A full disk becomes one line: what could not be written, and what is intact."""
        if not is_disk_full(e):
            return
        kept = [self.best_path(b).name for b, _ in self.best if self.best_path(b).is_file()]
        if self.last_epoch and self.last_path.is_file():
            kept.insert(0, f"{LAST} (epoch {self.last_epoch})")
        intact = f"intact in {self.run_dir}: {', '.join(kept)}" if kept else "nothing saved yet"
        hint = f"; free space, then: platelab train --resume {self.run_dir}" if kept else ""
        raise DiskFullError(
            f"the disk is full: could not write {path} (epoch {epoch}); {intact}{hint}"
        ) from None

    def state_dict(self) -> dict:
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best": [[int(e), float(v)] for e, v in self.best],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the list from a checkpoint; refit it to this saver's k and files on disk.

        Entries whose file is gone are dropped, best files not in the list (left by a
        crash mid-rotation) are deleted. A checkpoint ranked by another monitor or
        mode starts a fresh list.
        """
        self.best = []
        if state.get("monitor") == self.monitor and state.get("mode") == self.mode:
            entries = [(int(e), float(v)) for e, v in state.get("best", [])]
            entries = [x for x in entries if self.best_path(x[0]).is_file()]
            self.best = sorted(entries, key=self._sort_key)[: self.keep_best]
        keep = {self.best_path(e).name for e, _ in self.best}
        for f in self.run_dir.glob(BEST_PATTERN.format("*")):
            if f.name not in keep:
                f.unlink()


def _copy_atomic(src: Path, dst: Path) -> None:
    """Make ``dst`` an independent copy of ``src``, atomically and durably."""
    with atomic_open(dst, "wb", durable=True) as out, open(src, "rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)


def checkpoint_header(**fields: Any) -> dict:
    """The identifying keys every checkpoint starts with, plus ``fields``."""
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "platelab_version": __version__}
    return {**header, **fields}
