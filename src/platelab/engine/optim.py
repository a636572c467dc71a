"""AdamW with decoupled decay groups, and the per-step learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from platelab.engine.config import EngineConfig


def build_optimizer(model: nn.Module, cfg: EngineConfig) -> torch.optim.Optimizer:
    """AdamW; biases and norm weights (tensors of rank <= 1) get no weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


def lr_factor(step: int, total: int, warmup: int, kind: str, min_ratio: float) -> float:
    """LR multiplier at optimiser step ``step`` (0-based) of ``total``.

    * ``cosine``: linear warm-up over ``warmup`` steps from ``1/(warmup+1)`` to 1, then
      half a cosine down to ``min_ratio``.
    * ``onecycle``: the LR curve of ``torch.optim.lr_scheduler.OneCycleLR`` with its
      defaults: cosine up from 1/25 over the first 30 % of steps, then cosine down to
      1/(25 * 1e4) (momentum is not cycled). ``warmup`` is ignored.
    * ``none``: the warm-up, then constant.
    """
    if kind == "onecycle":
        lo, end, peak = 1 / 25, 1 / 25e4, 0.3 * total - 1  # peak: the step at the top

        def anneal(a: float, b: float, t: float) -> float:
            return b + (a - b) * (1 + math.cos(math.pi * min(1.0, t))) / 2

        if step <= peak:
            return anneal(lo, 1.0, step / peak)
        return anneal(1.0, end, (step - peak) / max(1e-9, total - 1 - peak))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "none":
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * t)) / 2


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: EngineConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimiser step over ``cfg.epochs * steps_per_epoch``.

    Its state is two numbers (step, base LRs), so a resume that raises ``epochs`` simply
    continues the curve with the new horizon.
    """
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, cfg.scheduler, cfg.min_lr_ratio)
    )
