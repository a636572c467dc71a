"""Inference speed per registered model: torch eager against onnxruntime, same threads.

For each model (random weights: speed does not depend on them) at the canvas size,
batch 1: latency p50 and FPS on both runtimes, their ratio, and the achieved
GFLOP/s (FLOPs at batch 1 divided by the p50 latency). The whole localiser is timed
(normalisation, backbone and head; uint8 input), through ``platelab.eval.speed``, the
code behind ``platelab bench``. Prints a markdown table; ``--out FILE`` also writes
``FILE.csv`` (every figure of every run) and ``FILE.json`` (the machine and the rows).

    python benchmarks/infer_speed.py                                  # all models, 640x480, 2 threads
    python benchmarks/infer_speed.py --models dwsep_tiny --iters 10 --out runs/infer_speed
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from platelab.eval.report import cpu_name
from platelab.eval.speed import BenchConfig, bench, write_csv
from platelab.geometry import parse_size
from platelab.models import list_models

MOBILE = ("dwsep_", "mobilenet_v3_", "efficientnet_b0")  # the 3x goal applies to these
GOAL = 3.0


def machine() -> dict:
    import onnxruntime

    return {
        "cpu": cpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def summarise(rows: list[dict]) -> list[dict]:
    """One line per model from its torch and onnx rows."""
    by_model: dict[str, dict] = {}
    for r in rows:
        by_model.setdefault(r["name"], {})[r["runtime"]] = r
    out = []
    for name, rt in by_model.items():
        t, o = rt["torch"], rt["onnx"]
        out.append(
            {
                "model": name,
                "gflops": t["gflops"],
                "torch_ms": t["latency_p50_ms"],
                "torch_fps": t["fps"],
                "onnx_ms": o["latency_p50_ms"],
                "onnx_fps": o["fps"],
                "ratio": o["fps"] / t["fps"],
                "torch_gflop_s": t["gflops_per_s"],
                "onnx_gflop_s": o["gflops_per_s"],
            }
        )
    return out


def table(summary: list[dict]) -> str:
    head = (
        "| model | GFLOPs | torch ms | torch FPS | onnx ms | onnx FPS | onnx/torch "
        "| torch GFLOP/s | onnx GFLOP/s |"
    )
    lines = [head, "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for s in summary:
        lines.append(
            f"| {s['model']} | {s['gflops']:.3f} | {s['torch_ms']:.2f} | {s['torch_fps']:.1f} "
            f"| {s['onnx_ms']:.2f} | {s['onnx_fps']:.1f} | {s['ratio']:.2f}x "
            f"| {s['torch_gflop_s']:.1f} | {s['onnx_gflop_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="comma-separated (default: all registered)")
    p.add_argument("--size", default="640x480")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=50, help="timed runs per measurement, at most")
    p.add_argument("--max-time", type=float, default=6.0, help="seconds per measurement, at most")
    p.add_argument("--out", type=Path, help="also write OUT.csv and OUT.json")
    args = p.parse_args()
    names = [m for m in args.models.split(",") if m] or list_models()
    cfg = BenchConfig(
        size=parse_size(args.size),
        batch=1,  # the table is batch-1 latency; bench reuses those runs for throughput
        threads=args.threads,
        runtimes=("torch", "onnx"),
        warmup=args.warmup,
        iters=args.iters,
        max_time_s=args.max_time,
    )
    info = machine()
    print(
        f"inference at {args.size}, batch 1 latency (p50 of up to {args.iters} runs after "
        f"{args.warmup} warm-up), {args.threads} threads; CPU: {info['cpu']}; "
        f"{info['platform']}; torch {info['torch']}, onnxruntime {info['onnxruntime']}",
        flush=True,
    )
    rows = bench(names, cfg)
    summary = summarise(rows)
    print(table(summary))
    mobile = [s for s in summary if s["model"].startswith(MOBILE)]
    missed = [f"{s['model']} ({s['ratio']:.2f}x)" for s in mobile if s["ratio"] < GOAL]
    print(
        f"\nonnxruntime >= {GOAL:g}x eager on mobile-class models: "
        + ("met by all" if not missed else "missed by " + ", ".join(missed))
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        csv_path = write_csv(rows, args.out.with_suffix(".csv"))
        json_path = args.out.with_suffix(".json")
        json_path.write_text(
            json.dumps(
                {
                    "machine": info,
                    "config": vars(args) | {"out": str(args.out)},
                    "summary": summary,
                    "rows": rows,
                },
                indent=2,
            )
        )
        print(f"wrote {csv_path} and {json_path}")


if __name__ == "__main__":
    main()
