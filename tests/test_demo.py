"""The main job end to end on a tiny budget: every artefact it promises exists and is sane."""

from __future__ import annotations

import csv

from platelab.cli import main


def test_demo_writes_everything(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--scenes",
            "40",
            "--epochs",
            "2",
            "--model",
            "dwsep_tiny",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out / "runs" / "dwsep_tiny") in printed and "best epoch" in printed
    for name in (
        "samples.png",
        "samples_augmented.png",
        "dataset/train.csv",
        "dataset/prepare_report.json",
        "runs/dwsep_tiny/hparams.yaml",
        "runs/dwsep_tiny/last.pth",
    ):
        assert (out / name).is_file(), name
    with open(out / "runs" / "dwsep_tiny" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0.0 <= float(r["mean_iou"]) <= 1.0 for r in rows)
    # A second run into the same folder starts afresh rather than failing.
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--scenes",
                "40",
                "--epochs",
                "1",
                "--model",
                "dwsep_tiny",
                "--workers",
                "1",
            ]
        )
        == 0
    )
