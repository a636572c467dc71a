"""LocalizationLoss: hand-computed values, negatives, gradients, autocast."""

from __future__ import annotations

import math

import pytest
import torch

from platelab.errors import PlatelabError
from platelab.models import LocalizationLoss, create_model


def _batch(pred, gt, has_plate, logits=None):
    pred = torch.tensor(pred, dtype=torch.float32, requires_grad=True)
    outputs = {
        "boxes_norm_xyxy": pred,
        "logits": torch.tensor(logits if logits is not None else [0.0] * len(gt)),
    }
    targets = {
        "boxes_norm_xyxy": torch.tensor(gt, dtype=torch.float32),
        "has_plate": torch.tensor(has_plate, dtype=torch.float32),
    }
    return outputs, targets


def test_perfect_prediction_has_zero_box_terms():
    box = [0.2, 0.3, 0.5, 0.4]
    outputs, targets = _batch([box, box], [box, box], [1, 1], logits=[100.0, 100.0])
    terms = LocalizationLoss()(outputs, targets)
    assert set(terms) == {"loss", "loss_box", "loss_iou", "loss_presence"}
    assert terms["loss_box"].item() == 0.0
    assert terms["loss_iou"].item() == pytest.approx(0.0, abs=1e-5)  # eps=1e-7 in IoU
    assert terms["loss_presence"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["loss"].item() == pytest.approx(0.0, abs=1e-5)


def test_known_offset_gives_known_l1_and_iou():
    # prediction shifted right by 0.1 on a 0.2 x 0.2 box: L1 = mean |d| = (0.1 * 2) / 4 = 0.05;
    # overlap 0.1 x 0.2 = 0.02, union 0.06, IoU 1/3, enclosing = union, so GIoU loss 2/3.
    outputs, targets = _batch([[0.3, 0.2, 0.5, 0.4]], [[0.2, 0.2, 0.4, 0.4]], [1], logits=[0.0])
    loss_fn = LocalizationLoss(l1_weight=5.0, iou_weight=2.0, presence_weight=1.0)
    terms = loss_fn(outputs, targets)
    assert terms["loss_box"].item() == pytest.approx(0.05, rel=1e-6)
    assert terms["loss_iou"].item() == pytest.approx(2 / 3, rel=1e-5)
    assert terms["loss_presence"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(5 * 0.05 + 2 * 2 / 3 + math.log(2), rel=1e-5)


def test_disjoint_boxes_giou_above_one():
    # IoU 0; enclosing 0.6 x 0.6 = 0.36, union 0.08: GIoU = -(0.36 - 0.08) / 0.36
    outputs, targets = _batch([[0.0, 0.0, 0.2, 0.2]], [[0.4, 0.4, 0.6, 0.6]], [1])
    terms = LocalizationLoss(iou_type="giou")(outputs, targets)
    assert terms["loss_iou"].item() == pytest.approx(1 + 0.28 / 0.36, rel=1e-5)
    assert terms["loss_iou"].item() > 1


def test_diou_and_ciou_add_the_centre_distance():
    # same disjoint pair: centres (0.1, 0.1) and (0.5, 0.5), squared distance 0.32,
    # enclosing diagonal^2 0.72: DIoU loss = 1 - 0 + 0.32 / 0.72; equal aspect: CIoU = DIoU
    outputs, targets = _batch([[0.0, 0.0, 0.2, 0.2]], [[0.4, 0.4, 0.6, 0.6]], [1])
    diou = LocalizationLoss(iou_type="diou")(outputs, targets)["loss_iou"].item()
    ciou = LocalizationLoss(iou_type="ciou")(outputs, targets)["loss_iou"].item()
    assert diou == pytest.approx(1 + 0.32 / 0.72, rel=1e-5)
    assert ciou == pytest.approx(diou, rel=1e-5)


def test_negatives_only_count_for_presence():
    # image 0: a plate, predicted perfectly; image 1: a negative with a wild box
    box = [0.2, 0.2, 0.4, 0.4]
    outputs, targets = _batch([box, [0.0, 0.0, 1.0, 1.0]], [box, [0, 0, 0, 0]], [1, 0],
                              logits=[0.0, 2.0])  # fmt: skip
    terms = LocalizationLoss()(outputs, targets)
    assert terms["loss_box"].item() == 0.0
    assert terms["loss_iou"].item() == pytest.approx(0.0, abs=1e-5)  # eps=1e-7 in IoU
    # BCE mean over both images: log 2 for logit 0 / target 1, softplus(2) for logit 2 / target 0
    expected = (math.log(2) + math.log1p(math.exp(2.0))) / 2
    assert terms["loss_presence"].item() == pytest.approx(expected, rel=1e-6)
    terms["loss"].backward()
    grad = outputs["boxes_norm_xyxy"].grad
    assert torch.equal(grad[1], torch.zeros(4))  # the negative's box gets no gradient


def test_batch_without_plates_is_finite_and_differentiable():
    outputs, targets = _batch([[0.1, 0.1, 0.3, 0.2], [0.5, 0.5, 0.5, 0.5]], [[0, 0, 0, 0]] * 2,
                              [0, 0], logits=[-1.0, 1.0])  # fmt: skip
    terms = LocalizationLoss()(outputs, targets)
    assert terms["loss_box"].item() == 0.0 and terms["loss_iou"].item() == 0.0
    assert terms["loss"].requires_grad and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert torch.equal(outputs["boxes_norm_xyxy"].grad, torch.zeros(2, 4))


def test_extras_are_detached_and_float32_under_autocast():
    model = create_model("dwsep_tiny")
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    targets = {
        "boxes_norm_xyxy": torch.tensor([[0.1, 0.2, 0.3, 0.3], [0.0, 0.0, 0.0, 0.0]]),
        "has_plate": torch.tensor([1.0, 0.0]),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(images)
        terms = LocalizationLoss()(outputs, targets)
    assert all(t.dtype == torch.float32 for t in terms.values())
    assert all(not terms[k].requires_grad for k in ("loss_box", "loss_iou", "loss_presence"))
    terms["loss"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.head.mlp[-1].weight.grad.abs().sum() > 0


def test_bad_settings_are_refused():
    with pytest.raises(PlatelabError, match="iou_type must be one of giou, ciou, diou"):
        LocalizationLoss(iou_type="siou")
    with pytest.raises(PlatelabError, match=">= 0"):
        LocalizationLoss(l1_weight=-1)
