"""The plate reader: PlateReader's logic on hand cases (fake models), the shipped default
weights (they load with weights_only=True and read clean synthetic plates), ``platelab
read`` on photos, folders with bad files and a video of two crossing plates, and the ONNX
pipeline."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from platelab.cli import main
from platelab.data.synth.compose import plate_homography, warp_into
from platelab.data.synth.plates import render_plate
from platelab.infer.defaults import default_weights, list_weights
from platelab.infer.predictor import DetectionResult, PlateBox
from platelab.infer.reader import PlateReader, quad_aspect
from platelab.models.corner_refiner import (
    WINDOW_SIZE,
    CornerRefiner,
    OnnxCornerModel,
    window_around,
)
from platelab.tasks.read import TextPrediction


# -- hand cases, fake models -------------------------------------------------------------------
class _FakeRecognizer:
    """Reads nothing: the text names the rows it was asked for, rows=2 scoring ``two``."""

    task, model_name, batch_size = "read", "fake_read", 16

    def __init__(self, two: float) -> None:
        self.two, self.calls = two, []

    def read(self, images, corners=None, rows=None):
        self.calls.append(list(rows))
        return [TextPrediction(f"R{r}", self.two if r == 2 else 0.5, [0.5], [0]) for r in rows]


class _FakeDetector:
    """Finds, in any image, one plate at ``box`` (in that image's pixels), corners on the box."""

    task, model_name, backend, batch_size, conf = "detect", "fake_det", "torch", 8, 0.25

    def __init__(self, box) -> None:
        self.box, self.seen = box, []

    def predict(self, images):
        out = []
        for im in images:
            self.seen.append(im.shape[:2])
            x0, y0, x1, y1 = self.box
            corners = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
            out.append(
                DetectionResult([PlateBox(self.box, corners, 0.9)], im.shape[1], im.shape[0])
            )
        return out


def _reader(detector, recognizer, refine=False, corner_model=False) -> PlateReader:
    return PlateReader(detector, recognizer, refine=refine, corner_model=corner_model)  # type: ignore[arg-type]


def test_quad_aspect_by_hand():
    assert quad_aspect(np.array([[0, 0], [440, 0], [440, 140], [0, 140]])) == pytest.approx(
        440 / 140
    )
    # a parallelogram: top and bottom 100 long, sides 20 long
    assert quad_aspect(np.array([[0, 0], [100, 0], [112, 16], [12, 16]])) == pytest.approx(5.0)


@pytest.mark.parametrize(("box", "two", "reads", "text"), [
    ((10, 10, 450, 150), 0.9, [[1]], "R1"),            # 3.1:1: one line only, never split
    ((10, 10, 230, 120), 0.9, [[1, 2]], "R2"),         # 2:1, two lines read better
    ((10, 10, 230, 120), 0.1, [[1, 2]], "R1"),         # 2:1, one line reads better (a US plate)
])  # fmt: skip
def test_squat_plates_are_read_both_ways_and_the_better_reading_kept(box, two, reads, text):
    rec = _FakeRecognizer(two)
    result = _reader(_FakeDetector(box), rec)(np.zeros((300, 500, 3), np.uint8))
    assert rec.calls == reads
    (plate,) = result.plates
    assert plate.text == text and plate.box_xyxy == box and plate.det_score == 0.9
    assert plate.text_score == (two if text == "R2" else 0.5)


def test_refine_maps_the_second_look_back_to_the_photo():
    # First look: box (100, 200)-(140, 210) in a 1000x800 photo. The window is 3 plate
    # widths wide (120) and 3/4 of that high (90) around the centre (120, 205):
    # x 60..180, y 160..250. The fake finds the plate at the same box in every image,
    # so in the window it is at window (100, 200)-(140, 210) + origin (60, 160).
    det = _FakeDetector((100.0, 200.0, 140.0, 210.0))
    reader = _reader(det, _FakeRecognizer(0.1), refine=True)
    first = det.predict([np.zeros((800, 1000, 3), np.uint8)])[0]
    det.box = (40.0, 40.0, 80.0, 50.0)  # where the plate is inside the window
    refined = reader.refine_plates(np.zeros((800, 1000, 3), np.uint8), first)
    assert det.seen[-1] == (90, 120)  # the window's (h, w)
    (plate,) = refined.plates
    assert plate.box_xyxy == (100.0, 200.0, 140.0, 210.0)
    assert plate.corners[2] == (140.0, 210.0) and plate.score == 0.9
    # a second look that finds nothing there keeps the first look
    det.box = (0.0, 0.0, 5.0, 5.0)
    kept = reader.refine_plates(np.zeros((800, 1000, 3), np.uint8), first)
    assert kept.plates == first.plates


class _WindowCorners(CornerRefiner):
    """A corner model that always answers its window's own corners."""

    def forward(self, images):
        w, h = WINDOW_SIZE
        return torch.tensor([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]]).expand(len(images), 4, 2)


def test_the_corner_model_replaces_corners_and_keeps_boxes():
    box = (100.0, 200.0, 300.0, 260.0)
    photo = np.zeros((400, 500, 3), np.uint8)
    plain = _reader(_FakeDetector(box), _FakeRecognizer(0.1))(photo)
    with_model = _reader(_FakeDetector(box), _FakeRecognizer(0.1),
                         corner_model=_WindowCorners(width=8))(photo)  # fmt: skip
    (p0,), (p1,) = plain.plates, with_model.plates
    assert p0.corners == ((100, 200), (300, 200), (300, 260), (100, 260))  # the detector's
    np.testing.assert_allclose(p1.corners, window_around(box))
    assert p1.box_xyxy == p0.box_xyxy and p1.det_score == p0.det_score


def test_the_shipped_corner_model_follows_a_leaning_plate():
    """Plates leaning 10 degrees, given to the corner model as their upright boxes (what a
    detector whose corners ignore the lean gives): its corners are much nearer the truth."""
    rng = np.random.default_rng(7)
    reader = _reader(_FakeDetector((0, 0, 1, 1)), _FakeRecognizer(0.1), corner_model=None)
    box_err, model_err = [], []
    for i, style in enumerate(["cn_blue", "eu", "us", "cn_green", "cn_yellow", "cn_blue"]):
        img = np.empty((360, 480, 3), np.uint8)
        img[:] = rng.integers(30, 200, 3)
        plate = render_plate(style, rng, 200)
        ph, pw = plate.rgb.shape[:2]
        lean = np.tan(np.radians(10 if i % 2 else -10)) * ph
        quad = np.array([[140 + lean, 150], [140 + pw + lean, 150], [140 + pw, 150 + ph],
                         [140, 150 + ph]], np.float64)  # fmt: skip
        warp_into(img, plate.rgb, plate.alpha, plate_homography(pw, ph, quad))
        (x0, y0), (x1, y1) = quad.min(0), quad.max(0)
        upright = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        det = DetectionResult([PlateBox((x0, y0, x1, y1), tuple(map(tuple, upright)), 0.9)],
                              480, 360)  # fmt: skip
        (found,) = reader.refine_corners([img], [det])[0].plates
        box_err.append(np.linalg.norm(upright - quad, axis=1).mean())
        model_err.append(np.linalg.norm(np.asarray(found.corners) - quad, axis=1).mean())
    assert np.mean(model_err) < 0.4 * np.mean(box_err), (model_err, box_err)
    assert np.mean(model_err) < 3.0  # pixels, on 200-px plates


def test_a_model_of_the_wrong_task_is_refused():
    from platelab.errors import PlatelabError

    with pytest.raises(PlatelabError, match="reader must be a task=read"):
        _reader(_FakeDetector((0, 0, 1, 1)), _FakeDetector((0, 0, 1, 1)))


# -- the shipped weights -----------------------------------------------------------------------
def test_default_weights_are_listed_and_load_with_weights_only():
    rows = {r["task"]: r for r in list_weights() if r["default"]}
    assert set(rows) == {"detect", "read", "corners"}
    for task, row in rows.items():
        assert row["path"] == default_weights(task) and 0.1 < row["mb"] < 10
        state = torch.load(row["path"], map_location="cpu", weights_only=True)
        assert state["meta"]["task"] == task and "optimizer" not in state and "ema" not in state
        assert row["card"].is_file() and "platelab" in row["card"].read_text()


def _scene(texts_styles, size=(640, 480), seed=0):
    """A grey street-like image with plates rendered at known quads; returns (image, plates)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (np.linspace(90, 160, h)[:, None, None]).astype(np.uint8)
    plates = []
    for i, (style, x, y, pw) in enumerate(texts_styles):
        plate = render_plate(style, rng, pw)
        ph_, pw_ = plate.rgb.shape[:2]
        quad = np.array([[x, y], [x + pw_, y], [x + pw_, y + ph_], [x, y + ph_]], np.float64)
        car = (int(60 + 40 * i), 40, 30)
        cv2.rectangle(
            img,
            (int(x - pw_ * 0.8), int(y - ph_ * 2)),
            (int(x + pw_ * 1.8), int(y + ph_ * 2.5)),
            car,
            -1,
        )
        warp_into(img, plate.rgb, plate.alpha, plate_homography(pw_, ph_, quad))
        plates.append((plate.text, quad))
    return img, plates


@pytest.fixture(scope="module")
def default_reader():
    return PlateReader()


def test_the_default_reader_reads_clean_synthetic_plates(default_reader):
    right = total = 0
    for seed in range(6):
        img, plates = _scene([("cn_blue", 120, 200, 220)], seed=seed)
        result = default_reader(img)
        total += 1
        right += any(p.text == plates[0][0] for p in result.plates)
    assert right >= 4, f"read {right} of {total} clean synthetic plates"


# -- platelab read -----------------------------------------------------------------------------
def test_read_command_on_a_folder_with_bad_files(tmp_path, capsys):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    img, plates = _scene([("cn_blue", 120, 200, 220)], seed=3)
    cv2.imwrite(str(src / "sub" / "car.jpg"), img[:, :, ::-1])
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(src / "tiny.png"), np.zeros((1, 1, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["read", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "broken.jpg" in printed.out and "photo" in printed.out
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert {x["source"] for x in lines} == {"sub/car.jpg", "tiny.png"}
    car = next(x for x in lines if x["source"] == "sub/car.jpg")
    assert car["width"] == 640 and car["height"] == 480 and car["frame"] is None
    assert car["plates"], "the plate of car.jpg was not found"
    keys = {"box_xyxy", "corners", "det_score", "text", "text_score", "char_scores", "track_id"}
    assert set(car["plates"][0]) == keys and len(car["plates"][0]["corners"]) == 4
    assert (out / "sub" / "car.jpg").is_file() and (out / "tiny.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["read", "missing_dir_xyz"], "source not found"),
    (["read", "9"], "cannot open stream 9"),                      # a camera that is not there
    (["read", "rtsp://127.0.0.1:9/x"], "cannot open stream"),     # a stream that does not answer
    (["read", "{src}", "--conf", "2"], "conf must be within 0..1"),
    (["read", "{src}", "--detector", "{src}/a.jpg"], "cannot tell what"),
    (["read", "{src}", "--corner-model", "{src}/none.pth"], "checkpoint not found"),
    (["read", "{src}", "--corner-model", "{src}/a.jpg"], "not a platelab checkpoint"),
    (["read", "{src}", "--corner-model", "x.pth", "--no-corner-model"], "not both"),
])  # fmt: skip
def test_read_command_bad_input_is_one_line(tmp_path, capsys, argv, message):
    src = tmp_path / "s"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), np.zeros((20, 20, 3), np.uint8))
    argv = [a.format(src=src) for a in argv] + ["--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_read_video_two_crossing_plates_give_two_tracks(tmp_path):
    """Two plates cross a 640x360 video; each track's voted text is its plate's."""
    rng = np.random.default_rng(5)
    a, b = render_plate("cn_blue", rng, 200), render_plate("eu", rng, 220)
    path = tmp_path / "cross.mp4"
    w, h, n = 640, 360, 24
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12, (w, h))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write mp4v here")
    for f in range(n):
        frame = np.full((h, w, 3), 120, np.uint8)
        t = f / (n - 1)
        for plate, x, y in ((a, 20 + t * 400, 60), (b, 420 - t * 400, 220)):
            ph_, pw_ = plate.rgb.shape[:2]
            quad = np.array([[x, y], [x + pw_, y], [x + pw_, y + ph_], [x, y + ph_]], np.float64)
            warp_into(frame, plate.rgb, plate.alpha, plate_homography(pw_, ph_, quad))
        writer.write(frame[:, :, ::-1].copy())
    writer.release()
    out = tmp_path / "out"
    assert main(["read", str(path), "--out", str(out)]) == 0
    tracks = [json.loads(x) for x in (out / "tracks.jsonl").read_text().splitlines()]
    long = [t for t in tracks if t["frames"] >= n // 2]
    assert sorted(t["text"] for t in long) == sorted([a.text, b.text]), tracks
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(n))
    ids = {p["track_id"] for x in lines for p in x["plates"]}
    assert {t["track_id"] for t in long} <= ids
    assert (out / "cross.mp4").is_file()


# -- ONNX end to end ---------------------------------------------------------------------------
def test_pipeline_export_reads_like_torch(tmp_path, default_reader):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "pipe"
    assert main(["export", str(default_weights("detect")), "--reader",
                 str(default_weights("read")), "--out", str(out)]) == 0  # fmt: skip
    manifest = json.loads((out / "pipeline.json").read_text())
    assert manifest["detector"] == "detector.onnx" and manifest["reader_model"] == "crnn"
    assert manifest["corners"] == "corners.onnx"
    onnx_reader = PlateReader.from_pipeline(out)
    assert onnx_reader.backend == "onnx"
    assert isinstance(onnx_reader.corner_model, OnnxCornerModel)
    for seed in range(3):
        img, _ = _scene([("cn_blue", 100, 180, 240)], seed=10 + seed)
        got, want = onnx_reader(img), default_reader(img)
        assert got.texts == want.texts
        for p, q in zip(got.plates, want.plates, strict=True):
            assert np.abs(np.subtract(p.box_xyxy, q.box_xyxy)).max() < 2.0
            assert np.abs(np.subtract(p.corners, q.corners)).max() < 2.0
    # without the corner stage: no corners.onnx, and the reader keeps the detector's corners
    assert main(["export", str(default_weights("detect")), "--reader",
                 str(default_weights("read")), "--out", str(out), "--no-corner-model"]) == 0  # fmt: skip
    assert "corners" not in json.loads((out / "pipeline.json").read_text())
    assert not (out / "corners.onnx").exists()
    assert PlateReader.from_pipeline(out).corner_model is None


def test_export_corner_model_flags_bad_input_is_one_line_before_any_export(tmp_path, capsys):
    det, rec = str(default_weights("detect")), str(default_weights("read"))
    cases = [
        ([det, "--out", str(tmp_path / "d.onnx"), "--corner-model", "x.pth"], "for a pipeline"),
        ([det, "--reader", rec, "--out", str(tmp_path / "p"), "--corner-model",
          str(tmp_path / "none.pth")], "checkpoint not found"),
        ([det, "--reader", rec, "--out", str(tmp_path / "p"), "--corner-model", "x.pth",
          "--no-corner-model"], "not both"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "p" / "detector.onnx").exists()  # failed before the long export


def test_read_runtime_onnx_exports_the_defaults_once_into_the_cache(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("PLATELAB_CACHE", str(tmp_path / "cache"))
    img, plates = _scene([("cn_blue", 120, 200, 220)], seed=3)
    cv2.imwrite(str(tmp_path / "car.jpg"), img[:, :, ::-1])
    argv = ["read", str(tmp_path / "car.jpg"), "--runtime", "onnx", "--no-save"]
    assert main([*argv, "--out", str(tmp_path / "o1")]) == 0
    files = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert [f.name.split("-")[0] for f in files] == [
        "plate_corners",
        "plate_detector",
        "plate_reader",
    ]
    stamps = [f.stat().st_mtime_ns for f in files]
    assert main([*argv, "--out", str(tmp_path / "o2")]) == 0
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not exported again
    assert "(onnx)" in capsys.readouterr().out


def test_weights_command_lists_the_defaults(capsys):
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert "plate_detector" in out and "plate_reader" in out and "detect" in out


def test_import_from_the_package():
    import platelab

    assert platelab.PlateReader is PlateReader


def test_read_real_ccpd_prints_texts(real_data, default_reader, capsys, tmp_path):
    """`platelab read ../shared/data/real/ccpd_base` prints a text for every photo."""
    assert main(["read", str(real_data / "ccpd_base"), "--out", str(tmp_path / "o")]) == 0
    rows = [x for x in capsys.readouterr().out.splitlines() if x.endswith(".jpg") or ".jpg " in x]
    assert len(rows) == 6
    lines = [json.loads(x) for x in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    assert all(any(p["text"] for p in x["plates"]) for x in lines)


def test_predict_without_a_model_uses_the_shipped_detector(tmp_path, capsys):
    img, plates = _scene([("cn_blue", 120, 200, 220)], seed=3)
    cv2.imwrite(str(tmp_path / "car.jpg"), img[:, :, ::-1])
    assert main(["predict", str(tmp_path / "car.jpg"), "--out", str(tmp_path / "o")]) == 0
    assert "dwsep_small" in capsys.readouterr().out
    (line,) = [
        json.loads(x) for x in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()
    ]
    assert line["plates"] and set(line["plates"][0]) == {"box_xyxy", "corners", "det_score"}
