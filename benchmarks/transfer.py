"""Does a localiser trained only on synthetic plates find real ones?

Renders synthetic scenes, trains a model on them for a fixed wall-clock budget
(the epoch count is set from a one-epoch probe so the whole schedule fits),
then evaluates the best checkpoint on the real samples in ../shared/data/real
(kaggle_voc and ccpd_base, prepared with ``data prepare`` at the same canvas).
Also prints generation speed in scenes per second per core. The evaluation is
``platelab eval``'s (metrics in the photos' pixels); each real set's metrics.json,
predictions.csv and worst-case gallery land in OUT/eval_<set>/ (they show the real
photos: keep them out of the repository).

    python benchmarks/transfer.py --out runs/transfer --minutes 30
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

import torch

from platelab.config import load_config
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.synth import generate, render_scene
from platelab.demo import prepare_real
from platelab.eval.evaluate import evaluate_checkpoint
from platelab.geometry import parse_size
from platelab.train import train

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def generation_speed(n: int = 40) -> float:
    """Scenes per second rendered by one process (one core), encoding excluded."""
    render_scene(10_000)  # warm font caches
    start = time.process_time()
    for i in range(n):
        render_scene(20_000 + i)
    return n / (time.process_time() - start)


def train_run(args, dataset: Path, run: Path, epochs: int) -> Path:
    overrides = [
        f"model={args.model}",
        f"data={dataset}",
        f"out={run}",
        f"epochs={epochs}",
        f"batch_size={args.batch}",
        f"workers={args.workers}",
        f"lr={args.lr}",
        "scheduler=onecycle",
        "exist_ok=true",
        f"augment.strength={args.augment}",
    ]
    return train(load_config(None, overrides))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/transfer"))
    p.add_argument("--real", type=Path, default=REAL)
    p.add_argument("--scenes", type=int, default=6000)
    p.add_argument("--model", default="mobilenet_v3_small")
    p.add_argument("--size", default="320x240", help="canvas of the synthetic and real datasets")
    p.add_argument("--minutes", type=float, default=30.0, help="training budget, probe included")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--augment", type=float, default=1.0, help="augment.strength")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not args.real.is_dir():
        raise SystemExit(f"real samples not found at {args.real}")
    w, h = parse_size(args.size)
    cores = os.cpu_count() or 1
    args.out.mkdir(parents=True, exist_ok=True)

    speed = generation_speed()
    print(f"generation: {speed:.1f} scenes/s per core (render only, 1 process)", flush=True)
    synth, dataset = args.out / "synth", args.out / "dataset"
    start = time.perf_counter()
    generate(synth, args.scenes, seed=args.seed, formats=("yolo",), workers=cores, overwrite=True)
    gen_s = time.perf_counter() - start
    print(
        f"generate: {args.scenes} scenes in {gen_s:.0f} s with {cores} processes "
        f"({args.scenes / gen_s / cores:.1f} scenes/s per core, JPEG writing included)"
    )
    prepare(
        PrepareConfig(
            out=dataset, yolo=[synth / "yolo"], size=(w, h), workers=cores, progress=False
        )
    )

    # One probe epoch sets the epoch count so the whole schedule fits the budget.
    budget = args.minutes * 60
    t0 = time.perf_counter()
    train_run(args, dataset, args.out / "probe", 1)
    probe_s = time.perf_counter() - t0
    epochs = max(1, int((budget - probe_s) / (probe_s * 1.02)))
    shutil.rmtree(args.out / "probe")
    print(f"probe epoch {probe_s:.0f} s -> {epochs} epochs", flush=True)
    run = args.out / "run"
    t1 = time.perf_counter()
    train_run(args, dataset, run, epochs)
    train_s = time.perf_counter() - t1
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: float(r["mean_iou"]))
    print(
        f"trained {args.model} {epochs} epochs in {train_s / 60:.1f} min "
        f"(+{probe_s / 60:.1f} min probe; {torch.get_num_threads()} threads); synthetic val "
        f"mean IoU {float(best['mean_iou']):.3f} at epoch {best['epoch']}"
    )

    results = {
        "model": args.model,
        "size": args.size,
        "scenes": args.scenes,
        "epochs": epochs,
        "train_minutes": round((train_s + probe_s) / 60, 1),
        "scenes_per_s_per_core": round(speed, 1),
        "real": {},
    }
    # The demo's real sets, prepared at the same canvas, evaluated whole by platelab eval.
    real_sets = prepare_real(args.real, args.out / "real", (w, h), cores)
    print(f"{'real set':<12}{'images':>8}{'acc_iou50':>11}{'acc_iou70':>11}{'mean_iou':>10}")
    for name, dataset in real_sets.items():
        m = evaluate_checkpoint(
            run, dataset, "all", args.out / f"eval_{name}", batch_size=8
        ).metrics
        results["real"][name] = {
            k: round(float(m[k]), 3) for k in ("images", "acc_iou50", "acc_iou70", "mean_iou", "f1")
        }
        print(
            f"{name:<12}{int(m['images']):>8}{m['acc_iou50']:>11.3f}{m['acc_iou70']:>11.3f}"
            f"{m['mean_iou']:>10.3f}"
        )
    (args.out / "transfer.json").write_text(json.dumps(results, indent=2))
    print(f"galleries and transfer.json in {args.out}")


if __name__ == "__main__":
    main()
