"""Detection metrics: hand cases worked out in the comments, and pycocotools on random cases."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from platelab.eval import detection
from platelab.eval.detection import DetectionMetric, coco_ap, summarize
from platelab.eval.metrics import best_ious

NAN = float("nan")


def pred(boxes, scores, corners=None):
    d = {"boxes_xyxy": np.array(boxes, float).reshape(-1, 4), "scores": np.array(scores, float)}
    return d if corners is None else d | {"corners": np.array(corners, float).reshape(-1, 4, 2)}


def gt(boxes, corners=None, **extra):
    d = {"boxes_xyxy": np.array(boxes, float).reshape(-1, 4), **extra}
    return d if corners is None else d | {"corners": np.array(corners, float).reshape(-1, 4, 2)}


def quad(box):
    """The 4 corners (TL, TR, BR, BL) of an axis-aligned box."""
    x0, y0, x1, y1 = box
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# -- the worked example: 2 images, 3 plates, 4 detections --------------------------------
# image 0 holds plates A [0,0,10,10] and B [20,0,30,10]; image 1 holds plate C [0,0,10,10].
# d1 (0.9) = A exactly, IoU 1          -> TP at every threshold
# d2 (0.8) on image 1, far from C      -> FP
# d3 (0.7) = B exactly, IoU 1          -> TP at every threshold
# d4 (0.6) [0,0,10,6.2] on C: 62 / 100 -> TP at IoU 0.50, 0.55, 0.60; FP from 0.65 on
GTS = [gt([[0, 0, 10, 10], [20, 0, 30, 10]]), gt([[0, 0, 10, 10]])]
PREDS = [
    pred([[20, 0, 30, 10], [0, 0, 10, 10]], [0.7, 0.9]),  # out of score order on purpose
    pred([[50, 50, 60, 60], [0, 0, 10, 6.2]], [0.8, 0.6]),
]
# IoU 0.5 ranking TP FP TP TP: precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1;
# envelope 1, 3/4, 3/4, 3/4. Of the 101 recall points, 0.00..0.33 (34) find precision 1,
# 0.34..1.00 (67) find 3/4.
AP50 = (34 * 1 + 67 * 0.75) / 101
# IoU >= 0.65 ranking TP FP TP FP: precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3;
# envelope 1, 2/3, 2/3, 1/2: 34 points at 1, 0.34..0.66 (33) at 2/3, 0.67..1 (34) at 0.
AP_HIGH = (34 * 1 + 33 * 2 / 3) / 101
# thresholds 0.50, 0.55, 0.60 give AP50; the other 7 give AP_HIGH.
AP50_95 = (3 * AP50 + 7 * AP_HIGH) / 10
AR = (3 * 1 + 7 * 2 / 3) / 10  # recall 1 at 3 thresholds, 2/3 at 7


def test_worked_example_coco_figures():
    got = coco_ap(PREDS, GTS)
    assert got["ap50"] == pytest.approx(AP50, abs=1e-12)
    assert got["ap75"] == pytest.approx(AP_HIGH, abs=1e-12)
    assert got["ap50_95"] == pytest.approx(AP50_95, abs=1e-12)
    assert got["ar"] == pytest.approx(AR, abs=1e-12)
    # every plate is 10 px wide: all small, and no medium or large plate to measure
    assert got["ap_small"] == pytest.approx(AP50_95, abs=1e-12)
    assert math.isnan(got["ap_medium"]) and math.isnan(got["ap_large"])


def test_worked_example_precision_recall_and_top_box():
    m = summarize(PREDS, GTS)
    # score >= 0.5 keeps all 4: 3 TP, 1 FP, no plate missed
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 0)
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(2 * 0.75 / 1.75)
    # top boxes: d1 on image 0 (IoU 1), d2 on image 1 (IoU 0)
    assert (m["acc_iou50"], m["acc_iou70"], m["mean_iou"]) == (0.5, 0.5, 0.5)
    assert (m["n_images"], m["n_plates"]) == (2, 3)
    # score >= 0.75 keeps d1 (TP) and d2 (FP): P 1/2, R 1/3, F1 2 * 1/6 / (5/6) = 0.4
    m = summarize(PREDS, GTS, score_thr=0.75)
    assert (m["precision"], m["recall"]) == (0.5, pytest.approx(1 / 3))
    assert m["f1"] == pytest.approx(0.4)
    assert m["ap50"] == pytest.approx(AP50)  # AP does not depend on the threshold


def test_a_confident_box_on_a_negative_image_costs_precision_and_ap():
    preds = [*PREDS, pred([[5, 5, 15, 15]], [0.95])]
    gts = [*GTS, gt(np.zeros((0, 4)))]
    m = summarize(preds, gts)
    # 3 TP of 5 kept boxes; recall untouched
    assert m["precision"] == pytest.approx(3 / 5) and m["recall"] == 1.0
    # IoU 0.5 ranking FP TP FP TP TP: precision 0, 1/2, 1/3, 1/2, 3/5 at recall
    # 0, 1/3, 1/3, 2/3, 1; the envelope is 3/5 at every recall point
    assert m["ap50"] == pytest.approx(0.6, abs=1e-12)
    # the negative image has no top box to judge: still 2 plate images
    assert m["acc_iou50"] == 0.5 and m["n_images"] == 3


def test_perfect_predictions_score_one_everywhere():
    boxes = [[0, 0, 20, 10], [40, 0, 90, 20], [0, 50, 200, 100]]  # small, medium, large
    gts = [gt(boxes, corners=[quad(b) for b in boxes]), gt(np.zeros((0, 4)))]
    preds = [pred(boxes, [0.9, 0.8, 0.7], corners=[quad(b) for b in boxes]), pred([], [])]
    m = summarize(preds, gts)
    for key in ("ap50", "ap75", "ap50_95", "ar", "ap_small", "ap_medium", "ap_large"):
        assert m[key] == pytest.approx(1.0), key
    for key in ("precision", "recall", "f1", "acc_iou50", "acc_iou70", "mean_iou"):
        assert m[key] == 1.0, key
    assert m["corner_error_px"] == 0.0 and m["n_corner_pairs"] == 3


def test_no_predictions_score_zero():
    m = summarize([pred([], []), pred([], [])], GTS)
    for key in ("ap50", "ap75", "ap50_95", "ar", "ap_small", "precision", "recall", "f1"):
        assert m[key] == 0.0, key
    assert (m["acc_iou50"], m["mean_iou"], m["fn"]) == (0.0, 0.0, 3)
    assert math.isnan(m["corner_error_px"]) and m["n_corner_pairs"] == 0


def test_no_plates_at_all_is_zero_not_nan():
    m = summarize([pred([[0, 0, 5, 5]], [0.9])], [gt(np.zeros((0, 4)))])
    for key in ("ap50", "ap50_95", "ar", "precision", "recall", "f1", "acc_iou50", "mean_iou"):
        assert m[key] == 0.0, key
    assert m["fp"] == 1 and math.isnan(m["ap_small"])
    empty = summarize([], [])
    assert empty["ap50"] == 0.0 and empty["n_images"] == 0


def test_greedy_matching_lets_each_plate_match_once():
    # two boxes on the one plate: the better-scored one takes it, the other is a FP even
    # though it overlaps better
    m = summarize([pred([[0, 0, 10, 9], [0, 0, 10, 10]], [0.9, 0.8])], [gt([[0, 0, 10, 10]])])
    assert (m["tp"], m["fp"]) == (1, 1)
    assert m["ap50"] == pytest.approx(1.0)  # the TP ranks first
    # at IoU 0.95 the first (IoU 0.9) misses and the second takes the plate
    assert coco_ap([pred([[0, 0, 10, 9], [0, 0, 10, 10]], [0.9, 0.8])], [gt([[0, 0, 10, 10]])])[
        "ap50_95"
    ] == pytest.approx((9 * 1 + 1 * 0.5) / 10)


def test_max_det_keeps_the_best_scored():
    preds = [pred([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.1])]
    assert coco_ap(preds, [gt([[0, 0, 10, 10]])], max_det=1)["ap50"] == 0.0
    assert coco_ap(preds, [gt([[0, 0, 10, 10]])], max_det=2)["ap50"] == pytest.approx(0.5)


# -- size buckets by width ----------------------------------------------------------------
def test_size_buckets_by_hand():
    # image 0: plates s (20 wide), m (50 wide), l (150 wide); image 1: a plate exactly 32
    # wide, which is medium (buckets are half-open; COCO would count it in small too).
    gts = [
        gt([[0, 0, 20, 10], [100, 0, 150, 20], [200, 0, 350, 50]]),
        gt([[0, 0, 32, 10]]),
    ]
    preds = [
        # s exactly (0.9), l exactly (0.8), and a 10-wide box on nothing (0.95); m is missed
        pred([[0, 0, 20, 10], [200, 0, 350, 50], [400, 400, 410, 405]], [0.9, 0.8, 0.95]),
        pred([[0, 0, 32, 10]], [0.7]),
    ]
    got = coco_ap(preds, gts)
    # small: 1 plate (s). The stray 10-wide box (FP) outranks s's box (TP); the boxes on l
    # and the 32-wide plate matched ignored plates and are ignored. Precision 1/2 at
    # recall 1 -> 0.5 at every threshold.
    assert got["ap_small"] == pytest.approx(0.5, abs=1e-12)
    # medium: 2 plates (m, the 32-wide one). Only the 32-wide box counts (the stray box is
    # unmatched and outside, so ignored): precision 1 up to recall 1/2 -> 51 of 101 points.
    assert got["ap_medium"] == pytest.approx(51 / 101, abs=1e-12)
    # large: l's box alone, a TP
    assert got["ap_large"] == pytest.approx(1.0)


# -- corner error -----------------------------------------------------------------------
def test_corner_error_by_hand():
    a, b, c, d = [0, 0, 20, 10], [40, 0, 60, 10], [80, 0, 100, 10], [120, 0, 140, 10]
    nan4 = [[NAN, NAN]] * 4
    gts = [gt([a, b, c, d], corners=[quad(a), quad(b), nan4, quad(d)])]
    shifted = [[x + 3, y + 4] for x, y in quad(a)]  # every corner 5 px off
    one_off = quad(b)
    one_off[2] = [one_off[2][0] + 6, one_off[2][1] + 8]  # one corner 10 px off: mean 2.5
    preds = [
        pred(
            [a, b, c, d],
            [0.9, 0.8, 0.7, 0.3],  # d is below the 0.5 threshold: not counted
            corners=[shifted, one_off, quad(c), [[1000, 1000]] * 4],
        )
    ]
    m = summarize(preds, gts)
    # c's plate has no known corners, d's box is below the threshold: (5 + 2.5) / 2
    assert m["corner_error_px"] == pytest.approx(3.75) and m["n_corner_pairs"] == 2
    # at threshold 0.2, d counts too: its corners are sqrt(2) * ~1000 px off
    m = summarize(preds, gts, score_thr=0.2)
    far = np.linalg.norm(np.array([[1000, 1000]] * 4) - np.array(quad(d)), axis=1).mean()
    assert m["corner_error_px"] == pytest.approx((5 + 2.5 + far) / 3)


def test_corner_error_without_predicted_or_known_corners_is_nan():
    boxes = [[0, 0, 20, 10]]
    assert math.isnan(
        summarize([pred(boxes, [0.9])], [gt(boxes, corners=[quad(boxes[0])])])["corner_error_px"]
    )
    assert math.isnan(
        summarize([pred(boxes, [0.9], corners=[quad(boxes[0])])], [gt(boxes)])["corner_error_px"]
    )


# -- top box ------------------------------------------------------------------------------
def test_top_box_accuracy_by_hand():
    plate = [0, 0, 10, 10]
    gts = [gt([plate]), gt([[50, 50, 60, 60], plate]), gt([plate]), gt(np.zeros((0, 4)))]
    preds = [
        # top box IoU 0.8 (80 / 100); the better IoU-1 box scores lower and does not count
        pred([[0, 0, 10, 8], plate], [0.6, 0.4]),
        # top box IoU 0.6 with the second plate: the best plate counts
        pred([[0, 0, 10, 6]], [0.2]),
        pred([], []),  # no box: IoU 0
        pred([[0, 0, 5, 5]], [0.9]),  # negative image: not judged
    ]
    m = summarize(preds, gts)
    assert m["acc_iou50"] == pytest.approx(2 / 3)
    assert m["acc_iou70"] == pytest.approx(1 / 3)
    assert m["mean_iou"] == pytest.approx((0.8 + 0.6 + 0) / 3)


def test_batched_iou_matches_torchvision():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (3, 7, 2))
    a = np.concatenate([xy, xy + rng.uniform(0, 30, (3, 7, 2))], axis=-1)
    xy = rng.uniform(0, 50, (3, 5, 2))
    b = np.concatenate([xy, xy + rng.uniform(0, 30, (3, 5, 2))], axis=-1)
    got = detection._batched_iou(a, b)
    for i in range(3):
        want = box_iou(torch.as_tensor(a[i]), torch.as_tensor(b[i])).numpy()
        np.testing.assert_allclose(got[i], want, atol=1e-12)


def test_input_errors():
    with pytest.raises(ValueError, match="predictions but"):
        summarize([pred([], [])], [])
    with pytest.raises(ValueError, match="x_min <= x_max"):
        summarize([pred([[5, 0, 0, 5]], [0.5])], [gt([[0, 0, 1, 1]])])
    with pytest.raises(ValueError, match="scores"):
        summarize([pred([[0, 0, 5, 5]], [0.5, 0.6])], [gt([[0, 0, 1, 1]])])


# -- the metric object ---------------------------------------------------------------------
def test_metric_object_accepts_tensors_subsets_and_groups():
    metric = DetectionMetric()
    as_tensors = [{k: torch.as_tensor(v) for k, v in p.items()} for p in PREDS]
    metric.update(as_tensors[:1], GTS[:1], groups=["ccpd"])
    metric.update(as_tensors[1:], GTS[1:], groups=["voc"])
    assert metric.gather() is metric  # a single process: nothing to merge
    m = metric.compute()
    assert m["ap50"] == pytest.approx(AP50) and m["n_images"] == 2
    assert metric.compute([1]) == pytest.approx(summarize(PREDS[1:], GTS[1:]), nan_ok=True)
    mask = np.array([True, False])
    assert metric.compute(mask) == pytest.approx(summarize(PREDS[:1], GTS[:1]), nan_ok=True)
    by = metric.breakdown()
    assert list(by) == ["ccpd", "voc"]
    assert by["ccpd"]["ap50"] == pytest.approx(1.0)  # d1, d3 on A, B
    assert by["voc"]["ap50"] == pytest.approx(0.5)  # FP then TP
    metric.reset()
    assert metric.compute()["n_images"] == 0


def _ddp_worker(rank, world_size, init_file, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        metric = DetectionMetric()
        # rank 0 holds image 1, rank 1 image 0 and (as an even-padding sampler does) image 1 again
        share = {0: [1], 1: [0, 1]}[rank]
        metric.update([PREDS[i] for i in share], [GTS[i] | {"index": i} for i in share])
        metrics = metric.gather().compute()
    finally:
        torch.distributed.destroy_process_group()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"metrics": metrics, "indices": metric.indices}, f)


def test_gather_merges_ranks_in_index_order_once(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, tmp_path / "init", tmp_path), nprocs=2)
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["indices"] == [0, 1]
        assert got["metrics"]["ap50"] == pytest.approx(AP50) and got["metrics"]["n_plates"] == 3


# -- against pycocotools ---------------------------------------------------------------
def random_case(seed: int, n_images: int = 50, ties: bool = False):
    """Plates 6..220 px wide (all three buckets), jittered and duplicate detections, strays.

    With ``ties``, scores take 11 values and some plates are doubled: equal scores across
    and within images, and equal IoUs with two plates, exercise COCOeval's tie rules.
    """
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(n_images):
        m = int(rng.integers(0, 5))  # 0: a negative image
        w = rng.uniform(6, 220, m)
        x, y = rng.uniform(0, 600, m), rng.uniform(0, 400, m)
        plates = np.stack([x, y, x + w, y + w * rng.uniform(0.2, 0.5, m)], axis=1)
        if ties:
            plates = np.concatenate([plates, plates[rng.random(m) < 0.3]])
        found = plates[rng.random(len(plates)) < 0.85]
        found = np.concatenate([found, found[rng.random(len(found)) < 0.3]])  # duplicates
        jitter = rng.normal(0, 0.08, found.shape) * (found[:, 2:3] - found[:, 0:1])
        jitter[rng.random(len(found)) < (0.3 if ties else 0)] = 0
        found = found + jitter
        k = int(rng.integers(0, 3))
        stray_w = rng.uniform(4, 200, k)
        sx, sy = rng.uniform(0, 600, k), rng.uniform(0, 400, k)
        stray = np.stack([sx, sy, sx + stray_w, sy + stray_w * 0.3], axis=1)
        boxes = np.concatenate([found.reshape(-1, 4), stray])
        boxes = np.concatenate(
            [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1
        )
        scores = rng.random(len(boxes))
        preds.append(pred(boxes, np.round(scores, 1) if ties else scores))
        gts.append(gt(plates.reshape(-1, 4)))
    return preds, gts


def pycocotools_stats(preds, gts, max_det):
    """COCOeval's AP and AR with area = width**2, so its area ranges are our width buckets."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]

    images = [{"id": i + 1} for i in range(len(gts))]
    anns = [
        {"image_id": i + 1, "category_id": 1, "bbox": xywh(b), "iscrowd": 0}
        | {"area": float(b[2] - b[0]) ** 2}
        for i, g in enumerate(gts)
        for b in g["boxes_xyxy"]
    ]
    for k, a in enumerate(anns):
        a["id"] = k + 1
    dets = [
        {"image_id": i + 1, "category_id": 1, "bbox": xywh(b), "score": float(s)}
        for i, p in enumerate(preds)
        for b, s in zip(p["boxes_xyxy"], p["scores"], strict=True)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1}]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        for d in coco_dt.dataset["annotations"]:  # loadRes set area = w * h
            d["area"] = d["bbox"][2] ** 2
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = [max_det]  # evaluate() sorts this list: keep it one value
        ev.params.areaRng = [[0, 1e10], [0, 32**2], [32**2, 96**2], [96**2, 1e10]]
        ev.evaluate()
        ev.accumulate()
    # COCOeval.summarize's figures, read at our max_det (its stats use 1, 10 and 100)
    precision = ev.eval["precision"][:, :, 0, :, 0]  # (T, R, A); -1 where nothing measured
    recall = ev.eval["recall"][:, 0, 0, 0]  # (T,)
    return {
        "ap50_95": precision[:, :, 0].mean(),
        "ap50": precision[0, :, 0].mean(),
        "ap75": precision[5, :, 0].mean(),
        "ap_small": precision[:, :, 1].mean(),
        "ap_medium": precision[:, :, 2].mean(),
        "ap_large": precision[:, :, 3].mean(),
        "ar": recall.mean(),
    }


@pytest.mark.parametrize(
    ("seed", "max_det", "ties"),
    [(0, 100, False), (1, 100, False), (2, 100, True), (3, 3, False), (4, 1, True), (6, 2, True)],
)
def test_agrees_with_pycocotools(seed, max_det, ties):
    preds, gts = random_case(seed, ties=ties)
    want = pycocotools_stats(preds, gts, max_det)
    got = coco_ap(preds, gts, max_det=max_det)
    for key, value in want.items():
        assert value >= 0, (key, "pycocotools measured nothing: a poor random case")
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_top_box_iou_is_the_localisers_best_iou():
    preds, gts = random_case(5)
    plated = [i for i, g in enumerate(gts) if len(g["boxes_xyxy"])]
    boxed = [i for i in plated if len(preds[i]["scores"])]
    top = [preds[i]["boxes_xyxy"][np.argmax(preds[i]["scores"])] for i in boxed]
    ious = best_ious(np.array(top), [gts[i]["boxes_xyxy"] for i in boxed])
    ious = np.concatenate([ious, np.zeros(len(plated) - len(boxed))])  # no box: IoU 0
    assert 0 < len(boxed) < len(plated)  # both kinds of plate image are there
    got = summarize(preds, gts)
    assert got["mean_iou"] == pytest.approx(ious.mean(), abs=1e-12)
    assert got["acc_iou50"] == pytest.approx((ious > 0.5).mean(), abs=1e-12)
    assert got["acc_iou70"] == pytest.approx((ious > 0.7).mean(), abs=1e-12)


def test_pycocotools_bbox_iou_has_no_plus_one_pixel():
    # [0,0,10,10] against [5,0,10,10] (xywh): 50 / 100 with no +1; 6*11 / 121 with one
    mask = pytest.importorskip("pycocotools.mask")
    iou = mask.iou([[0.0, 0.0, 10.0, 10.0]], [[5.0, 0.0, 5.0, 10.0]], [0])
    assert iou[0, 0] == pytest.approx(0.5, abs=1e-15)
