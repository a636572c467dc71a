"""A toy task the engine trains in a blink: nothing in it is about plates.

Also a script for the DDP test: ``torchrun --nproc_per_node=2 tests/engine/toy.py OUT``.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from platelab.engine import distributed as dist
from platelab.engine.checkpoint import load_checkpoint, seed_everything
from platelab.engine.config import EngineConfig
from platelab.engine.trainer import FitResult, Trainer


class ToyNet(nn.Module):
    """``[B, 3, 8, 8]`` -> ``[B, 2]``; a conv (so channels_last matters) and dropout (so RNG does)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(self.conv(x))).mean((2, 3))
        return self.fc(self.drop(x))


def toy_tensors(n: int, seed: int) -> TensorDataset:
    """Inputs whose per-channel means determine the 2 targets linearly."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    w = torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.3]])
    return TensorDataset(x, x.mean((2, 3)) @ w * 4)


def toy_loss(outputs: torch.Tensor, targets: torch.Tensor) -> dict:
    mse = nn.functional.mse_loss(outputs.float(), targets)
    l1 = nn.functional.l1_loss(outputs.float(), targets)
    return {"loss": mse + 0.1 * l1, "mse": mse, "l1": l1}


def toy_evaluate(model, loader, device, amp_dtype=None, loss_fn=None) -> dict[str, float]:
    """Mean loss and a 'score' (higher is better), gathered over ranks like the real one."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)  # images, loss*n, abs-error*n
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, amp_dtype, enabled=amp_dtype is not None):
                out = model(x)
            n = len(x)
            sums += torch.tensor(
                [n, float(loss_fn(out, y)["loss"]) * n, float((out - y).abs().mean()) * n],
                dtype=torch.float64,
            )
    model.train()
    sums = dist.all_reduce_sum(sums)
    n = max(sums[0].item(), 1.0)
    return {
        "val_loss": sums[1].item() / n,
        "score": 1.0 / (1.0 + sums[2].item() / n),
        "images": sums[0].item(),
    }


class InterruptAt:
    """Wraps a loader; raises KeyboardInterrupt at the first batch of epoch ``at`` (Ctrl-C)."""

    def __init__(self, loader: DataLoader, at: int) -> None:
        self.loader, self.at, self.epoch = loader, at, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.epoch == self.at:
            raise KeyboardInterrupt
        return iter(self.loader)


def toy_config(out: Path, **kw) -> EngineConfig:
    base = dict(
        out=out,
        epochs=4,
        lr=0.02,
        warmup_epochs=1,
        amp="off",
        device="cpu",
        monitor="score",
        tensorboard=False,
        seed=7,
        keep_best=2,
    )
    return EngineConfig(**(base | kw))


def run_toy(
    cfg: EngineConfig,
    resume: bool = False,
    interrupt_at: int | None = None,
    loss_fn=toy_loss,
    n_train: int = 48,
) -> tuple[FitResult, Trainer]:
    """Seed, build, (restore,) fit; the same order a real entry point uses."""
    seed_everything(cfg.seed)
    train_set, val_set = toy_tensors(n_train, 1), toy_tensors(24, 2)
    if dist.is_distributed():
        sampler = DistributedSampler(train_set, shuffle=True, seed=cfg.seed, drop_last=True)
        train = DataLoader(train_set, batch_size=8, sampler=sampler, drop_last=True)
        val_sampler = DistributedSampler(val_set, shuffle=False)
        val = DataLoader(val_set, batch_size=8, sampler=val_sampler)
    else:
        train = DataLoader(train_set, batch_size=8, shuffle=True, drop_last=True)
        val = DataLoader(val_set, batch_size=8)
    if interrupt_at is not None:
        train = InterruptAt(train, interrupt_at)
    trainer = Trainer(cfg, ToyNet(), loss_fn, train, val, toy_evaluate, meta={"task": "toy"})
    if resume:
        trainer.restore(load_checkpoint(Path(cfg.out) / "last.pth"))
    return trainer.fit(), trainer


def _ddp_main(out: str) -> None:
    dist.init_distributed("cpu")
    torch.set_num_threads(1)
    _, trainer = run_toy(toy_config(Path(out), epochs=2, keep_best=1))
    # Parameters agree across ranks under DDP; BatchNorm running stats stay per rank.
    weights = {k: float(p.detach().double().sum()) for k, p in trainer.model.named_parameters()}
    sums = dist.all_gather_object((dist.rank(), dist.world_size(), weights))
    if dist.is_primary():
        (Path(out) / "ranks.json").write_text(json.dumps(sums))
    del trainer  # DDP's reducer must go before its process group
    gc.collect()
    dist.cleanup()


if __name__ == "__main__":
    _ddp_main(sys.argv[1])
