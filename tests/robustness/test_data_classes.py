"""Issue 10, item 1: plate classes are matched loosely, named by the user, never silently lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from platelab.cli import main
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.records import class_key
from platelab.data.sources.voc import read_voc
from platelab.data.sources.yolo import read_yolo
from platelab.errors import PlatelabError
from tests.data.test_sources import voc_obj, voc_xml, write_jpeg


def make_voc(root: Path, names: list[str], n: int = 3) -> Path:
    """``n`` photos, each with one object per name in ``names``."""
    for i in range(n):
        write_jpeg(root / "images" / f"p{i}.jpg", 64, 48)
        objects = "".join(voc_obj(name, (10 + k, 10, 30 + k, 20)) for k, name in enumerate(names))
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"p{i}.xml").write_text(voc_xml(f"p{i}.jpg", objects))
    return root


def make_yolo(root: Path, classes: list[int], names: list[str] | None, n: int = 3) -> Path:
    for i in range(n):
        write_jpeg(root / "images" / f"p{i}.jpg", 64, 48)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        lines = "".join(f"{c} 0.5 0.5 0.2 0.2\n" for c in classes)
        (root / "labels" / f"p{i}.txt").write_text(lines)
    if names is not None:
        (root / "data.yaml").write_text(f"train: images\nnames: {names}\n")
    return root


@pytest.mark.parametrize(
    "name",
    ["license-plate", "License_Plate", "LICENCE PLATE", "LicensePlate", "number_plate", "LP",
     "plate", "licence", "number plate"],
)  # fmt: skip
def test_voc_plate_class_spellings_all_match(tmp_path, name):
    records, skips = read_voc(make_voc(tmp_path / "voc", [name]))
    assert skips == [] and len(records) == 3
    assert all(len(r.plates) == 1 for r in records)


def test_voc_license_dash_plate_gets_every_plate_through_prepare(tmp_path):
    src = make_voc(tmp_path / "voc", ["license-plate", "car"])
    report = prepare(PrepareConfig(out=tmp_path / "ds", voc=[src], split=(1, 0, 0), progress=False))
    assert report["counts"]["train"] == {"images": 3, "plates": 3, "negatives": 0}


def test_voc_without_plate_class_fails_listing_what_it_saw(tmp_path, capsys):
    src = make_voc(tmp_path / "voc", ["car", "car", "person"], n=4)
    with pytest.raises(PlatelabError, match=r"no object matches a plate class") as e:
        read_voc(src)
    assert "car x8" in str(e.value) and "person x4" in str(e.value)
    assert "--voc-classes" in str(e.value) and "\n" not in str(e.value)
    code = main(["data", "prepare", "--voc", str(src), "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "car x8" in err
    # naming the class makes them plates
    args = ["--voc", str(src), "--out", str(tmp_path / "ds"), "--voc-classes", "Person, bus"]
    assert main(["data", "prepare", *args]) == 0
    assert "4 plates" in capsys.readouterr().out


def test_voc_source_of_only_empty_annotations_is_negatives_not_an_error(tmp_path):
    records, _ = read_voc(make_voc(tmp_path / "voc", []))
    assert len(records) == 3 and all(r.plates == [] for r in records)


def test_yolo_plate_class_chosen_by_data_yaml_name(tmp_path):
    src = make_yolo(tmp_path / "y", [0, 1, 1], ["car", "License-Plate"])
    records, _ = read_yolo(src)
    assert all(r.meta["class_ids"] == [1, 1] for r in records)


def test_yolo_names_without_a_plate_class_fail_listing_them(tmp_path):
    src = make_yolo(tmp_path / "y", [0, 0, 1], ["car", "person"])
    with pytest.raises(PlatelabError, match=r"car x6, person x3.*--yolo-classes"):
        read_yolo(src)
    records, _ = read_yolo(src, classes=["Person"])  # by name...
    assert all(r.meta["class_ids"] == [1] for r in records)
    records, _ = read_yolo(src, classes=["0"])  # ...or by id
    assert all(r.meta["class_ids"] == [0, 0] for r in records)
    with pytest.raises(PlatelabError, match=r"no class named 'truck'.*0: car, 1: person"):
        read_yolo(src, classes=["truck"])


def test_yolo_several_unnamed_classes_must_be_named(tmp_path):
    src = make_yolo(tmp_path / "y", [0, 2], None)
    with pytest.raises(PlatelabError, match=r"several classes \(class 0 x3, class 2 x3\)"):
        read_yolo(src)
    assert len(read_yolo(src, classes=[2])[0]) == 3
    single = make_yolo(tmp_path / "single", [0], None)
    assert all(len(r.plates) == 1 for r in read_yolo(single)[0])  # one class: the plate


def test_yolo_classes_flag_reaches_the_reader(tmp_path, capsys):
    src = make_yolo(tmp_path / "y", [0, 1], ["car", "person"])
    out = tmp_path / "ds"
    assert main(["data", "prepare", "--yolo", str(src), "--out", str(out)]) == 2
    assert "car x3, person x3" in capsys.readouterr().err
    argv = ["data", "prepare", "--yolo", str(src), "--out", str(out), "--yolo-classes", "car"]
    assert main(argv) == 0


def test_class_key():
    assert class_key(" License-Plate ") == class_key("license_plate") == "licenseplate"
