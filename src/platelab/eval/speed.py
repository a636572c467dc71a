"""Inference speed: latency, FPS, throughput, params, size and FLOPs (``platelab bench``).

For each target (a registry name or a checkpoint) and runtime (``torch`` eager or
``onnx`` through onnxruntime), on the CPU, with the thread count stated:

* latency at batch 1: ``warmup`` untimed runs, then up to ``iters`` timed runs (at
  least 3, stopping early after ``max_time_s``); p50 and p90 in ms;
* throughput at batch ``N``: the same on ``[N, 3, H, W]`` batches, images per second
  from the median batch time;
* params, size in MB (1e6 bytes: the checkpoint file for a checkpoint, the fp32
  state dict as ``torch.save`` writes it for a registry name; ``size_kind`` says
  which), and GFLOPs at batch 1 (``platelab.models.count_flops``: 2 per multiply-add,
  convolutions and matmuls).

A target is timed as its task (``task`` column): a checkpoint's own, a registry name's
``BenchConfig.task`` (default ``localize``). A detector is timed as it is deployed: the
model and :func:`~platelab.tasks.detect_ops.postprocess` with
:data:`~platelab.tasks.detect.DEPLOY` (threshold, Cluster-NMS, ``max_det``) in torch,
the exported graph that holds both in onnxruntime. Its GFLOPs are the model's: the
post-processing has no convolution or matmul (its IoU matrix is elementwise).

Allocator: eager torch allocates every activation afresh, and glibc's default
malloc serves large blocks with ``mmap`` and trims the heap after they are freed, so
each forward pass page-faults its memory back in. How often depends on what the
process ran before (its thresholds adapt to the largest block freed so far): in a
fresh process dwsep_tiny took 12 ms at 640x480 on 2 threads, after a dwsep_base
run 6.6 ms. :func:`tune_malloc` (on by default, ``BenchConfig.tune_malloc``) raises
the mmap and trim thresholds once per process, so eager torch is timed on compute,
the same in any order, as onnxruntime (which has its own arena) always is.

Inputs are uint8 ``[B, 3, H, W]`` canvases (what the stream and the predictor feed),
random but fixed. A registry name is benchmarked with random weights: speed does not
depend on the values. The ``onnx`` runtime exports the same model to a temporary file
with :func:`platelab.infer.export.export_onnx` (uint8 input) and times an onnxruntime
session with the same thread count as torch.
"""

from __future__ import annotations

import csv
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from platelab.atomic import atomic_open
from platelab.errors import PlatelabError, reason

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx")
DEFAULT_SIZE = (640, 480)
COLUMNS = [
    "name",
    "model",
    "task",
    "runtime",
    "threads",
    "size",
    "batch",
    "channels_last",
    "params",
    "size_mb",
    "size_kind",
    "gflops",
    "latency_p50_ms",
    "latency_p90_ms",
    "fps",
    "throughput_img_s",
    "gflops_per_s",
]


@dataclass
class BenchConfig:
    """How to benchmark.

    Attributes:
        size: canvas ``(W, H)``; None: the checkpoint's canvas, 640x480 for a registry name.
        batch: the throughput batch ``N`` (latency is always at batch 1).
        threads: CPU threads for torch and onnxruntime; None: torch's current count.
        runtimes: any of ``"torch"``, ``"onnx"`` (used by :func:`bench`).
        warmup: untimed runs before each measurement (allocator, oneDNN kernel choice).
        iters: timed runs per measurement, at most.
        max_time_s: stop a measurement early after this long (at least 3 runs).
        channels_last: run torch in ``channels_last`` memory format. Off by default:
            the figures are for the model as ``platelab predict`` runs it. Ignored by
            the onnx runtime (onnxruntime picks its own layouts).
        tune_malloc: call :func:`tune_malloc` first (see the module docstring).
        task: the task a registry name is built and timed for (None: ``localize``); a
            checkpoint has its own, and naming another task for it is an error.
    """

    size: tuple[int, int] | None = None
    batch: int = 8
    threads: int | None = None
    runtimes: tuple[str, ...] = ("torch",)
    warmup: int = 3
    iters: int = 30
    max_time_s: float = 5.0
    channels_last: bool = False
    tune_malloc: bool = True
    task: str | None = None


def tune_malloc() -> bool:
    """Keep freed memory in the process: glibc ``mallopt`` with higher mmap and trim thresholds.

    Blocks up to 32 MB (glibc's maximum) come from the heap instead of fresh ``mmap``s,
    and the heap is trimmed only past 1 GB, so a loop of forward passes reuses warm
    pages instead of page-faulting. The equivalent of ``MALLOC_MMAP_THRESHOLD_=33554432
    MALLOC_TRIM_THRESHOLD_=1073741824``. Process-wide and not undone; a no-op (False)
    where the C library is not glibc.

    Returns:
        whether both settings were applied.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def _check(cfg: BenchConfig, runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise PlatelabError(f"unknown runtime '{runtime}'; choose from: {', '.join(RUNTIMES)}")
    if cfg.batch < 1 or cfg.iters < 1 or cfg.warmup < 0:
        raise PlatelabError(
            f"batch and iters must be >= 1 and warmup >= 0, got batch={cfg.batch}, "
            f"iters={cfg.iters}, warmup={cfg.warmup}"
        )
    if cfg.threads is not None and cfg.threads < 1:
        raise PlatelabError(f"threads must be >= 1, got {cfg.threads}")


def load_target(target: str | Path, task: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A model to time and what describes it.

    A path that exists (a ``.pth`` or a run folder), or that looks like one, loads with
    :func:`platelab.models.weights.load_model_from_checkpoint`; anything else is a registry name
    (random weights), built for ``task`` (None: the model's own, ``localize`` but for a
    recogniser, which reads at its crop size).

    Returns:
        ``(model in eval mode on the CPU, info)``; ``info`` has ``model`` (registry name),
        ``task``, ``canvas`` (``(W, H)`` or None), ``size_mb`` and ``size_kind``.

    Raises:
        PlatelabError: an unknown model (close matches suggested) or task, a missing or bad
            checkpoint, or a ``task`` other than the checkpoint's.
    """
    from platelab.models.weights import load_model_from_checkpoint
    from platelab.tasks import get_task

    path = Path(target)
    registry_like = "/" not in str(target) or str(target).startswith("timm/")
    if path.exists() or path.suffix in (".pth", ".pt") or not registry_like:
        model, info = load_model_from_checkpoint(path)
        own = str(info.get("task") or "localize")
        if task is not None and task != own:
            raise PlatelabError(
                f"{target} is a {own} checkpoint: --task {task} is for registry names only"
            )
        return model, {
            "model": info["model"],
            "task": own,
            "canvas": info["input_size"],
            "size_mb": Path(info["path"]).stat().st_size / 1e6,
            "size_kind": "checkpoint",
        }
    from platelab.engine.trainer import weights_size_mb

    if task is None:  # the model's own task (a recogniser reads; the rest localise)
        from platelab.models import create_model
        from platelab.models.weights import model_task

        model = create_model(str(target)).eval()
        kind = get_task(model_task(model))
    else:
        kind = get_task(task)
        model = kind.build_model(str(target)).eval()
    return model, {
        "model": model.name,
        "task": kind.name,
        "canvas": getattr(model, "input_size", None),  # a recogniser's crop size
        "size_mb": weights_size_mb(model),
        "size_kind": "fp32_weights",
    }


def time_runs(fn: Callable[[], Any], warmup: int, iters: int, max_time_s: float) -> list[float]:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then up to ``iters`` timed ones.

    Stops early once ``max_time_s`` has passed, but never before 3 timed calls (or
    ``iters`` when smaller), so a percentile has something to stand on.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= min(3, iters) and time.perf_counter() - start > max_time_s:
            break
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation (numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _torch_runner(
    model: nn.Module, cfg: BenchConfig, task: str = "localize"
) -> Callable[[np.ndarray], Callable]:
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward: Callable[[torch.Tensor], Any] = model
    if task == "detect":  # timed as deployed: the model and its post-processing
        from platelab.infer.detect_export import ExportedDetector

        forward = ExportedDetector(model).eval()

    def make(images: np.ndarray) -> Callable[[], Any]:
        x = torch.from_numpy(images)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def run() -> Any:
            with torch.inference_mode():
                return forward(x)

        return run

    return make


def _onnx_runner(
    model: nn.Module, size: tuple[int, int], threads: int, folder: Path
) -> Callable[[np.ndarray], Callable]:
    from platelab.infer.export import INPUT_NAME, export_onnx, onnx_session

    path = export_onnx(model, folder / "model.onnx", size, input_dtype="uint8")
    session = onnx_session(path, threads=threads)

    def make(images: np.ndarray) -> Callable[[], Any]:
        return lambda: session.run(None, {INPUT_NAME: images})

    return make


def bench_one(target: str | Path, runtime: str, cfg: BenchConfig) -> dict[str, Any]:
    """Benchmark one model on one runtime; returns one row with the keys of ``COLUMNS``.

    ``name`` is ``target`` as given; ``fps`` is ``1000 / latency_p50_ms``;
    ``gflops_per_s`` is the achieved rate at batch 1 (``gflops / p50`` in seconds).
    torch's thread count is set for the run and restored afterwards.

    Raises:
        PlatelabError: an unknown runtime or model, a bad checkpoint, bad settings.
    """
    from platelab.models import count_flops

    _check(cfg, runtime)
    if cfg.tune_malloc:
        tune_malloc()
    model, info = load_target(target, cfg.task)
    w, h = cfg.size or info["canvas"] or DEFAULT_SIZE
    before = torch.get_num_threads()
    threads = cfg.threads or before
    torch.set_num_threads(threads)
    try:
        gflops = count_flops(model, (w, h)) / 1e9
        rng = np.random.default_rng(0)
        one = rng.integers(0, 256, (1, 3, h, w), dtype=np.uint8)
        many = rng.integers(0, 256, (cfg.batch, 3, h, w), dtype=np.uint8)
        with tempfile.TemporaryDirectory(prefix="platelab-bench-") as tmp:
            if runtime == "torch":
                make = _torch_runner(model, cfg, info["task"])
            else:
                make = _onnx_runner(model, (w, h), threads, Path(tmp))
            lat = time_runs(make(one), cfg.warmup, cfg.iters, cfg.max_time_s)
            # batch 1 throughput is the latency runs again: do not time them twice
            thr = (
                lat
                if cfg.batch == 1
                else time_runs(make(many), min(cfg.warmup, 1), cfg.iters, cfg.max_time_s)
            )
    finally:
        torch.set_num_threads(before)
    p50 = percentile(lat, 50) * 1e3
    return {
        "name": str(target),
        "model": info["model"],
        "task": info["task"],
        "runtime": runtime,
        "threads": threads,
        "size": f"{w}x{h}",
        "batch": cfg.batch,
        "channels_last": bool(cfg.channels_last and runtime == "torch"),
        "params": sum(p.numel() for p in model.parameters()),
        "size_mb": info["size_mb"],
        "size_kind": info["size_kind"],
        "gflops": gflops,
        "latency_p50_ms": p50,
        "latency_p90_ms": percentile(lat, 90) * 1e3,
        "fps": 1e3 / p50,
        "throughput_img_s": cfg.batch / statistics.median(thr),
        "gflops_per_s": gflops / (p50 / 1e3),
    }


def bench(targets: Sequence[str | Path], cfg: BenchConfig) -> list[dict[str, Any]]:
    """:func:`bench_one` for every target and every runtime in ``cfg.runtimes``, in order."""
    for rt in cfg.runtimes:
        _check(cfg, rt)
    jobs = [(t, rt) for t in targets for rt in cfg.runtimes]
    rows = []
    for target, rt in tqdm(jobs, desc="bench", unit="run", disable=len(jobs) < 2):
        rows.append(bench_one(target, rt, cfg))
        r = rows[-1]
        log.info("%s [%s]: %.2f ms p50, %.1f img/s", target, rt, r["latency_p50_ms"], r["fps"])
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: Path | str) -> Path:
    """Write ``rows`` as CSV (``COLUMNS`` first, then any extra keys), atomically."""
    path = Path(path)
    extra = [k for r in rows for k in r if k not in COLUMNS]
    fields = COLUMNS + list(dict.fromkeys(extra))
    try:
        with atomic_open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as e:
        raise PlatelabError(f"cannot write {path}: {reason(e)}") from None
    return path


def read_csv(path: Path | str) -> list[dict[str, Any]]:
    """Rows written by :func:`write_csv`, numbers parsed back (ints stay ints)."""

    def parse(v: str) -> Any:
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return {"True": True, "False": False}.get(v, v)

    with open(path, newline="", encoding="utf-8") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


_TABLE = [  # header, key, format
    ("name", "name", "{}"),
    ("task", "task", "{}"),
    ("runtime", "runtime", "{}"),
    ("threads", "threads", "{}"),
    ("size", "size", "{}"),
    ("params", "params", "{:,}"),
    ("MB", "size_mb", "{:.2f}"),
    ("GFLOPs", "gflops", "{:.3f}"),
    ("p50 ms", "latency_p50_ms", "{:.2f}"),
    ("p90 ms", "latency_p90_ms", "{:.2f}"),
    ("FPS", "fps", "{:.1f}"),
    ("img/s @N", "throughput_img_s", "{:.1f}"),
    ("N", "batch", "{}"),
    ("GFLOP/s", "gflops_per_s", "{:.1f}"),
]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table: a header line, a rule, then one line per row."""
    cells = [[fmt.format(r[key]) for _, key, fmt in _TABLE] for r in rows]
    heads = [h for h, _, _ in _TABLE]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]

    def line(values: Sequence[str]) -> str:
        out = [
            v.ljust(wd) if i < 3 else v.rjust(wd)
            for i, (v, wd) in enumerate(zip(values, widths, strict=True))
        ]
        return "| " + " | ".join(out) + " |"

    rule = (
        "|"
        + "|".join(("-" * (wd + 1) + (":" if i >= 3 else "-")) for i, wd in enumerate(widths))
        + "|"
    )
    return "\n".join([line(heads), rule] + [line(c) for c in cells])
