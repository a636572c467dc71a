"""Issue 10, items 13 and 14: missing label files are counted and never silently negatives;
a UTF-8 byte-order mark in a label or XML file is accepted."""

from __future__ import annotations

import json

import pytest

from platelab.cli import main
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.sources.voc import read_voc
from platelab.data.sources.yolo import read_yolo
from tests.data.test_prepare import CANVAS, make_yolo
from tests.data.test_sources import voc_obj, voc_xml, write_jpeg


def _drop_labels(src, n: int) -> None:
    for i in range(n):
        (src / "labels" / "train" / f"train{i}.txt").unlink()


def test_missing_label_is_skipped_by_default_and_counted(tmp_path):
    src = make_yolo(tmp_path / "yolo", n=4, splits=("train",))
    _drop_labels(src, 2)
    report = prepare(PrepareConfig(out=tmp_path / "ds", yolo=[src], size=CANVAS,
                                   split=(1, 0, 0), progress=False))  # fmt: skip
    assert report["missing_labels"] == {"policy": "skip", "photos": 2, "negatives": 0,
                                        "skipped": 2}  # fmt: skip
    assert report["counts"]["train"] == {"images": 2, "plates": 2, "negatives": 0}
    assert sorted(s["reason"][:13] for s in report["skipped"]) == ["no label file"] * 2
    saved = json.loads((tmp_path / "ds" / "prepare_report.json").read_text())
    assert saved["missing_labels"]["photos"] == 2


def test_missing_label_as_negative_on_request_still_counted(tmp_path, capsys):
    src = make_yolo(tmp_path / "yolo", n=4, splits=("train",))
    _drop_labels(src, 1)
    argv = ["data", "prepare", "--yolo", str(src), "--out", str(tmp_path / "ds"),
            "--split", "1,0,0", "--missing-labels", "negative"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "train: 4 images, 3 plates, 1 negatives" in out
    assert "1 photos have no label file: 0 skipped, 1 kept as negatives" in out
    argv[-1] = "maybe"
    with pytest.raises(SystemExit):  # argparse's own usage error
        main(argv)


def test_yolo_label_with_a_bom(tmp_path):
    src = make_yolo(tmp_path / "yolo", n=2, splits=("train",))
    label = src / "labels" / "train" / "train0.txt"
    label.write_bytes(b"\xef\xbb\xbf" + label.read_bytes())
    (src / "data.yaml").write_bytes(b"\xef\xbb\xbftrain: images/train\nnames: ['plate']\n")
    records, skips = read_yolo(src)
    assert skips == [] and all(len(r.plates) == 1 for r in records)


def test_voc_xml_with_a_bom(tmp_path):
    write_jpeg(tmp_path / "a.jpg", 64, 48)
    xml = '<?xml version="1.0" encoding="utf-8"?>' + voc_xml(
        "a.jpg", voc_obj("plate", (1, 2, 30, 20))
    )
    (tmp_path / "a.xml").write_bytes(b"\xef\xbb\xbf" + xml.encode())
    write_jpeg(tmp_path / "b.jpg", 64, 48)
    (tmp_path / "b.xml").write_bytes(
        b"\xef\xbb\xbf" + voc_xml("b.jpg", voc_obj("lp", (1, 2, 30, 20))).encode()
    )
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_bytes(b"\xef\xbb\xbfa\nb\n")
    records, skips = read_voc(tmp_path)
    assert skips == [] and [len(r.plates) for r in records] == [1, 1]
    assert [r.split for r in records] == ["val", "val"]
