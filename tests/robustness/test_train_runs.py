"""Training runs: one process per run folder, an empty val split, Ctrl-C and loader workers."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from platelab.data.stream import build_eval_loader
from platelab.engine.checkpoint import load_checkpoint
from platelab.errors import PlatelabError
from platelab.locking import folder_lock
from platelab.train import train
from tests.engine.test_train import _cfg, make_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("runs") / "ds", n_train=8, n_val=4)


def test_a_second_training_into_a_locked_run_folder_is_refused(small, tmp_path):
    run = tmp_path / "run"
    with folder_lock(run, "training run"), pytest.raises(PlatelabError, match="is in use"):
        train(_cfg(small, run, "epochs=1"))
    assert not (run / "metrics.csv").exists()


def test_a_second_cli_process_gets_one_line_and_exit_2(small, tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "platelab", "train", f"data={small}", f"out={run}"]
    argv += ["model=dwsep_tiny", "epochs=1", "workers=0", "tensorboard=false"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with folder_lock(run, "training run"):  # the first training, as another process sees it
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"platelab: error: {run} is in use: another platelab process is writing this "
        "training run; wait for it to finish or choose another folder"
    ]


def test_empty_val_split_monitors_train_loss_and_says_so(tmp_path, caplog):
    data = make_dataset(tmp_path / "ds", n_train=8, n_val=0)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="platelab"):
        train(_cfg(data, run, "epochs=2"))
    assert "empty val split: monitoring train_loss instead of mean_iou" in caplog.text
    assert yaml.safe_load((run / "hparams.yaml").read_text())["monitor"] == "train_loss"
    saver = load_checkpoint(run / "last.pth")["saver"]
    assert saver["monitor"] == "train_loss" and saver["mode"] == "min"


def test_loader_workers_leave_ctrl_c_to_the_main_process(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=40, n_val=0)
    loader = build_eval_loader(data, "train", 2, workers=2)
    it = iter(loader)
    got = [next(it), next(it)]  # one batch from each worker: both have started
    for w in it._workers:  # Ctrl-C in a terminal reaches every process of the group
        os.kill(w.pid, signal.SIGINT)
    time.sleep(0.5)
    got += list(it)  # 16 batches more than were prefetched: the workers carry on
    assert sum(len(b[0]) for b in got) == 40
