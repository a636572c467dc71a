"""platelab bench: rows for registry names and checkpoints, both runtimes, CSV and table."""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path

import pytest
import torch

from platelab.errors import PlatelabError
from platelab.eval.speed import (
    COLUMNS,
    BenchConfig,
    bench,
    bench_one,
    format_table,
    percentile,
    read_csv,
    time_runs,
    tune_malloc,
    write_csv,
)
from platelab.models import count_flops, create_model
from tests.infer import save_checkpoint_of, save_tiny_checkpoint, seeing_detector

SIZE = (96, 64)
QUICK = dict(size=SIZE, batch=2, warmup=1, iters=5, max_time_s=1.0)
TIMINGS = ("latency_p50_ms", "latency_p90_ms", "fps", "throughput_img_s", "gflops_per_s")


def _check_figures(row: dict) -> None:
    assert set(COLUMNS) <= set(row)
    for k in TIMINGS:
        assert math.isfinite(row[k]) and row[k] > 0, (k, row[k])
    assert row["latency_p90_ms"] >= row["latency_p50_ms"]
    assert row["fps"] == pytest.approx(1000 / row["latency_p50_ms"])
    assert row["gflops_per_s"] == pytest.approx(row["gflops"] / (row["latency_p50_ms"] / 1000))


@pytest.fixture(scope="module")
def both_runtimes() -> list[dict]:
    pytest.importorskip("onnxruntime")
    before = torch.get_num_threads()
    rows = bench(["dwsep_tiny"], BenchConfig(**QUICK, threads=1, runtimes=("torch", "onnx")))
    assert torch.get_num_threads() == before  # set for the run, then restored
    return rows


def test_torch_and_onnx_rows_share_the_model_figures(both_runtimes):
    torch_row, onnx_row = both_runtimes
    assert (torch_row["runtime"], onnx_row["runtime"]) == ("torch", "onnx")
    model = create_model("dwsep_tiny")
    expected = {
        "name": "dwsep_tiny",
        "model": "dwsep_tiny",
        "task": "localize",
        "threads": 1,
        "size": "96x64",
        "batch": 2,
        "params": sum(p.numel() for p in model.parameters()),
        "size_kind": "fp32_weights",
        "gflops": pytest.approx(count_flops(model, SIZE) / 1e9),
    }
    for row in both_runtimes:
        _check_figures(row)
        assert {k: row[k] for k in expected} == expected
    assert torch_row["size_mb"] == onnx_row["size_mb"] == pytest.approx(0.6, rel=0.1)  # 144k fp32


def test_checkpoint_target_uses_its_canvas_and_file_size(tmp_path):
    path = tmp_path / "tiny.pth"
    save_tiny_checkpoint(path, canvas=(64, 48))
    row = bench_one(path, "torch", BenchConfig(batch=2, warmup=0, iters=3, max_time_s=1.0))
    _check_figures(row)
    assert (row["name"], row["model"], row["size"]) == (str(path), "dwsep_tiny", "64x48")
    assert (row["size_kind"], row["size_mb"]) == ("checkpoint", path.stat().st_size / 1e6)
    assert row["threads"] == torch.get_num_threads() and row["channels_last"] is False
    cl = bench_one(path, "torch", BenchConfig(size=SIZE, warmup=0, iters=3, channels_last=True))
    assert cl["size"] == "96x64" and cl["channels_last"] is True


def test_detectors_bench_as_deployed_in_both_runtimes(tmp_path):
    pytest.importorskip("onnxruntime")
    ckpt = save_checkpoint_of(tmp_path / "det.pth", seeing_detector("dwsep_tiny", SIZE), SIZE)
    cfg = BenchConfig(**QUICK, threads=1, runtimes=("torch", "onnx"))
    rows = bench([ckpt], cfg)  # the checkpoint's own task
    rows += bench(
        ["dwsep_tiny"], BenchConfig(**QUICK, threads=1, runtimes=("torch", "onnx"), task="detect")
    )
    detector = create_model("dwsep_tiny", task="detect")
    gflops = count_flops(detector, SIZE) / 1e9  # the model's: postprocess has no conv/matmul
    assert gflops > count_flops(create_model("dwsep_tiny"), SIZE) / 1e9  # neck and heads
    for row in rows:
        _check_figures(row)
        assert (row["task"], row["model"], row["size"]) == ("detect", "dwsep_tiny", "96x64")
        assert row["gflops"] == pytest.approx(gflops)
        assert row["params"] == sum(p.numel() for p in detector.parameters())
    assert [r["runtime"] for r in rows] == ["torch", "onnx", "torch", "onnx"]
    assert rows[0]["size_kind"] == "checkpoint" and rows[2]["size_kind"] == "fp32_weights"
    with pytest.raises(PlatelabError, match="is a detect checkpoint: --task localize is for"):
        bench_one(ckpt, "torch", BenchConfig(**QUICK, task="localize"))
    with pytest.raises(PlatelabError, match="unknown task 'segment'"):
        bench_one("dwsep_tiny", "torch", BenchConfig(**QUICK, task="segment"))


def test_time_runs_counts_warmup_iters_and_stops_early():
    calls = []
    times = time_runs(lambda: calls.append(1), warmup=2, iters=4, max_time_s=60)
    assert len(calls) == 6 and len(times) == 4 and all(t >= 0 for t in times)
    calls.clear()
    times = time_runs(lambda: (calls.append(1), time.sleep(0.002)), 0, 100, max_time_s=0.0)
    assert len(times) == 3 and min(times) >= 0.002  # the time budget ends it after 3 runs
    assert len(time_runs(lambda: None, 0, 1, max_time_s=0.0)) == 1


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tune_malloc_applies_on_glibc():
    assert tune_malloc() is True
    assert tune_malloc() is True  # idempotent


def test_percentile_by_hand():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert percentile([5.0], 90) == 5.0


def test_csv_round_trip_and_table(both_runtimes, tmp_path):
    rows = [dict(r, note="extra column") for r in both_runtimes]
    path = write_csv(rows, tmp_path / "sub" / "bench.csv")
    back = read_csv(path)
    assert back == rows  # floats are written with repr: exact
    assert list(back[0])[: len(COLUMNS)] == COLUMNS and list(back[0])[-1] == "note"
    assert isinstance(back[0]["params"], int) and back[0]["channels_last"] is False
    table = format_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[0].startswith("| name") and "p50 ms" in table[0] and "GFLOP/s" in table[0]
    assert set(table[1]) <= set("|-:")
    assert "| dwsep_tiny" in table[2] and "| onnx" in table[3]
    assert f"{rows[0]['latency_p50_ms']:.2f}" in table[2]


def test_user_errors_are_one_line(tmp_path):
    cfg = BenchConfig(**QUICK)
    with pytest.raises(PlatelabError, match="unknown model 'dwsep_tiyn'; did you mean: dwsep_tiny"):
        bench_one("dwsep_tiyn", "torch", cfg)
    with pytest.raises(PlatelabError, match="unknown runtime 'tensorrt'; choose from: torch, onnx"):
        bench(["dwsep_tiny"], BenchConfig(**QUICK, runtimes=("torch", "tensorrt")))
    with pytest.raises(PlatelabError, match="checkpoint not found"):
        bench_one(tmp_path / "missing.pth", "torch", cfg)
    with pytest.raises(PlatelabError, match="no checkpoint or run folder"):
        bench_one(str(tmp_path / "no_such_run"), "torch", cfg)
    with pytest.raises(PlatelabError, match="batch and iters must be >= 1"):
        bench_one("dwsep_tiny", "torch", BenchConfig(batch=0))
    with pytest.raises(PlatelabError, match="threads must be >= 1"):
        bench_one("dwsep_tiny", "torch", BenchConfig(threads=0))
    with pytest.raises(PlatelabError, match="cannot write"):
        write_csv([], Path(__file__) / "x.csv")  # a file as a folder


def test_cli_bench_prints_a_table_and_writes_csv(tmp_path, capsys):
    from platelab.cli import main

    csv_path = tmp_path / "bench.csv"
    args = ["bench", "dwsep_tiny", "--size", "96x64", "--batch", "2", "--iters", "3",
            "--threads", "1", "--csv", str(csv_path)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 threads" in printed and "| dwsep_tiny" in printed
    (row,) = read_csv(csv_path)
    assert row["model"] == "dwsep_tiny" and row["threads"] == 1 and row["latency_p50_ms"] > 0
    assert main(["bench", "resnet81"]) == 2
    assert "did you mean: resnet18" in capsys.readouterr().err


def test_batch_1_throughput_is_the_latency_runs_not_a_second_timing():
    cfg = BenchConfig(**{**QUICK, "batch": 1}, threads=1)
    row = bench_one("dwsep_tiny", "torch", cfg)
    assert row["throughput_img_s"] == pytest.approx(row["fps"], rel=1e-9)  # same runs


def test_cli_bench_task_detect_names_the_task(capsys):
    from platelab.cli import main

    args = ["bench", "dwsep_tiny", "--task", "detect", "--size", "96x64", "--batch", "1"]
    assert main([*args, "--iters", "2", "--threads", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "| task" in table[1] and "| dwsep_tiny | detect" in table[3]
