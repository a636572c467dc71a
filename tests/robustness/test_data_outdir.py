"""Issue 10, items 2, 15, 16: prepare's OUT is checked, locked, and kept tidy."""

from __future__ import annotations

import json

import pytest

from platelab.cli import main
from platelab.data import prepare as prepare_mod
from platelab.data.prepare import PrepareConfig, prepare
from platelab.errors import PlatelabError
from platelab.locking import folder_lock
from tests.data.test_prepare import CANVAS, make_yolo


def _cfg(out, src, **kw):
    return PrepareConfig(out=out, yolo=[src], size=CANVAS, progress=False, **kw)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("same", "inside the source"),
        ("inside", "inside the source"),
        ("parent", "is inside --out"),
        ("foreign", "not a platelab dataset"),
        ("file", "is not a folder"),
    ],
)
def test_out_that_clashes_is_refused_before_anything_is_written(tmp_path, where, message):
    src = make_yolo(tmp_path / "yolo", n=2, splits=("train",))
    out = {
        "same": src,
        "inside": src / "ds",
        "parent": tmp_path,
        "foreign": tmp_path / "photos",
        "file": tmp_path / "notes.txt",
    }[where]
    if where == "foreign":
        out.mkdir()
        (out / "holiday.jpg").write_bytes(b"mine")
    if where == "file":
        out.write_text("x")
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(PlatelabError, match=message):
        prepare(_cfg(out, src))
    assert sorted(p for p in tmp_path.rglob("*")) == before  # not even a lock file


def test_rerun_into_a_dataset_and_an_empty_folder_are_fine(tmp_path):
    src = make_yolo(tmp_path / "yolo", n=2, splits=("train",))
    (tmp_path / "empty").mkdir()
    prepare(_cfg(tmp_path / "empty", src))
    prepare(_cfg(tmp_path / "empty", src))  # now a platelab dataset


def test_second_process_on_the_same_out_gets_one_line(tmp_path, capsys):
    src = make_yolo(tmp_path / "yolo", n=2, splits=("train",))
    out = tmp_path / "ds"
    with folder_lock(out, "dataset"):  # another process holding it (flock is per open file)
        code = main(["data", "prepare", "--yolo", str(src), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "in use" in err and len(err.strip().splitlines()) == 1


def test_stray_tmp_files_are_removed_on_rerun_and_after_an_interrupt(tmp_path, monkeypatch):
    src = make_yolo(tmp_path / "yolo", n=3, splits=("train",))
    out = tmp_path / "ds"
    prepare(_cfg(out, src))
    stray = out / "images" / ".yolo-x.jpg.abc123.tmp"  # what a killed worker leaves
    stray.write_bytes(b"half")
    prepare(_cfg(out, src))
    assert not stray.exists()

    real = prepare_mod.write_image

    def killed_mid_write(path, data):  # a worker killed between mkstemp and rename
        (path.parent / f".{path.name}.zz.tmp").write_bytes(data[:10])
        raise KeyboardInterrupt

    (out / prepare_mod.CACHE_NAME).unlink()  # force a re-decode
    monkeypatch.setattr(prepare_mod, "write_image", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        prepare(_cfg(out, src))
    assert list((out / "images").glob(".*.tmp")) == []
    monkeypatch.setattr(prepare_mod, "write_image", real)


def test_images_no_manifest_lists_are_removed_after_a_smaller_rerun(tmp_path):
    src = make_yolo(tmp_path / "yolo", n=4, splits=("train",))
    out = tmp_path / "ds"
    prepare(_cfg(out, src))
    assert len(list((out / "images").glob("*.jpg"))) == 4
    for i in (2, 3):
        (src / "images" / "train" / f"train{i}.jpg").unlink()
    prepare(_cfg(out, src))
    listed = {row.split(",")[0] for row in (out / "train.csv").read_text().splitlines()[1:]}
    on_disk = {f"images/{p.name}" for p in (out / "images").iterdir()}
    assert on_disk == listed and len(listed) == 2
    assert json.loads((out / "prepare_report.json").read_text())["counts"]["train"]["images"] == 2
