"""``platelab eval`` as a library: known predictions mapped back to original pixels exactly.

The dataset: a 96x64 canvas holding five photos of different shapes, so scale and
padding differ per image (worked out by hand; ``Letterbox.fit`` must agree):

    k  photo    scale  pad (x, y)  source/subset      plates (original pixels)
    0  300x100  0.32   (0, 16)     ccpd/ccpd_base     [100, 25, 200, 75]
    1  100x200  0.32   (32, 0)     yolo/cars          [18.75, 150, 75, 175]
    2  150x100  0.64   (0, 0)      voc/street         none
    3  600x400  0.16   (0, 0)      ccpd/ccpd_blur     [100, 100, 200, 150], [300, 250, 450, 300]
    4  120x100  0.64   (9, 0)      yolo/cars          none    (77x64 content: pad (96-77)//2)

The fake model reads k from the image and returns a box whose normalised
coordinates are multiples of 1/32 (x) and 1/64 (y): exact in float32, so the
canvas boxes below are exact and the original boxes are ``(canvas - pad) / scale``.
The plates are chosen so that their canvas boxes are exact in float32 too (the
manifest holds float32: a plate at canvas x 38.4 would come back 5e-6 px off).
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
from platelab.data.manifest import ManifestImage, write_manifest
from platelab.errors import PlatelabError
from platelab.eval.gallery import select_worst
from platelab.geometry import Letterbox
from platelab.models import create_model
from tests.infer import save_checkpoint_of

W, H = 96, 64
# k: (photo w, h), source, subset, plates in original pixels
PHOTOS = {
    0: ((300, 100), "ccpd", "ccpd_base", [[100, 25, 200, 75]]),
    1: ((100, 200), "yolo", "cars", [[18.75, 150, 75, 175]]),
    2: ((150, 100), "voc", "street", []),
    3: ((600, 400), "ccpd", "ccpd_blur", [[100, 100, 200, 150], [300, 250, 450, 300]]),
    4: ((120, 100), "yolo", "cars", []),
}
# k: predicted box in canvas pixels (x multiples of 3 = 96/32, y integers = 64/64), logit
PRED_CANVAS = {
    0: ([36, 24, 66, 40], 2.0),
    1: ([30, 48, 57, 56], 1.0),  # reaches 2 px into the left padding
    2: ([48, 16, 72, 32], 3.0),  # a confident box on a negative
    3: ([48, 40, 72, 45], 0.5),
    4: ([3, 0, 9, 8], -2.0),  # entirely in the padding, unconfident
}
# (canvas - pad) / scale, then clipped to the photo:
PRED_ORIG = {
    0: [36 / 0.32, 25, 66 / 0.32, 75],  # [112.5, 25, 206.25, 75]
    1: [0, 150, 78.125, 175],  # x_min (30 - 32) / 0.32 = -6.25 clips to 0
    2: [75, 25, 112.5, 50],
    3: [300, 250, 450, 281.25],
    4: [0, 0, 0, 12.5],  # x (3 - 9) / 0.64 and (9 - 9) / 0.64: both 0 after clipping
}
# IoU in original pixels (all boxes of an image share a side or a span, so by hand):
#   0: inter 87.5 x 50 = 4375; union 5000 + 93.75 x 50 - 4375 = 5312.5 -> 14/17
#   1: same y span, x [18.75, 75] in [0, 78.125]: 56.25 / 78.125 = 0.72
#      (on the canvas, unclipped: [38, 56] in [30, 57]: 18 / 27 = 0.667 -- below 0.7)
#   3: the 2nd plate, same x span, y 31.25 / 50 = 0.625 (the 1st: 0)
IOU = {0: 14 / 17, 1: 0.72, 3: 0.625}
SCORE = {k: 1 / (1 + math.exp(-logit)) for k, (_, logit) in PRED_CANVAS.items()}
# score >= 0.5: 0, 1, 3 hit at 0.5; 2 is a FP; 4 (0.119) no detection; 4 plates
#   P 3/4, R 3/4. At 0.7: 3 misses too: P 2/4, R 2/4.
# Ranked 2 FP, 0 TP, 1 TP, 3 TP, 4 -: precision 0, 1/2, 2/3, 3/4, 3/5; recall 0, 1/4 .. 3/4
#   AP50 = 3 * 1/4 * 3/4 = 9/16. At 0.7 (3 misses): 0, 1/2, 2/3, 1/2, 2/5 -> 2 * 1/4 * 2/3 = 1/3
EXPECTED = {
    "mean_iou": (14 / 17 + 0.72 + 0.625) / 3,
    "median_iou": 0.72,
    "acc_iou50": 1.0,
    "acc_iou70": 2 / 3,  # 1/3 on the canvas: image 1 only passes once clipped to its photo
    "precision": 0.75,
    "recall": 0.75,
    "f1": 0.75,
    "precision70": 0.5,
    "recall70": 0.5,
    "f1_70": 0.5,
    "ap50": 9 / 16,
    "ap70": 1 / 3,
    "images": 5.0,
    "plates": 4.0,
    "negatives": 2.0,
}
CONTENT = 10  # image k's content pixels are CONTENT + k; the padding is PAD_VALUE


def make_dataset(root: Path, splits: dict[str, list[int]] | None = None) -> Path:
    """Write the PHOTOS as a prepared dataset (PNG canvases: lossless, so k survives)."""
    splits = {"test": list(PHOTOS), "val": []} if splits is None else splits
    (root / "images").mkdir(parents=True)
    for split, ks in splits.items():
        entries = []
        for k in ks:
            (ow, oh), source, subset, plates = PHOTOS[k]
            lb = Letterbox.fit(ow, oh, W, H)
            photo = np.full((oh, ow, 3), CONTENT + k, np.uint8)
            name = f"images/{split}_{k}.png"
            cv2.imwrite(str(root / name), lb.apply(photo))
            boxes = lb.boxes_to_canvas(np.array(plates, np.float64).reshape(-1, 4))
            corners = np.full((len(boxes), 4, 2), np.nan)
            entries.append(
                ManifestImage(
                    name, boxes, corners, [""] * len(boxes), source, subset, lb, f"/p/{k}.jpg"
                )
            )
        write_manifest(root / f"{split}.csv", entries)
    (root / "prepare_report.json").write_text(json.dumps({"canvas": [W, H]}))
    return root


class KnownBoxes(nn.Module):
    """Image k (read at the canvas centre, always inside the photo) -> PRED_CANVAS[k]."""

    def __init__(self) -> None:
        super().__init__()
        boxes = [PRED_CANVAS[k][0] for k in sorted(PRED_CANVAS)]
        self.boxes = torch.tensor(boxes, dtype=torch.float32) / torch.tensor([W, H, W, H])
        self.logits = torch.tensor([PRED_CANVAS[k][1] for k in sorted(PRED_CANVAS)])

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        k = images[:, 0, H // 2, W // 2].long() - CONTENT
        return {"boxes_norm_xyxy": self.boxes[k], "logits": self.logits[k]}


def known_info(size=(W, H)) -> dict:
    return {"model": "known", "input_size": size, "epoch": 7, "path": Path("known.pth")}


@pytest.fixture
def known_model(monkeypatch):
    def load(path, expect_model=None, *, device="cpu", ema=True):
        return KnownBoxes(), known_info()

    monkeypatch.setattr(ev, "load_model_from_checkpoint", load)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("eval") / "ds")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_letterboxes_are_the_hand_computed_ones():
    # The table in the module docstring, which every expected value rests on.
    want = {0: (0.32, 0, 16), 1: (0.32, 32, 0), 2: (0.64, 0, 0), 3: (0.16, 0, 0), 4: (0.64, 9, 0)}
    for k, (scale, px, py) in want.items():
        lb = Letterbox.fit(*PHOTOS[k][0], W, H)
        assert (lb.scale, lb.pad_x, lb.pad_y) == pytest.approx((scale, px, py)), k


def test_known_predictions_map_back_to_original_pixels_exactly(dataset, known_model, tmp_path):
    report = ev.evaluate_checkpoint("any.pth", dataset, "test", tmp_path / "out", batch_size=2)
    for key, want in EXPECTED.items():
        assert report.metrics[key] == pytest.approx(want, abs=1e-9), key

    rows = _read_csv(tmp_path / "out" / "predictions.csv")
    assert list(rows[0]) == ev.PREDICTION_COLUMNS
    assert [r["image"] for r in rows] == [f"images/test_{k}.png" for k in PHOTOS]
    for k, row in enumerate(rows):
        (ow, oh), source, subset, plates = PHOTOS[k]
        assert (row["source"], row["subset"], row["orig_image"]) == (source, subset, f"/p/{k}.jpg")
        assert (int(row["orig_width"]), int(row["orig_height"]), int(row["plates"])) == (
            ow,
            oh,
            len(plates),
        )
        pred = [float(row[c]) for c in ev.PRED_COLUMNS]
        np.testing.assert_allclose(pred, PRED_ORIG[k], atol=1e-6, err_msg=f"image {k}")
        assert float(row["score"]) == pytest.approx(SCORE[k], abs=1e-6)
        if k in IOU:
            assert float(row["iou"]) == pytest.approx(IOU[k], abs=1e-9)
            gt = [float(row[c]) for c in ev.GT_COLUMNS]
            best = plates[1] if k == 3 else plates[0]  # image 3's box sits on its 2nd plate
            np.testing.assert_allclose(gt, best, atol=1e-6)
        else:
            assert row["iou"] == "" and all(row[c] == "" for c in ev.GT_COLUMNS)

    assert [r["index"] for r in report.records] == [0, 1, 2, 3, 4]
    assert report.records[2]["iou"] is None and report.records[2]["gt_x_min"] is None
    assert report.skipped == [] and report.info["epoch"] == 7


def test_breakdown_by_source_and_subset(dataset, known_model):
    report = ev.evaluate_checkpoint("any.pth", dataset, "test", gallery=0)
    assert list(report.by_source) == ["ccpd", "voc", "yolo"]
    assert list(report.by_subset) == ["cars", "ccpd_base", "ccpd_blur", "street"]
    ccpd = report.by_source["ccpd"]  # images 0 and 3: IoU 14/17 and 0.625
    assert (ccpd["images"], ccpd["plates"], ccpd["negatives"]) == (2, 3, 0)
    assert ccpd["mean_iou"] == pytest.approx((14 / 17 + 0.625) / 2)
    assert ccpd["acc_iou70"] == 0.5
    # 2 detections, both hits at 0.5, over 3 plates
    assert (ccpd["precision"], ccpd["recall"]) == pytest.approx((1.0, 2 / 3))
    voc = report.by_source["voc"]  # the confident negative alone: one FP, nothing else
    assert (voc["images"], voc["plates"], voc["negatives"]) == (1, 0, 1)
    assert voc["precision"] == 0.0 and voc["ap50"] == 0.0
    cars = report.by_subset["cars"]  # image 1 (TP, IoU 0.72) and the unconfident negative 4
    assert (cars["images"], cars["plates"], cars["negatives"]) == (2, 1, 1)
    assert (cars["mean_iou"], cars["precision"], cars["recall"]) == pytest.approx((0.72, 1.0, 1.0))
    assert report.by_subset["ccpd_blur"]["acc_iou70"] == 0.0
    # nothing written without out; paths says so
    assert report.paths == {"metrics_json": None, "predictions_csv": None, "gallery": None}


def test_metrics_json_and_gallery(dataset, known_model, tmp_path):
    out = tmp_path / "out"
    report = ev.evaluate_checkpoint("any.pth", dataset, "test", out, gallery=3)
    doc = json.loads((out / "metrics.json").read_text())
    assert (doc["model"], doc["checkpoint"], doc["split"]) == ("known", "known.pth", "test")
    assert (doc["dataset"], doc["canvas"], doc["epoch"]) == (str(dataset), [W, H], 7)
    assert doc["metrics"] == pytest.approx(report.metrics)
    assert doc["by_source"]["ccpd"] == pytest.approx(report.by_source["ccpd"])
    assert set(doc["by_subset"]) == {"cars", "ccpd_base", "ccpd_blur", "street"}
    assert report.paths == {
        "metrics_json": out / "metrics.json",
        "predictions_csv": out / "predictions.csv",
        "gallery": out / "worst.png",
    }
    # 3 tiles of 320 x round(64 * 320 / 96) = 213, in a 2x2 grid with 4 px gaps
    grid = cv2.imread(str(out / "worst.png"))
    assert grid.shape == (2 * (213 + 4) + 4, 2 * (320 + 4) + 4, 3)
    # the first tile shows the confident negative: its predicted box drawn in red (BGR)
    tile = grid[4 : 4 + 213, 4 : 4 + 320]
    x0 = round(48 * 320 / 96)  # the box's left edge, canvas 48 scaled by 320/96
    column = tile[
        60:100, x0
    ]  # inside the box's rows (canvas 16..32 = tile 53..107), below the label
    assert ((column[:, 2] > 200) & (column[:, 1] < 60)).any()

    # nothing to show: no file (a stale one is removed), and paths says so
    report = ev.evaluate_checkpoint("any.pth", dataset, "test", out, gallery=0)
    assert report.paths["gallery"] is None and not (out / "worst.png").exists()
    assert (out / "predictions.csv").is_file()


def test_worst_cases_rank_plates_by_iou_and_confident_negatives_by_score(dataset, known_model):
    report = ev.evaluate_checkpoint("any.pth", dataset, "test", gallery=0)
    # badness: 2 -> 0.953 (FP), 3 -> 1 - 0.625, 1 -> 1 - 0.72, 0 -> 1 - 0.824; 4 is no error
    assert [r["index"] for r in select_worst(report.records, 16)] == [2, 3, 1, 0]
    assert [r["index"] for r in select_worst(report.records, 2)] == [2, 3]
    assert select_worst(report.records, 0) == []


def test_all_splits_and_unreadable_images(tmp_path, known_model):
    data = make_dataset(tmp_path / "ds", {"train": [0, 1], "val": [2], "test": [3, 4]})
    (data / "images" / "val_2.png").write_bytes(b"not an image")
    report = ev.evaluate_checkpoint("any.pth", data, "all", tmp_path / "out")
    assert [(r["split"], r["image"]) for r in report.records] == [
        ("train", "images/train_0.png"),
        ("train", "images/train_1.png"),
        ("test", "images/test_3.png"),
        ("test", "images/test_4.png"),
    ]
    assert report.skipped == ["images/val_2.png"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["skipped"] == [
        "images/val_2.png"
    ]
    # without the FP on image 2: 3 TP of 3 detections
    assert report.metrics["images"] == 4 and report.metrics["precision"] == 1.0
    rows = _read_csv(tmp_path / "out" / "predictions.csv")
    assert [r["split"] for r in rows] == ["train", "train", "test", "test"]


def test_clear_errors(dataset, known_model, tmp_path, monkeypatch):
    with pytest.raises(PlatelabError, match=r"has no train split \(train\.csv not found\)"):
        ev.evaluate_checkpoint("any.pth", dataset, "train")
    with pytest.raises(PlatelabError, match="split 'val' has no images"):
        ev.evaluate_checkpoint("any.pth", dataset, "val")
    with pytest.raises(PlatelabError, match="unknown split 'testing'; choose from .* or all"):
        ev.evaluate_checkpoint("any.pth", dataset, "testing")
    with pytest.raises(PlatelabError, match="dataset folder not found"):
        ev.evaluate_checkpoint("any.pth", tmp_path / "nowhere", "test")
    broken = make_dataset(tmp_path / "broken", {"test": [0]})
    (broken / "images" / "test_0.png").write_bytes(b"garbage")
    with pytest.raises(PlatelabError, match="none of the 1 images of 'test' could be read"):
        ev.evaluate_checkpoint("any.pth", broken, "test")


def test_real_checkpoint_file_and_run_folder(dataset, tmp_path):
    # A real dwsep_tiny whose head ignores its input: a zero heatmap centres the box at
    # (0.5, 0.5), zero weights and bias 0 give w = h = sigmoid(0) = 0.5 and no offset, so
    # every image gets the box [0.25, 0.25, 0.75, 0.75] = canvas [24, 16, 72, 48], logit 2.
    model = create_model("dwsep_tiny")
    with torch.no_grad():
        last = model.head.mlp[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0]))
        model.head.heatmap.weight.zero_()
    run = tmp_path / "run"
    save_checkpoint_of(run / "last.pth", model, (W, H))

    report = ev.evaluate_checkpoint(run, dataset, "test", tmp_path / "out")  # a run folder
    assert report.info["model"] == "dwsep_tiny" and report.info["path"] == run / "last.pth"
    # image 0 (scale 0.32, pad_y 16): [24/.32, 0, 72/.32, 32/.32] = [75, 0, 225, 100];
    #   its plate [100, 25, 200, 75] lies inside: IoU 5000 / 15000 = 1/3
    # image 1 (pad_x 32): x (24-32)/.32 = -25 and (72-32)/.32 = 125 clip to 0 and 100; y 50..150
    rows = _read_csv(tmp_path / "out" / "predictions.csv")
    np.testing.assert_allclose(
        [float(rows[0][c]) for c in ev.PRED_COLUMNS], [75, 0, 225, 100], atol=1e-4
    )
    np.testing.assert_allclose(
        [float(rows[1][c]) for c in ev.PRED_COLUMNS], [0, 50, 100, 150], atol=1e-4
    )
    assert float(rows[0]["iou"]) == pytest.approx(1 / 3, abs=1e-5)
    assert float(rows[0]["score"]) == pytest.approx(1 / (1 + math.exp(-2)), abs=1e-6)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["model"] == "dwsep_tiny"

    again = ev.evaluate_checkpoint(run / "last.pth", dataset, "test")  # the file itself
    assert again.metrics == pytest.approx(report.metrics)

    # Trained at another canvas (size=96x96): batches are letterboxed to it (scale 1,
    # pad_y 16) and the boxes mapped back. Its box [24, 24, 72, 72] is [24, 8, 72, 56] on
    # the dataset canvas; image 1 (pad_x 32): x clips to 0..100, y 8/.32 = 25, 56/.32 = 175.
    save_checkpoint_of(tmp_path / "square.pth", model, (96, 96))
    square = ev.evaluate_checkpoint(tmp_path / "square.pth", dataset, "test")
    assert square.info["input_size"] == (96, 96)
    np.testing.assert_allclose(
        [square.records[1][c] for c in ev.PRED_COLUMNS], [0, 25, 100, 175], atol=1e-4
    )


@pytest.mark.parametrize(("flag", "ema"), [([], True), (["--no-ema"], False)])
def test_eval_no_ema_asks_for_the_raw_weights(monkeypatch, tmp_path, flag, ema):
    import platelab.eval.evaluate as ev
    from platelab.cli import main

    asked = {}

    def load(path, **kw):
        asked.update(kw)
        raise PlatelabError("stop here")

    monkeypatch.setattr(ev, "load_model_from_checkpoint", load)
    (tmp_path / "run").mkdir()
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "test.csv").write_text("")
    (tmp_path / "ds" / "prepare_report.json").write_text('{"canvas": [64, 48]}')
    code = main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "ds"), *flag])
    assert code == 2 and asked["ema"] is ema
