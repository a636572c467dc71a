"""``task=localize``: one box and a plate-presence score per image (platelab's first task).

Everything here already lived in its own module before tasks existed; this object
points the engine at it: :class:`~platelab.models.heads.Localizer` from the registry,
:func:`~platelab.data.stream.collate_batch` (the largest plate as the target),
:class:`~platelab.models.loss.LocalizationLoss` and
:func:`~platelab.eval.metrics.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from platelab.models.loss import LocalizationLoss
from platelab.tasks.base import Task


class LocalizeTask(Task):
    name = "localize"
    monitor = "mean_iou"
    loss_class = LocalizationLoss
    output_names = ("boxes", "scores")

    def collate(
        self, samples: Sequence[Any], canvas: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, dict]:
        from platelab.data.stream import collate_batch

        return collate_batch(samples, canvas)

    def evaluate(self, model, loader, device="cpu", amp_dtype=None, loss_fn=None, collect=False):
        from platelab.eval.metrics import evaluate

        return evaluate(model, loader, device, amp_dtype, loss_fn, collect)

    def metric_names(self, loss_fn: nn.Module) -> set[str]:
        from platelab.engine.trainer import Trainer
        from platelab.eval.metrics import summarize

        box = torch.tensor([[0.2, 0.2, 0.6, 0.5]])
        terms = loss_fn(
            {"boxes_norm_xyxy": box, "logits": torch.zeros(1)},
            {"boxes_norm_xyxy": box, "has_plate": torch.ones(1)},
        )
        names = {*summarize([], np.zeros((0, 4)), []), "val_fps", *Trainer.ROW_KEYS}
        return names | {f"{split}_{t}" for t in terms for split in ("train", "val")}


LOCALIZE = LocalizeTask()
