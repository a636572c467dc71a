"""``platelab eval`` of a detector: known detections mapped back to photo pixels and scored there.

The dataset is tests/eval/test_evaluate.py's (a 96x64 canvas, five photos whose scale
and padding differ), with 4 corners for some plates:

    k  photo    scale  pad (x, y)  source  plates (photo pixels)                corners
    0  300x100  0.32   (0, 16)     ccpd    [100, 25, 200, 75]                   a skewed quad
    1  100x200  0.32   (32, 0)     yolo    [18.75, 150, 75, 175]                unknown
    2  150x100  0.64   (0, 0)      voc     none
    3  600x400  0.16   (0, 0)      ccpd    [100, 100, 200, 150], [300, 250, 450, 300]  the boxes'
    4  120x100  0.64   (9, 0)      yolo    none

The fake detector reads k from the canvas centre and returns fixed canvas detections:

    k  score  canvas detection                    in the photo
    0  0.9    plate 0 exactly, corners +1 px in x  IoU 1, corner error 1 / 0.32 = 3.125 px
    1  0.75   [30, 48, 57, 56]                     x -6.25 clips to 0: [0, 150, 78.125, 175],
                                                   IoU 0.72 (0.667 on the canvas, unclipped)
    2  0.8    [48, 16, 72, 32]                     a false positive [75, 25, 112.5, 50]
    2  0.1    [0, 40, 20, 60]                      below the deployment threshold 0.25
    3  0.6    plate 2 exactly (box and corners)    IoU 1, corner error 0
    3  0.05   plate 1 exactly                      a hit, below the threshold
    4  -      nothing

By score: 0.9 TP, 0.8 FP, 0.75 TP, 0.6 TP, 0.1 FP, 0.05 TP over 4 plates: precision
1, 1/2, 2/3, 3/4, 3/5, 2/3 at recall 1/4, 1/4, 1/2, 3/4, 3/4, 1; its envelope is 1 up to
recall 0.25, 0.75 up to 0.75, 2/3 after: AP50 = (26 + 50 * 0.75 + 25 * 2/3) / 101. At IoU
0.75 image 1 misses: TP FP FP TP FP TP, envelope 1 then 1/2 up to 0.75, 0 after:
AP75 = (26 + 50 / 2) / 101. At 0.25: TP 3, FP 1, FN 1.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import platelab.eval.evaluate as ev
from platelab.cli import main
from platelab.data.manifest import ManifestImage, write_manifest
from platelab.eval.evaluate_detect import DETECTION_COLUMNS, match_detections
from platelab.eval.gallery import detection_caption, select_worst_detections
from platelab.geometry import Letterbox
from platelab.models import create_model
from tests.eval.test_evaluate import CONTENT, PHOTOS, H, W
from tests.infer import save_checkpoint_of


def _quad(box):
    x0, y0, x1, y1 = box
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# k -> one quad per plate (photo pixels); None: unknown
CORNERS = {
    0: [[[100, 30], [200, 25], [195, 75], [105, 70]]],  # inside its box, touching every side
    1: None,
    3: [_quad(PHOTOS[3][3][0]), _quad(PHOTOS[3][3][1])],
}


def make_dataset(root: Path) -> Path:
    """PHOTOS as a prepared detection dataset (PNG canvases), corners where CORNERS has them."""
    (root / "images").mkdir(parents=True)
    entries = []
    for k, ((ow, oh), source, subset, plates) in PHOTOS.items():
        lb = Letterbox.fit(ow, oh, W, H)
        name = f"images/test_{k}.png"
        cv2.imwrite(str(root / name), lb.apply(np.full((oh, ow, 3), CONTENT + k, np.uint8)))
        boxes = lb.boxes_to_canvas(np.array(plates, np.float64).reshape(-1, 4))
        corners = np.full((len(boxes), 4, 2), np.nan)
        if CORNERS.get(k):
            corners = lb.points_to_canvas(np.array(CORNERS[k], np.float64))
        texts = [""] * len(boxes)
        entries.append(
            ManifestImage(name, boxes, corners, texts, source, subset, lb, f"/p/{k}.jpg")
        )
    write_manifest(root / "test.csv", entries)
    write_manifest(root / "val.csv", [])
    (root / "prepare_report.json").write_text(json.dumps({"canvas": [W, H]}))
    return root


def _canvas(k: int, box) -> list[float]:
    return Letterbox.fit(*PHOTOS[k][0], W, H).boxes_to_canvas(np.array([box], np.float64))[0]


def _canvas_quad(k: int, quad) -> np.ndarray:
    return Letterbox.fit(*PHOTOS[k][0], W, H).points_to_canvas(np.array(quad, np.float64))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# k -> [(score, canvas box, canvas corners)]
def _detections() -> dict[int, list]:
    plate0 = _canvas(0, PHOTOS[0][3][0])
    plate0_quad = _canvas_quad(0, CORNERS[0][0]) + np.array([1.0, 0.0])
    box1 = np.array([30.0, 48, 57, 56])
    fp = np.array([48.0, 16, 72, 32])
    low = np.array([0.0, 40, 20, 60])
    p31, p32 = (_canvas(3, b) for b in PHOTOS[3][3])
    return {
        0: [(0.9, plate0, plate0_quad)],
        1: [(0.75, box1, np.array(_quad(box1)))],
        2: [(0.8, fp, np.array(_quad(fp))), (0.1, low, np.array(_quad(low)))],
        3: [(0.6, p32, np.array(_quad(p32))), (0.05, p31, np.array(_quad(p31)))],
        4: [],
    }


class KnownDetections(nn.Module):
    """Image k (its canvas centre pixel) -> the detections of _detections(), raw outputs.

    ``offset``: added to every point, for a model that runs on a taller canvas.
    """

    def __init__(self, offset=(0.0, 0.0), slots: int = 3) -> None:
        super().__init__()
        n = len(PHOTOS)
        logits = torch.full((n, slots), -20.0)  # empty slots: score 2e-9, never kept
        boxes = torch.zeros((n, slots, 4))
        corners = torch.zeros((n, slots, 4, 2))
        shift = torch.tensor(offset, dtype=torch.float64)
        for k, dets in _detections().items():
            for j, (score, box, quad) in enumerate(dets):
                logits[k, j] = _logit(score)
                boxes[k, j] = torch.as_tensor(box).reshape(2, 2).add(shift).reshape(4).float()
                corners[k, j] = torch.as_tensor(quad).add(shift).float()
        self.outputs = {"logits": logits, "boxes_xyxy": boxes, "corners": corners}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        k = images[:, 0, images.shape[2] // 2, images.shape[3] // 2].long() - CONTENT
        return {key: v[k] for key, v in self.outputs.items()}


def _known(monkeypatch, model: nn.Module, size=(W, H)) -> None:
    info = {"model": "known", "task": "detect", "input_size": size, "epoch": 3}

    def load(path, expect_model=None, *, device="cpu", ema=True):
        return model, info | {"path": Path("known.pth")}

    monkeypatch.setattr(ev, "load_model_from_checkpoint", load)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("detect") / "ds")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


EXPECTED = {
    "ap50": (26 + 50 * 0.75 + 25 * 2 / 3) / 101,
    "ap75": (26 + 25) / 101,
    "precision": 0.75,
    "recall": 0.75,
    "f1": 0.75,
    "tp": 3,
    "fp": 1,
    "fn": 1,
    "corner_error_px": (1 / 0.32 + 0) / 2,  # image 0's 3.125 px and image 3's 0
    "n_corner_pairs": 2,
    "mean_iou": (1 + 0.72 + 1) / 3,
    "acc_iou50": 1.0,
    "acc_iou70": 1.0,  # image 1 is 0.667 on the canvas: it passes only in its photo
    "n_images": 5,
    "n_plates": 4,
    "n_negatives": 2,
}


@pytest.mark.parametrize("square", [False, True], ids=["same-canvas", "model-at-96x96"])
def test_known_detections_are_scored_in_photo_pixels(dataset, monkeypatch, tmp_path, square):
    # A model trained at 96x96 gets the 96x64 canvases letterboxed (scale 1, pad_y 16):
    # its detections are 16 px lower, and must come back to the same photo pixels.
    model = KnownDetections(offset=(0.0, 16.0)) if square else KnownDetections()
    _known(monkeypatch, model, (96, 96) if square else (W, H))
    out = tmp_path / "out"
    report = ev.evaluate_checkpoint("any.pth", dataset, "test", out, batch_size=2)
    assert report.task == "detect"
    for key, want in EXPECTED.items():
        assert report.metrics[key] == pytest.approx(want, abs=1e-5), key

    rows = _read_csv(out / "predictions.csv")
    assert list(rows[0]) == DETECTION_COLUMNS
    assert [int(r["image"][-5]) for r in rows] == [0, 1, 2, 2, 3, 3, 4]
    assert [r["rank"] for r in rows] == ["0", "0", "0", "1", "0", "1", ""]
    assert [r["tp"] for r in rows] == ["1", "1", "0", "", "1", "", ""]
    by_image = {(int(r["image"][-5]), r["rank"]): r for r in rows}

    def box(r):
        return [float(r[c]) for c in ("x_min", "y_min", "x_max", "y_max")]

    def quad(r):
        return np.array([float(r[f"{a}{i}"]) for i in range(1, 5) for a in "xy"]).reshape(4, 2)

    r0 = by_image[(0, "0")]
    np.testing.assert_allclose(box(r0), PHOTOS[0][3][0], atol=1e-3)
    np.testing.assert_allclose(quad(r0), np.array(CORNERS[0][0]) + [1 / 0.32, 0], atol=1e-3)
    assert float(r0["score"]) == pytest.approx(0.9, abs=1e-6)
    assert float(r0["iou"]) == pytest.approx(1.0, abs=1e-5)
    r1 = by_image[(1, "0")]  # the box is clipped to the photo, its corners are not
    np.testing.assert_allclose(box(r1), [0, 150, 78.125, 175], atol=1e-3)
    np.testing.assert_allclose(quad(r1)[0], [-6.25, 150], atol=1e-3)
    assert float(r1["iou"]) == pytest.approx(0.72, abs=1e-5)
    r2 = by_image[(2, "0")]  # a false positive on a negative: no IoU
    np.testing.assert_allclose(box(r2), [75, 25, 112.5, 50], atol=1e-3)
    assert r2["iou"] == "" and r2["plates"] == "0"
    r3 = by_image[(3, "1")]  # the missed plate, found below the threshold
    np.testing.assert_allclose(box(r3), PHOTOS[3][3][0], atol=1e-3)
    empty = by_image[(4, "")]
    assert empty["score"] == "" and empty["x1"] == "" and empty["orig_image"] == "/p/4.jpg"

    doc = json.loads((out / "metrics.json").read_text())
    assert (doc["model"], doc["task"], doc["epoch"], doc["split"]) == ("known", "detect", 3, "test")
    assert (doc["score_threshold"], doc["iou_threshold"], doc["max_det"]) == (0.25, 0.5, 100)
    assert doc["metrics"]["ap50"] == pytest.approx(EXPECTED["ap50"], abs=1e-5)
    # Sizes are photo widths: every plate is under 32 px on the 96x64 canvas but none in
    # its photo (56.25 to 150 px), so the small bucket is "not measured", null in JSON.
    assert doc["metrics"]["ap_small"] is None and math.isnan(report.metrics["ap_small"])
    assert doc["metrics"]["ap_large"] is not None
    assert set(doc["by_source"]) == {"ccpd", "voc", "yolo"}
    assert set(doc["by_subset"]) == {"cars", "ccpd_base", "ccpd_blur", "street"}
    assert (out / "worst.png").is_file()


def test_breakdown_per_source_and_subset(dataset, monkeypatch):
    _known(monkeypatch, KnownDetections())
    report = ev.evaluate_checkpoint("any.pth", dataset, "test", gallery=0)
    ccpd = report.by_source["ccpd"]  # images 0 and 3: 0.9, 0.6, 0.05 all hit, 3 plates
    assert (ccpd["n_images"], ccpd["n_plates"], ccpd["n_negatives"]) == (2, 3, 0)
    assert ccpd["ap50"] == pytest.approx(1.0)
    assert (ccpd["precision"], ccpd["recall"]) == pytest.approx((1.0, 2 / 3))
    voc = report.by_source["voc"]  # the confident negative alone
    assert (voc["fp"], voc["tp"], voc["precision"], voc["ap50"]) == (1, 0, 0.0, 0.0)
    cars = report.by_subset["cars"]  # image 1 (IoU 0.72) and the empty negative 4
    assert (cars["n_images"], cars["n_negatives"]) == (2, 1)
    assert cars["mean_iou"] == pytest.approx(0.72, abs=1e-5)
    assert math.isnan(cars["corner_error_px"])  # image 1's corners are unknown
    assert report.paths == {"metrics_json": None, "predictions_csv": None, "gallery": None}
    text = ev.format_report(report)
    assert "5 images, 4 plates, 2 negatives" in text and "AP50 0.7937" in text
    assert "corner error 1.56 px over 2 plates" in text


def test_perfect_detections_score_one_with_zero_corner_error(dataset, monkeypatch):
    # Every plate found exactly, box and corners, through non-trivial letterboxes
    # (scale 0.32 with pad_y 16, scale 0.16): AP 1, no corner error in photo pixels.
    model = KnownDetections()
    model.outputs["logits"].fill_(-20.0)
    for k in (0, 3):
        for j, plate in enumerate(PHOTOS[k][3]):
            model.outputs["logits"][k, j] = 3.0
            model.outputs["boxes_xyxy"][k, j] = torch.tensor(_canvas(k, plate))
            model.outputs["corners"][k, j] = torch.tensor(_canvas_quad(k, CORNERS[k][j]))
    model.outputs["logits"][1, 0] = 3.0
    model.outputs["boxes_xyxy"][1, 0] = torch.tensor(_canvas(1, PHOTOS[1][3][0]))
    _known(monkeypatch, model)
    m = ev.evaluate_checkpoint("any.pth", dataset, "test", gallery=0).metrics
    for key in ("ap50", "ap75", "ap50_95", "ar", "precision", "recall", "acc_iou70"):
        assert m[key] == pytest.approx(1.0, abs=1e-5), key
    assert m["corner_error_px"] == pytest.approx(0.0, abs=1e-3) and m["n_corner_pairs"] == 3
    assert (m["fp"], m["fn"]) == (0, 0)


def test_worst_images_and_captions(dataset, monkeypatch):
    _known(monkeypatch, KnownDetections())
    records = ev.evaluate_checkpoint("any.pth", dataset, "test", gallery=0).records
    # badness: 2 -> 0.8 (a confident FP on a negative), 3 -> 1/2 plates missed,
    # 1 -> 1 - 0.72, 0 -> ~0; 4 (nothing detected on a negative) is no error
    assert [r["index"] for r in select_worst_detections(records, 16)] == [2, 3, 1, 0]
    assert [r["index"] for r in select_worst_detections(records, 1)] == [2]
    assert detection_caption(records[3]) == "miss 1/2 | top IoU 1.00 | p 0.60"
    assert detection_caption(records[2]) == "negative | fp 1 | p 0.80"
    assert detection_caption(records[4]) == "negative | fp 0 | no detection"


def test_match_detections_by_hand():
    plates = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float64)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 0, 30, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    ious, tp, misses = match_detections(boxes, scores, plates, 0.25)
    np.testing.assert_allclose(ious, [1.0, 0.5, 1.0, 0.0])
    assert tp == [1, 0, 1, None] and misses == 0  # the 2nd box finds plate 0 taken
    ious, tp, misses = match_detections(boxes[:0], scores[:0], plates, 0.25)
    assert len(ious) == 0 and tp == [] and misses == 2
    ious, tp, misses = match_detections(boxes, scores, plates[:0], 0.25)
    assert np.isnan(ious).all() and tp == [0, 0, 0, None] and misses == 0


def test_real_detector_checkpoint_through_the_cli(dataset, tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("dwsep_tiny", task="detect").eval()
    ckpt = save_checkpoint_of(tmp_path / "run" / "last.pth", model, (W, H))
    out = tmp_path / "eval"
    assert main(["eval", str(ckpt), "--data", str(dataset), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed and "corner error" in printed
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["task"] == "detect" and doc["model"] == "dwsep_tiny"
    for key in ("ap50", "ap50_95", "ar", "precision", "recall", "f1", "corner_error_px"):
        assert key in doc["metrics"], key
    rows = _read_csv(out / "predictions.csv")
    assert list(rows[0]) == DETECTION_COLUMNS
    assert {r["image"] for r in rows} == {f"images/test_{k}.png" for k in PHOTOS}
    assert (out / "worst.png").is_file()
