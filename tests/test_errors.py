"""errors.reason: the one line a PlatelabError message quotes from a library exception."""

from __future__ import annotations

from platelab.errors import reason


def test_reason_is_one_line():
    missing = FileNotFoundError(2, "No such file or directory", "x.pth")
    assert reason(missing) == "No such file or directory"  # not "[Errno 2] ... 'x.pth'"
    assert reason(RuntimeError("size mismatch for head.w\n  copying a param ...")) == (
        "size mismatch for head.w"
    )
    assert reason(ValueError()) == "ValueError"
    assert reason(RuntimeError("x" * 500), limit=10) == "x" * 10
