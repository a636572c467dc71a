"""The detector's tensor pieces: target assignment, loss and post-processing.

Kept apart from the model (torchvision ``fcos.py``'s split: head, points,
assignment, loss, postprocess), and written in plain tensor ops so that
:func:`postprocess` exports to ONNX as it is: score threshold, NMS and ``max_det``
inside the graph with fixed output shapes.

Coordinates are canvas pixels throughout; corners are ``[..., 4, 2]`` (TL, TR, BR,
BL), NaN where a source has none (YOLO/VOC boxes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss

# A plate is assigned to the level whose width range holds its width (in canvas
# pixels): stride 8 up to 64 px (a 64x16 plate is 8x2 cells there), stride 16 up to
# 160, stride 32 beyond. Plates are wide, so width, not area, decides.
LEVEL_RANGES = {8: (0.0, 64.0), 16: (64.0, 160.0), 32: (160.0, float("inf"))}
CENTRE_RADIUS = 1.5  # centre sampling radius in strides (FCOS)


@dataclass
class Assignment:
    """Which ground-truth plate each location learns; -1 for background.

    Attributes:
        gt_index: ``[N]`` int64, the plate index or -1.
    """

    gt_index: Tensor

    @property
    def positive(self) -> Tensor:
        return self.gt_index >= 0


def assign(points: Tensor, strides: Tensor, boxes_xyxy: Tensor) -> Assignment:
    """FCOS-style assignment with centre sampling, for one image.

    A location is positive for a plate when (1) its level's width range
    (:data:`LEVEL_RANGES`) holds the plate's width, (2) the point lies inside the
    plate's box and (3) within ``CENTRE_RADIUS`` strides of the box centre. Because a
    12x4-pixel plate may hold no stride-8 point at all, the location of that level
    nearest the plate's centre is always positive too. A location claimed by several
    plates learns the smallest (FCOS).

    Args:
        points: ``[N, 2]`` location centres (x, y).
        strides: ``[N]`` each location's stride.
        boxes_xyxy: ``[M, 4]`` the image's plates (``M`` may be 0).
    """
    n, m = len(points), len(boxes_xyxy)
    if m == 0:
        return Assignment(torch.full((n,), -1, dtype=torch.long, device=points.device))
    x, y = points[:, 0:1], points[:, 1:2]  # [N, 1]
    x0, y0, x1, y1 = boxes_xyxy.T[:, None, :].unbind(0)  # each [1, M]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    width = x1 - x0
    lo = torch.zeros_like(strides)
    hi = torch.zeros_like(strides)
    for s, (a, b) in LEVEL_RANGES.items():
        lo = torch.where(strides == s, torch.tensor(a).to(lo), lo)
        hi = torch.where(strides == s, torch.tensor(b).to(hi), hi)
    in_level = (width >= lo[:, None]) & (width < hi[:, None])  # [N, M]
    r = CENTRE_RADIUS * strides[:, None]
    inside = (x > x0) & (x < x1) & (y > y0) & (y < y1)
    near = ((x - cx).abs() <= r) & ((y - cy).abs() <= r)
    candidate = in_level & inside & near
    # the nearest location of the plate's level, whatever else holds
    dist = (x - cx) ** 2 + (y - cy) ** 2
    nearest = torch.where(in_level, dist, torch.full_like(dist, float("inf"))).argmin(dim=0)
    candidate[nearest, torch.arange(m, device=points.device)] = True
    area = ((x1 - x0) * (y1 - y0)).expand(n, m)
    area = torch.where(candidate, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=1)
    gt_index = torch.where(torch.isfinite(best_area), best, torch.full_like(best, -1))
    return Assignment(gt_index)


def overlapping_cells(points: Tensor, strides: Tensor, boxes_xyxy: Tensor) -> Tensor:
    """``[N]`` bool: the locations whose cell (``stride`` wide, centred on the point)
    overlaps any of ``boxes_xyxy`` ``[M, 4]``."""
    half = strides[:, None] / 2
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0, x1, y1 = boxes_xyxy.T[:, None, :].unbind(0)
    hit = (x + half > x0) & (x - half < x1) & (y + half > y0) & (y - half < y1)
    return hit.any(dim=1)


class DetectionLoss(nn.Module):
    """Classification + box + corner loss over every location of a batch.

    * ``loss_cls``: quality focal loss (GFL, Li et al. 2020) by default: the target of
      a positive is the IoU of its predicted box with its plate (detached), of a
      negative 0, so the score ranks boxes by how well they fit (what AP at IoU 0.5:0.95
      and the top box's IoU reward). ``cls_loss="focal"`` uses torchvision's binary
      ``sigmoid_focal_loss`` instead.
    * ``loss_box``: torchvision's GIoU loss over positives.
    * ``loss_corners``: smooth-L1 of the corner error in strides, over positives whose
      plate has corners.

    Plates narrower than ``ignore_below`` canvas pixels are neither learned nor
    punished (COCO's ``iscrowd``, YOLO's ignore regions): no location is assigned to
    them, and every location whose cell overlaps one is left out of the classification
    term. Shrunk to a canvas, a far plate can be 3 px wide and 1 px tall: learning it
    can teach the model to fire on any small bright blob (tail lights, badges, text),
    and calling it background can teach it to miss plates.

    Each term is divided by the number of positives in the batch (at least 1). The
    terms other than ``loss`` are detached and unweighted, for logging.
    """

    def __init__(
        self,
        cls_weight: float = 1.0,
        box_weight: float = 2.0,
        corner_weight: float = 1.0,
        cls_loss: str = "qfl",
        ignore_below: float = 0.0,
    ) -> None:
        super().__init__()
        if cls_loss not in ("qfl", "focal"):
            raise ValueError(f"cls_loss must be 'qfl' or 'focal', got {cls_loss!r}")
        if ignore_below < 0:
            raise ValueError(f"ignore_below must be >= 0, got {ignore_below}")
        self.cls_weight, self.box_weight, self.corner_weight = cls_weight, box_weight, corner_weight
        self.cls_loss = cls_loss
        self.ignore_below = ignore_below

    def forward(self, outputs: dict[str, Tensor], targets: dict) -> dict[str, Tensor]:
        logits = outputs["logits"].float()
        boxes, corners = outputs["boxes_xyxy"].float(), outputs["corners"].float()
        points, strides = outputs["points"], outputs["strides"]
        cls_target = torch.zeros_like(logits)
        cls_mask = torch.ones_like(logits)
        pos_pred, pos_gt, pos_corner_pred, pos_corner_gt, pos_stride = [], [], [], [], []
        for i, (gt_boxes, gt_corners) in enumerate(
            zip(targets["boxes_xyxy"], targets["corners"], strict=True)
        ):
            gt_boxes = gt_boxes.to(logits.device, torch.float32).reshape(-1, 4)
            gt_corners = gt_corners.to(logits.device, torch.float32).reshape(-1, 4, 2)
            tiny = (gt_boxes[:, 2] - gt_boxes[:, 0]) < self.ignore_below
            if tiny.any():
                cls_mask[i, overlapping_cells(points, strides, gt_boxes[tiny])] = 0.0
                gt_boxes, gt_corners = gt_boxes[~tiny], gt_corners[~tiny]
            a = assign(points, strides, gt_boxes)
            pos = a.positive
            cls_mask[i, pos] = 1.0  # a plate's own locations are never ignored
            if not pos.any():
                continue
            matched = a.gt_index[pos]
            pb, gb = boxes[i][pos], gt_boxes[matched]
            with torch.no_grad():
                iou = box_iou(pb, gb).diagonal().clamp(min=0.0)
            cls_target[i, pos] = iou if self.cls_loss == "qfl" else 1.0
            pos_pred.append(pb)
            pos_gt.append(gb)
            known = ~torch.isnan(gt_corners[matched]).flatten(1).any(dim=1)
            pos_corner_pred.append(corners[i][pos][known])
            pos_corner_gt.append(gt_corners[matched][known])
            pos_stride.append(strides[pos][known])
        n_pos = max(sum(len(p) for p in pos_pred), 1)
        if self.cls_loss == "qfl":
            p = torch.sigmoid(logits)
            bce = F.binary_cross_entropy_with_logits(logits, cls_target, reduction="none")
            loss_cls = (bce * (p - cls_target).abs().pow(2) * cls_mask).sum() / n_pos
        else:
            focal = sigmoid_focal_loss(logits, cls_target, reduction="none")
            loss_cls = (focal * cls_mask).sum() / n_pos
        if pos_pred:
            pb, gb = torch.cat(pos_pred), torch.cat(pos_gt)
            loss_box = generalized_box_iou_loss(pb, gb, reduction="sum") / n_pos
            cp, cg = torch.cat(pos_corner_pred), torch.cat(pos_corner_gt)
            st = torch.cat(pos_stride)[:, None, None]
            loss_corners = (
                F.smooth_l1_loss(cp / st, cg / st, reduction="sum", beta=1 / 9) / 8 / n_pos
                if len(cp)
                else boxes.sum() * 0.0
            )
        else:  # no plate in the batch: zero box terms that still reach every parameter
            loss_box = loss_corners = boxes.sum() * 0.0 + corners.sum() * 0.0
        loss = (
            self.cls_weight * loss_cls
            + self.box_weight * loss_box
            + self.corner_weight * loss_corners
        )
        return {
            "loss": loss,
            "loss_cls": loss_cls.detach(),
            "loss_box": loss_box.detach(),
            "loss_corners": loss_corners.detach(),
        }


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every box of ``a`` ``[B, K, 4]`` with every box of ``b`` ``[B, L, 4]``: ``[B, K, L]``.

    :func:`torchvision.ops.box_iou` batched over the first axis (it takes 2-D input
    only), in broadcast ops that export to ONNX.
    """
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return inter / union.clamp(min=1e-9)


def cluster_nms(
    boxes: Tensor, valid: Tensor, iou_threshold: float, iterations: int, iou: Tensor | None = None
) -> Tensor:
    """Greedy NMS on score-sorted boxes, as a fixed number of matrix steps (Cluster-NMS).

    Zheng et al. (2021): with ``U`` the strictly upper-triangular IoU matrix, repeat
    ``keep_j = valid_j and not any_i<j (keep_i and U_ij > t)``; the fixed point is
    exactly greedy NMS's result, and it is reached after as many steps as the longest
    chain of "suppressed box would have suppressed another" (one or two for plates).
    A fixed count keeps the ONNX graph static; the tests check it against
    :func:`torchvision.ops.nms`.

    Args:
        boxes: ``[B, K, 4]`` sorted by descending score.
        valid: ``[B, K]`` bool, boxes above the score threshold.
        iou_threshold: suppress a box whose IoU with a kept, higher-scored one exceeds it.
        iterations: matrix steps.
        iou: ``pairwise_iou(boxes, boxes)`` when the caller has it already.

    Returns:
        ``[B, K]`` bool, the boxes kept.
    """
    k = boxes.shape[1]
    upper = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(diagonal=1)
    iou = pairwise_iou(boxes, boxes) if iou is None else iou
    over = (iou > iou_threshold) & upper  # [B, K, K]
    keep = valid
    for _ in range(iterations):
        suppressed = (over & keep[:, :, None]).any(dim=1)
        keep = valid & ~suppressed
    return keep


def vote(
    boxes: Tensor, values: Tensor, scores: Tensor, iou_threshold: float, iou: Tensor | None = None
):
    """Score-weighted means over overlapping candidates: ``(boxes', values')``.

    Args:
        boxes: ``[B, K, 4]`` candidates.
        values: ``[B, K, D]`` what else each candidate predicts (the flat corners).
        scores: ``[B, K]`` the weights.
        iou_threshold: candidate ``j`` votes for ``i`` when ``IoU(i, j) >= iou_threshold``.
        iou: ``pairwise_iou(boxes, boxes)`` when the caller has it already.
    """
    k = boxes.shape[1]
    self_vote = torch.eye(k, dtype=torch.bool, device=boxes.device)  # a degenerate box too
    iou = pairwise_iou(boxes, boxes) if iou is None else iou
    near = (iou >= iou_threshold) | self_vote
    w = near.to(scores.dtype) * scores[:, None, :].clamp(min=1e-6)
    total = w.sum(dim=2, keepdim=True)
    return (w @ boxes.to(w.dtype)) / total, (w @ values.to(w.dtype)) / total


@dataclass(frozen=True)
class PostprocessConfig:
    """Decode settings: what an exported graph bakes in and eval/predict pass.

    ``vote_iou`` > 0 turns on box and corner voting (Gidaris & Komodakis 2015): each
    kept plate's box and corners become the score-weighted mean of every candidate's
    whose box overlaps it by at least ``vote_iou`` (its own included), so the
    neighbouring locations that also saw the plate refine it instead of being thrown
    away. 0 keeps the top location's own box and corners.
    """

    conf: float = 0.25
    iou: float = 0.5
    max_det: int = 50
    pre_nms: int = 200
    nms_iterations: int = 8
    vote_iou: float = 0.0


def postprocess(outputs: dict[str, Tensor], cfg: PostprocessConfig) -> dict[str, Tensor]:
    """Model outputs -> up to ``max_det`` plates per image, fixed shapes.

    The ``pre_nms`` best-scored locations go through :func:`cluster_nms`; the kept
    ones come first, by descending score.

    Returns:
        ``{"boxes": [B, K, 4], "scores": [B, K], "corners": [B, K, 4, 2], "num": [B]}``
        with ``K = max_det``; slots at or past ``num`` hold zeros.
    """
    scores = torch.sigmoid(outputs["logits"].float())  # [B, N]
    n = scores.shape[1]
    k = min(cfg.pre_nms, n)
    top, idx = scores.topk(k, dim=1)  # sorted, descending
    boxes = outputs["boxes_xyxy"].gather(1, idx[..., None].expand(-1, -1, 4))
    corners = outputs["corners"].flatten(2).gather(1, idx[..., None].expand(-1, -1, 8))
    iou = pairwise_iou(boxes, boxes)  # [B, K, K], shared by NMS and voting
    keep = cluster_nms(boxes, top > cfg.conf, cfg.iou, cfg.nms_iterations, iou)
    if cfg.vote_iou > 0:
        boxes, corners = vote(boxes, corners, top, cfg.vote_iou, iou)
    ranked = torch.where(keep, top, top - 2.0)  # kept first, each group by score
    m = min(cfg.max_det, k)
    _, order = ranked.topk(m, dim=1)
    kept = keep.gather(1, order)
    keep_f = kept.float()
    out_scores = top.gather(1, order) * keep_f
    out_boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4)) * keep_f[..., None]
    out_corners = corners.gather(1, order[..., None].expand(-1, -1, 8)) * keep_f[..., None]
    if m < cfg.max_det:  # fewer locations than max_det (a tiny canvas): pad to K
        pad = cfg.max_det - m
        out_scores = F.pad(out_scores, (0, pad))
        out_boxes = F.pad(out_boxes, (0, 0, 0, pad))
        out_corners = F.pad(out_corners, (0, 0, 0, pad))
    b = scores.shape[0]
    return {
        "boxes": out_boxes,
        "scores": out_scores,
        "corners": out_corners.reshape(b, cfg.max_det, 4, 2),
        "num": kept.sum(dim=1).to(torch.int64),
    }
