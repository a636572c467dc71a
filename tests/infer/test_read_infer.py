"""task=read deployed: ONNX export and parity, Predictor (crops, or photos with corners) in
torch and onnxruntime, predict on a crop folder with a corrupt file, bench."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from platelab.data.synth.crops import render_crop
from platelab.errors import PlatelabError
from platelab.eval.speed import BenchConfig, bench_one
from platelab.infer.predict import run_predict
from platelab.infer.predictor import Predictor
from platelab.models import create_model
from platelab.tasks.read import TextPrediction
from tests.infer import save_checkpoint_of

pytest.importorskip("onnxruntime")
CROPS = [render_crop((4, i)) for i in range(6)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A crnn checkpoint (random weights, batch-norm statistics from crops) and its export."""
    from platelab.infer.export import export_checkpoint

    root = tmp_path_factory.mktemp("readinfer")
    torch.manual_seed(0)
    model = create_model("crnn", width=8, hidden=16)
    model.train()
    with torch.no_grad():  # batch-norm statistics that see crops: outputs vary with them
        model(torch.from_numpy(np.stack([c.image for c in CROPS])).permute(0, 3, 1, 2))
    model.eval()
    ckpt = save_checkpoint_of(root / "best.pth", model, model.input_size)
    crops = [c.image for c in CROPS]
    report = export_checkpoint(ckpt, root / "crnn.onnx", parity_images=crops)
    return ckpt, report, root


def test_export_metadata_and_parity(exported):
    _, report, _ = exported
    meta = report.metadata
    assert meta["task"] == "read" and meta["decoder"] == "ctc" and meta["canvas"] == "128x32"
    assert json.loads(meta["charset"])["name"] == "plates" and json.loads(meta["crop_size"]) == [
        128,
        32,
    ]
    assert report.texts_equal == report.images == len(CROPS)
    assert report.max_score_diff < 1e-3 and report.max_logit_diff < 1e-2
    assert report.max_box_diff_px < 0.5  # the positions output, crop pixels


def test_predictor_torch_and_onnx_agree_on_crops_and_photos(exported):
    ckpt, report, _ = exported
    torch_p, onnx_p = Predictor(ckpt), Predictor(report.path)
    assert torch_p.task == onnx_p.task == "read" and onnx_p.canvas == (128, 32)
    crops = [c.image for c in CROPS]
    a, b = torch_p.predict(crops), onnx_p.predict(crops)
    assert all(isinstance(p, TextPrediction) for p in a)
    assert [p.text for p in a] == [p.text for p in b]
    for p, q in zip(a, b, strict=True):
        assert p.score == pytest.approx(q.score, abs=1e-3)
        assert len(p.char_scores) == len(p.text) == len(p.rows)
    # the same crop inside a photo, read through its corners: the same reading
    photo = np.full((120, 300, 3), 90, np.uint8)
    photo[40:72, 100:228] = crops[0]
    quad = [[100, 40], [228, 40], [228, 72], [100, 72]]
    (r,) = torch_p.read([photo], corners=[quad])
    assert r.text == a[0].text and (r.width, r.height) == (300, 120)
    assert r.score == pytest.approx(a[0].score, rel=1e-4)
    with pytest.raises(PlatelabError, match="4 finite"):
        torch_p.read([photo], corners=[[[0, 0], [1, 1]]])
    two = torch_p.read([photo], corners=[quad], rows=[2])[0]
    assert all(row in (0, 1) for row in two.rows)


def test_predict_a_crop_folder_with_a_corrupt_file(exported, tmp_path):
    ckpt, _, _ = exported
    src = tmp_path / "crops"
    src.mkdir()
    for i, c in enumerate(CROPS[:3]):
        cv2.imwrite(str(src / f"c{i}.png"), c.image[..., ::-1])
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    summary = run_predict(ckpt, src, tmp_path / "out", progress=False)
    assert summary["task"] == "read" and summary["images"] == 3
    assert [s["path"] for s in summary["skipped"]] == ["broken.jpg"]
    lines = [
        json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    ]
    assert [x["source"] for x in lines] == ["c0.png", "c1.png", "c2.png"]
    assert {"text", "score", "char_scores", "rows"} <= set(lines[0])
    assert (tmp_path / "out" / "c0.png").is_file()  # the crop drawn with its reading


def test_bench_a_recogniser_at_its_crop_size(exported):
    cfg = BenchConfig(batch=4, iters=3, warmup=1, max_time_s=1.0, threads=1)
    row = bench_one("slot_ocr", "torch", cfg)
    assert row["task"] == "read" and row["size"] == "128x32" and row["throughput_img_s"] > 0
    ckpt, _, _ = exported
    row = bench_one(ckpt, "onnx", cfg)
    assert row["task"] == "read" and row["size"] == "128x32"
