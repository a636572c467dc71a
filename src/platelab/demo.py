"""``platelab demo``: the main job on the built-in synthetic data, from nothing.

    OUT/synth/            synthetic scenes as YOLO (platelab data synth)
    OUT/dataset/          letterboxed 320x240 dataset + manifests (platelab data prepare)
    OUT/samples.png       samples with their boxes (platelab data show)
    OUT/samples_augmented.png
    OUT/real/<set>/       the real sample photos, prepared at the same canvas (when present)
    OUT/compare/          every backbone trained under one budget, evaluated and timed
                          (platelab compare): results.csv, report.html, pareto.png, runs/

Every step is a public function the CLI also calls; the demo only chains them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from platelab.compare import Budget, CompareConfig, check_plan, compare
from platelab.errors import PlatelabError

logger = logging.getLogger(__name__)

# The real samples beside a development checkout (absent from a user's clone).
REAL_SAMPLES = Path("../shared/data/real")
# name -> (prepare argument, folder below the samples)
REAL_SETS = {"ccpd_base": ("ccpd", "ccpd_base"), "kaggle_voc": ("voc", "kaggle_voc")}


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    scenes: int = 2000
    # A custom depthwise CNN, a mobile torchvision network and a classic ResNet.
    models: Sequence[str] = ("dwsep_small", "mobilenet_v3_small", "resnet18")
    budget: Budget = field(default_factory=lambda: Budget(minutes=2))
    size: tuple[int, int] = (320, 240)  # the canvas: half the default 640x480, for a laptop CPU
    batch_size: int = 32
    workers: int = 2
    seed: int = 0
    real: Path | None = REAL_SAMPLES  # None: skip the real samples
    bench_time_s: float = 5.0  # at most per speed measurement


def prepare_real(root: Path, out: Path, size: tuple[int, int], workers: int) -> dict[str, Path]:
    """Prepare each real sample set found under ``root`` at ``size``, all of it as ``test``."""
    from platelab.data.prepare import PrepareConfig, prepare

    sets = {}
    for name, (kind, folder) in REAL_SETS.items():
        src = root / folder
        if not src.is_dir():
            logger.info("real samples: no %s, skipped", src)
            continue
        dst = out / name
        prepare(
            PrepareConfig(
                out=dst,
                size=size,
                split=(0, 0, 1),
                workers=workers,
                progress=False,
                **{kind: [src]},
            )
        )
        sets[name] = dst
    return sets


OVERRIDES = ("scheduler=onecycle", "lr=0.003")  # what the demo trains every model with


def _check(cfg: DemoConfig) -> None:
    """Everything the demo can check before it works: models, keys, numbers."""
    check_plan(cfg.models, OVERRIDES)
    for name, value in (("scenes", cfg.scenes), ("batch_size", cfg.batch_size)):
        if value < 1:
            raise PlatelabError(f"{name} must be a positive integer, got {value}")
    if cfg.workers < 0:
        raise PlatelabError(f"workers must be >= 0, got {cfg.workers}")
    if not isinstance(cfg.budget, Budget):
        raise PlatelabError(
            f"budget must be a Budget (e.g. Budget.parse('2min')), got {cfg.budget!r}"
        )


def run_demo(cfg: DemoConfig) -> dict:
    """Synthesise, prepare, check, picture, compare; returns where everything is."""
    from platelab.data.check import check_dataset
    from platelab.data.prepare import PrepareConfig, prepare
    from platelab.data.show import show
    from platelab.data.synth import generate

    _check(cfg)  # before minutes of rendering: a typo fails at once
    out = Path(cfg.out)
    synth, dataset = out / "synth", out / "dataset"
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
    checked = check_dataset(dataset)
    if not checked.ok:
        raise PlatelabError(f"the demo dataset failed its check: {checked.errors[0]}")
    logger.info("3/5 drawing samples")
    grids = [
        show(dataset, out=out / "samples.png", n=16, seed=cfg.seed),
        show(dataset, augment=True, out=out / "samples_augmented.png", n=16, seed=cfg.seed),
    ]
    real_sets: dict[str, Path] = {}
    if cfg.real is not None and Path(cfg.real).is_dir():
        logger.info("4/5 preparing the real samples in %s (evaluation only)", cfg.real)
        real_sets = prepare_real(Path(cfg.real), out / "real", cfg.size, cfg.workers)
    else:
        logger.info("4/5 no real samples at %s: synthetic evaluation only", cfg.real)
    logger.info("5/5 comparing %s (%s each)", ", ".join(cfg.models), cfg.budget)
    result = compare(
        CompareConfig(
            models=cfg.models,
            data=dataset,
            out=out / "compare",
            budget=cfg.budget,
            eval_sets=real_sets,
            overrides=OVERRIDES,
            batch_size=cfg.batch_size,
            workers=cfg.workers,
            bench_time_s=cfg.bench_time_s,
            seed=cfg.seed,
        )
    )
    return {
        "dataset": dataset,
        "counts": report["counts"],
        "grids": grids,
        "real_sets": real_sets,
        **result,
    }
