"""``platelab compare``: train and evaluate several backbones under one budget, then report.

    OUT/runs/<model>/          each model's run folder (platelab train), same data and keys
    OUT/eval/<model>/          its test-split evaluation (metrics.json, predictions.csv, worst.png)
    OUT/eval/<model>/<set>/    the same on each extra evaluation set (e.g. real photos)
    OUT/results.csv            one row per model: speed, size, accuracy
    OUT/pareto.png             accuracy against FPS, marker area by params, the Pareto front
    OUT/curves.png             loss and validation IoU per epoch, per model
    OUT/report.md, report.html the table and the pictures (the HTML embeds them)

The budget is the same for every model: a number of epochs, or wall-clock minutes of
training. For minutes, a short probe run times each model's training step and
evaluation on this machine; the epoch count (or, when one epoch does not fit, the
number of steps) is then set so that the whole schedule fits, and the minutes actually
spent are reported next to the results. A model whose run already finished under the
same plan is not trained again when ``compare`` is re-run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from platelab.atomic import atomic_write_bytes
from platelab.errors import PlatelabError

logger = logging.getLogger(__name__)

PROBE_STEPS = 4  # training steps the minutes probe times (the first one includes start-up)
VAL_OVERHEAD = 1.5  # evaluation wall time / forward time (loading, metrics), for planning
METRICS = ("mean_iou", "median_iou", "acc_iou50", "acc_iou70", "precision", "recall", "f1")
METRICS += ("ap50", "ap70")
SPEED_KEYS = ("params", "gflops", "size_mb", "latency_p50_ms", "latency_p90_ms", "fps")
SPEED_KEYS += ("throughput_img_s",)
# Training keys compare sets for each model; an override may not change them.
OWN_KEYS = ("model", "data", "out", "epochs", "max_train_batches", "monitor", "exist_ok")
OWN_KEYS += ("batch_size", "workers", "seed")


@dataclass(frozen=True)
class Budget:
    """The same training budget for every model: ``epochs`` or wall-clock ``minutes``."""

    epochs: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.minutes is None):
            raise PlatelabError("a budget is either epochs or minutes")
        if (self.epochs is not None and self.epochs < 1) or (
            self.minutes is not None and not self.minutes > 0
        ):
            raise PlatelabError(f"the budget must be positive, got {self.epochs or self.minutes}")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"8"``, ``"8ep"`` or ``"epochs=8"``; ``"2.5min"``, ``"2.5m"`` or ``"minutes=2.5"``."""
        t = str(text).strip().lower().replace(" ", "")
        m = re.fullmatch(r"(?:epochs=)?(\d+)(?:ep|epochs?)?", t)
        if m:
            return cls(epochs=int(m.group(1)))
        m = re.fullmatch(r"(?:minutes=)?(\d+(?:\.\d*)?|\.\d+)(?:m|min|mins|minutes?)?", t)
        if m and (t.startswith("minutes=") or not t[-1].isdigit()):
            return cls(minutes=float(m.group(1)))
        raise PlatelabError(f"cannot read the budget {text!r}: use e.g. 8 (epochs) or 3min")

    def __str__(self) -> str:
        if self.epochs is not None:
            return f"{self.epochs} epochs"
        return f"{self.minutes:g} min of training"


@dataclass
class CompareConfig:
    """What ``platelab compare`` runs.

    Attributes:
        models: registry names, trained in this order.
        data: a prepared dataset; each model trains on ``train``, validates on ``val``
            and is evaluated on ``split``.
        out: the comparison folder.
        budget: the same for every model.
        metric: the accuracy on the Pareto plot and the one that ranks best epochs.
        eval_sets: extra prepared datasets (name -> folder, at the same canvas) evaluated
            whole, e.g. real photos next to a synthetic training set.
        overrides: ``key=value`` training keys applied to every model alike.
        bench_batch: the batch of the throughput measurement (latency is at batch 1).
        bench_time_s: at most this long per speed measurement.
        threads: CPU threads for the speed measurement (None: torch's current count).
    """

    models: Sequence[str]
    data: Path
    out: Path
    budget: Budget = field(default_factory=lambda: Budget(epochs=5))
    metric: str = "mean_iou"
    split: str = "test"
    eval_sets: dict[str, Path] = field(default_factory=dict)
    overrides: Sequence[str] = ()
    batch_size: int = 32
    workers: int = 2
    bench_batch: int = 8
    bench_time_s: float = 5.0
    threads: int | None = None
    seed: int = 0


def check_plan(models: Sequence[str], overrides: Sequence[str] = ()) -> None:
    """Check the model names and training overrides of a comparison before any work.

    ``platelab demo`` calls it before it synthesises a dataset, so a typo fails in a
    second, not after minutes of rendering.

    Raises:
        PlatelabError: no model, a model named twice, an unknown model (close matches
            suggested), an unknown override key, or a key compare sets itself.
    """
    from platelab.config import check_override
    from platelab.train import check_model_name

    if not models:
        raise PlatelabError("--models names no model")
    if len(set(models)) != len(models):
        raise PlatelabError(f"--models names a model twice: {','.join(models)}")
    for name in models:
        check_model_name(name)
    for kv in overrides:
        if (key := check_override(kv)) in OWN_KEYS:
            raise PlatelabError(f"compare sets '{key}' itself (see --models, --data, --budget)")


def _check(cfg: CompareConfig) -> None:
    from platelab.data.manifest import dataset_canvas

    check_plan(cfg.models, cfg.overrides)
    canvas = dataset_canvas(cfg.data)
    for name, ds in cfg.eval_sets.items():
        if (size := dataset_canvas(ds)) != canvas:
            w, h = size
            raise PlatelabError(
                f"evaluation set '{name}' ({ds}) is {w}x{h} but {cfg.data} is "
                f"{canvas[0]}x{canvas[1]}: prepare it with --size {canvas[0]}x{canvas[1]}"
            )


def _train_overrides(cfg: CompareConfig, model: str, run: Path) -> list[str]:
    return [
        f"model={model}",
        f"data={cfg.data}",
        f"out={run}",
        f"batch_size={cfg.batch_size}",
        f"workers={cfg.workers}",
        f"seed={cfg.seed}",
        f"monitor={cfg.metric}",
        "exist_ok=true",
        *cfg.overrides,
    ]


def _read_rows(metrics_csv: Path) -> list[dict[str, str]]:
    with open(metrics_csv, newline="") as f:
        return list(csv.DictReader(f))


def _probe(cfg: CompareConfig, model: str, sizes: dict[str, int]) -> tuple[float, float, float]:
    """Seconds per training image, per evaluated image and per epoch (fixed), from a short run.

    The fixed part is what an epoch costs beyond its images: loader start-up, the
    checkpoint write, the metrics; it is the probe epoch's time less its steps.
    """
    from platelab.config import load_config
    from platelab.train import train

    run = Path(cfg.out) / "probe" / model
    keys = _train_overrides(cfg, model, run)
    keys += ["epochs=1", f"max_train_batches={PROBE_STEPS}", "max_val_batches=2", "keep_best=0"]
    keys += ["tensorboard=false"]
    try:
        train(load_config(None, keys))
        row = _read_rows(run / "metrics.csv")[-1]
    finally:
        shutil.rmtree(run, ignore_errors=True)
    train_ips, val_fps = float(row["train_steady_img_per_s"]), float(row["val_fps"])
    if not (train_ips > 0 and val_fps > 0):
        raise PlatelabError(f"the timing probe of {model} measured no progress")
    n_train = min(PROBE_STEPS * cfg.batch_size, sizes["train"])
    n_val = min(2 * cfg.batch_size, sizes["val"])
    fixed = float(row["epoch_time_s"]) - n_train / train_ips - n_val / val_fps
    return 1.0 / train_ips, 1.0 / val_fps, max(0.0, fixed)


def plan_budget(
    budget: Budget,
    n_train: int,
    n_val: int,
    batch: int,
    s_train: float,
    s_val: float,
    fixed_s: float = 0.0,
) -> dict[str, int | None]:
    """Epochs, and a per-epoch step cap, that fill ``budget`` without exceeding it.

    With minutes, the plan trains the most steps that fit: the epoch count may be
    rounded up and each epoch shortened (``max_train_batches``) rather than the budget
    rounded down to whole epochs; the stream's per-epoch shuffle still shows each epoch
    different images.

    Args:
        n_train, n_val: training and validation images.
        batch: training batch size.
        s_train, s_val: measured seconds per training image and per evaluated image.
        fixed_s: measured seconds each epoch costs beyond its images.

    Returns:
        ``{"epochs": E, "max_train_batches": N or None}`` (None: whole epochs);
        at least one epoch of one step.
    """
    if budget.epochs is not None:
        return {"epochs": budget.epochs, "max_train_batches": None}
    seconds = budget.minutes * 60
    val_s = n_val * s_val * VAL_OVERHEAD + fixed_s
    step_s = s_train * batch
    full_steps = math.ceil(n_train / batch)
    best = (1, 1)  # (epochs, steps per epoch): at least one step, even over budget
    for epochs in range(1, math.ceil(seconds / (full_steps * step_s + val_s)) + 1):
        steps = min(full_steps, int((seconds / epochs - val_s) / step_s))
        if steps >= 1 and epochs * steps > best[0] * best[1]:  # most steps; ties: fewer epochs
            best = (epochs, steps)
    epochs, steps = best
    return {"epochs": epochs, "max_train_batches": None if steps >= full_steps else steps}


def _manifests_sha1(dataset: Path) -> str:
    """A fingerprint of the dataset's train/val manifests: a changed dataset is a new plan."""
    h = hashlib.sha1()
    for split in ("train", "val"):
        p = Path(dataset) / f"{split}.csv"
        h.update(p.read_bytes() if p.is_file() else b"")
    return h.hexdigest()


def train_model(cfg: CompareConfig, model: str, sizes: dict[str, int]) -> dict[str, Any]:
    """Train ``model`` under the budget (or reuse a finished run of the same plan).

    ``sizes``: images per split of ``cfg.data``.
    """
    from platelab.config import load_config
    from platelab.train import train

    run = Path(cfg.out) / "runs" / model
    done = run / "compare.json"
    wanted = {
        "budget": str(cfg.budget),
        "data": str(cfg.data),
        "data_sha1": _manifests_sha1(cfg.data),
        "overrides": list(cfg.overrides),
    }
    if done.is_file():
        record = json.loads(done.read_text())
        if {k: record.get(k) for k in wanted} == wanted and (run / "metrics.csv").is_file():
            logger.info("%s: reusing the finished run in %s", model, run)
            return record
    s_train = s_val = fixed = 0.0
    if cfg.budget.minutes is not None:
        s_train, s_val, fixed = _probe(cfg, model, sizes)
        logger.info(
            "%s: %.1f train img/s, %.1f eval img/s, %.1f s per epoch besides (probe)",
            model,
            1 / s_train,
            1 / s_val,
            fixed,
        )
    plan = plan_budget(
        cfg.budget, sizes["train"], sizes["val"], cfg.batch_size, s_train, s_val, fixed
    )
    keys = _train_overrides(cfg, model, run) + [f"epochs={plan['epochs']}"]
    if plan["max_train_batches"]:
        keys.append(f"max_train_batches={plan['max_train_batches']}")
    logger.info("%s: training %s", model, " ".join(keys[3:]))
    train(load_config(None, keys))
    rows = _read_rows(run / "metrics.csv")
    best = max(rows, key=lambda r: float(r[cfg.metric]))
    record = {
        **wanted,
        "epochs": len(rows),
        "max_train_batches": plan["max_train_batches"],
        "best_epoch": int(best["epoch"]),
        "train_minutes": sum(float(r["epoch_time_s"]) for r in rows) / 60,
    }
    atomic_write_bytes(done, json.dumps(record, indent=2).encode())
    return record


def evaluate_model(cfg: CompareConfig, model: str) -> tuple[dict, dict, Path | None]:
    """``(speed, accuracy, gallery)`` of a trained model's best epoch.

    ``speed``: params, GFLOPs, MB, latency, FPS, throughput and threads (torch eager);
    ``accuracy``: the ``cfg.split`` metrics, then each extra set's prefixed ``<set>_``;
    ``gallery``: the test split's worst cases (None when there were none).
    """
    from platelab.eval.evaluate import evaluate_checkpoint
    from platelab.eval.speed import BenchConfig, bench_one

    run, out = Path(cfg.out) / "runs" / model, Path(cfg.out) / "eval" / model
    kw = {"batch_size": cfg.batch_size, "workers": cfg.workers}
    ev = evaluate_checkpoint(run, cfg.data, split=cfg.split, out=out, **kw)
    accuracy: dict[str, Any] = {k: ev.metrics[k] for k in METRICS}
    for name, ds in cfg.eval_sets.items():
        extra = evaluate_checkpoint(run, ds, split="all", out=out / name, **kw)
        for k in ("mean_iou", "acc_iou50", "acc_iou70", "f1"):
            accuracy[f"{name}_{k}"] = extra.metrics[k]
        accuracy[f"{name}_images"] = int(extra.metrics["images"])
    bench = BenchConfig(batch=cfg.bench_batch, threads=cfg.threads, max_time_s=cfg.bench_time_s)
    timed = bench_one(run, "torch", bench)
    speed = {k: timed[k] for k in SPEED_KEYS} | {"bench_threads": timed["threads"]}
    return speed, accuracy, ev.paths.get("gallery")


def compare(cfg: CompareConfig) -> dict[str, Any]:
    """Train, evaluate and benchmark every model, then write the report. Returns the paths."""
    from platelab.data.manifest import dataset_canvas, load_split
    from platelab.eval import report

    _check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {s: len(load_split(cfg.data, s)) for s in ("train", "val", "test")}
    rows, galleries = [], []
    for i, model in enumerate(cfg.models, 1):
        logger.info("model %d/%d: %s (budget: %s)", i, len(cfg.models), model, cfg.budget)
        trained = train_model(cfg, model, counts)
        speed, accuracy, gallery = evaluate_model(cfg, model)
        if gallery:
            galleries.append((f"{model}: the worst {cfg.split} images", Path(gallery)))
        rows.append(
            {
                "model": model,
                **speed,
                "epochs": trained["epochs"],
                "max_train_batches": trained["max_train_batches"] or "",
                "best_epoch": trained["best_epoch"],
                "train_minutes": round(trained["train_minutes"], 2),
                **accuracy,
            }
        )
    front = report.pareto_front([r["fps"] for r in rows], [r[cfg.metric] for r in rows])
    for r, f in zip(rows, front, strict=True):
        r["pareto"] = int(f)
    paths = {"results_csv": report.write_results_csv(rows, out / "results.csv")}
    paths["pareto"] = report.pareto_plot(rows, cfg.metric, out / "pareto.png")
    runs = {m: out / "runs" / m / "metrics.csv" for m in cfg.models}
    paths["curves"] = report.curves_plot(runs, out / "curves.png")
    w, h = dataset_canvas(cfg.data)
    threads = rows[0]["bench_threads"]
    setting = [
        f"data: {cfg.data} ({w}x{h} canvas; "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + " images)",
        f"budget: {cfg.budget} per model, the same training keys for all: "
        + (" ".join(cfg.overrides) or "the defaults")
        + f", batch {cfg.batch_size}, seed {cfg.seed}",
        f"accuracy: the best epoch by val {cfg.metric}, evaluated on the {cfg.split} split"
        + (f" and on {', '.join(cfg.eval_sets)} (whole sets)" if cfg.eval_sets else ""),
        f"speed: torch eager, batch 1 latency and FPS at {w}x{h}, throughput at batch "
        f"{cfg.bench_batch}, {threads} threads",
        f"machine: {report.machine_summary()}",
        f"written {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
    ]
    best = max(rows, key=lambda r: r[cfg.metric])
    note = (
        f"Best {cfg.metric}: {best['model']} ({best[cfg.metric]:.3f}). On the Pareto front "
        f"(no other model both faster and more accurate): "
        + ", ".join(r["model"] for r in rows if r["pareto"])
        + ". acc@0.5/0.7: share of plate images whose box has IoU above 0.5/0.7; F1 and AP50 "
        "count negatives (a confident box on an image without a plate is a false positive)."
    )
    ctx = {
        "title": f"platelab compare: {', '.join(cfg.models)}",
        "setting": setting,
        "rows": rows,
        "extra_sets": list(cfg.eval_sets),
        "note": note,
        "figures": [
            ("Accuracy against speed (marker area: params)", paths["pareto"]),
            ("Training curves", paths["curves"]),
            *galleries,
        ],
        "links": [("results.csv", paths["results_csv"])]
        + [(f"{m} run folder", out / "runs" / m) for m in cfg.models],
    }
    paths["report_md"] = report.write_markdown(out / "report.md", ctx)
    paths["report_html"] = report.write_html(out / "report.html", ctx)
    return {"rows": rows, "extra_sets": list(cfg.eval_sets), **paths}
