"""Predictor: exact original-pixel boxes from a fake model, input kinds, batching, backends."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from platelab.errors import PlatelabError
from platelab.infer.predictor import Prediction, Predictor, _onnx_runner, to_rgb
from tests.infer import SCORE, FixedBox, RedSpot, save_tiny_checkpoint

CANVAS = (64, 48)

# FixedBox's normalised box (0.375, 0.25, 0.625, 0.75) on the 64x48 canvas is
# [24, 12, 40, 36] canvas pixels. scale = min(64 / w, 48 / h), resized = round(w * scale),
# round(h * scale), pad = (canvas - resized) // 2; orig = (canvas - pad) / scale, clipped.
BOX_CASES = [
    # portrait 300x600: scale 0.08, resized 24x48, pad (20, 0)
    # x (24-20)/0.08 = 50, (40-20)/0.08 = 250; y 12/0.08 = 150, 36/0.08 = 450
    ("portrait", 300, 600, (50.0, 150.0, 250.0, 450.0)),
    # landscape 800x200: scale 0.08, resized 64x16, pad (0, 16)
    # x 24/0.08 = 300, 40/0.08 = 500; y (12-16)/0.08 = -50 -> 0, (36-16)/0.08 = 250 -> 200
    ("landscape", 800, 200, (300.0, 0.0, 500.0, 200.0)),
    # tiny 7x5: scale min(64/7, 9.6) = 64/7, resized 64 x round(45.71) = 46, pad (0, 1)
    # x 24*7/64 = 2.625, 40*7/64 = 4.375; y (12-1)*7/64 = 1.203125, (36-1)*7/64 = 3.828125
    ("tiny", 7, 5, (2.625, 1.203125, 4.375, 3.828125)),
    # the canvas's own aspect 128x96: scale 0.5, no pad: 48, 24, 80, 72
    ("same_aspect", 128, 96, (48.0, 24.0, 80.0, 72.0)),
    # square 100x100: scale 0.48, resized 48x48, pad (8, 0)
    # x 16/0.48 = 33.33.., 32/0.48 = 66.66..; y 12/0.48 = 25, 36/0.48 = 75
    ("square", 100, 100, (100 / 3, 25.0, 200 / 3, 75.0)),
]


def _noise(w: int, h: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("w", "h", "expected"), [c[1:] for c in BOX_CASES], ids=[c[0] for c in BOX_CASES]
)
def test_fixed_canvas_box_maps_to_hand_computed_original_box(w, h, expected):
    predictor = Predictor(FixedBox(), canvas=CANVAS)
    pred = predictor(_noise(w, h))
    assert isinstance(pred, Prediction)
    np.testing.assert_allclose(pred.box_xyxy, expected, rtol=0, atol=1e-6)
    assert pred.score == pytest.approx(SCORE, abs=1e-6)
    assert (pred.width, pred.height) == (w, h)
    assert pred.to_dict() == {
        "box_xyxy": list(pred.box_xyxy),
        "score": pred.score,
        "width": w,
        "height": h,
    }
    json.dumps(pred.to_dict())  # plain JSON types


def test_model_gets_uint8_letterboxed_canvases_in_batches():
    model = FixedBox()
    predictor = Predictor(model, canvas=CANVAS, batch_size=2)
    portrait = np.full((600, 300, 3), 7, np.uint8)
    preds = predictor.predict([portrait] * 5)
    assert len(preds) == 5
    assert model.seen == [((2, 3, 48, 64), torch.uint8)] * 2 + [((1, 3, 48, 64), torch.uint8)]
    canvas = model.last[0]  # portrait: 24 columns of image, 20 of pad 114 either side
    assert (canvas[:, :, :20] == 114).all() and (canvas[:, :, 44:] == 114).all()
    assert (canvas[:, :, 20:44] == 7).all()
    assert predictor.canvas == CANVAS and predictor.backend == "torch"
    assert predictor.model_name == "FixedBox"


def _red_square_images() -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Grey images of several shapes, each with a red square at a known place (xyxy)."""
    out = []
    for w, h, box in [
        (192, 128, (20, 30, 80, 90)),
        (100, 300, (10, 200, 70, 260)),
        (400, 100, (300, 10, 380, 90)),
        (96, 64, (0, 0, 30, 20)),
        (150, 150, (60, 60, 140, 140)),
    ]:
        img = np.full((h, w, 3), 128, np.uint8)
        x0, y0, x1, y1 = box
        img[y0:y1, x0:x1] = (255, 0, 0)
        out.append((img, box))
    return out


def test_red_square_found_where_drawn_and_batching_changes_nothing():
    cases = _red_square_images()
    images = [img for img, _ in cases]
    batched = Predictor(RedSpot(), canvas=(96, 64), batch_size=2).predict(images)
    single = Predictor(RedSpot(), canvas=(96, 64), batch_size=1)
    assert [single(img) for img in images] == batched
    for (img, box), pred in zip(cases, batched, strict=True):
        h, w = img.shape[:2]
        scale = min(96 / w, 64 / h)
        # the square's edge pixels blend with grey when resized: at most a canvas pixel off
        np.testing.assert_allclose(pred.box_xyxy, box, atol=1.01 / scale)
        assert pred.score > 0.98


def test_numpy_pil_path_gray_and_rgba_inputs_agree(tmp_path):
    img, _ = _red_square_images()[0]
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 9, np.uint8)], axis=2)
    predictor = Predictor(RedSpot(), canvas=(96, 64), batch_size=3)
    ref = predictor(img)
    preds = predictor.predict([img, Image.fromarray(img), path, str(path), rgba])
    assert preds == [ref] * 5

    gray = img[:, :, 1]  # green channel: the square is 0 there
    np.testing.assert_array_equal(to_rgb(gray), np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(to_rgb(gray[:, :, None]), to_rgb(gray))
    np.testing.assert_array_equal(to_rgb(Image.fromarray(gray)), to_rgb(gray))
    assert predictor(gray) == predictor(to_rgb(gray))
    assert predictor(gray).score < 0.02  # no red in a grey picture
    batch4d = np.stack([img, img])
    assert predictor(batch4d) == [ref, ref]


def test_bad_inputs_are_one_line_errors(tmp_path):
    predictor = Predictor(FixedBox(), canvas=CANVAS)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(PlatelabError, match=r"cannot read image .*bad\.jpg: not a decodable image"):
        predictor(bad)
    with pytest.raises(PlatelabError, match=r"cannot read image .*missing\.png: No such file"):
        predictor(tmp_path / "missing.png")
    with pytest.raises(PlatelabError, match="must be uint8"):
        predictor(np.zeros((5, 5, 3), np.float32))
    with pytest.raises(PlatelabError, match=r"HxW, HxWx3 or HxWx4, got shape \(5, 5, 2\)"):
        predictor(np.zeros((5, 5, 2), np.uint8))
    with pytest.raises(PlatelabError, match="empty image"):
        predictor(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(PlatelabError, match="expected a numpy array, PIL image or path"):
        predictor.predict([123])


def test_model_and_backend_errors(tmp_path):
    with pytest.raises(PlatelabError, match=r"canvas=\(W, H\) is required"):
        Predictor(FixedBox())
    with pytest.raises(PlatelabError, match="unknown backend 'tensorrt'"):
        Predictor(FixedBox(), canvas=CANVAS, backend="tensorrt")
    with pytest.raises(PlatelabError, match="takes an .onnx file, not an nn.Module"):
        Predictor(FixedBox(), canvas=CANVAS, backend="onnx")
    with pytest.raises(PlatelabError, match="unknown device 'banana'"):
        Predictor(FixedBox(), canvas=CANVAS, device="banana")
    if not torch.cuda.is_available():
        with pytest.raises(PlatelabError, match="device=cuda:1 but no CUDA GPU"):
            Predictor(FixedBox(), canvas=CANVAS, device="cuda:1")
    with pytest.raises(PlatelabError, match="batch_size must be at least 1"):
        Predictor(FixedBox(), canvas=CANVAS, batch_size=0)
    with pytest.raises(PlatelabError, match=r"model not found: .*nope\.pth"):
        Predictor(tmp_path / "nope.pth")
    weird = tmp_path / "model.bin"
    weird.write_bytes(b"x")
    with pytest.raises(PlatelabError, match=r"from its suffix '\.bin'"):
        Predictor(weird)
    not_ckpt = tmp_path / "model.pth"
    not_ckpt.write_bytes(b"x")
    with pytest.raises(PlatelabError, match="use backend 'torch'"):
        Predictor(not_ckpt, backend="onnx")
    with pytest.raises(PlatelabError, match=r"model\.pth is damaged or not a platelab checkpoint"):
        Predictor(not_ckpt)
    with pytest.raises(PlatelabError, match=r"cannot read ONNX model .*fake\.onnx"):
        (tmp_path / "fake.onnx").write_bytes(b"not protobuf at all \xff\xfe")
        Predictor(tmp_path / "fake.onnx")


# -- real checkpoint and ONNX --------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    run = tmp_path_factory.mktemp("run")
    model = save_tiny_checkpoint(run / "last.pth", canvas=(96, 64))
    return run, model


def _photos() -> list[np.ndarray]:
    return [img for img, _ in _red_square_images()] + [_noise(33, 81, 1), _noise(640, 360, 2)]


def test_checkpoint_file_and_run_folder_match_the_module(tiny):
    run, model = tiny
    ref = Predictor(model, canvas=(96, 64)).predict(_photos())
    for where in (run / "last.pth", run, str(run)):
        predictor = Predictor(where, batch_size=8)
        assert predictor.canvas == (96, 64) and predictor.model_name == "dwsep_tiny"
        assert predictor.backend == "torch" and predictor.info["epoch"] == 1
        assert predictor.predict(_photos()) == ref
    # an untrained head still looks at the image: not one box for all
    assert len({p.box_xyxy for p in ref}) == len(ref)


@pytest.mark.slow  # the dynamo export alone takes ~4 s on 2 cores
def test_onnx_backend_agrees_with_torch(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    from platelab.infer.export import export_onnx

    run, model = tiny
    onnx_path = export_onnx(model, tmp_path / "tiny.onnx", (96, 64), metadata={"epoch": "1"})
    predictor = Predictor(onnx_path, batch_size=3, threads=1)
    assert predictor.backend == "onnx" and predictor.canvas == (96, 64)
    assert predictor.model_name == "dwsep_tiny" and predictor.info["epoch"] == "1"
    torch_preds = Predictor(run, batch_size=8).predict(_photos())
    onnx_preds = predictor.predict(_photos())
    for t, o in zip(torch_preds, onnx_preds, strict=True):
        assert (o.width, o.height) == (t.width, t.height)
        # export parity is under 0.01 canvas px; the smallest scale here is 0.15
        np.testing.assert_allclose(o.box_xyxy, t.box_xyxy, atol=0.1)
        assert o.score == pytest.approx(t.score, abs=1e-4)
    with pytest.raises(PlatelabError, match="takes a 96x64 canvas, not 64x48"):
        Predictor(onnx_path, canvas=(64, 48))
    with pytest.raises(PlatelabError, match="is an ONNX file: use backend 'onnx'"):
        Predictor(onnx_path, backend="torch")


class _FakeSession:
    """Stands in for an onnxruntime session: records the feed, returns known outputs."""

    def __init__(self) -> None:
        self.feeds: list[np.ndarray] = []

    def get_inputs(self):
        return [type("Input", (), {"name": "images"})()]

    def run(self, names, feed):
        assert names == ["boxes", "scores"]
        x = feed["images"]
        self.feeds.append(x)
        n = x.shape[0]
        return [np.tile(np.float32([24, 12, 40, 36]), (n, 1)), np.full(n, 0.25, np.float32)]


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_onnx_runner_feeds_the_declared_input_dtype(dtype):
    session = _FakeSession()
    batch = np.random.default_rng(0).integers(0, 256, (2, 3, 48, 64), dtype=np.uint8)
    boxes, scores = _onnx_runner(session, dtype)(batch)
    (fed,) = session.feeds
    assert fed.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fed, batch if dtype == "uint8" else batch / 255, atol=1e-7)
    np.testing.assert_array_equal(boxes, [[24, 12, 40, 36]] * 2)
    np.testing.assert_array_equal(scores, [0.25, 0.25])
    with pytest.raises(PlatelabError, match="unsupported ONNX input_dtype 'int8'"):
        _onnx_runner(session, "int8")
