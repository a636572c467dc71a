"""The localisation loss: box regression on images with a plate, presence on all images.

``LocalizationLoss(outputs, targets) -> {"loss", "loss_box", "loss_iou", "loss_presence"}``
where ``outputs`` is the model's contract (``boxes_norm_xyxy [B, 4]``, ``logits [B]``) and
``targets`` the batch dict of docs/architecture.md (``boxes_norm_xyxy [B, 4]``,
``has_plate [B]``). Only ``loss`` carries gradient; the other terms are detached,
*unweighted*, for logging.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)

from platelab.errors import PlatelabError

IouType = Literal["giou", "ciou", "diou"]
_IOU_LOSSES = {
    "giou": generalized_box_iou_loss,
    "ciou": complete_box_iou_loss,
    "diou": distance_box_iou_loss,
}


class LocalizationLoss(nn.Module):
    """``l1_weight * L1 + iou_weight * (1 - IoU-family) + presence_weight * BCE``.

    * ``loss_box``: smooth-L1 (``beta = 0`` is plain L1) between normalised xyxy boxes,
      averaged over the 4 coordinates and over the images that have a plate.
    * ``loss_iou``: torchvision's GIoU / CIoU / DIoU loss, averaged over the same images.
    * ``loss_presence``: BCE-with-logits of the presence logit against ``has_plate``,
      averaged over every image (negatives are where it learns to say "no plate").

    A batch without any plate gives box terms of exactly 0 that still backpropagate
    (zero gradients), so DDP sees every parameter used. Everything is computed in
    float32 with autocast off: IoU ratios and BCE lose too much in bf16/fp16.

    Defaults follow DETR's box weights (L1 5, GIoU 2) with presence at 1.
    """

    def __init__(
        self,
        l1_weight: float = 5.0,
        iou_weight: float = 2.0,
        presence_weight: float = 1.0,
        iou_type: IouType = "giou",
        l1_beta: float = 0.0,
    ) -> None:
        super().__init__()
        if iou_type not in _IOU_LOSSES:
            raise PlatelabError(
                f"iou_type must be one of {', '.join(_IOU_LOSSES)}, got {iou_type!r}"
            )
        if min(l1_weight, iou_weight, presence_weight, l1_beta) < 0:
            raise PlatelabError("loss weights and l1_beta must be >= 0")
        self.l1_weight, self.iou_weight, self.presence_weight = (
            l1_weight,
            iou_weight,
            presence_weight,
        )
        self.iou_type, self.l1_beta = iou_type, l1_beta
        self._iou_loss = _IOU_LOSSES[iou_type]

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """Loss terms for one batch; ``loss`` is the weighted sum (a scalar with gradient)."""
        pred = outputs["boxes_norm_xyxy"]
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred = pred.float()
            logits = outputs["logits"].float()
            gt = targets["boxes_norm_xyxy"].to(pred.device, torch.float32)
            has_plate = targets["has_plate"].to(pred.device, torch.float32)

            positive = has_plate > 0.5
            weight = positive.float()
            n_pos = weight.sum().clamp(min=1.0)
            # Negatives carry all-zero boxes; give them a harmless stand-in (the whole
            # canvas) so no NaN can arise there and leak through the mask's gradient.
            gt = torch.where(positive[:, None], gt, torch.tensor([0.0, 0.0, 1.0, 1.0]).to(gt))

            l1 = F.smooth_l1_loss(pred, gt, reduction="none", beta=self.l1_beta).mean(dim=1)
            loss_box = (l1 * weight).sum() / n_pos
            iou = self._iou_loss(pred, gt, reduction="none")
            loss_iou = (iou * weight).sum() / n_pos
            loss_presence = F.binary_cross_entropy_with_logits(logits, has_plate)

            loss = (
                self.l1_weight * loss_box
                + self.iou_weight * loss_iou
                + self.presence_weight * loss_presence
            )
        return {
            "loss": loss,
            "loss_box": loss_box.detach(),
            "loss_iou": loss_iou.detach(),
            "loss_presence": loss_presence.detach(),
        }

    def extra_repr(self) -> str:
        return (
            f"l1_weight={self.l1_weight}, iou_weight={self.iou_weight}, "
            f"presence_weight={self.presence_weight}, iou_type={self.iou_type!r}"
        )
