"""The main job end to end on a tiny budget: every artefact it promises exists and is sane."""

from __future__ import annotations

import csv

from platelab.cli import main


def _demo(out, epochs: int) -> int:
    return main(["demo", "--out", str(out), "--scenes", "40", "--epochs", str(epochs),
                 "--model", "dwsep_tiny", "--workers", "1"])  # fmt: skip


def test_demo_writes_everything(tmp_path, capsys):
    out = tmp_path / "demo"
    assert _demo(out, epochs=2) == 0
    printed = capsys.readouterr().out
    assert str(out / "runs" / "dwsep_tiny") in printed and "best epoch" in printed
    for name in ("samples.png", "samples_augmented.png", "dataset/train.csv",
                 "dataset/prepare_report.json", "runs/dwsep_tiny/hparams.yaml",
                 "runs/dwsep_tiny/last.pth"):  # fmt: skip
        assert (out / name).is_file(), name
    with open(out / "runs" / "dwsep_tiny" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0.0 <= float(r["mean_iou"]) <= 1.0 for r in rows)
    # A second run into the same folder starts afresh rather than failing or appending.
    assert _demo(out, epochs=1) == 0
    with open(out / "runs" / "dwsep_tiny" / "metrics.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]
