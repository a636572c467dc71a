"""task=detect end to end on tiny synthetic scenes: train, resume, reload, DDP, and the contract."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from platelab.config import load_config
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.stream import build_eval_loader
from platelab.data.synth import generate
from platelab.engine.checkpoint import load_checkpoint
from platelab.models.detector import Detector
from platelab.models.weights import load_model_from_checkpoint
from platelab.tasks import get_task
from platelab.train import train

KEYS = ["task=detect", "model=dwsep_tiny", "batch_size=8", "workers=0", "lr=0.003"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """24 synthetic scenes (YOLO-pose: every plate has corners) at 160x120."""
    root = tmp_path_factory.mktemp("detect")
    generate(root / "synth", 24, seed=3, formats=("yolo",), progress=False)
    out = root / "ds"
    prepare(PrepareConfig(out=out, yolo=[root / "synth" / "yolo"], size=(160, 120), progress=False))
    return out


def test_train_resume_and_reload_a_detector(scenes, tmp_path):
    run = tmp_path / "run"
    train(load_config(None, [*KEYS, f"data={scenes}", f"out={run}", "epochs=1"]))
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert rows[0]["ap50"] != "" and {"ap50_95", "corner_error_px", "acc_iou50"} <= set(rows[0])
    meta = load_checkpoint(run / "last.pth")["meta"]
    assert meta["task"] == "detect" and meta["model_kwargs"]["task"] == "detect"
    assert "monitor: ap50" in (run / "hparams.yaml").read_text()

    from platelab.config import load_run_config

    train(load_run_config(run, ["epochs=2"]), resume=run)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    model, info = load_model_from_checkpoint(run)
    assert isinstance(model, Detector) and info["task"] == "detect"


def test_evaluate_counts_every_val_image_and_plate(scenes):
    task = get_task("detect")
    model = task.build_model("dwsep_tiny").eval()
    loader = build_eval_loader(scenes, "val", 4, collate_fn=task.collate)
    metrics, records = task.evaluate(model, loader, collect=True)
    from platelab.data.manifest import load_split

    images = load_split(scenes, "val")
    assert metrics["n_images"] == len(images) == len(records)
    assert metrics["n_plates"] == sum(len(m.boxes_xyxy) for m in images)
    assert [r["index"] for r in records] == list(range(len(images)))


class _Oracle(torch.nn.Module):
    """A 'detector' whose outputs put a confident, exact plate at every assigned location."""

    def __init__(self, model: Detector, targets: list[torch.Tensor], corners: list[torch.Tensor]):
        super().__init__()
        self.model, self.targets, self.corners = model, targets, corners

    def forward(self, images):
        from platelab.tasks.detect_ops import assign

        out = self.model(images)
        logits = torch.full_like(out["logits"], -20.0)
        boxes, corners = out["boxes_xyxy"].clone(), out["corners"].clone()
        for i in range(images.shape[0]):
            gt, gc = self.targets.pop(0), self.corners.pop(0)
            a = assign(out["points"], out["strides"], gt)
            pos = a.positive
            logits[i, pos] = 20.0
            boxes[i, pos] = gt[a.gt_index[pos]]
            corners[i, pos] = torch.nan_to_num(gc[a.gt_index[pos]])
        return {**out, "logits": logits, "boxes_xyxy": boxes, "corners": corners}


@pytest.mark.parametrize("task_name", ["localize", "detect"])
def test_task_contract_empty_batch_gives_a_finite_loss(task_name):
    task = get_task(task_name)
    model = task.build_model("dwsep_tiny")
    image = torch.zeros(3, 64, 96, dtype=torch.uint8)
    empty = {"boxes_xyxy": torch.zeros(0, 4), "corners": torch.zeros(0, 4, 2), "index": 0}
    images, targets = task.collate([(image, empty), (image, {**empty, "index": 1})])
    terms = task.build_loss()(model(images), targets)
    assert torch.isfinite(terms["loss"])
    assert task.monitor in task.metric_names(task.build_loss())


def test_detect_contract_perfect_output_scores_one(scenes):
    task = get_task("detect")
    from platelab.data.manifest import load_split

    images = load_split(scenes, "val")
    gts = [torch.as_tensor(m.boxes_xyxy, dtype=torch.float32) for m in images]
    gcs = [torch.as_tensor(m.corners, dtype=torch.float32) for m in images]
    oracle = _Oracle(task.build_model("dwsep_tiny").eval(), gts, gcs)
    metrics = task.evaluate(oracle, build_eval_loader(scenes, "val", 4, collate_fn=task.collate))
    assert metrics["ap50"] == pytest.approx(1.0) and metrics["recall"] == pytest.approx(1.0)
    assert metrics["precision"] == pytest.approx(1.0) and metrics["acc_iou70"] == pytest.approx(1.0)
    # every synthetic plate has corners (YOLO-pose labels); the oracle's are the manifest's
    assert metrics["n_corner_pairs"] == metrics["n_plates"] > 0
    assert metrics["corner_error_px"] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.slow
def test_torchrun_two_processes_train_a_detector(scenes, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "platelab", "train", *KEYS, f"data={scenes}", f"out={tmp_path}", "epochs=1",
           "tensorboard=false"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from platelab.data.manifest import load_split

    state = load_checkpoint(tmp_path / "last.pth")
    assert state["metrics"]["n_images"] == len(load_split(scenes, "val"))  # both shards gathered
    assert not any(k.startswith("module.") for k in state["model"])
