"""task=detect through deployment: the ONNX graph with NMS, the Predictor, platelab predict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from platelab.cli import main
from platelab.errors import PlatelabError
from platelab.infer.detect_export import ExportedDetector, parity_detect
from platelab.infer.export import (
    TOLERANCE_PX,
    export_checkpoint,
    letterbox_canvases,
    onnx_session,
    read_metadata,
)
from platelab.infer.predict import PREDICTIONS, draw_detections, run_predict
from platelab.infer.predictor import DetectionResult, PlateBox, Predictor
from platelab.tasks.detect_ops import PostprocessConfig
from tests.infer import save_checkpoint_of, save_tiny_checkpoint, seeing_detector

pytest.importorskip("onnxruntime")
W, H = 160, 120


@pytest.fixture(scope="module")
def det(tmp_path_factory) -> tuple[nn.Module, Path, Path, object]:
    """A seeing dwsep_tiny detector at 160x120: (model, checkpoint, onnx, export report)."""
    root = tmp_path_factory.mktemp("detect")
    model = seeing_detector("dwsep_tiny", (W, H))
    ckpt = save_checkpoint_of(root / "det.pth", model, (W, H))
    report = export_checkpoint(ckpt, root / "det.onnx", threads=1)
    return model, ckpt, report.path, report


def _photos() -> list[np.ndarray]:
    """Two photos of other sizes than the canvas: one pads left/right, one top/bottom."""
    rng = np.random.default_rng(3)
    smooth = [cv2.resize(rng.integers(0, 256, (12, 16, 3), np.uint8), (w, h)) for w, h in
              ((333, 250), (90, 200))]  # fmt: skip
    return smooth


def test_export_contract_metadata_and_parity(det):
    _, _, path, report = det
    session = onnx_session(path, threads=1)
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("images", "tensor(uint8)", ["batch", 3, H, W])
    outs = {o.name: (o.type, o.shape) for o in session.get_outputs()}
    assert list(outs) == ["boxes", "scores", "corners", "num"]
    assert outs["boxes"] == ("tensor(float)", ["batch", 50, 4])
    assert outs["scores"] == ("tensor(float)", ["batch", 50])
    assert outs["corners"] == ("tensor(float)", ["batch", 50, 4, 2])
    assert outs["num"] == ("tensor(int64)", ["batch"])
    meta = read_metadata(path)
    assert meta == report.metadata
    assert (meta["task"], meta["conf"], meta["iou"], meta["max_det"]) == (
        "detect",
        "0.25",
        "0.5",
        "50",
    )
    assert (meta["canvas"], meta["model"], meta["input_dtype"]) == (
        "160x120",
        "dwsep_tiny",
        "uint8",
    )
    assert report.task == "detect" and report.postprocess["max_det"] == 50
    assert report.plates > 0  # the parity compared real plates, not empty outputs
    assert report.max_box_diff_px <= TOLERANCE_PX and report.max_corner_diff_px <= TOLERANCE_PX
    assert report.max_score_diff <= 1e-3
    assert json.loads(json.dumps(report.to_dict()))["task"] == "detect"


def test_dynamic_batch_1_and_3_matches_the_torch_wrapper(det):
    model, _, path, _ = det
    session = onnx_session(path, threads=1)
    images = np.random.default_rng(5).integers(0, 256, (3, 3, H, W), dtype=np.uint8)
    wrapper = ExportedDetector(model).eval()
    for batch in (1, 3):
        boxes, scores, corners, num = session.run(None, {"images": images[:batch]})
        with torch.inference_mode():
            ref = [t.numpy() for t in wrapper(torch.from_numpy(images[:batch]))]
        assert boxes.shape == (batch, 50, 4) and corners.shape == (batch, 50, 4, 2)
        assert num.dtype == np.int64 and np.array_equal(num, ref[3]) and num.sum() > 0
        for i, n in enumerate(num):
            np.testing.assert_allclose(boxes[i, :n], ref[0][i, :n], atol=0.05)
            np.testing.assert_allclose(corners[i, :n], ref[2][i, :n], atol=0.05)
            np.testing.assert_allclose(scores[i, :n], ref[1][i, :n], atol=1e-4)
            assert (scores[i, :n] >= 0.25).all() and (scores[i, n:] == 0).all()
            assert np.all(np.diff(scores[i, :n]) <= 0)  # best first


def test_export_with_voting_records_it_and_matches_torch(det, tmp_path):
    model, ckpt, _, _ = det
    cfg = PostprocessConfig(vote_iou=0.6)
    report = export_checkpoint(ckpt, tmp_path / "vote.onnx", threads=1, postprocess=cfg)
    assert read_metadata(report.path)["vote_iou"] == "0.6"
    assert report.plates > 0 and report.max_corner_diff_px <= TOLERANCE_PX
    images = np.random.default_rng(5).integers(0, 256, (2, 3, H, W), dtype=np.uint8)
    boxes, _, corners, num = onnx_session(report.path, threads=1).run(None, {"images": images})
    with torch.inference_mode():
        voted = [t.numpy() for t in ExportedDetector(model, cfg).eval()(torch.from_numpy(images))]
        plain = [t.numpy() for t in ExportedDetector(model).eval()(torch.from_numpy(images))]
    assert np.array_equal(num, voted[3]) and num.sum() > 0
    for i, n in enumerate(num):
        np.testing.assert_allclose(boxes[i, :n], voted[0][i, :n], atol=0.05)
        np.testing.assert_allclose(corners[i, :n], voted[2][i, :n], atol=0.05)
    assert not np.allclose(voted[0], plain[0])  # the seeing detector's neighbours do vote


def test_parity_detect_reports_a_plate_one_runtime_dropped(det):
    model, _, path, _ = det
    canvases, _ = letterbox_canvases(_photos(), (W, H))
    real = onnx_session(path, threads=1)

    class DropsOne:  # onnxruntime, but image 0 loses its last kept plate
        def run(self, names, feed):
            boxes, scores, corners, num = real.run(names, feed)
            num = num.copy()
            num[0] -= 1
            return boxes, scores, corners, num

    wrapper = ExportedDetector(model).eval()
    ok = parity_detect(wrapper, real, canvases, None)
    assert ok["mismatches"] == [] and ok["plates"] > 0
    bad = parity_detect(wrapper, DropsOne(), canvases, None)
    assert bad["mismatches"][0][0] == 0 and bad["mismatches"][0][1] == bad["mismatches"][0][2] + 1


class FixedPlates(nn.Module):
    """A detector whose outputs are fixed canvas plates (for a hand-computed mapping)."""

    task = "detect"

    def __init__(self) -> None:
        super().__init__()
        boxes = [[40, 40, 120, 60], [10, 2, 50, 15], [150, 90, 170, 110], [0, 0, 20, 20]]
        corners = [
            [[40, 40], [120, 44], [120, 60], [40, 56]],
            [[10, 2], [50, 2], [50, 15], [10, 15]],
            [[150, 90], [170, 90], [170, 110], [150, 110]],
            [[0, 0], [20, 0], [20, 20], [0, 20]],
        ]
        self.register_buffer("boxes", torch.tensor(boxes, dtype=torch.float32))
        self.register_buffer("corners", torch.tensor(corners, dtype=torch.float32))
        # scores 0.881 (A), 0.731 (in the padding), 0.5 (B, cut by the edge), 0.047 (below conf)
        self.register_buffer("logits", torch.tensor([2.0, 1.0, 0.0, -3.0]))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        b, n = images.shape[0], len(self.logits)
        return {
            "logits": self.logits.expand(b, n),
            "boxes_xyxy": self.boxes.expand(b, n, 4),
            "corners": self.corners.expand(b, n, 4, 2),
            "points": torch.zeros(n, 2),
            "strides": torch.ones(n),
        }


def test_predictor_maps_plates_to_the_photo_by_hand():
    # 400x200 into 160x120: scale 0.4 -> 160x80, pad_y 20; orig = (canvas - (0, 20)) / 0.4
    predictor = Predictor(FixedPlates(), canvas=(W, H))
    assert predictor.task == "detect" and predictor.conf == 0.25
    result = predictor(np.zeros((200, 400, 3), np.uint8))
    assert isinstance(result, DetectionResult) and (result.width, result.height) == (400, 200)
    a, b = result.plates  # the plate in the padding maps to an empty box: dropped
    assert a.box_xyxy == pytest.approx((100, 50, 300, 100))
    np.testing.assert_allclose(a.quad(), [[100, 50], [300, 60], [300, 100], [100, 90]], atol=1e-4)
    assert a.score == pytest.approx(1 / (1 + math.exp(-2)), abs=1e-6)
    # B: canvas (150, 90, 170, 110) -> (375, 175, 425, 225), clipped to 400x200; corners not
    assert b.box_xyxy == pytest.approx((375, 175, 400, 200)) and b.score == pytest.approx(0.5)
    assert b.corners[2] == pytest.approx((425, 225))  # the BR corner, outside the photo
    assert b.quad().dtype == np.float32 and b.quad().shape == (4, 2)
    assert result.top is a and result.above(0.6).plates == [a]
    assert [p.box_xyxy for p in Predictor(FixedPlates(), canvas=(W, H), conf=0.6)(
        np.zeros((200, 400, 3), np.uint8)).plates] == [a.box_xyxy]  # fmt: skip
    line = result.to_dict()
    assert line["plates"][0] == {
        "box_xyxy": list(a.box_xyxy),
        "corners": [list(c) for c in a.corners],
        "det_score": a.score,
    }


def test_predictor_torch_and_onnx_give_the_same_plates(det, tmp_path):
    _, ckpt, path, _ = det
    photos = _photos()
    pt = Predictor(ckpt, batch_size=2)
    ox = Predictor(path, threads=1)
    assert (pt.task, ox.task, ox.postprocess.max_det, ox.postprocess.conf) == (
        "detect", "detect", 50, 0.25)  # fmt: skip
    got_pt, got_ox = pt.predict(photos), ox.predict(photos)
    total = 0
    for photo, a, b in zip(photos, got_pt, got_ox, strict=True):
        assert (a.width, a.height) == (photo.shape[1], photo.shape[0]) == (b.width, b.height)
        assert len(a.plates) == len(b.plates)
        total += len(a.plates)
        for p, q in zip(a.plates, b.plates, strict=True):
            assert np.abs(np.subtract(p.box_xyxy, q.box_xyxy)).max() <= 0.5
            assert np.abs(p.quad() - q.quad()).max() <= 0.5
            assert abs(p.score - q.score) <= 1e-3
            x0, y0, x1, y1 = p.box_xyxy
            assert 0 <= x0 < x1 <= a.width and 0 <= y0 < y1 <= a.height
    assert total > 0
    # one image at a time gives what a batch gave (to float rounding: other kernels)
    alone = pt(photos[1])
    assert len(alone.plates) == len(got_pt[1].plates)
    for p, q in zip(alone.plates, got_pt[1].plates, strict=True):
        assert np.abs(np.subtract(p.box_xyxy, q.box_xyxy)).max() <= 1e-2


def test_detect_settings_and_mistakes_are_one_line(det, tmp_path, capsys):
    _, ckpt, _, _ = det
    localiser = tmp_path / "loc.pth"
    save_tiny_checkpoint(localiser)
    with pytest.raises(PlatelabError, match="for detectors; this is a localize model"):
        export_checkpoint(localiser, tmp_path / "x.onnx", postprocess=PostprocessConfig(conf=0.5))
    assert main(["export", str(localiser), "--out", str(tmp_path / "x.onnx"), "--iou", "0.6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "for detectors" in err[0]
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.onnx"), "--conf", "1.5"]) == 2
    assert "--conf must be within 0..1" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(PlatelabError, match="conf must be within 0..1"):
        Predictor(ckpt, conf=-0.1)


def test_cli_export_with_settings_on_photos(det, tmp_path, capsys):
    _, ckpt, _, _ = det
    (tmp_path / "photos").mkdir()
    for i, photo in enumerate(_photos()):
        assert cv2.imwrite(str(tmp_path / "photos" / f"{i}.png"), photo)
    out = tmp_path / "k5.onnx"
    args = ["export", str(ckpt), "--out", str(out), "--parity-images", str(tmp_path / "photos")]
    assert main([*args, "--conf", "0.3", "--max-det", "5", "--input-dtype", "float32"]) == 0
    printed = capsys.readouterr().out
    assert "post-processing in the graph: conf 0.3, iou 0.5, max_det 5" in printed
    assert "parity with PyTorch on 2 photos: the same plates kept" in printed
    assert "px in the photos" in printed
    meta = read_metadata(out)
    assert (meta["conf"], meta["max_det"], meta["input_dtype"]) == ("0.3", "5", "float32")
    session = onnx_session(out, threads=1)
    boxes, scores, _, num = session.run(None, {"images": np.zeros((2, 3, H, W), np.float32)})
    assert boxes.shape == (2, 5, 4) and (num <= 5).all()
    predictor = Predictor(out, threads=1)
    assert predictor.postprocess.conf == 0.3 and predictor.postprocess.max_det == 5
    assert all(len(r.plates) <= 5 for r in predictor.predict(_photos()))


def _write_video(path: Path, n: int = 4, size=(200, 150), fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    rng = np.random.default_rng(7)
    for _ in range(n):
        small = rng.integers(0, 256, (9, 12, 3), np.uint8)
        writer.write(cv2.resize(small, size))
    writer.release()


def test_predict_folder_with_a_corrupt_image_and_a_video(det, tmp_path):
    _, ckpt, path, _ = det
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    photos = _photos()
    cv2.imwrite(str(src / "a.jpg"), photos[0])
    cv2.imwrite(str(src / "sub" / "b.png"), photos[1])
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    summary = run_predict(path, src, tmp_path / "out", progress=False)
    assert (summary["task"], summary["images"], summary["conf"]) == ("detect", 2, 0.25)
    assert [s["path"] for s in summary["skipped"]] == ["broken.jpg"]
    lines = [json.loads(x) for x in (tmp_path / "out" / PREDICTIONS).read_text().splitlines()]
    assert [x["source"] for x in lines] == ["a.jpg", "sub/b.png"]
    assert (lines[0]["width"], lines[0]["height"], lines[0]["frame"]) == (333, 250, None)
    assert "box_xyxy" not in lines[0] and "score" not in lines[0]
    assert summary["plates"] == sum(len(x["plates"]) for x in lines) > 0
    for x in lines:
        for p in x["plates"]:
            assert set(p) == {"box_xyxy", "corners", "det_score"} and p["det_score"] >= 0.25
            assert len(p["corners"]) == 4 and all(len(c) == 2 for c in p["corners"])
    drawn = cv2.imread(str(tmp_path / "out" / "a.jpg"))
    assert drawn.shape == (250, 333, 3) and not np.array_equal(
        drawn, cv2.imread(str(src / "a.jpg"))
    )
    assert (tmp_path / "out" / "sub" / "b.png").is_file()

    video = tmp_path / "clip.mp4"
    _write_video(video)
    summary = run_predict(ckpt, video, tmp_path / "vid", progress=False, conf=0.3)
    lines = [json.loads(x) for x in (tmp_path / "vid" / PREDICTIONS).read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 2, 3] and summary["frames"] == 4
    assert all("plates" in x and all(p["det_score"] >= 0.3 for p in x["plates"]) for x in lines)
    cap = cv2.VideoCapture(summary["video"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and cap.read()[1].shape == (150, 200, 3)
    cap.release()


def test_draw_detections_marks_box_polygon_and_top_left():
    image = np.zeros((100, 200, 3), np.uint8)
    plate = PlateBox((50.0, 30.0, 150.0, 70.0), ((52, 32), (148, 35), (148, 68), (52, 66)), 0.9)
    out = draw_detections(image, DetectionResult([plate], 200, 100))
    assert image.max() == 0  # the input is left alone
    assert (out[32, 52] == 255).all()  # the white top-left dot
    edge = out[50, 146:151].astype(int)  # the magenta right edge of the quad (antialiased)
    assert ((edge[:, 0] > 150) & (edge[:, 1] < 60) & (edge[:, 2] > 150)).any()
    assert (out[69, 100] == (0, 200, 0)).all()  # the green bottom edge of the box
    assert np.array_equal(draw_detections(image, DetectionResult([plate], 200, 100), 0.95), image)
