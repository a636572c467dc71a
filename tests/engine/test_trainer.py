"""The generic loop on a toy task: resume equivalence, Ctrl-C, schedules, AMP, clear stops."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from platelab.engine.checkpoint import load_checkpoint
from platelab.engine.optim import lr_factor
from platelab.engine.trainer import resolve_amp, weights_size_mb
from platelab.errors import PlatelabError
from tests.engine.toy import ToyNet, run_toy, toy_config, toy_loss

TIMING = {"train_img_per_s", "train_steady_img_per_s", "val_fps", "epoch_time_s"}


def _rows(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def _assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-9), (ra["epoch"], k)


@pytest.mark.parametrize(
    "kw",
    [
        {"scheduler": "cosine"},
        {"scheduler": "onecycle", "ema": True, "ema_decay": 0.9, "amp": "bf16", "grad_clip": 0.5},
    ],
    ids=["cosine", "onecycle-ema-bf16-clip"],
)
def test_ctrl_c_then_resume_matches_uninterrupted(tmp_path, kw):
    full, _ = run_toy(toy_config(tmp_path / "full", **kw))
    with pytest.raises(KeyboardInterrupt):  # logged and re-raised: the caller decides
        run_toy(toy_config(tmp_path / "cut", **kw), interrupt_at=3)
    assert load_checkpoint(tmp_path / "cut/last.pth")["epoch"] == 2
    assert [r["epoch"] for r in _rows(tmp_path / "cut")] == [1.0, 2.0]
    resumed, _ = run_toy(toy_config(tmp_path / "cut", **kw), resume=True)
    assert resumed.last_epoch == 4 and resumed.best_epoch == full.best_epoch
    _assert_same_rows(_rows(tmp_path / "cut"), _rows(tmp_path / "full"))
    a, b = load_checkpoint(tmp_path / "cut/last.pth"), load_checkpoint(tmp_path / "full/last.pth")
    for k, v in a["model"].items():
        torch.testing.assert_close(v, b["model"][k])
    assert a["step"] == b["step"] == 4 * 6
    assert (a["ema"] is None) == (not kw.get("ema"))


def test_resume_may_raise_the_epoch_count(tmp_path):
    kw = {"scheduler": "none"}  # a schedule that does not depend on the total
    run_toy(toy_config(tmp_path / "full", epochs=4, **kw))
    run_toy(toy_config(tmp_path / "grow", epochs=2, **kw))
    with pytest.raises(PlatelabError, match="already finished 2 epochs; pass epochs=N with N > 2"):
        run_toy(toy_config(tmp_path / "grow", epochs=2, **kw), resume=True)
    run_toy(toy_config(tmp_path / "grow", epochs=4, **kw), resume=True)
    _assert_same_rows(_rows(tmp_path / "grow"), _rows(tmp_path / "full"))


def test_checkpoint_is_self_describing(tmp_path):
    result, trainer = run_toy(toy_config(tmp_path, epochs=3, keep_best=2))
    state = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (
        state["format"] == "platelab" and state["epoch"] == 3 and state["meta"] == {"task": "toy"}
    )
    assert state["hparams"]["out"] == str(tmp_path) and state["hparams"]["epochs"] == 3
    assert {"optimizer", "scheduler", "scaler", "rng", "saver", "platelab_version"} <= state.keys()
    assert state["metrics"]["epoch"] == 3 and "score" in state["metrics"]
    rebuilt = ToyNet()
    rebuilt.load_state_dict(state["model"])
    assert sorted(p.name for p in tmp_path.glob("best_*")) == [
        f"best_model_epoch_{e}.pth" for e, _ in sorted(state["saver"]["best"])
    ]
    assert len(state["saver"]["best"]) == 2 and result.best_epoch == state["saver"]["best"][0][0]
    row = _rows(tmp_path)[-1]
    assert row["params"] == sum(p.numel() for p in ToyNet().parameters())
    assert row["model_size_mb"] == pytest.approx(weights_size_mb(rebuilt), rel=1e-6)
    assert row["lr"] == pytest.approx(0.02 * lr_factor(3 * 6 - 1, 18, 6, "cosine", 0.01))


def test_non_finite_loss_stops_with_the_step(tmp_path):
    calls = {"n": 0}

    def exploding(outputs, targets):
        calls["n"] += 1
        terms = toy_loss(outputs, targets)
        if calls["n"] == 3:
            terms["loss"] = terms["loss"] * float("inf")
        return terms

    with pytest.raises(PlatelabError, match=r"^loss is inf at epoch 1, step 3 \(loss=inf, mse="):
        run_toy(toy_config(tmp_path), loss_fn=exploding)
    assert not (tmp_path / "last.pth").exists()


def test_unknown_monitor_named_after_first_epoch(tmp_path):
    with pytest.raises(PlatelabError, match="monitor 'mean_iou' is not a metric; choose from"):
        run_toy(toy_config(tmp_path, monitor="mean_iou"))


def test_max_train_batches_caps_the_epoch(tmp_path):
    run_toy(toy_config(tmp_path, epochs=2, max_train_batches=2, max_val_batches=1))
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["step"] == 4
    assert state["metrics"]["images"] == 8  # one validation batch


def test_lr_schedules():
    # cosine: linear warm-up 1/5 .. 4/5 over 4 steps, then 1 -> 0.01
    f = [lr_factor(s, 14, 4, "cosine", 0.01) for s in range(14)]
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert f[9] == pytest.approx(0.01 + 0.99 * 0.5)  # half-way through the cosine
    assert f[-1] == pytest.approx(0.01 + 0.99 * (1 + math.cos(math.pi * 9 / 10)) / 2)
    assert [lr_factor(s, 10, 2, "none", 0.0) for s in (0, 1, 2, 9)] == pytest.approx(
        [1 / 3, 2 / 3, 1, 1]
    )
    # onecycle: torch's OneCycleLR curve (cos anneal, pct_start 0.3, div 25, final div 1e4)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.1, total_steps=40, cycle_momentum=False
    )
    expected = []
    for _ in range(40):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [0.1 * lr_factor(s, 40, 0, "onecycle", 0) for s in range(40)] == pytest.approx(expected)


def test_amp_resolution():
    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    with pytest.raises(PlatelabError, match="amp=fp16 needs a CUDA device"):
        resolve_amp("fp16", cpu)
    assert resolve_amp("auto", cpu) is None  # bf16 autocast trains slower on CPU (measured)


def test_ema_decay_ramps_up_then_caps():
    from torch.optim.swa_utils import AveragedModel

    from platelab.engine.trainer import ema_with_warmup

    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = AveragedModel(net, multi_avg_fn=ema_with_warmup(0.5), use_buffers=True)
    ema.update_parameters(net)  # the first update copies: 1.0
    with torch.no_grad():
        net.weight.fill_(12.0)
    ema.update_parameters(net)  # n = 1: decay min(0.5, 2/11) = 2/11 -> 2/11 * 1 + 9/11 * 12
    assert ema.module.weight.item() == pytest.approx(2 / 11 + 9 / 11 * 12)
    for _ in range(20):
        ema.update_parameters(net)
    before = ema.module.weight.item()
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema.update_parameters(net)  # n = 22: (1 + n) / (10 + n) > 0.5, so the cap 0.5 holds
    assert ema.module.weight.item() == pytest.approx(0.5 * before)
