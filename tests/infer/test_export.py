"""ONNX export: the graph contract, metadata, parity with PyTorch, and one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from platelab import __version__
from platelab.errors import PlatelabError
from platelab.geometry import Letterbox
from platelab.infer import export as export_module
from platelab.infer.export import (
    TOLERANCE_PX,
    ExportedModel,
    export_checkpoint,
    export_onnx,
    letterbox_canvases,
    onnx_session,
    parity,
    read_metadata,
)
from platelab.models import create_model
from tests.infer import SCORE, FixedBox, save_checkpoint_of

pytest.importorskip("onnxruntime")
W, H = 96, 64


def seeing_model(name: str, seed: int = 0) -> torch.nn.Module:
    """``name`` with random weights that depend on the picture, in eval mode.

    Fresh from ``create_model`` a model is image-blind in eval mode: batch-norm running
    statistics are the defaults (mean 0, var 1), features shrink to ~1e-8 through the
    layers, and the heatmap starts at zero. Recalibrating the statistics on a few random
    batches and drawing the heatmap and logit weights gives boxes and scores that vary
    from image to image, so parity compares something.
    """
    torch.manual_seed(seed)
    model = create_model(name)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randint(0, 256, (4, 3, H, W), dtype=torch.uint8))
        model.head.heatmap.weight.normal_(std=0.5)
        model.head.mlp[-1].weight.normal_(std=0.1)
    return model.eval()


def _reference(model: torch.nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the ONNX outputs must be: the model's own outputs in canvas pixels and scores."""
    with torch.inference_mode():
        out = model(torch.from_numpy(images))
    boxes = out["boxes_norm_xyxy"].numpy() * np.array([W, H, W, H], np.float32)
    return boxes, torch.sigmoid(out["logits"]).numpy()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[torch.nn.Module, Path, object]:
    """A dwsep_tiny checkpoint at 96x64 exported with uint8 input: (model, onnx path, report)."""
    root = tmp_path_factory.mktemp("export")
    model = seeing_model("dwsep_tiny")
    save_checkpoint_of(root / "tiny.pth", model, (W, H))
    report = export_checkpoint(root / "tiny.pth", root / "out" / "tiny.onnx", threads=1)
    return model, report.path, report


@pytest.mark.filterwarnings("ignore:The tensor attribute self.model.last")  # FixedBox's record
def test_graph_contract_with_hand_computed_outputs(tmp_path):
    # FixedBox: box (0.375, 0.25, 0.625, 0.75) of a 96x64 canvas = (36, 16, 60, 48) px, score 0.75
    model = FixedBox().train()
    path = export_onnx(model, tmp_path / "fixed.onnx", (W, H), input_dtype="float32")
    assert model.training  # the caller's mode is restored
    session = onnx_session(path, threads=1)
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("images", "tensor(float)", ["batch", 3, H, W])
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores"]
    for batch in (1, 3):
        boxes, scores = session.run(None, {"images": np.zeros((batch, 3, H, W), np.float32)})
        assert boxes.dtype == np.float32 and scores.dtype == np.float32
        np.testing.assert_array_equal(boxes, np.tile([36.0, 16.0, 60.0, 48.0], (batch, 1)))
        np.testing.assert_allclose(scores, np.full(batch, SCORE), rtol=1e-6)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temp file left behind


def test_checkpoint_export_metadata_round_trip(tiny):
    model, path, report = tiny
    meta = read_metadata(path)
    assert meta == report.metadata
    assert {k: meta[k] for k in ("platelab_version", "model", "canvas", "input_dtype")} == {
        "platelab_version": __version__,
        "model": "dwsep_tiny",
        "canvas": "96x64",
        "input_dtype": "uint8",
    }
    assert (meta["pad_value"], meta["epoch"], meta["checkpoint"]) == ("114", "1", "tiny.pth")
    assert json.loads(meta["model_kwargs"]) == model.config
    assert create_model(meta["model"], **json.loads(meta["model_kwargs"])).config == model.config
    np.testing.assert_allclose(json.loads(meta["mean"]), model.mean.flatten().tolist(), atol=1e-6)
    np.testing.assert_allclose(json.loads(meta["std"]), model.std.flatten().tolist(), atol=1e-6)
    assert report.model == "dwsep_tiny" and report.canvas == (W, H)
    assert report.images == 4 and not report.real_images and report.max_box_diff_orig_px is None
    assert 0 <= report.max_box_diff_px <= TOLERANCE_PX and report.max_score_diff <= 1e-3
    assert report.size_mb == pytest.approx(path.stat().st_size / 1e6)
    assert json.loads(json.dumps(report.to_dict()))["canvas"] == [W, H]


def test_uint8_parity_at_batch_1_and_3(tiny):
    model, path, _ = tiny
    session = onnx_session(path, threads=1)
    assert session.get_inputs()[0].type == "tensor(uint8)"
    images = np.random.default_rng(1).integers(0, 256, (3, 3, H, W), dtype=np.uint8)
    for batch in (1, 3):
        boxes, scores = session.run(None, {"images": images[:batch]})
        ref_boxes, ref_scores = _reference(model, images[:batch])
        assert boxes.shape == (batch, 4) and scores.shape == (batch,)
        np.testing.assert_allclose(boxes, ref_boxes, atol=1e-3)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    # the images differ, and so do the boxes and scores: the model looks at the picture
    assert np.abs(boxes[0] - boxes[1]).max() > 1 and np.ptp(scores) > 1e-3


@pytest.mark.slow  # about 5 s: torch.export of mobilenet_v3_small's graph
def test_mobilenet_float32_parity_at_batch_1_and_3(tmp_path):
    model = seeing_model("mobilenet_v3_small")
    path = export_onnx(model, tmp_path / "m.onnx", (W, H), input_dtype="float32")
    session = onnx_session(path, threads=1)
    images = np.random.default_rng(2).random((3, 3, H, W), dtype=np.float32)
    for batch in (1, 3):
        boxes, scores = session.run(None, {"images": images[:batch]})
        ref_boxes, ref_scores = _reference(model, images[:batch])
        np.testing.assert_allclose(boxes, ref_boxes, atol=1e-3)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert read_metadata(path)["input_dtype"] == "float32" and "epoch" not in read_metadata(path)


def test_wrapper_multiply_add_matches_the_model_normalisation():
    model = seeing_model("dwsep_tiny", seed=1)
    wrapper = ExportedModel(model, (W, H)).eval()
    assert wrapper.fused
    u8 = torch.randint(0, 256, (2, 3, H, W), dtype=torch.uint8)
    for images in (u8, u8.float() / 255):
        boxes, scores = wrapper(images)
        ref_boxes, ref_scores = _reference(model, images.numpy())
        np.testing.assert_allclose(boxes.detach().numpy(), ref_boxes, atol=1e-3)
        np.testing.assert_allclose(scores.detach().numpy(), ref_scores, atol=1e-6)


def test_real_photo_parity(tiny, real_data):
    model, path, _ = tiny
    photos = sorted((real_data / "ccpd_base").glob("*.jpg"))
    photos += sorted((real_data / "kaggle_voc" / "images").glob("*"))[:4]
    canvases, letterboxes = letterbox_canvases(photos, (W, H))
    assert canvases.shape == (len(photos), H, W, 3) and len(letterboxes) == len(photos)
    assert (canvases[0, :, :2] == 114).all()  # a 720x1160 CCPD photo: pad left and right
    diffs = parity(model, onnx_session(path, threads=1), canvases, letterboxes, batch=4)
    assert diffs["max_box_diff_px"] <= TOLERANCE_PX and diffs["max_score_diff"] <= 1e-3
    # original pixels = canvas pixels / scale; the CCPD photos shrink the most
    worst = max(1 / lb.scale for lb in letterboxes)
    assert diffs["max_box_diff_orig_px"] <= diffs["max_box_diff_px"] * worst + 1e-9


def test_letterbox_canvases_from_arrays_and_random():
    photo = np.full((32, 96, 3), 200, np.uint8)  # 96x32 into 96x64: 16 rows of pad each side
    canvases, (lb,) = letterbox_canvases([photo], (W, H))
    assert lb == Letterbox.fit(96, 32, W, H) and (lb.scale, lb.pad_y) == (1.0, 16)
    assert (canvases[0, :16] == 114).all() and (canvases[0, 16:48] == 200).all()
    random, none = letterbox_canvases([], (W, H))
    assert none is None and random.shape == (4, H, W, 3)
    assert np.array_equal(random, letterbox_canvases([], (W, H))[0])  # deterministic


def test_parity_failure_is_one_line_and_keeps_the_file(tiny, tmp_path, monkeypatch):
    model, exported, _ = tiny
    save_checkpoint_of(tmp_path / "t.pth", model, (W, H))

    def reuse(model, out, canvas, **kw):  # the fixture's file: export is what takes time
        Path(out).write_bytes(exported.read_bytes())
        return Path(out)

    monkeypatch.setattr(export_module, "export_onnx", reuse)
    report = export_checkpoint(tmp_path / "t.pth", tmp_path / "ok.onnx", input_dtype="uint8")
    assert report.max_box_diff_px <= TOLERANCE_PX
    with pytest.raises(PlatelabError, match=r"ONNX parity failed for .*f\.onnx: box diff") as e:
        export_checkpoint(tmp_path / "t.pth", tmp_path / "f.onnx", tolerance_px=-1.0)
    assert "\n" not in str(e.value)
    assert read_metadata(tmp_path / "f.onnx")["model"] == "dwsep_tiny"  # kept for inspection


def test_user_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(PlatelabError, match="checkpoint not found"):
        export_checkpoint(tmp_path / "missing.pth", tmp_path / "x.onnx")
    with pytest.raises(PlatelabError, match="input_dtype must be one of uint8, float32"):
        export_onnx(FixedBox(), tmp_path / "x.onnx", (W, H), input_dtype="float16")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PlatelabError, match="cannot write .*file/x.onnx"):
        export_onnx(FixedBox(), blocker / "x.onnx", (W, H))
    with pytest.raises(PlatelabError, match="cannot write .*: not a writable file path"):
        export_onnx(FixedBox(), tmp_path, (W, H))
    with pytest.raises(PlatelabError, match="ONNX file not found"):
        read_metadata(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(PlatelabError, match="cannot read ONNX model"):
        read_metadata(junk)
    with pytest.raises(PlatelabError, match="cannot load ONNX model"):
        onnx_session(junk)
    with pytest.raises(PlatelabError, match="cannot read parity image"):
        letterbox_canvases([junk], (W, H))
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(PlatelabError, match="pip install onnx onnxscript"):
        export_onnx(FixedBox(), tmp_path / "x.onnx", (W, H))


def test_cli_export_checks_parity_on_the_given_photos(tmp_path, capsys):
    import cv2

    from platelab.cli import main

    ckpt = save_checkpoint_of(tmp_path / "tiny.pth", seeing_model("dwsep_tiny"), (W, H))
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i, (w, h) in enumerate(((120, 80), (50, 90))):  # two shapes: two letterboxes
        image = rng.integers(0, 256, (h, w, 3), np.uint8)
        assert cv2.imwrite(str(tmp_path / "photos" / f"{i}.png"), image)
    out = tmp_path / "tiny.onnx"
    args = ["export", str(ckpt), "--out", str(out), "--parity-images", str(tmp_path / "photos")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "onnx.checker: ok" in printed and "parity with PyTorch on 2 photos" in printed
    assert read_metadata(out)["model"] == "dwsep_tiny"
    # No photos given and no dataset recorded in the checkpoint: random canvases.
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    assert "random canvases" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "none.pth"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]
