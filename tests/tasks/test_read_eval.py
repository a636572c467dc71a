"""``platelab eval`` of a recogniser: a fake model whose readings are chosen by hand, on a
4-crop dataset; metrics.json, predictions.csv, worst.png and coverage.png."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from platelab.cli import main
from platelab.data.prepare import PrepareConfig, prepare
from platelab.eval import evaluate as evaluate_mod
from platelab.eval.evaluate import evaluate_checkpoint, format_report
from platelab.text import get_charset

CS = get_charset("plates")
TRUTHS = ["皖A12345", "AB123CD", "沪B6789", "京C0000"]
READINGS = [("皖A12345", 0.99), ("AB12CD", 0.9), ("沪B6789", 0.95), ("津C0001", 0.6)]
LEVELS = [20, 90, 160, 230]  # each crop is one grey level: the fake model tells them apart


class _Fake(torch.nn.Module):
    """Reads READINGS[k] (each character with probability p) from the crop of grey LEVELS[k]."""

    task, decoder, charset, input_size, max_len = "read", "slots", CS, (128, 32), 10

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        logits = torch.full((images.shape[0], self.max_len, len(CS)), -30.0)
        means = images.float().mean((1, 2, 3)).tolist()
        for i, m in enumerate(means):
            text, p = READINGS[int(np.argmin([abs(m - v) for v in LEVELS]))]
            logits[i, :, 0] = 30.0
            for s, c in enumerate(CS.encode(text)):
                logits[i, s, 0], logits[i, s, c] = 0.0, math.log(p / (1 - p))
        return {"slot_logits": logits, "slot_x": torch.full(logits.shape[:2], 0.5)}


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readeval")
    src = root / "src"
    src.mkdir()
    with open(src / "labels.csv", "w", encoding="utf-8") as f:
        f.write("image,text\n")
        for k, (text, level) in enumerate(zip(TRUTHS, LEVELS, strict=True)):
            cv2.imwrite(str(src / f"c{k}.png"), np.full((32, 128, 3), level, np.uint8))
            f.write(f"c{k}.png,{text}\n")
    prepare(PrepareConfig(out=root / "ds", crops=[src], split=(1, 0, 0), progress=False))
    return root / "ds"


@pytest.fixture
def fake(monkeypatch):
    info = {"model": "fake", "task": "read", "input_size": (128, 32), "epoch": 3,
            "path": Path("fake.pth"), "metrics": {}}  # fmt: skip
    monkeypatch.setattr(
        evaluate_mod, "load_model_from_checkpoint", lambda *a, **k: (_Fake(), dict(info))
    )


def test_eval_of_a_fake_reader_gives_hand_computed_numbers(crops, fake, tmp_path):
    report = evaluate_checkpoint("fake.pth", crops, "all", tmp_path / "ev", batch_size=3)
    m = report.metrics
    assert m["accuracy"] == pytest.approx(2 / 4) and m["n_crops"] == 4
    assert m["cer"] == pytest.approx((0 + 1 + 0 + 2) / (7 + 7 + 6 + 6))
    assert m["province_accuracy"] == pytest.approx(2 / 3)

    doc = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))
    assert doc["task"] == "read" and doc["decoder"] == "slots"
    assert doc["metrics"]["accuracy"] == pytest.approx(0.5) and "cer" in doc["metrics"]
    assert set(doc["by_length"]) == {"6", "7"} and doc["by_rows"]["1"]["n_crops"] == 4
    # the most confident half (0.99 and 0.95 per character) is all right
    assert next(c for c in doc["coverage"] if c["coverage_target"] == 0.5)["accuracy"] == 1.0

    with open(tmp_path / "ev" / "predictions.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:5] == ["image", "text", "pred", "score", "correct"]
    assert [r["pred"] for r in rows] == [r[0] for r in READINGS]
    assert [r["correct"] for r in rows] == ["1", "0", "1", "0"]
    assert float(rows[1]["score"]) == pytest.approx(0.9**6, rel=1e-3)
    assert [int(r["edits"]) for r in rows] == [0, 1, 0, 2]

    gallery = cv2.imread(str(tmp_path / "ev" / "worst.png"))
    assert gallery is not None and gallery.shape[0] > 64  # two wrong readings drawn
    assert (tmp_path / "ev" / "coverage.png").is_file()
    text = format_report(report)
    assert "4 crops" in text and "accuracy 0.5000" in text


def test_cli_eval_writes_accuracy_and_cer(crops, fake, tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--data", str(crops), "--split", "all",
                 "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))
    assert {"accuracy", "cer"} <= set(doc["metrics"])
    assert "CER" in capsys.readouterr().out
