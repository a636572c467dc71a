"""``platelab demo``: the product first, then the main job on the built-in synthetic data.

    OUT/read/<set>/       the default plate reader (shipped weights) on the real sample
                          photos (ccpd_base, kaggle_voc) when present, else on the demo
                          photos shipped in the package and rendered synthetic scenes:
                          drawn pictures and predictions.jsonl (platelab read)
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


def read_samples(out: Path, real: Path | None, progress: bool = False) -> dict[str, dict]:
    """The default reader on the real samples (or the shipped demo photos and 6 synthetic
    scenes): ``{set name: platelab read summary}``, drawn pictures under ``out``."""
    from platelab.data.imageio import encode_jpeg
    from platelab.data.synth.scenes import render_scene
    from platelab.infer.read_run import run_read
    from platelab.infer.reader import PlateReader

    sources: dict[str, Path] = {}
    if real is not None and Path(real).is_dir():
        for name, (_, folder) in REAL_SETS.items():
            if (Path(real) / folder).is_dir():
                sources[name] = Path(real) / folder
    if not sources:
        sources["demo_photos"] = Path(__file__).resolve().parent / "assets" / "demo"
        scenes = out / "synthetic_scenes"
        scenes.mkdir(parents=True, exist_ok=True)
        for i in range(6):
            image = render_scene((DEMO_SCENE_SEED, i)).image
            (scenes / f"scene_{i}.jpg").write_bytes(encode_jpeg(image, 92))
        sources["synthetic"] = scenes
    reader = PlateReader()
    return {
        name: run_read(src, out / name, reader=reader, progress=progress)
        for name, src in sources.items()
    }


DEMO_SCENE_SEED = 777  # synthetic scenes the demo reads: no training run renders them


def run_demo(cfg: DemoConfig) -> dict:
    """Synthesise, prepare, check, picture, compare; returns where everything is."""
    from platelab.data.check import check_dataset
    from platelab.data.prepare import PrepareConfig, prepare
    from platelab.data.show import show
    from platelab.data.synth import generate

    _check(cfg)  # before minutes of rendering: a typo fails at once
    out = Path(cfg.out)
    logger.info("0/5 reading plates with the default weights (platelab read)")
    readings = read_samples(out / "read", cfg.real)
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
        "readings": readings,
        "grids": grids,
        "real_sets": real_sets,
        **result,
    }
