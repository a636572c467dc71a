"""atomic_open: the old file survives a failed write, and no temp file is left behind."""

from __future__ import annotations

import pytest

from platelab.atomic import atomic_open, atomic_write_bytes


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / "sub" / "manifest.csv"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_open(target, "w", encoding="utf-8") as f:
        f.write("half of the new cont")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["manifest.csv"]


def test_successful_write_replaces(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"one")
    with atomic_open(target, "wb", durable=True) as f:
        f.write(b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_written_files_get_the_mode_open_would_give(tmp_path):
    import os
    import stat

    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives under this umask (0600 from mkstemp is wrong)
    atomic_write_bytes(tmp_path / "atomic.txt", b"x")
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode)
    mask = os.umask(0)
    os.umask(mask)
    if not mask & stat.S_IRGRP:  # the usual 022/002: the group may read it
        assert mode & stat.S_IRGRP
