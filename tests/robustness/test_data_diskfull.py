"""Issue 10, item 6: a full disk stops prepare at the first failed write, with one line."""

from __future__ import annotations

import errno
import json

import pytest

from platelab.cli import main
from platelab.data import prepare as prepare_mod
from platelab.data.prepare import PrepareConfig, prepare
from platelab.errors import DiskFullError
from tests.data.test_prepare import CANVAS, make_yolo


def _fill_disk_after(monkeypatch, n_ok: int) -> dict:
    calls = {"n": 0}
    real = prepare_mod.write_image

    def write(path, data):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(prepare_mod, "write_image", write)
    return calls


def test_disk_full_stops_at_once_keeps_what_was_written(tmp_path, monkeypatch):
    src = make_yolo(tmp_path / "yolo", n=5)  # 10 photos
    out = tmp_path / "ds"
    calls = _fill_disk_after(monkeypatch, 3)
    cfg = PrepareConfig(out=out, yolo=[src], size=CANVAS, progress=False)
    with pytest.raises(DiskFullError, match=r"disk is full.* 3 of 10 images") as e:
        prepare(cfg)
    assert "\n" not in str(e.value)
    assert calls["n"] == 4  # stopped at the first failed write, did not try the rest
    assert not (out / "train.csv").exists() and not (out / "prepare_report.json").exists()
    assert len(list((out / "images").glob("*.jpg"))) == 3
    assert len(json.loads((out / ".prepare_cache.json").read_text())) == 3  # a re-run resumes
    monkeypatch.undo()
    report = prepare(cfg)
    assert report["skipped"] == [] and sum(c["images"] for c in report["counts"].values()) == 10


def test_disk_full_from_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    src = make_yolo(tmp_path / "yolo", n=2)
    _fill_disk_after(monkeypatch, 0)
    code = main(["data", "prepare", "--yolo", str(src), "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("prepare:")]  # tqdm
    assert (
        code == 2 and len(lines) == 1 and lines[0].startswith("platelab: error: the disk is full")
    )
    assert "unreadable" not in err and "Traceback" not in err


def test_disk_full_while_writing_manifests_leaves_no_half_dataset(tmp_path, monkeypatch):
    src = make_yolo(tmp_path / "yolo", n=2)
    out = tmp_path / "ds"
    cfg = PrepareConfig(out=out, yolo=[src], size=CANVAS, progress=False)
    prepare(cfg)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_mod, "write_manifest", full)
    with pytest.raises(DiskFullError, match="manifests could not be written"):
        prepare(cfg)
    assert not (out / "prepare_report.json").exists()  # not loadable as a finished dataset


def test_other_write_errors_are_not_unreadable_photos(tmp_path, monkeypatch):
    src = make_yolo(tmp_path / "yolo", n=2)

    def denied(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(prepare_mod, "write_image", denied)
    cfg = PrepareConfig(out=tmp_path / "ds", yolo=[src], size=CANVAS, progress=False)
    with pytest.raises(prepare_mod.PlatelabError, match="cannot write to .*Permission denied"):
        prepare(cfg)
