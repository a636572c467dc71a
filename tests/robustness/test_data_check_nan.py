"""Issue 10, item 12: ``data check`` reports NaN and infinite coordinates as errors."""

from __future__ import annotations

import pytest

from platelab.cli import main
from platelab.data.check import check_dataset
from platelab.data.manifest import read_manifest
from platelab.data.prepare import PrepareConfig, prepare
from platelab.errors import PlatelabError
from tests.data.test_prepare import CANVAS, make_yolo


@pytest.fixture
def dataset(tmp_path):
    src = make_yolo(tmp_path / "yolo", n=2, splits=("train",))
    ds = tmp_path / "ds"
    prepare(PrepareConfig(out=ds, yolo=[src], size=CANVAS, split=(1, 0, 0), progress=False))
    return ds


def _corrupt(ds, column: str, value: str) -> None:
    path = ds / "train.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index(column)] = value
    lines[1] = ",".join(row)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("column", "value"),
    [("x_min", "nan"), ("y_max", "NaN"), ("x_max", "inf"), ("scale", "nan"), ("x1", "nan")],
)
def test_non_finite_numbers_are_errors(dataset, column, value):
    _corrupt(dataset, column, value)
    with pytest.raises(PlatelabError, match=rf"train.csv:2: column '{column}' is not a finite"):
        read_manifest(dataset / "train.csv")
    report = check_dataset(dataset, progress=False)
    assert not report.ok and any("not a finite number" in e for e in report.errors)
    assert main(["data", "check", str(dataset)]) == 1


def test_check_flags_nan_boxes_built_in_memory(dataset, monkeypatch):
    from platelab.data import check as check_mod

    real = check_mod.load_split

    def with_nan(ds, split):
        images = real(ds, split)
        if images:
            images[0].boxes_xyxy[0, 0] = float("nan")
        return images

    monkeypatch.setattr(check_mod, "load_split", with_nan)
    report = check_dataset(dataset, progress=False)
    assert any("not a number" in e for e in report.errors)
