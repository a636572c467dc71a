"""Two CPU processes under torchrun (gloo): one set of logs and checkpoints, weights in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from platelab.engine import distributed as dist
from platelab.engine.checkpoint import load_checkpoint

TOY = Path(__file__).with_name("toy.py")


def test_single_process_helpers_are_no_ops():
    assert dist.init_distributed("cpu") is False
    assert (dist.rank(), dist.world_size(), dist.is_primary()) == (0, 1, True)
    t = torch.tensor([1.0, 3.0])
    assert torch.equal(dist.all_reduce_mean(t), t) and dist.all_gather_object("x") == ["x"]
    dist.barrier()
    model = torch.nn.Linear(2, 2)
    assert dist.unwrap(model) is model


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(TOY),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone writes: one header, one row per epoch, keep_best=1 -> one best file
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and [x.split(",")[0] for x in lines[1:]] == ["1", "2"]
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == [
        f"best_model_epoch_{load_checkpoint(tmp_path / 'last.pth')['saver']['best'][0][0]}.pth",
        "last.pth",
    ]
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["epoch"] == 2 and len(state["rng"]) == 2  # one RNG state per rank
    assert not any(k.startswith("module.") for k in state["model"])  # unwrapped before saving
    assert state["metrics"]["images"] == 24  # evaluate gathered both halves of val
    assert state["step"] == 2 * 3  # 48 images / 2 ranks / batch 8
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert [r[:2] for r in ranks] == [[0, 2], [1, 2]]
    assert ranks[0][2] == pytest.approx(ranks[1][2], rel=1e-6)  # DDP kept parameters identical
    saved = {k: float(state["model"][k].double().sum()) for k in ranks[0][2]}
    assert saved == pytest.approx(ranks[0][2], rel=1e-6)
