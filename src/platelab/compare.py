"""``platelab compare``: train and evaluate several backbones under one budget, then report.

    OUT/runs/<run>/            each model's run folder (platelab train), same data and keys
    OUT/eval/<run>/            its test-split evaluation (metrics.json, predictions.csv, worst.png)
    OUT/eval/<run>/<set>/      the same on each extra evaluation set (e.g. real photos)
    OUT/results.csv            one row per model: speed, size, accuracy
    OUT/pareto.png             accuracy against FPS, marker area by params, the Pareto front
    OUT/curves.png             loss and the monitored validation metric per epoch, per model
    OUT/report.md, report.html the table and the pictures (the HTML embeds them)

A model is a registry name, trained as a localiser (``task=localize``: one box per
image), or a name with a task prefix, ``detect:dwsep_small`` (``task=detect``: every
plate, with corners); both kinds can be compared in one report. ``<run>`` is the
registry name for a localiser and ``detect-<name>`` for a detector. The accuracy table
holds the metrics both tasks measure (mean IoU and acc@0.5/0.7 of the best-scored box,
P/R/F1 and AP50 over every plate, negatives counted) and the detector's own (AP50:95,
corner error), which a localiser leaves empty.

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
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from platelab.atomic import atomic_write_bytes
from platelab.compare_plan import (  # noqa: F401  (Budget, check_plan, plan_budget: public here too)
    METRICS,
    OWN_KEYS,
    Budget,
    ModelSpec,
    accuracy_keys,
    check_plan,
    monitor_of,
    plan_budget,
    plot_metric,
)
from platelab.errors import PlatelabError

logger = logging.getLogger(__name__)

PROBE_STEPS = 4  # training steps the minutes probe times (the first one includes start-up)
SPEED_KEYS = ("params", "gflops", "size_mb", "latency_p50_ms", "latency_p90_ms", "fps")
SPEED_KEYS += ("throughput_img_s",)


@dataclass
class CompareConfig:
    """What ``platelab compare`` runs.

    Attributes:
        models: ``[TASK:]NAME`` entries (:class:`ModelSpec`), trained in this order.
        data: a prepared dataset; each model trains on ``train``, validates on ``val``
            and is evaluated on ``split``.
        out: the comparison folder.
        budget: the same for every model.
        metric: the accuracy on the Pareto plot and the one that ranks best epochs; every
            compared task must measure it. None: ``mean_iou`` when all models are
            localisers, else ``ap50`` (on the plot) with each model's epochs ranked by its
            task's own metric (``mean_iou`` / ``ap50``).
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
    metric: str | None = None
    split: str = "test"
    eval_sets: dict[str, Path] = field(default_factory=dict)
    overrides: Sequence[str] = ()
    batch_size: int = 32
    workers: int = 2
    bench_batch: int = 8
    bench_time_s: float = 5.0
    threads: int | None = None
    seed: int = 0


def _check(cfg: CompareConfig) -> list[ModelSpec]:
    from platelab.data.manifest import dataset_canvas

    specs = check_plan(cfg.models, cfg.overrides, cfg.metric)
    canvas = dataset_canvas(cfg.data)
    for name, ds in cfg.eval_sets.items():
        if (size := dataset_canvas(ds)) != canvas:
            w, h = size
            raise PlatelabError(
                f"evaluation set '{name}' ({ds}) is {w}x{h} but {cfg.data} is "
                f"{canvas[0]}x{canvas[1]}: prepare it with --size {canvas[0]}x{canvas[1]}"
            )
    return specs


def _train_overrides(cfg: CompareConfig, spec: ModelSpec, run: Path) -> list[str]:
    return [
        f"model={spec.model}",
        f"data={cfg.data}",
        f"out={run}",
        f"task={spec.task}",
        f"batch_size={cfg.batch_size}",
        f"workers={cfg.workers}",
        f"seed={cfg.seed}",
        f"monitor={monitor_of(spec, cfg.metric)}",
        "exist_ok=true",
        *cfg.overrides,
    ]


def _read_rows(metrics_csv: Path) -> list[dict[str, str]]:
    with open(metrics_csv, newline="") as f:
        return list(csv.DictReader(f))


def _probe(
    cfg: CompareConfig, spec: ModelSpec, sizes: dict[str, int]
) -> tuple[float, float, float]:
    """Seconds per training image, per evaluated image and per epoch (fixed), from a short run.

    The fixed part is what an epoch costs beyond its images: loader start-up, the
    checkpoint write, the metrics; it is the probe epoch's time less its steps.
    """
    from platelab.config import load_config
    from platelab.train import train

    run = Path(cfg.out) / "probe" / spec.run_name
    keys = _train_overrides(cfg, spec, run)
    keys += ["epochs=1", f"max_train_batches={PROBE_STEPS}", "max_val_batches=2", "keep_best=0"]
    keys += ["tensorboard=false"]
    try:
        train(load_config(None, keys))
        row = _read_rows(run / "metrics.csv")[-1]
    finally:
        shutil.rmtree(run, ignore_errors=True)
    train_ips, val_fps = float(row["train_steady_img_per_s"]), float(row["val_fps"])
    if not (train_ips > 0 and val_fps > 0):
        raise PlatelabError(f"the timing probe of {spec.spec} measured no progress")
    n_train = min(PROBE_STEPS * cfg.batch_size, sizes["train"])
    n_val = min(2 * cfg.batch_size, sizes["val"])
    fixed = float(row["epoch_time_s"]) - n_train / train_ips - n_val / val_fps
    return 1.0 / train_ips, 1.0 / val_fps, max(0.0, fixed)


def _manifests_sha1(dataset: Path) -> str:
    """A fingerprint of the dataset's train/val manifests: a changed dataset is a new plan."""
    h = hashlib.sha1()
    for split in ("train", "val"):
        p = Path(dataset) / f"{split}.csv"
        h.update(p.read_bytes() if p.is_file() else b"")
    return h.hexdigest()


def train_model(cfg: CompareConfig, spec: ModelSpec, sizes: dict[str, int]) -> dict[str, Any]:
    """Train ``spec`` under the budget (or reuse a finished run of the same plan).

    ``sizes``: images per split of ``cfg.data``.
    """
    from platelab.config import load_config
    from platelab.train import train

    model = spec.spec
    run = Path(cfg.out) / "runs" / spec.run_name
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
        s_train, s_val, fixed = _probe(cfg, spec, sizes)
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
    keys = _train_overrides(cfg, spec, run) + [f"epochs={plan['epochs']}"]
    if plan["max_train_batches"]:
        keys.append(f"max_train_batches={plan['max_train_batches']}")
    logger.info("%s: training %s", model, " ".join(keys[3:]))
    train(load_config(None, keys))
    rows = _read_rows(run / "metrics.csv")
    monitor = monitor_of(spec, cfg.metric)
    best = max(rows, key=lambda r: float(r[monitor]))
    record = {
        **wanted,
        "epochs": len(rows),
        "max_train_batches": plan["max_train_batches"],
        "best_epoch": int(best["epoch"]),
        "train_minutes": sum(float(r["epoch_time_s"]) for r in rows) / 60,
    }
    atomic_write_bytes(done, json.dumps(record, indent=2).encode())
    return record


def evaluate_model(
    cfg: CompareConfig, spec: ModelSpec, keys: Sequence[str] = METRICS
) -> tuple[dict, dict, Path | None]:
    """``(speed, accuracy, gallery)`` of a trained model's best epoch.

    ``speed``: params, GFLOPs, MB, latency, FPS, throughput and threads (torch eager);
    ``accuracy``: the ``cfg.split`` metrics named in ``keys`` ("" for those its task
    does not measure), then each extra set's prefixed ``<set>_``; ``gallery``: the test
    split's worst cases (None when there were none).
    """
    from platelab.eval.evaluate import evaluate_checkpoint
    from platelab.eval.speed import BenchConfig, bench_one

    run = Path(cfg.out) / "runs" / spec.run_name
    out = Path(cfg.out) / "eval" / spec.run_name
    kw = {"batch_size": cfg.batch_size, "workers": cfg.workers}
    ev = evaluate_checkpoint(run, cfg.data, split=cfg.split, out=out, **kw)
    accuracy: dict[str, Any] = {k: ev.metrics.get(k, "") for k in keys}
    for name, ds in cfg.eval_sets.items():
        extra = evaluate_checkpoint(run, ds, split="all", out=out / name, **kw)
        shown = ("accuracy", "cer") if spec.task == "read" else ("mean_iou", "acc_iou50",
                                                                  "acc_iou70", "f1")  # fmt: skip
        for k in shown:
            accuracy[f"{name}_{k}"] = extra.metrics[k]
        m = extra.metrics
        images = m.get("images", m.get("n_images", m.get("n_crops")))
        accuracy[f"{name}_images"] = int(images)
    bench = BenchConfig(batch=cfg.bench_batch, threads=cfg.threads, max_time_s=cfg.bench_time_s)
    timed = bench_one(run, "torch", bench)
    speed = {k: timed[k] for k in SPEED_KEYS} | {"bench_threads": timed["threads"]}
    return speed, accuracy, ev.paths.get("gallery")


def compare(cfg: CompareConfig) -> dict[str, Any]:
    """Train, evaluate and benchmark every model, then write the report. Returns the paths."""
    from platelab.data.manifest import dataset_canvas
    from platelab.eval import report
    from platelab.tasks import get_task

    specs = _check(cfg)
    metric = plot_metric(specs, cfg.metric)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(specs[0].task)  # one kind of data: photos, or crops for recognisers
    counts = {s: task.split_length(Path(cfg.data), s) for s in ("train", "val", "test")}
    keys = accuracy_keys(specs)
    rows, galleries = [], []
    for i, spec in enumerate(specs, 1):
        logger.info("model %d/%d: %s (budget: %s)", i, len(specs), spec.spec, cfg.budget)
        trained = train_model(cfg, spec, counts)
        speed, accuracy, gallery = evaluate_model(cfg, spec, keys)
        if gallery:
            galleries.append((f"{spec.spec}: the worst {cfg.split} images", Path(gallery)))
        rows.append(
            {
                "model": spec.spec,
                "task": spec.task,
                **speed,
                "epochs": trained["epochs"],
                "max_train_batches": trained["max_train_batches"] or "",
                "best_epoch": trained["best_epoch"],
                "train_minutes": round(trained["train_minutes"], 2),
                **accuracy,
            }
        )
    front = report.pareto_front([r["fps"] for r in rows], [r[metric] for r in rows])
    for r, f in zip(rows, front, strict=True):
        r["pareto"] = int(f)
    paths = {"results_csv": report.write_results_csv(rows, out / "results.csv")}
    paths["pareto"] = report.pareto_plot(rows, metric, out / "pareto.png")
    runs = {s.spec: out / "runs" / s.run_name / "metrics.csv" for s in specs}
    monitors = {s.spec: monitor_of(s, cfg.metric) for s in specs}
    paths["curves"] = report.curves_plot(runs, out / "curves.png", monitors)
    w, h = dataset_canvas(cfg.data)
    threads = rows[0]["bench_threads"]
    ranked_by = " / ".join(dict.fromkeys(f"{monitors[s.spec]}" for s in specs))
    setting = [
        f"data: {cfg.data} ({w}x{h} canvas; "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + " images)",
        f"budget: {cfg.budget} per model, the same training keys for all: "
        + (" ".join(cfg.overrides) or "the defaults")
        + f", batch {cfg.batch_size}, seed {cfg.seed}",
        f"accuracy: the best epoch by val {ranked_by}"
        + (" (each task its own)" if " / " in ranked_by else "")
        + f", evaluated on the {cfg.split} split"
        + (f" and on {', '.join(cfg.eval_sets)} (whole sets)" if cfg.eval_sets else ""),
        f"speed: torch eager, batch 1 latency and FPS at {w}x{h}, throughput at batch "
        f"{cfg.bench_batch}, {threads} threads",
        f"machine: {report.machine_summary()}",
        f"written {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
    ]
    best = max(rows, key=lambda r: r[metric])
    note = (
        f"Best {metric}: {best['model']} ({best[metric]:.3f}). On the Pareto front "
        f"(no other model both faster and more accurate): "
        + ", ".join(r["model"] for r in rows if r["pareto"])
        + ". acc@0.5/0.7: share of plate images whose box has IoU above 0.5/0.7; F1 and AP50 "
        "count negatives (a confident box on an image without a plate is a false positive)."
    )
    if task.name == "read":
        note = (
            f"Best {metric}: {best['model']} ({best[metric]:.3f}). On the Pareto front: "
            + ", ".join(r["model"] for r in rows if r["pareto"])
            + ". accuracy: share of crops whose whole text is read exactly; CER: edit "
            "distance over truth length (lower is better); acc@90%: accuracy of the 90% "
            "most confident readings (text score: product of the character confidences)."
        )
    if any(s.task == "detect" for s in specs):
        from platelab.tasks.detect import SCORE_THRESHOLD

        note += (
            " Detectors (detect:) find every plate: their acc and mean IoU are those of the "
            f"best-scored box, P/R/F1 count the boxes scoring {SCORE_THRESHOLD:g} or more, "
            "AP50 and AP50:95 are COCO's, and the corner error is the mean distance of the "
            "4 predicted corners to the plate's in photo pixels (over plates whose corners "
            "are known); a localiser gives one box per image, so a second plate is a miss "
            "for it. –: not measured."
        )
    ctx = {
        "title": f"platelab compare: {', '.join(s.spec for s in specs)}",
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
        + [(f"{s.spec} run folder", out / "runs" / s.run_name) for s in specs],
    }
    paths["report_md"] = report.write_markdown(out / "report.md", ctx)
    paths["report_html"] = report.write_html(out / "report.html", ctx)
    return {"rows": rows, "extra_sets": list(cfg.eval_sets), "metric": metric, **paths}
