"""Metrics and the evaluator: every expected value is worked out by hand in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from platelab.eval.metrics import (
    average_precision,
    best_ious,
    best_matches,
    detection_metrics,
    evaluate,
    localization_metrics,
    summarize,
)

NAN = float("nan")


# -- best_ious -----------------------------------------------------------------
IOU_CASES = [
    # id, predicted box, the image's plates, expected IoU
    ("identical", [0, 0, 10, 10], [[0, 0, 10, 10]], 1.0),
    ("disjoint", [0, 0, 10, 10], [[20, 20, 30, 30]], 0.0),
    # sharing an edge: the intersection has zero width
    ("touching", [0, 0, 10, 10], [[10, 0, 20, 10]], 0.0),
    # intersection [5,0,10,10] = 50; union 100 + 100 - 50 = 150
    ("half_overlap", [0, 0, 10, 10], [[5, 0, 15, 10]], 50 / 150),
    # plate [2,2,7,7] (area 25) inside the box (area 100): 25 / 100
    ("contained", [0, 0, 10, 10], [[2, 2, 7, 7]], 0.25),
    # the box covers the plate's top half too: best of 0 and 50 / 100
    ("best_of_two", [0, 0, 10, 10], [[20, 20, 30, 30], [0, 0, 10, 5]], 0.5),
    ("negative", [0, 0, 10, 10], np.zeros((0, 4)), NAN),
    # 0 / 0: a point on a point overlaps nothing
    ("degenerate", [3, 3, 3, 3], [[3, 3, 3, 3]], 0.0),
    # a diverged model's box overlaps nothing
    ("non_finite", [NAN, NAN, NAN, NAN], [[0, 0, 1, 1]], 0.0),
]


@pytest.mark.parametrize(
    ("pred", "gts", "expected"), [c[1:] for c in IOU_CASES], ids=[c[0] for c in IOU_CASES]
)
def test_best_iou_cases(pred, gts, expected):
    got = best_ious(np.array([pred], float), [np.array(gts, float)])
    np.testing.assert_allclose(got, [expected], equal_nan=True)


def test_best_ious_all_cases_in_one_call_keep_their_image():
    preds = np.array([c[1] for c in IOU_CASES], float)
    got = best_ious(preds, [np.array(c[2], float) for c in IOU_CASES])
    np.testing.assert_allclose(got, [c[3] for c in IOU_CASES], equal_nan=True)


def test_best_ious_across_chunks_matches_one_box_iou_per_image():
    # More images than one box_iou chunk, with 0..3 plates each: the chunked
    # bookkeeping must pair every plate with its own image's box.
    rng = np.random.default_rng(0)
    m = 700
    xy = rng.uniform(0, 80, (m, 2))
    preds = np.concatenate([xy, xy + rng.uniform(5, 30, (m, 2))], axis=1)
    gts = []
    for i in range(m):
        n = int(rng.integers(0, 4))
        g = rng.uniform(-10, 10, (n, 4)) + preds[i]
        gts.append(np.concatenate([g[:, :2].clip(max=g[:, 2:] - 1), g[:, 2:]], axis=1))
    got = best_ious(preds, gts)
    for i in range(m):
        if len(gts[i]) == 0:
            assert math.isnan(got[i])
        else:
            ref = box_iou(torch.tensor(preds[i : i + 1]), torch.tensor(gts[i])).max().item()
            assert got[i] == pytest.approx(ref, abs=1e-12)


def test_best_ious_empty_and_errors():
    assert best_ious(np.zeros((0, 4)), []).shape == (0,)
    with pytest.raises(ValueError, match="ground-truth lists"):
        best_ious(np.zeros((2, 4)), [np.zeros((0, 4))])
    with pytest.raises(ValueError, match="x_min <= x_max"):
        best_ious(np.array([[10, 0, 0, 10]], float), [np.zeros((1, 4))])


def test_best_matches_names_the_best_plate_of_each_image():
    preds = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    gts = [
        # 0 with the 1st plate, 1/2 with the 2nd ([0,0,10,5]: 50 / 100), 1/4 with the 3rd
        np.array([[20, 20, 30, 30], [0, 0, 10, 5], [2, 2, 7, 7]], float),
        np.zeros((0, 4)),  # negative: no plate, -1
        # two plates with IoU 1: a tie goes to the first
        np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float),
        np.array([[40, 40, 50, 50]], float),  # overlaps nothing: plate 0, IoU 0
    ]
    ious, match = best_matches(preds, gts)
    np.testing.assert_allclose(ious, [0.5, NAN, 1.0, 0.0], equal_nan=True)
    assert match.tolist() == [1, -1, 0, 0]
    assert best_matches(np.zeros((0, 4)), [])[1].shape == (0,)


# -- localization_metrics -------------------------------------------------------
def test_localization_metrics_by_hand():
    # plate images: 1.0, 0.5, 0.7, 0.9 (the negative's NaN is left out)
    # mean 3.1 / 4 = 0.775; median of (0.5, 0.7, 0.9, 1.0) = 0.8
    # > 0.5 strictly: 0.7, 0.9, 1.0 -> 3/4; > 0.7 strictly: 0.9, 1.0 -> 2/4
    m = localization_metrics([1.0, 0.5, 0.7, 0.9, NAN], [1, 1, 1, 1, 0])
    assert m == pytest.approx(
        {"mean_iou": 0.775, "median_iou": 0.8, "acc_iou50": 0.75, "acc_iou70": 0.5}
    )


@pytest.mark.parametrize(
    ("ious", "has_plate"), [([], []), ([NAN, NAN], [0, 0])], ids=["no_images", "no_plates"]
)
def test_localization_metrics_with_nothing_to_average_are_zero(ious, has_plate):
    assert localization_metrics(ious, has_plate) == {
        "mean_iou": 0.0,
        "median_iou": 0.0,
        "acc_iou50": 0.0,
        "acc_iou70": 0.0,
    }


# -- detection_metrics ----------------------------------------------------------
DETECTION_CASES = [
    # id, scores, ious, plates, iou_thr, (tp, fp, fn, precision, recall, f1)
    # a confident box on a negative: FP; no plate so recall 0
    ("confident_negative", [0.9], [NAN], [0], 0.5, (0, 1, 0, 0.0, 0.0, 0.0)),
    # score below 0.5: no detection, the plate is missed
    ("low_score", [0.49], [0.9], [1], 0.5, (0, 0, 1, 0.0, 0.0, 0.0)),
    # score exactly 0.5 is a detection (>=)
    ("score_at_threshold", [0.5], [0.9], [1], 0.5, (1, 0, 0, 1.0, 1.0, 1.0)),
    # IoU exactly 0.5 is not a hit (strictly greater): a misplaced box is FP and FN
    ("iou_at_threshold", [0.9], [0.5], [1], 0.5, (0, 1, 1, 0.0, 0.0, 0.0)),
    # one good box, two plates: 1 TP, 1 FN; P 1, R 1/2, F1 2*(1*.5)/1.5 = 2/3
    ("two_plates_one_box", [0.9], [0.8], [2], 0.5, (1, 0, 1, 1.0, 0.5, 2 / 3)),
    # TP, FP (misplaced), FP (negative), undetected plate: P 1/3, R 1/3 (3 plates), F1 1/3
    (
        "mixed",
        [0.9, 0.8, 0.7, 0.3],
        [0.9, 0.2, NAN, 0.9],
        [1, 1, 0, 1],
        0.5,
        (1, 2, 2, 1 / 3, 1 / 3, 1 / 3),
    ),
    # IoU 0.6 hits at 0.5 but not at 0.7
    ("stricter_iou", [0.9], [0.6], [1], 0.7, (0, 1, 1, 0.0, 0.0, 0.0)),
    ("empty", [], [], [], 0.5, (0, 0, 0, 0.0, 0.0, 0.0)),
]


@pytest.mark.parametrize(
    ("scores", "ious", "plates", "iou_thr", "expected"),
    [c[1:] for c in DETECTION_CASES],
    ids=[c[0] for c in DETECTION_CASES],
)
def test_detection_metrics_cases(scores, ious, plates, iou_thr, expected):
    m = detection_metrics(scores, ious, plates, iou_thr=iou_thr)
    got = tuple(m[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1"))
    assert got == pytest.approx(expected)


def test_detection_metrics_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="differ in length"):
        detection_metrics([0.9, 0.8], [0.9], [1])


# -- average_precision ----------------------------------------------------------
AP_CASES = [
    # id, scores, ious, plates, expected AP at IoU 0.5
    # ranked TP, FP, TP, FP with 3 plates (the third never found):
    #   precision 1, 1/2, 2/3, 1/2; recall 1/3, 1/3, 2/3, 2/3
    #   envelope at the recall steps: 1 and 2/3 -> 1/3 * 1 + 1/3 * 2/3 = 5/9
    # (given out of order: the ranking is by score)
    ("tp_fp_tp_fp", [0.7, 0.9, 0.6, 0.8], [0.9, 0.8, NAN, 0.1], [1, 1, 0, 1], 5 / 9),
    # FP, TP, TP with 2 plates: precision 0, 1/2, 2/3; recall 0, 1/2, 1.
    #   The envelope lifts the 1/2 at recall 1/2 to 2/3: 1/2 * 2/3 + 1/2 * 2/3 = 2/3
    #   (without it 1/2 * 1/2 + 1/2 * 2/3 = 7/12)
    ("envelope", [0.9, 0.8, 0.7], [NAN, 0.9, 0.9], [0, 1, 1], 2 / 3),
    ("perfect", [0.9, 0.8, 0.1], [0.9, 0.6, NAN], [1, 1, 0], 1.0),
    # a tie is one point of the curve: precision 1/2 at recall 1 -> 1/2, in either order
    ("tie_tp_first", [0.9, 0.9], [0.9, NAN], [1, 0], 0.5),
    ("tie_fp_first", [0.9, 0.9], [NAN, 0.9], [0, 1], 0.5),
    ("all_misplaced", [0.9, 0.8], [0.2, 0.1], [1, 1], 0.0),
    # recall is over plates: one box on an image of 2 plates reaches recall 1/2 at precision 1
    ("two_plates", [0.9], [0.9], [2], 0.5),
    ("no_plates", [0.9, 0.2], [NAN, NAN], [0, 0], 0.0),
    ("empty", [], [], [], 0.0),
]


@pytest.mark.parametrize(
    ("scores", "ious", "plates", "expected"),
    [c[1:] for c in AP_CASES],
    ids=[c[0] for c in AP_CASES],
)
def test_average_precision_cases(scores, ious, plates, expected):
    assert average_precision(scores, ious, plates, iou_thr=0.5) == pytest.approx(expected)


def test_average_precision_threshold():
    # IoU 0.6 is a hit at 0.5 and a miss at 0.7: AP 1 then 0
    assert average_precision([0.9], [0.6], [1], iou_thr=0.5) == 1.0
    assert average_precision([0.9], [0.6], [1], iou_thr=0.7) == 0.0


# -- summarize ------------------------------------------------------------------
def test_summarize_perfect_predictions_score_one():
    gts = [np.array([[10, 10, 50, 30]], float), np.zeros((0, 4)), np.array([[0, 0, 8, 4]], float)]
    preds = np.array([[10, 10, 50, 30], [5, 5, 20, 20], [0, 0, 8, 4]], float)
    m = summarize([0.99, 0.01, 0.8], preds, gts)
    for key in ("mean_iou", "median_iou", "acc_iou50", "acc_iou70", "precision", "recall", "f1"):
        assert m[key] == 1.0, key
    for key in ("precision70", "recall70", "f1_70", "ap50", "ap70"):
        assert m[key] == 1.0, key
    assert (m["images"], m["plates"], m["negatives"]) == (3.0, 2.0, 1.0)


def test_summarize_zero_images_is_all_zero():
    m = summarize([], np.zeros((0, 4)), [])
    assert m and all(v == 0.0 for v in m.values()), m


def test_summarize_only_negatives_with_confident_boxes():
    # two FPs, no plate: precision 0/2 = 0, recall 0 (no plate), AP 0, nothing NaN
    m = summarize([0.9, 0.7], np.array([[0, 0, 5, 5], [1, 1, 4, 4]], float), [[], []])
    assert all(v == 0.0 for k, v in m.items() if k not in ("images", "negatives")), m
    assert (m["images"], m["negatives"]) == (2.0, 2.0)


# -- evaluate -------------------------------------------------------------------
W, H = 100, 50  # canvas
# image k (every pixel of it = k) -> its plates, the model's box (px) and logit
FAKE = {
    # IoU 1; score sigmoid(2) = 0.881
    0: ([[10, 10, 30, 20]], [10, 10, 30, 20], 2.0),
    # inter [10,0,20,10] = 100; union 200 + 200 - 100 = 300 -> IoU 1/3; score 0.731
    1: ([[0, 0, 20, 10]], [10, 0, 30, 10], 1.0),
    # negative, confident (0.953): FP
    2: ([], [40, 20, 60, 30], 3.0),
    # negative, score 0.119: no detection
    3: ([], [40, 20, 60, 30], -2.0),
    # two plates; inter with the 2nd 20*12 = 240, union 400 -> IoU 0.6 (0 with the 1st); 0.622
    4: ([[0, 0, 10, 10], [50, 20, 70, 40]], [50, 20, 70, 32], 0.5),
}
# plate images 0, 1, 4: IoU 1, 1/3, 0.6 -> mean 29/45, median 0.6, > .5: 2/3, > .7: 1/3
# score >= .5: 0 TP, 1 FP, 2 FP, 4 TP (0.6 > .5) -> TP 2, FP 2, plates 4: P .5, R .5, F1 .5
# at IoU .7, 4 is FP too: TP 1, FP 3 -> P .25, R .25, F1 .25
# ranked 2 FP, 0 TP, 1 FP, 4 TP, 3 FP: precision 0, 1/2, 1/3, 1/2, 2/5; recall 0, 1/4, 1/4, 1/2, 1/2
#   AP50 = 1/4 * 1/2 + 1/4 * 1/2 = 1/4; at .7 only 0 hits: AP70 = 1/4 * 1/2 = 1/8
EXPECTED = {
    "mean_iou": 29 / 45,
    "median_iou": 0.6,
    "acc_iou50": 2 / 3,
    "acc_iou70": 1 / 3,
    "precision": 0.5,
    "recall": 0.5,
    "f1": 0.5,
    "precision70": 0.25,
    "recall70": 0.25,
    "f1_70": 0.25,
    "ap50": 0.25,
    "ap70": 0.125,
    "images": 5.0,
    "plates": 4.0,
    "negatives": 2.0,
}
BATCHES = [[0, 1, 2], [3, 4]]  # unequal sizes


class FakeModel(nn.Module):
    """Looks up image k's box and logit; records how it was called."""

    def __init__(self):
        super().__init__()
        scale = np.array([W, H, W, H], float)
        self.boxes = torch.tensor(np.array([FAKE[k][1] for k in FAKE]) / scale, dtype=torch.float32)
        self.logits = torch.tensor([FAKE[k][2] for k in FAKE])
        self.calls = []

    def forward(self, images):
        self.calls.append(
            {
                "inference": torch.is_inference_mode_enabled(),
                "training": self.training,
                "autocast": torch.get_autocast_dtype("cpu")
                if torch.is_autocast_enabled("cpu")
                else None,
            }
        )
        k = images[:, 0, 0, 0].long()
        return {"boxes_norm_xyxy": self.boxes[k], "logits": self.logits[k]}


def make_batch(ks, full_targets=True):
    images = torch.stack([torch.full((3, H, W), k, dtype=torch.uint8) for k in ks])
    gts = [torch.tensor(FAKE[k][0], dtype=torch.float32).reshape(-1, 4) for k in ks]
    primary = torch.stack([g[0] if len(g) else torch.zeros(4) for g in gts])
    targets = {"boxes_xyxy": primary, "has_plate": torch.tensor([float(len(g) > 0) for g in gts])}
    if full_targets:
        targets |= {"all_boxes_xyxy": gts, "index": torch.tensor(ks, dtype=torch.int64)}
    return images, targets


def loss_fn(outputs, targets):
    # "loss" = mean index of the batch: (0+1+2)/3 = 1 and (3+4)/2 = 3.5; over images
    #   (3*1 + 2*3.5) / 5 = 2.0 (the mean of the batch means would be 2.25)
    # "aux" = batch size: (3*3 + 2*2) / 5 = 2.6; "per_image" is not a scalar: not logged
    b = len(targets["index"])
    return {
        "loss": targets["index"].float().mean(),
        "aux": torch.tensor(float(b)),
        "per_image": outputs["logits"],
    }


def test_evaluate_matches_hand_values():
    model = FakeModel().train()
    metrics, records = evaluate(
        model, [make_batch(ks) for ks in BATCHES], loss_fn=loss_fn, collect=True
    )
    for key, want in EXPECTED.items():
        assert metrics[key] == pytest.approx(want, abs=1e-6), key
    assert metrics["val_loss"] == pytest.approx(2.0)
    assert metrics["val_aux"] == pytest.approx(2.6)
    assert "val_per_image" not in metrics
    assert metrics["val_fps"] > 0
    # in eval mode and inference mode while running, back in train mode after
    assert model.calls == [{"inference": True, "training": False, "autocast": None}] * 2
    assert model.training

    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["plates"] for r in records] == [1, 1, 0, 0, 2]
    np.testing.assert_allclose(
        [r["iou"] for r in records], [1, 1 / 3, NAN, NAN, 0.6], atol=1e-6, equal_nan=True
    )
    np.testing.assert_allclose(
        [r["score"] for r in records], torch.sigmoid(torch.tensor([2.0, 1, 3, -2, 0.5])), 1e-6
    )
    # the box back in canvas pixels
    box = [records[4][k] for k in ("x_min", "y_min", "x_max", "y_max")]
    assert box == pytest.approx([50, 20, 70, 32], abs=1e-4)


def test_evaluate_with_primary_boxes_only_and_no_index():
    # A loader without all_boxes_xyxy / index: primary boxes and a running count.
    # Image 4 now has one plate [0,0,10,10], which the box misses: IoU 0
    # plate images 0, 1, 4: IoU 1, 1/3, 0 -> mean 4/9; detections 0 TP, 1 FP, 2 FP, 4 FP
    #   -> P 1/4, R 1/3 (3 plates)
    batches = [make_batch(ks, full_targets=False) for ks in BATCHES]
    metrics, records = evaluate(FakeModel(), batches, collect=True)
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    assert metrics["mean_iou"] == pytest.approx(4 / 9, abs=1e-6)
    assert (metrics["precision"], metrics["recall"]) == pytest.approx((1 / 4, 1 / 3))
    assert "val_loss" not in metrics


def test_evaluate_empty_loader():
    metrics = evaluate(FakeModel(), [], loss_fn=loss_fn)
    assert math.isnan(metrics.pop("val_loss"))
    assert all(v == 0.0 for v in metrics.values()), metrics


def test_evaluate_under_bf16_autocast():
    model = FakeModel()
    metrics = evaluate(model, [make_batch(ks) for ks in BATCHES], amp_dtype=torch.bfloat16)
    assert model.calls[0]["autocast"] == torch.bfloat16
    assert metrics["precision"] == pytest.approx(0.5)


def _ddp_worker(rank, world_size, init_file, out_dir):
    # Rank r sees only BATCHES[r]; after gathering, both must report the whole set.
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        metrics, records = evaluate(
            FakeModel(), [make_batch(BATCHES[rank])], loss_fn=loss_fn, collect=True
        )
    finally:
        torch.distributed.destroy_process_group()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"metrics": metrics, "index": [r["index"] for r in records]}, f)


def test_evaluate_gathers_over_ranks(tmp_path):
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, tmp_path / "init", tmp_path), nprocs=2, join=True
    )
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        metrics = got["metrics"]
        for key, want in EXPECTED.items():
            assert metrics[key] == pytest.approx(want, abs=1e-6), (rank, key)
        assert metrics["val_loss"] == pytest.approx(2.0)
        assert got["index"] == [0, 1, 2, 3, 4]
