"""task=read: batches, loss and decode contract, overfitting, train -> resume -> reload."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from platelab.config import load_config, load_run_config
from platelab.data.crop_manifest import load_crop_split
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.synth import generate
from platelab.data.synth.crops import CropConfig, render_crop
from platelab.engine.checkpoint import load_checkpoint
from platelab.errors import PlatelabError
from platelab.models.weights import load_model_from_checkpoint
from platelab.tasks import get_task
from platelab.tasks.read import ReadLoss, collate_read, decode, decode_outputs
from platelab.text import get_charset
from platelab.train import train

READ = get_task("read")
CS = get_charset("plates")
KEYS = ["task=read", "model=crnn", "batch_size=8", "workers=0", "lr=0.003", "tensorboard=false"]


def _sample(text: str, index: int = 0, rows: int = 1):
    image = torch.zeros(3, 32, 128, dtype=torch.uint8)
    return image, {"text": text, "rows": rows, "index": index, "style": ""}


def _perfect_logits(texts: list[str], t: int, ctc: bool) -> torch.Tensor:
    """Logits that read ``texts`` exactly: CTC with blanks between characters, or slots."""
    logits = torch.full((len(texts), t, len(CS)), -10.0)
    logits[:, :, 0] = 10.0  # blank / padding everywhere
    for i, text in enumerate(texts):
        for k, c in enumerate(CS.encode(text)):
            s = 2 * k + 1 if ctc else k
            logits[i, s, 0], logits[i, s, c] = -10.0, 10.0
    return logits


# -- batches, loss, decoding ----------------------------------------------------------------
def test_collate_encodes_ctc_and_slot_targets():
    images, tg = collate_read([_sample("皖A12", 0), _sample("", 1), _sample("AB", 2)],
                              charset=CS, max_len=3)  # fmt: skip
    assert images.shape == (3, 3, 32, 128) and images.dtype == torch.uint8
    assert tg["lengths"].tolist() == [4, 0, 2] and tg["targets"].shape == (6,)
    assert CS.decode(tg["targets"].tolist()) == "皖A12AB"
    assert tg["slots"].shape == (3, 3) and CS.decode(tg["slots"][2].tolist()) == "AB"
    assert tg["slots"][1].tolist() == [0, 0, 0]
    with pytest.raises(PlatelabError, match="cannot read the data.*'Ж'"):
        collate_read([_sample("AЖ")], charset=CS)


@pytest.mark.parametrize("name", ["crnn", "slot_ocr"])
def test_contract_empty_batch_empty_text_and_perfect_output(name):
    model = READ.build_model(name, width=8)
    collate = READ.collate_for(model)
    loss_fn = READ.build_loss()
    images, tg = collate([])
    assert images.shape == (0, 3, 32, 128)
    assert torch.isfinite(loss_fn(model(images), tg)["loss"])
    images, tg = collate([_sample(""), _sample("京A1")])
    assert torch.isfinite(loss_fn(model(images), tg)["loss"])

    texts = ["皖A12345", "AB123CD", "京B9"]
    ctc = name == "crnn"
    t = 32 if ctc else model.max_len
    logits = _perfect_logits(texts, t, ctc)
    out = {"logits": logits} if ctc else {"slot_logits": logits, "slot_x": torch.rand(3, t)}
    _, tg = collate([_sample(s, i) for i, s in enumerate(texts)])
    assert float(loss_fn(out, tg)["loss"]) < 1e-3
    preds = decode_outputs(model, out)
    assert [p.text for p in preds] == texts
    assert all(p.score == pytest.approx(1.0) for p in preds)
    assert READ.monitor in READ.metric_names(loss_fn)


def test_decode_slots_drops_padding_and_scores_are_products():
    logits = np.full((1, 4, len(CS)), -9.0, np.float32)
    a, one = CS.encode("A")[0], CS.encode("1")[0]
    logits[0, 0, a] = 2.0
    logits[0, 1, 0] = 5.0  # padding in the middle is dropped too
    logits[0, 2, one] = 5.0
    logits[0, 3, 0] = 5.0
    (p,) = decode(logits, np.array([[0.1, 0.3, 0.7, 0.9]]), "slots", CS, rows=[2])
    assert p.text == "A1" and p.rows == [0, 1] and p.positions == pytest.approx([0.1, 0.7])
    assert p.score == pytest.approx(p.char_scores[0] * p.char_scores[1])
    (empty,) = decode(np.zeros((1, 4, len(CS))), None, "ctc", CS)
    assert empty.text == "" or empty.score > 0  # uniform logits: whatever, but defined
    with pytest.raises(PlatelabError, match="unknown decoder"):
        decode(logits, None, "beam", CS)


def test_ctc_rows_of_a_two_line_crop():
    logits2 = torch.full((1, 32, len(CS)), -10.0)
    logits2[:, :, 0] = 10.0
    for k, c in enumerate(CS.encode("皖A1234")):
        s = [2, 6, 18, 22, 26, 30][k]  # two characters in the left half, four in the right
        logits2[0, s, 0], logits2[0, s, c] = -10.0, 10.0
    (p,) = decode(logits2, None, "ctc", CS, rows=[2])
    assert p.text == "皖A1234" and p.rows == [0, 0, 1, 1, 1, 1]


# -- learning -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs"), [("slot_ocr", {"width": 16, "dim": 64}),
                                              ("crnn", {"width": 16, "hidden": 64})])  # fmt: skip
def test_a_recogniser_overfits_32_synthetic_crops(name, kwargs):
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a few hundred tiny steps: threads only add overhead
    try:
        crops = [render_crop((0, i), CropConfig(degrade=False)) for i in range(32)]
        samples = [
            (torch.from_numpy(c.image).permute(2, 0, 1).contiguous(),
             {"text": c.text, "rows": c.rows, "index": i, "style": c.style})
            for i, c in enumerate(crops)
        ]  # fmt: skip
        model = READ.build_model(name, **kwargs)
        images, targets = READ.collate_for(model)(samples)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        loss_fn, acc = ReadLoss(), 0.0
        for step in range(1, 701):
            model.train()
            loss = loss_fn(model(images), targets)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 25 == 0:
                model.eval()
                with torch.no_grad():
                    preds = decode_outputs(model, model(images))
                acc = np.mean([p.text == c.text for p, c in zip(preds, crops, strict=True)])
                if acc == 1.0:
                    break
    finally:
        torch.set_num_threads(before)
    assert acc == 1.0, f"{name}: accuracy {acc} after {step} steps"


# -- end to end -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crop_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("read")
    generate(root / "synth", 40, seed=5, formats=("crops",), progress=False)
    out = root / "ds"
    prepare(PrepareConfig(out=out, crops=[root / "synth" / "crops"], split=(0.6, 0.2, 0.2),
                          progress=False))  # fmt: skip
    return out


def test_train_resume_and_reload_a_recogniser(crop_dataset, tmp_path):
    run = tmp_path / "run"
    cfg = load_config(None, [*KEYS, f"data={crop_dataset}", f"out={run}", "epochs=1"])
    assert cfg.monitor == "accuracy"
    train(cfg)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {"accuracy", "cer", "province_accuracy", "val_loss", "train_loss"} <= set(rows[0])
    assert int(float(rows[0]["n_crops"])) == len(load_crop_split(crop_dataset, "val"))
    meta = load_checkpoint(run / "last.pth")["meta"]
    assert meta["task"] == "read" and meta["crop_size"] == [128, 32]
    assert meta["charset"]["name"] == "plates" and meta["decoder"] == "ctc"
    assert "monitor: accuracy" in (run / "hparams.yaml").read_text()

    train(load_run_config(run, ["epochs=2"]), resume=run)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    model, info = load_model_from_checkpoint(run)
    assert info["task"] == "read" and model.charset.symbols == CS.symbols


def test_train_refuses_a_scene_dataset_or_a_localiser(crop_dataset, tmp_path):
    with pytest.raises(PlatelabError, match="not a text recogniser"):
        train(load_config(None, ["task=read", "model=dwsep_tiny", f"data={crop_dataset}",
                                 f"out={tmp_path / 'r'}"]))  # fmt: skip


@pytest.mark.slow
def test_torchrun_two_processes_train_a_recogniser(crop_dataset, tmp_path):
    """DDP: each rank reads its shard of the crops; validation gathers both shards."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "platelab", "train", *KEYS, f"data={crop_dataset}", f"out={tmp_path}",
           "epochs=1"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["metrics"]["n_crops"] == len(load_crop_split(crop_dataset, "val"))
    assert not any(k.startswith("module.") for k in state["model"])
    model, info = load_model_from_checkpoint(tmp_path / "last.pth")
    assert info["task"] == "read" and model.charset.name == "plates"
