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
