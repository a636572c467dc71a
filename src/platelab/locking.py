"""An exclusive lock on an output folder, so two processes never write one run or dataset.

``with folder_lock(RUN, "training run"):`` takes a non-blocking ``fcntl.flock`` on
``RUN/.platelab.lock``. A second process that asks for the same folder gets a
:class:`~platelab.errors.PlatelabError` at once (the CLI prints one line, exit 2)
instead of interleaving its writes with the first. The kernel drops the lock when
the holder exits, however it exits (Ctrl-C, ``kill -9``), so a stale lock file
never blocks a later run; the file itself is left in place on purpose (removing it
would race with a third process opening it).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from platelab.errors import PlatelabError

LOCK_NAME = ".platelab.lock"


@contextmanager
def folder_lock(folder: Path | str, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created when missing) for the ``with`` body.

    Args:
        folder: the run folder or dataset being written.
        what: how the message names it ("training run", "dataset").

    Raises:
        PlatelabError: another process holds the lock.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise PlatelabError(
                    f"{folder} is in use: another platelab process is writing this {what}; "
                    "wait for it to finish or choose another folder"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the flock
