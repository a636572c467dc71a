"""The main job end to end on a tiny budget: every artefact it promises exists and is sane."""

from __future__ import annotations

import csv
import dataclasses

import platelab.demo as demo_mod
from platelab.cli import main
from platelab.data.manifest import load_split
from tests.conftest import REAL_DATA


def test_demo_writes_everything(tmp_path, capsys, monkeypatch):
    run_demo = demo_mod.run_demo  # the speed figures need not be precise here
    monkeypatch.setattr(
        demo_mod, "run_demo", lambda cfg: run_demo(dataclasses.replace(cfg, bench_time_s=0.1))
    )
    out = tmp_path / "demo"
    real = ["--real", str(REAL_DATA)] if REAL_DATA.is_dir() else ["--no-real"]
    args = ["demo", "--out", str(out), "--scenes", "40", "--models", "dwsep_tiny,dwsep_small",
            "--budget", "1", "--size", "96x64", "--workers", "1", *real]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    report = out / "compare" / "report.html"
    assert f"report:  {report}" in printed and "| dwsep_tiny |" in printed
    for name in ("samples.png", "samples_augmented.png", "dataset/train.csv",
                 "compare/results.csv", "compare/pareto.png", "compare/report.md",
                 "compare/runs/dwsep_tiny/last.pth", "compare/runs/dwsep_small/hparams.yaml",
                 "compare/eval/dwsep_small/metrics.json"):  # fmt: skip
        assert (out / name).is_file(), name
    with open(out / "compare" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["dwsep_tiny", "dwsep_small"]
    # the product comes first: the default reader's table and drawn photos
    assert printed.index("== the default reader on") < printed.index("dataset:")
    reads = sorted(p.parent.name for p in (out / "read").glob("*/predictions.jsonl"))
    if REAL_DATA.is_dir():
        assert (
            reads == ["ccpd_base", "kaggle_voc"]
            and (out / "read" / "kaggle_voc" / "images" / "Cars72.jpg").is_file()
        )
    else:
        assert (
            reads == ["demo_photos", "synthetic"]
            and (out / "read" / "demo_photos" / "ccpd_1.jpg").is_file()
        )
    if REAL_DATA.is_dir():  # the real samples are evaluated, never trained on
        assert [int(rows[0][f"{s}_images"]) for s in ("ccpd_base", "kaggle_voc")] == [6, 20]
        assert load_split(out / "real" / "ccpd_base", "train") == []
        assert "ccpd_base acc@0.5" in (out / "compare" / "report.md").read_text()


def test_demo_reads_the_shipped_photos_and_synthetic_scenes_without_real_samples(tmp_path):
    summaries = demo_mod.read_samples(tmp_path, None)
    assert list(summaries) == ["demo_photos", "synthetic"]
    assert summaries["demo_photos"]["images"] == 4 and summaries["synthetic"]["images"] == 6
    assert (tmp_path / "demo_photos" / "ccpd_1.jpg").is_file()
    assert summaries["demo_photos"]["plates"] >= 4  # every demo photo shows a plate
