"""The one exception type that means "the user made a mistake".

The CLI prints a :class:`PlatelabError` as a single line on stderr and exits
non-zero; anything else is a bug and keeps its traceback.
"""

import re


class PlatelabError(Exception):
    """A user-facing error: a wrong path, a malformed file, an unknown name."""


# CSI sequences (colours, cursor moves) and the shorter ESC forms some libraries print.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def one_line(text: str) -> str:
    """``text`` made safe to print as one terminal line.

    ANSI escape codes are removed, line breaks and tabs become spaces, other control
    characters and undecodable file-name bytes (``surrogateescape`` surrogates) are
    shown as ``\\xNN`` escapes, so a message never moves the cursor, recolours the
    terminal or fails to encode.
    """
    text = _ANSI.sub("", text)
    text = " ".join(text.split()) if any(c in text for c in "\r\n\t\v\f") else text
    return "".join(_printable(c) for c in text)


def _printable(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return c


def display_path(path: object) -> str:
    """A path as printable text: undecodable bytes become ``\\xNN`` (see :func:`one_line`)."""
    return one_line(str(path))


def reason(e: BaseException, limit: int = 200) -> str:
    """One line saying why ``e`` happened, for a :class:`PlatelabError` message.

    An ``OSError``'s ``strerror`` ("No such file or directory"); otherwise the first
    line of the message (library errors often run to pages), without ANSI codes, or the
    type's name. A line longer than ``limit`` is cut after its last whole sentence that
    fits, else after its last whole word (then ending in "...").
    """
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    line = one_line((str(e).strip().splitlines() or [""])[0]).strip() or type(e).__name__
    if len(line) <= limit:
        return line
    head = line[:limit]
    end = head.rfind(". ")
    if end > limit // 3:
        return head[: end + 1]
    cut = head.rfind(" ")
    return head[:cut].rstrip(" ,;:") + "..." if cut > limit // 3 else head  # one long word: cut


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
