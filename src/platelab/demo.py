"""``platelab demo``: the main job on the built-in synthetic data, from nothing.

    OUT/synth/            synthetic scenes as YOLO (platelab data synth)
    OUT/dataset/          letterboxed 320x240 dataset + manifests (platelab data prepare)
    OUT/samples.png       samples with their boxes (platelab data show)
    OUT/samples_augmented.png
    OUT/runs/<model>/     a short training run (platelab train): metrics.csv, checkpoints

Every step is a public function the CLI also calls; the demo only chains them.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from platelab.errors import PlatelabError

logger = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    scenes: int = 2400
    model: str = "dwsep_small"
    epochs: int = 8
    size: tuple[int, int] = (320, 240)  # the canvas: half the default 640x480, for a laptop CPU
    batch_size: int = 32
    workers: int = 2
    seed: int = 0


def run_demo(cfg: DemoConfig) -> dict:
    """Synthesise, prepare, check, picture and train; returns where everything is."""
    from platelab.config import load_config
    from platelab.data.check import check_dataset
    from platelab.data.prepare import PrepareConfig, prepare
    from platelab.data.show import show
    from platelab.data.synth import generate
    from platelab.train import train

    out = Path(cfg.out)
    synth, dataset, run = out / "synth", out / "dataset", out / "runs" / cfg.model
    logger.info("1/5 synthesising %d scenes into %s", cfg.scenes, synth)
    generate(
        synth, cfg.scenes, seed=cfg.seed, formats=("yolo",), workers=cfg.workers, overwrite=True
    )
    logger.info("2/5 preparing the dataset in %s", dataset)
    report = prepare(
        PrepareConfig(
            out=dataset, yolo=[synth / "yolo"], size=cfg.size, workers=cfg.workers, seed=cfg.seed
        )
    )
    logger.info("3/5 checking it")
    checked = check_dataset(dataset)
    if not checked.ok:
        raise PlatelabError(f"the demo dataset failed its check: {checked.errors[0]}")
    logger.info("4/5 drawing samples")
    grids = [
        show(dataset, out=out / "samples.png", n=16, seed=cfg.seed),
        show(dataset, augment=True, out=out / "samples_augmented.png", n=16, seed=cfg.seed),
    ]
    logger.info("5/5 training %s for %d epochs", cfg.model, cfg.epochs)
    overrides = [
        f"model={cfg.model}",
        f"data={dataset}",
        f"out={run}",
        f"epochs={cfg.epochs}",
        f"batch_size={cfg.batch_size}",
        f"workers={cfg.workers}",
        f"seed={cfg.seed}",
        "exist_ok=true",
        "scheduler=onecycle",
        "lr=0.003",
    ]
    train(load_config(None, overrides))
    return {
        "dataset": dataset,
        "counts": report["counts"],
        "grids": grids,
        "run": run,
        "best": best_row(run / "metrics.csv"),
    }


def best_row(metrics_csv: Path, monitor: str = "mean_iou") -> dict[str, str]:
    """The metrics.csv row with the highest ``monitor``."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise PlatelabError(f"{metrics_csv} has no epochs")
    return max(rows, key=lambda r: float(r[monitor]))
