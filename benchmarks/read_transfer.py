"""Does a recogniser trained only on synthetic crops read the plates of real photos?

Renders synthetic plate crops (``platelab data synth --formats crops``), prepares
them, trains ``task=read`` for a fixed number of epochs (a fixed epoch count, not a
wall-clock budget, so a busy machine gives the same model; the defaults are the
shipped reader's recipe, 8 epochs at lr 2e-3 in bf16 autocast: 24 to 27 minutes
of training on 2 cores of this machine, inside the issue's 30-minute budget), then
evaluates with ``platelab eval``'s code on the real samples in ../shared/data/real:

* ``ocr_crops``: 100 CCPD plate crops, the text in the file name (LPRNet layout);
* ``ccpd_base``: the plates of the CCPD photos, cut by their 4 corners.

When ``rapidocr_onnxruntime`` is installed (a general OCR, benchmark-only, never a
platelab dependency) it reads the same crops and is scored with the same metrics.
Each stage is skipped when its output is already there, so an interrupted run
continues.

    python benchmarks/read_transfer.py --out runs/read_transfer
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
from platelab.data.synth.crops import generate_crops
from platelab.engine.checkpoint import run_finished
from platelab.train import train

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
COLUMNS = ("n_crops", "accuracy", "cer", "province_accuracy", "accuracy_at_90")


def overrides(args: argparse.Namespace, dataset: Path, run: Path) -> list[str]:
    """The training keys: ``platelab train <these>`` reproduces the run."""
    return [
        "task=read",
        f"model={args.model}",
        f"data={dataset}",
        f"out={run}",
        f"epochs={args.epochs}",
        f"batch_size={args.batch}",
        f"workers={args.workers}",
        f"lr={args.lr}",
        f"amp={args.amp}",
        "scheduler=cosine",
        "warmup_epochs=1",
        "ema=true",
        f"seed={args.seed}",
        "exist_ok=true",
    ]


def prepare_real(root: Path, out: Path, workers: int) -> dict[str, Path]:
    """The real crop sets present under ``root``, each prepared once under ``out``."""
    sources = {"ocr_crops": {"crops": [root / "ocr_crops"]},
               "ccpd_base": {"ccpd": [root / "ccpd_base"], "kind": "crops"}}  # fmt: skip
    sets = {}
    for name, source in sources.items():
        if not next(iter(source.values()))[0].is_dir():
            continue
        if not (out / name / "prepare_report.json").is_file():
            prepare(PrepareConfig(out=out / name, workers=workers, **source))
        sets[name] = out / name
    return sets


def rapidocr_scores(dataset: Path) -> dict[str, float] | None:
    """rapidocr-onnxruntime's figures on a prepared crop dataset (None if not installed)."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        return None
    from platelab.data.crop_manifest import load_crop_split
    from platelab.data.imageio import read_image
    from platelab.data.manifest import SPLITS
    from platelab.eval.text import text_metrics
    from platelab.text import get_charset

    charset = get_charset("plates")
    items = [c for split in SPLITS for c in load_crop_split(dataset, split)]
    engine = RapidOCR()
    truths, preds, scores = [], [], []
    start = time.perf_counter()
    for item in items:
        image = read_image(dataset / item.image)[:, :, ::-1]  # RapidOCR takes BGR like cv2
        result, _ = engine(image, use_det=False, use_cls=False, use_rec=True)
        text, score = (result[0][0], float(result[0][1])) if result else ("", 0.0)
        truths.append(item.text)
        preds.append("".join(c for c in charset.normalize(text) if c in charset))
        scores.append(score)
    seconds = time.perf_counter() - start
    m = text_metrics(truths, preds, scores)
    m["crops_per_s"] = len(items) / seconds if seconds else float("nan")
    return m


def sample_picture(dataset: Path, eval_dir: Path, out: Path, n: int = 24) -> Path:
    """``n`` crops of the set, evenly spaced, right and wrong alike, with truth and reading."""
    import cv2

    from platelab.data.imageio import read_image
    from platelab.data.show import make_grid
    from platelab.eval.evaluate_read import draw_read_case

    with open(eval_dir / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    picked = rows[:: max(1, len(rows) // n)][:n]
    tiles = []
    for r in picked:
        record = {"text": r["text"], "pred": r["pred"], "score": float(r["score"]),
                  "image": r["image"]}  # fmt: skip
        tiles.append(draw_read_case(read_image(dataset / r["image"]), record))
    grid = make_grid(tiles, columns=4)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/read_transfer"))
    p.add_argument("--real", type=Path, default=REAL)
    p.add_argument("--crops", type=int, default=100000)
    p.add_argument("--model", default="crnn")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--amp", choices=("off", "bf16"), default="bf16",
                   help="bf16 autocast: about 1.5x the crnn's training speed on a CPU with "
                        "AVX512-BF16")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw weights")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    args.out.mkdir(parents=True, exist_ok=True)
    synth, dataset, run = args.out / "synth", args.out / "dataset", args.out / "run"

    if not (synth / "crops" / "labels.csv").is_file():
        start = time.perf_counter()
        generate_crops(synth / "crops", args.crops, seed=args.seed, workers=cores)
        print(f"generate: {args.crops} crops in {time.perf_counter() - start:.0f} s")
    if not (dataset / "prepare_report.json").is_file():
        prepare(PrepareConfig(out=dataset, crops=[synth / "crops"], workers=cores))

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
    best = max(rows, key=lambda r: float(r["accuracy"]))
    results = {
        "command": "python benchmarks/read_transfer.py " + " ".join(sys.argv[1:]),
        "train": "platelab train " + " ".join(keys),
        "epochs": len(rows),
        "train_minutes": round(minutes, 1),
        "threads": torch.get_num_threads(),
        "synthetic_val": {k: round(float(best[k]), 3) for k in ("accuracy", "cer")},
        "best_epoch": int(best["epoch"]),
        "real": {},
        "rapidocr": {},
    }
    print(f"{len(rows)} epochs, {minutes:.1f} min of training; best synthetic val accuracy "
          f"{float(best['accuracy']):.3f} at epoch {best['epoch']}")  # fmt: skip

    from platelab.eval.evaluate import evaluate_checkpoint

    print("".join(f"{c:>18}" for c in ("set", *COLUMNS)))
    for name, real in prepare_real(args.real, args.out / "real", cores).items():
        m = evaluate_checkpoint(
            run, real, "all", args.out / f"eval_{name}", batch_size=32, ema=not args.no_ema
        ).metrics
        results["real"][name] = {c: round(float(m.get(c, float("nan"))), 4) for c in COLUMNS}
        sample_picture(real, args.out / f"eval_{name}", args.out / f"readings_{name}.png")
        print(f"{name:>18}" + "".join(f"{float(m.get(c, float('nan'))):>18.3f}" for c in COLUMNS))
        ocr = rapidocr_scores(real)
        if ocr is not None:
            results["rapidocr"][name] = {k: round(float(v), 4) for k, v in ocr.items()}
            print(f"{'rapidocr ' + name:>18}"
                  + "".join(f"{float(ocr.get(c, float('nan'))):>18.3f}" for c in COLUMNS)
                  + f"   ({ocr['crops_per_s']:.0f} crops/s)")  # fmt: skip
    (args.out / "read_transfer.json").write_text(json.dumps(results, indent=2))
    print(f"galleries and read_transfer.json in {args.out}")


if __name__ == "__main__":
    main()
