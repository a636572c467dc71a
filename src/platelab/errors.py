"""The one exception type that means "the user made a mistake".

The CLI prints a :class:`PlatelabError` as a single line on stderr and exits
non-zero; anything else is a bug and keeps its traceback.
"""


class PlatelabError(Exception):
    """A user-facing error: a wrong path, a malformed file, an unknown name."""


def reason(e: BaseException, limit: int = 200) -> str:
    """One line saying why ``e`` happened, for a :class:`PlatelabError` message.

    An ``OSError``'s ``strerror`` ("No such file or directory"); otherwise the first
    line of the message (library errors often run to pages), or the type's name.
    """
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def is_disk_full(e: BaseException) -> bool:
    """True for "no space left on device" and "disk quota exceeded", also when wrapped.

    torch's ``save`` wraps the ``OSError`` in a ``RuntimeError`` (the cause chain keeps
    it), so this walks ``__cause__``/``__context__`` and also reads the message.
    """
    import errno

    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "file write failed" in str(e):
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


class DiskFullError(PlatelabError):
    """The disk filled up while platelab was writing; the message says what was kept."""
