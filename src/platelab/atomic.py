"""Atomic file writes: a temp file beside the target, then ``os.replace``.

A crash or kill at any moment leaves either the previous file or the complete new
one at ``path``, never a torn one (at worst a stray ``.NAME.*.tmp`` beside it).
Checkpoints, manifests, reports and letterboxed images are all written this way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_open(
    path: Path | str, mode: str = "wb", durable: bool = False, **kw: Any
) -> Iterator[IO]:
    """Open a temp file for writing; on success it replaces ``path``, on error it is removed.

    Args:
        path: the file to (re)place; its folder is created when missing.
        mode: ``"wb"`` or ``"w"`` (text; ``kw`` may set ``encoding``/``newline``).
        durable: fsync the file and its folder, so the rename survives a power cut
            (for checkpoints; not worth the cost for thousands of images).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp's 0600 would make every output private
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb", durable=durable) as f:
        f.write(data)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every OS/filesystem.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
