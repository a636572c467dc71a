"""Atomic checkpoint saves, safe loads, RNG round trips and the top-k rotation."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from platelab.engine.checkpoint import (
    CheckpointSaver,
    capture_rng_state,
    checkpoint_header,
    find_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from platelab.errors import PlatelabError

# The child saves a small checkpoint, then starts a large one with a torch.save that
# writes in slow chunks; the parent kills it (SIGKILL) or it exits itself mid-write.
_CHILD = textwrap.dedent(
    """
    import io, os, sys, time, torch
    from platelab.engine import checkpoint as ck

    path, how = sys.argv[1], sys.argv[2]
    ck.save_checkpoint(path, ck.checkpoint_header(epoch=1, model={"w": torch.ones(8)}))
    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        for i in range(0, len(data), 1 << 16):
            f.write(data[i : i + (1 << 16)])
            f.flush()
            if i >= len(data) // 2:
                if how == "exit":
                    os._exit(17)
                print("half-written", flush=True)
                time.sleep(60)

    torch.save = torn_save
    ck.save_checkpoint(path, ck.checkpoint_header(epoch=2, model={"w": torch.zeros(1 << 20)}))
    """
)


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_kill_mid_save_keeps_previous_checkpoint(tmp_path, how):
    last = tmp_path / "last.pth"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(last), how], stdout=subprocess.PIPE, text=True
    )
    try:
        if how == "sigkill":
            assert proc.stdout.readline().strip() == "half-written"
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.stdout.close()
    assert proc.returncode == (-signal.SIGKILL if how == "sigkill" else 17)
    torn = list(tmp_path.glob(".last.pth.*.tmp"))
    assert len(torn) == 1 and torn[0].stat().st_size > 1 << 20  # the half-written new one
    state = torch.load(last, weights_only=True)  # the previous file, whole
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(8))
    CheckpointSaver(tmp_path)  # a new run/resume sweeps the leftovers
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_refuses_objects_weights_only_cannot_load(tmp_path):
    with pytest.raises(TypeError, match=r"state\['hparams'\]\['out'\] is a PosixPath"):
        save_checkpoint(tmp_path / "x.pth", {"hparams": {"out": Path("runs")}})
    assert not list(tmp_path.iterdir())


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(PlatelabError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(
        PlatelabError, match=f"{bad} is damaged or not a platelab checkpoint \\(not a torch file\\)"
    ) as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value)
    plain = tmp_path / "plain.pth"
    torch.save({"weight": torch.ones(2)}, plain)
    with pytest.raises(PlatelabError, match="is not a platelab checkpoint"):
        load_checkpoint(plain)


def test_torn_file_is_refused(tmp_path):
    f = tmp_path / "c.pth"
    save_checkpoint(f, checkpoint_header(model={"w": torch.randn(1000)}))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(PlatelabError, match="damaged or not a platelab checkpoint .a truncated"):
        load_checkpoint(f)


def test_rng_state_round_trips_through_weights_only(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    f = tmp_path / "rng.pth"
    save_checkpoint(f, checkpoint_header(rng=capture_rng_state()))
    expected = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng_state(load_checkpoint(f)["rng"])
    got = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]


def _files(run: Path) -> list[int]:
    return sorted(int(p.stem.rsplit("_", 1)[1]) for p in run.glob("best_model_epoch_*.pth"))


@pytest.mark.parametrize(
    ("mode", "values", "kept", "best"),
    [
        ("max", [0.1, 0.5, 0.3, 0.4, 0.2, 0.6], [2, 4, 6], 6),
        ("min", [0.9, 0.5, 0.7, 0.4, 0.8, 0.6], [2, 4, 6], 4),
        ("max", [0.5, 0.5, 0.5, 0.5], [1, 2, 3], 1),  # ties keep the earlier epochs
        ("max", [0.2, float("nan"), 0.1, 0.3], [1, 3, 4], 4),  # NaN never ranks
    ],
)
def test_top_k_rotation(tmp_path, mode, values, kept, best):
    saver = CheckpointSaver(tmp_path, keep_best=3, monitor="m", mode=mode)
    entered = [saver.save(e, {"m": v}, checkpoint_header(epoch=e)) for e, v in enumerate(values, 1)]
    assert _files(tmp_path) == kept
    assert saver.best_epoch == best
    assert load_checkpoint(tmp_path / f"best_model_epoch_{best}.pth")["epoch"] == best
    assert load_checkpoint(tmp_path / "last.pth")["epoch"] == len(values)
    assert entered[0] is True  # the first value always enters
    assert find_checkpoint(tmp_path) == tmp_path / f"best_model_epoch_{best}.pth"
    assert find_checkpoint(tmp_path, "last") == tmp_path / "last.pth"


def test_keep_zero_writes_only_last(tmp_path):
    saver = CheckpointSaver(tmp_path, keep_best=0, monitor="m")
    assert saver.save(1, {"m": 1.0}, checkpoint_header(epoch=1)) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]
    assert find_checkpoint(tmp_path) == tmp_path / "last.pth"


def test_restore_continues_the_ranking_and_cleans_strays(tmp_path):
    saver = CheckpointSaver(tmp_path, keep_best=2, monitor="m", mode="max")
    for e, v in enumerate([0.3, 0.9, 0.5], 1):
        saver.save(e, {"m": v}, checkpoint_header(epoch=e))
    assert _files(tmp_path) == [2, 3]
    state = load_checkpoint(tmp_path / "last.pth")["saver"]
    # A crash between saving last.pth and deleting a rotated-out file leaves a stray.
    (tmp_path / "best_model_epoch_1.pth").write_bytes(b"stray")
    again = CheckpointSaver(tmp_path, keep_best=2, monitor="m", mode="max")
    again.load_state_dict(state)
    assert _files(tmp_path) == [2, 3]
    again.save(4, {"m": 0.7}, checkpoint_header(epoch=4))
    assert _files(tmp_path) == [2, 4]
    other = CheckpointSaver(tmp_path, keep_best=2, monitor="val_loss", mode="min")
    other.load_state_dict(state)  # another monitor: a fresh ranking
    assert other.best == [] and _files(tmp_path) == []


def test_missing_monitor_is_a_clear_error(tmp_path):
    saver = CheckpointSaver(tmp_path, monitor="mean_iuo")
    with pytest.raises(PlatelabError, match="monitor 'mean_iuo' is not a metric; choose from a, b"):
        saver.save(1, {"b": 1.0, "a": 2.0}, checkpoint_header(epoch=1))


def test_find_checkpoint_errors(tmp_path):
    with pytest.raises(PlatelabError, match="no checkpoint or run folder: .*nope$"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(PlatelabError, match="checkpoint not found: .*nope.pth$"):
        find_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(PlatelabError, match="holds no last.pth"):
        find_checkpoint(tmp_path)
