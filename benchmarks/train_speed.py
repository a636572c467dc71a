"""Training images/s per registered model: fp32, bf16 autocast, channels_last, both.

Times the engine's own training step (``Trainer.train_one_epoch``: forward, loss,
backward, AdamW step, schedule) on in-memory batches, so decoding and augmentation
are not part of the figure. Each mode runs a warm-up epoch, then a timed one.
Ratios are to fp32 (NCHW) of the same model, measured minutes apart in one run.

    python benchmarks/train_speed.py                      # every model at 640x480
    python benchmarks/train_speed.py --models dwsep_tiny,resnet18 --batch 8 --steps 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from platelab.engine.config import EngineConfig
from platelab.engine.trainer import Trainer, cpu_supports_bf16
from platelab.geometry import parse_size
from platelab.models import LocalizationLoss, create_model, list_models

MODES = {  # name -> (amp, channels_last)
    "fp32": ("off", False),
    "bf16": ("bf16", False),
    "channels_last": ("off", True),
    "bf16+cl": ("bf16", True),
}


def fake_batches(n: int, batch: int, w: int, h: int, seed: int = 0) -> list:
    """``n`` batches in the stream's format: uint8 images and one plate per image."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        images = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=g)
        xy = torch.rand(batch, 2, generator=g) * 0.7
        wh = 0.05 + torch.rand(batch, 2, generator=g) * 0.2
        norm = torch.cat([xy, xy + wh], dim=1)
        boxes = norm * torch.tensor([w, h, w, h], dtype=torch.float32)
        targets = {
            "boxes_xyxy": boxes,
            "boxes_norm_xyxy": norm,
            "has_plate": torch.ones(batch),
            "all_boxes_xyxy": list(boxes[:, None]),
            "index": torch.arange(batch),
        }
        out.append((images, targets))
    return out


def images_per_s(name: str, mode: str, batches: list, steps: int) -> float:
    amp, channels_last = MODES[mode]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = EngineConfig(
            out=tmp,
            epochs=2,
            amp=amp,
            channels_last=channels_last,
            max_train_batches=steps,
            tensorboard=False,
            device="cpu",
        )
        trainer = Trainer(
            cfg, create_model(name), LocalizationLoss(), batches, [], evaluate_fn=lambda *a, **k: {}
        )
        trainer.train_one_epoch(1)  # warm-up: allocator, oneDNN kernel selection
        return trainer.train_one_epoch(2)["train_img_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated (default: all registered)")
    p.add_argument("--size", default="640x480")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--modes", default=",".join(MODES))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    w, h = parse_size(args.size)
    names = [m for m in args.models.split(",") if m] or list_models()
    modes = [m for m in args.modes.split(",") if m]
    batches = fake_batches(args.steps, args.batch, w, h)
    print(
        f"training images/s at {w}x{h}, batch {args.batch}, {args.steps} timed steps after a "
        f"warm-up epoch; {args.threads} threads; CPU bf16 support: {cpu_supports_bf16()}; "
        f"torch {torch.__version__}"
    )
    header = f"{'model':<20}" + "".join(f"{m:>17}" for m in modes)
    print(header + "   (img/s, and ratio to fp32)")
    for name in names:
        start = time.perf_counter()
        speeds = {m: images_per_s(name, m, batches, args.steps) for m in modes}
        base = speeds.get("fp32")
        cells = []
        for m in modes:
            ratio = f" ({speeds[m] / base:.2f}x)" if base else ""
            cells.append(f"{speeds[m]:6.2f}{ratio:>9}")
        print(
            f"{name:<20}"
            + "".join(f"{c:>17}" for c in cells)
            + f"   [{time.perf_counter() - start:.0f} s]",
            flush=True,
        )


if __name__ == "__main__":
    main()
