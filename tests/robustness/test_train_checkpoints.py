"""Checkpoints of a run: independent backups, a full disk, and messages about damaged files."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from platelab import cli
from platelab.engine.checkpoint import CheckpointSaver, checkpoint_header, load_checkpoint
from platelab.errors import DiskFullError, PlatelabError


def _state(epoch: int) -> dict:
    return checkpoint_header(epoch=epoch, model={"w": torch.full((256,), float(epoch))})


def _save_epochs(saver: CheckpointSaver, values: list[float]) -> None:
    for epoch, v in enumerate(values, 1):
        saver.save(epoch, {"mean_iou": v}, _state(epoch))


def test_best_file_is_independent_of_last(tmp_path):
    saver = CheckpointSaver(tmp_path, keep_best=2)
    _save_epochs(saver, [0.1, 0.5])  # epoch 2 is the newest best and the last
    last, best = tmp_path / "last.pth", tmp_path / "best_model_epoch_2.pth"
    assert not os.path.samefile(last, best)
    with open(last, "r+b") as f:  # damage in place, as a bad disk or a stray write would
        f.truncate(100)
    assert load_checkpoint(best)["epoch"] == 2


def test_damaged_last_names_the_checkpoint_that_loads(tmp_path):
    saver = CheckpointSaver(tmp_path, keep_best=1)
    _save_epochs(saver, [0.5, 0.1])  # last.pth holds epoch 2, the best file epoch 1
    (tmp_path / "last.pth").write_bytes(b"\x00" * 10)
    with pytest.raises(PlatelabError) as e:
        load_checkpoint(tmp_path / "last.pth")
    msg = str(e.value)
    assert "last.pth is damaged or not a platelab checkpoint (not a torch file)" in msg
    assert msg.endswith("best_model_epoch_1.pth loads (epoch 1)")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"hello, I am a text file\n", "not a torch file"),
        (b"", "the file is empty"),
        (None, "a truncated or corrupt torch archive"),
        ("pickle", "which platelab never loads"),
    ],
)
def test_unreadable_checkpoints_say_why_in_a_few_words(tmp_path, content, why):
    f = tmp_path / "model.pth"
    if content is None:
        torch.save({"w": torch.zeros(10_000)}, f)
        f.write_bytes(f.read_bytes()[:5000])
    elif content == "pickle":
        torch.save({"w": torch.nn.Linear(2, 2)}, f)  # a module: a pickled class
    else:
        f.write_bytes(content)
    with pytest.raises(PlatelabError) as e:
        load_checkpoint(f)
    msg = str(e.value)
    assert msg == f"{f} is damaged or not a platelab checkpoint ({why})" or why in msg
    assert "weights_only" not in msg and msg != "101" and "\n" not in msg


def _fail_saves_after(monkeypatch, ok: int) -> None:
    """torch.save works ``ok`` times, then finds the disk full (as torch wraps it)."""
    real, calls = torch.save, {"n": 0}

    def save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] > ok:
            raise RuntimeError("[enforce fail] file write failed") from OSError(
                errno.ENOSPC, "No space left on device"
            )
        return real(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", save)


def test_disk_full_names_what_is_intact(tmp_path, monkeypatch):
    saver = CheckpointSaver(tmp_path, keep_best=2)
    _save_epochs(saver, [0.5, 0.1])
    _fail_saves_after(monkeypatch, 0)
    with pytest.raises(DiskFullError) as e:
        saver.save(3, {"mean_iou": 0.9}, _state(3))
    msg = str(e.value)
    assert msg.startswith(f"the disk is full: could not write {tmp_path / 'last.pth'} (epoch 3)")
    assert "last.pth (epoch 2), best_model_epoch_1.pth, best_model_epoch_2.pth" in msg
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pth")["epoch"] == 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_train_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    from tests.engine.test_train import make_dataset

    data = make_dataset(tmp_path / "ds", n_train=8, n_val=4)
    run = tmp_path / "run"
    _fail_saves_after(monkeypatch, 1)  # weights_size_mb saves once to a buffer; epoch 1 fails
    argv = ["train", f"data={data}", f"out={run}", "model=dwsep_tiny", "epochs=2"]
    argv += ["batch_size=4", "workers=0", "tensorboard=false", "amp=off"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()  # tqdm's bar, then the error
    assert (
        [line for line in err if "error" in line]
        == err[-1:]
        == [
            f"platelab: error: the disk is full: could not write {run / 'last.pth'} (epoch 1); "
            "nothing saved yet"
        ]
    )
