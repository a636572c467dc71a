"""``platelab compare`` and ``platelab demo`` end to end on tiny budgets."""

from __future__ import annotations

import csv
import json
import re

import pytest

from platelab.cli import main
from platelab.compare import Budget, CompareConfig, check_plan, compare
from platelab.errors import PlatelabError
from tests.engine.test_train import make_dataset

TRAIN_KEYS = ("augment.strength=0", "tensorboard=false", "amp=off", "lr=0.01")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    return make_dataset(root / "ds", n_train=16, n_val=8), make_dataset(root / "other", 4, 4, 1)


def _cfg(data, out, **kw):
    base = dict(
        models=["dwsep_tiny", "mobilenet_v3_small"],
        data=data,
        out=out,
        budget=Budget(epochs=1),
        split="val",  # the toy dataset has an empty test split
        overrides=TRAIN_KEYS,
        batch_size=8,
        workers=0,
        bench_batch=2,
        bench_time_s=0.2,
    )
    return CompareConfig(**{**base, **kw})


def test_compare_writes_every_artefact_and_reuses_finished_runs(datasets, tmp_path):
    data, other = datasets
    out = tmp_path / "cmp"
    res = compare(_cfg(data, out, eval_sets={"other": other}))
    for name in ("results.csv", "report.md", "report.html", "pareto.png", "curves.png"):
        assert (out / name).is_file(), name
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["dwsep_tiny", "mobilenet_v3_small"]
    for r in rows:
        assert r["epochs"] == "1" and int(r["params"]) > 0
        assert float(r["fps"]) > 0 and float(r["latency_p90_ms"]) >= float(r["latency_p50_ms"])
        assert 0 <= float(r["mean_iou"]) <= 1 and 0 <= float(r["other_acc_iou50"]) <= 1
        assert r["other_images"] == "8" and r["pareto"] in ("0", "1")
        assert (out / "eval" / r["model"] / "metrics.json").is_file()
        assert (out / "eval" / r["model"] / "other" / "predictions.csv").is_file()
    assert "1" in {r["pareto"] for r in rows}  # some model is always on the front
    # The HTML is self-contained: every picture is embedded, every link exists.
    page = (out / "report.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) >= 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for href in re.findall(r'href="([^"]+)"', page):
        assert (out / href).exists(), href
    assert "dwsep_tiny" in (out / "report.md").read_text()
    assert res["rows"][0]["model"] == "dwsep_tiny"

    # A re-run with the same plan reuses both runs instead of training again.
    stamp = (out / "runs" / "dwsep_tiny" / "last.pth").stat().st_mtime_ns
    compare(_cfg(data, out, eval_sets={"other": other}))
    assert (out / "runs" / "dwsep_tiny" / "last.pth").stat().st_mtime_ns == stamp


def test_minutes_budget_probes_then_fits(datasets, tmp_path):
    data, _ = datasets
    out = tmp_path / "cmp"
    compare(_cfg(data, out, models=["dwsep_tiny"], budget=Budget(minutes=0.05)))
    record = json.loads((out / "runs" / "dwsep_tiny" / "compare.json").read_text())
    assert record["budget"] == "0.05 min of training" and record["epochs"] >= 1
    assert not (out / "probe" / "dwsep_tiny").exists()  # the probe run is cleaned up
    with open(out / "runs" / "dwsep_tiny" / "metrics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == record["epochs"]


def test_compare_refuses_bad_setups(datasets, tmp_path):
    data, _ = datasets
    with pytest.raises(PlatelabError, match="did you mean"):
        compare(_cfg(data, tmp_path, models=["dwsep_tiny", "resnet81"]))
    with pytest.raises(PlatelabError, match="names a model twice"):
        compare(_cfg(data, tmp_path, models=["dwsep_tiny", "dwsep_tiny"]))
    with pytest.raises(PlatelabError, match="did you mean 'lr'"):  # before any training
        compare(_cfg(data, tmp_path / "typo", overrides=("lr_rate=1",)))
    assert not (tmp_path / "typo" / "runs").exists()
    with pytest.raises(PlatelabError, match="compare sets 'epochs' itself"):
        compare(_cfg(data, tmp_path, overrides=("epochs=3",)))
    small = make_dataset(tmp_path / "small", 2, 2)
    (small / "prepare_report.json").write_text(json.dumps({"canvas": [32, 24]}))
    with pytest.raises(PlatelabError, match="prepare it with --size 64x48"):
        compare(_cfg(data, tmp_path, eval_sets={"small": small}))


def test_cli_compare_errors_are_one_line(datasets, tmp_path, capsys):
    data, _ = datasets
    assert main(["compare", "--models", "dwsep_tiny", "--data", str(tmp_path / "no")]) == 2
    assert main(["compare", "--models", "dwsep_tiny", "--data", str(data), "lr_rate=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("platelab: error:") for e in err)
    assert "did you mean 'lr'" in err[1]


def test_compare_a_localiser_and_a_detector_in_one_report(datasets, tmp_path):
    data, _ = datasets
    out = tmp_path / "mixed"
    res = compare(_cfg(data, out, models=["dwsep_tiny", "detect:dwsep_tiny"]))
    assert res["metric"] == "ap50"  # the Pareto axis both tasks measure
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["task"]) for r in rows] == [
        ("dwsep_tiny", "localize"),
        ("detect:dwsep_tiny", "detect"),
    ]
    loc, det = rows
    assert loc["ap50_95"] == "" and loc["corner_error_px"] == ""  # detector-only columns
    assert det["ap50_95"] != "" and 0 <= float(det["ap50"]) <= 1 and det["median_iou"] == ""
    # each trained as its task, ranked by its task's own metric, in its own folder
    assert json.loads((out / "runs" / "detect-dwsep_tiny" / "compare.json").read_text())
    hparams = (out / "runs" / "detect-dwsep_tiny" / "hparams.yaml").read_text()
    assert "task: detect" in hparams and "monitor: ap50" in hparams
    assert "monitor: mean_iou" in (out / "runs" / "dwsep_tiny" / "hparams.yaml").read_text()
    doc = json.loads((out / "eval" / "detect-dwsep_tiny" / "metrics.json").read_text())
    assert doc["task"] == "detect"
    md = (out / "report.md").read_text()
    lines = md.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| model | mean IoU"))
    assert "AP50:95" in lines[at] and "corner err (px)" in lines[at]
    assert lines[at + 2].startswith("| dwsep_tiny |")
    assert lines[at + 2].endswith("| – | – |")  # not measured for a localiser
    det_cells = [c.strip("* ") for c in lines[at + 3].split("|")[1:-1]]
    assert det_cells[0] == "detect:dwsep_tiny" and "–" not in det_cells[:-1]
    assert det_cells[-1] == "–"  # no corner error: the toy plates' corners are unknown
    assert "[detect:dwsep_tiny run folder](runs/detect-dwsep_tiny)" in md


@pytest.mark.parametrize(
    ("models", "kw", "message"),
    [
        (["find:dwsep_tiny"], {}, "unknown task 'find' in model 'find:dwsep_tiny'"),
        (["detect:"], {}, "names no backbone"),
        (["detect:dwsep_tny"], {}, "did you mean"),
        (["detect:dwsep_tiny", "detect:dwsep_tiny"], {}, "names a model twice"),
        (["dwsep_tiny", "localize:dwsep_tiny"], {}, "names a model twice"),
        (["dwsep_tiny", "detect:dwsep_tiny"], {"metric": "ap50_95"}, "choose from mean_iou"),
        (["dwsep_tiny"], {"overrides": ("task=detect",)}, "compare sets 'task' itself"),
    ],
)
def test_check_plan_reads_task_prefixes(models, kw, message):
    with pytest.raises(PlatelabError, match=re.escape(message)):
        check_plan(models, kw.get("overrides", ()), kw.get("metric"))


def test_check_plan_returns_the_entries():
    specs = check_plan(["dwsep_tiny", "detect:dwsep_tiny", "localize:mobilenet_v3_small"])
    assert [(s.spec, s.task, s.model, s.run_name) for s in specs] == [
        ("dwsep_tiny", "localize", "dwsep_tiny", "dwsep_tiny"),
        ("detect:dwsep_tiny", "detect", "dwsep_tiny", "detect-dwsep_tiny"),
        ("mobilenet_v3_small", "localize", "mobilenet_v3_small", "mobilenet_v3_small"),
    ]
    assert check_plan(["detect:dwsep_tiny"], metric="ap50_95")[0].task == "detect"
