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
