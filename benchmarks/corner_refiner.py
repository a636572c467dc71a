"""Train the corner refiner on synthetic windows and score it on held-out ones.

Renders ``--train`` windows (:func:`platelab.data.synth.corner_samples.render_corner_samples`,
seed ``--seed``) and ``--val`` more with another seed, trains
:class:`~platelab.models.corner_refiner.CornerRefiner` from random weights (AdamW, one
cycle, L1 on the corners in window pixels; each batch flipped left-right at random, and
zoomed and shifted a little, the corners moved with it) for a fixed number of epochs,
and keeps the epoch with the lowest validation corner error. Writes::

    OUT/corner_refiner.pth     the refiner (platelab.models.corner_refiner.load_refiner)
    OUT/metrics.csv            epoch, train_loss, val_px (window px), val_rel (share of the
                               plate's width), seconds
    OUT/corner_refiner.json    the arguments and the best epoch's figures

The windows are cached in ``OUT/windows_<seed>_<count>.npz``, so a second run with
other training settings does not render them again.

    python benchmarks/corner_refiner.py --out runs/corner_refiner --epochs 10   # the shipped one
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from platelab.atomic import atomic_write_bytes
from platelab.data.synth.corner_samples import augment_windows, render_corner_samples
from platelab.errors import PlatelabError, one_line
from platelab.models.corner_refiner import CornerRefiner, save_refiner

VAL_SEED_OFFSET = 1_000_003


def windows(out: Path, count: int, seed: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Rendered (or cached) windows and corners."""
    cache = out / f"windows_{seed}_{count}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["images"], z["corners"]
    images, corners = render_corner_samples(count, seed, workers=workers)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, corners=corners)
    tmp.replace(cache)
    return images, corners


def evaluate(model: CornerRefiner, images: np.ndarray, corners: np.ndarray) -> tuple[float, float]:
    """Mean corner distance in window pixels, and as a share of the plate's width."""
    model.eval()
    dist = []
    with torch.inference_mode():
        for i in range(0, len(images), 256):
            x = torch.from_numpy(images[i : i + 256]).permute(0, 3, 1, 2)
            dist.append((model(x) - torch.from_numpy(corners[i : i + 256])).norm(dim=2))
    d = torch.cat(dist)
    c = torch.from_numpy(corners)
    width = ((c[:, 1] - c[:, 0]).norm(dim=1) + (c[:, 2] - c[:, 3]).norm(dim=1)) / 2
    return float(d.mean()), float((d.mean(dim=1) / width).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train", type=int, default=20000, help="training windows")
    p.add_argument("--val", type=int, default=1000, help="validation windows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=32, help="the refiner's base channels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0, help="rendering processes (0: one per CPU)")
    args = p.parse_args(argv)
    for name in ("train", "val", "epochs", "batch", "width", "threads"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be at least 1", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, train_c = windows(args.out, args.train, args.seed, args.workers)
    val_x, val_c = windows(args.out, args.val, args.seed + VAL_SEED_OFFSET, args.workers)

    model = CornerRefiner(width=args.width)
    steps = args.epochs * math.ceil(len(train_x) / args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    rows, best = [], None
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        model.train()
        order = torch.randperm(len(train_x), generator=gen)
        total, n = 0.0, 0
        bar = tqdm(range(0, len(order), args.batch), desc=f"epoch {epoch}/{args.epochs}")
        for i in bar:
            idx = order[i : i + args.batch].numpy()
            x = torch.from_numpy(train_x[idx]).permute(0, 3, 1, 2).float() / 255
            c = torch.from_numpy(train_c[idx]).float()
            x, c = augment_windows(x, c, gen)
            loss = F.l1_loss(model(x), c)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item() * len(idx), n + len(idx)
            bar.set_postfix(loss=f"{total / n:.3f}")
        val_px, val_rel = evaluate(model, val_x, val_c)
        row = {"epoch": epoch, "train_loss": round(total / n, 5), "val_px": round(val_px, 4),
               "val_rel": round(val_rel, 5), "seconds": round(time.time() - t0, 1)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
        if best is None or val_px < best["val_px"]:
            best = row
            meta = {"task": "corners", "model": model.name, "epoch": epoch,
                    "command": "python benchmarks/corner_refiner.py " + " ".join(argv or sys.argv[1:]),
                    "val_px": row["val_px"], "val_rel": row["val_rel"]}  # fmt: skip
            save_refiner(args.out / "corner_refiner.pth", model, meta=meta)
        with open(args.out / "metrics.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(rows)
    summary = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "best": best, "minutes": round(sum(r["seconds"] for r in rows) / 60, 1)}  # fmt: skip
    atomic_write_bytes(args.out / "corner_refiner.json", json.dumps(summary, indent=2).encode())
    print(json.dumps(summary["best"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (PlatelabError, OSError) as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        sys.exit(2)
