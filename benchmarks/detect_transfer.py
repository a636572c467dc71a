"""Does a detector trained only on synthetic scenes find the plates of real photos?

Renders synthetic scenes (YOLO-pose labels: every plate with its 4 corners),
prepares them at one canvas, trains ``task=detect`` for a fixed number of epochs
(a fixed epoch count, not a wall-clock budget, so a busy machine gives the same
model; the default is about 30 minutes of training on 2 idle cores), then
evaluates the best checkpoint with ``platelab eval``'s code on the real samples in
../shared/data/real (kaggle_voc, ccpd_base), prepared at the same canvas (or at the
canvases of ``--eval-size``: a detector runs at any canvas). Figures are in the
photos' own pixels. Each stage is skipped when its output is already
there (re-run it to evaluate again), so an interrupted run continues.

    python benchmarks/detect_transfer.py --out runs/detect_transfer
    python benchmarks/detect_transfer.py --out runs/detect_transfer --eval-size 320x240,640x480

``--closeups N`` adds N scenes of close-up-heavy layouts (:data:`CLOSE_KINDS`, seed + 1)
to the default mix; ``--ignore-below``, ``--shear``, ``--mosaic`` and ``--corner-weight``
set ``loss.ignore_below``, ``augment.shear_deg``, ``augment.mosaic_p`` and
``loss.corner_weight``; ``--weights`` starts from a detector's weights (fine-tuning).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import torch

from platelab.config import load_config
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.synth import generate
from platelab.data.synth.scenes import SceneConfig
from platelab.demo import prepare_real
from platelab.engine.checkpoint import LAST, run_finished
from platelab.geometry import parse_size
from platelab.train import train

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
# ``--closeups``: scene layouts of the extra set, where plates are large (the Kaggle
# photos' median plate is 23% of the photo's width, the default mix's 5%).
CLOSE_KINDS = {"closeup": 0.6, "street": 0.25, "plate_only": 0.15}
COLUMNS = ("n_images", "n_plates", "ap50", "ap50_95", "ar", "acc_iou50", "acc_iou70", "mean_iou",
           "precision", "recall", "corner_error_px")  # fmt: skip


def overrides(args: argparse.Namespace, dataset: Path, run: Path) -> list[str]:
    """The training keys: ``platelab train task=detect <these>`` reproduces the run."""
    return [
        "task=detect",
        f"model={args.model}",
        f"data={dataset}",
        f"out={run}",
        f"epochs={args.epochs}",
        f"batch_size={args.batch}",
        f"workers={args.workers}",
        f"lr={args.lr}",
        "scheduler=cosine",
        "warmup_epochs=1",
        "ema=true",
        f"seed={args.seed}",
        f"augment.scale={args.zoom}",
        f"augment.shear_deg={args.shear}",
        f"loss.ignore_below={args.ignore_below}",
        f"augment.mosaic_p={args.mosaic}",
        f"loss.corner_weight={args.corner_weight}",
        "exist_ok=true",
        *([f"weights={args.weights}"] if args.weights else []),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/detect_transfer"))
    p.add_argument("--real", type=Path, default=REAL)
    p.add_argument("--scenes", type=int, default=6000)
    p.add_argument("--closeups", type=int, default=0,
                   help="extra scenes of close-up-heavy layouts (CLOSE_KINDS), seed + 1")  # fmt: skip
    p.add_argument("--model", default="dwsep_small")
    p.add_argument("--size", default="320x240", help="canvas of the synthetic and real datasets")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--zoom", type=float, default=0.3, help="augment.scale")
    p.add_argument("--shear", type=float, default=5.0, help="augment.shear_deg")
    p.add_argument("--ignore-below", type=float, default=0.0,
                   help="loss.ignore_below: plates narrower (canvas px) are don't-care")  # fmt: skip
    p.add_argument("--mosaic", type=float, default=0.0,
                   help="augment.mosaic_p: share of training samples that are 4-image mosaics")  # fmt: skip
    p.add_argument("--corner-weight", type=float, default=1.0, help="loss.corner_weight")
    p.add_argument("--weights", type=Path, default=None,
                   help="start from these weights (a detector checkpoint: fine-tune it)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw weights")
    p.add_argument("--eval-size", default=None,
                   help="canvases to evaluate the real photos at, comma-separated (default: --size)")  # fmt: skip
    args = p.parse_args()
    w, h = parse_size(args.size)
    eval_sizes = [parse_size(v) for v in (args.eval_size or args.size).split(",")]
    cores = os.cpu_count() or 1
    args.out.mkdir(parents=True, exist_ok=True)
    synth, dataset, run = args.out / "synth", args.out / "dataset", args.out / "run"
    sets = [(synth, args.scenes, args.seed, None)]
    if args.closeups:
        sets.append((args.out / "synth_close", args.closeups, args.seed + 1,
                     SceneConfig(kinds=CLOSE_KINDS)))  # fmt: skip

    for folder, count, seed, config in sets:
        if not (folder / "yolo" / "data.yaml").is_file():
            start = time.perf_counter()
            generate(folder, count, seed=seed, formats=("yolo",), workers=cores, config=config)
            print(f"generate: {count} scenes in {time.perf_counter() - start:.0f} s")
    if not (dataset / "prepare_report.json").is_file():
        yolo = [folder / "yolo" for folder, *_ in sets]
        prepare(PrepareConfig(out=dataset, yolo=yolo, size=(w, h), workers=cores))

    keys = overrides(args, dataset, run)
    print("platelab train " + " ".join(keys), flush=True)
    if not run_finished(run, args.epochs):
        start = time.perf_counter()
        train(load_config(None, keys))
        print(f"trained in {(time.perf_counter() - start) / 60:.1f} min "
              f"({torch.get_num_threads()} threads)")  # fmt: skip
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    minutes = sum(float(r["epoch_time_s"]) for r in rows) / 60
    best = max(rows, key=lambda r: float(r["ap50"]))
    results = {
        "command": "python benchmarks/detect_transfer.py " + " ".join(sys.argv[1:]),
        "train": " ".join(keys),
        "epochs": len(rows),
        "train_minutes": round(minutes, 1),
        "synthetic_val_as_validated": {
            k: round(float(best[k]), 3) for k in ("ap50", "ap50_95", "acc_iou50")
        },
        "best_epoch": int(best["epoch"]),
        "real": {},
    }
    print(f"{len(rows)} epochs, {minutes:.1f} min of training; best synthetic val ap50 "
          f"{float(best['ap50']):.3f} at epoch {best['epoch']}")  # fmt: skip

    from platelab.eval.evaluate import evaluate_checkpoint

    print("".join(f"{c:>16}" for c in ("set", *COLUMNS)))
    ckpt = run if args.checkpoint == "best" else run / LAST
    for ew, eh in eval_sizes:
        other = (ew, eh) != (w, h)  # the training canvas keeps the plain names
        suffix = f"_{ew}x{eh}" if other else ""
        for name, real in prepare_real(
            args.real, args.out / f"real{suffix}", (ew, eh), cores
        ).items():
            m = evaluate_checkpoint(ckpt, real, "all", args.out / f"eval_{name}{suffix}",
                                    batch_size=8, ema=not args.no_ema).metrics  # fmt: skip
            key = f"{name}@{ew}x{eh}" if other else name
            row = {c: round(float(m.get(c, float("nan"))), 3) for c in COLUMNS}
            results["real"][key] = row
            print(f"{key:>16}" + "".join(f"{v:>16.3f}" for v in row.values()))
    (args.out / "detect_transfer.json").write_text(json.dumps(results, indent=2))
    print(f"galleries and detect_transfer.json in {args.out}")


if __name__ == "__main__":
    main()
