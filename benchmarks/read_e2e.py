"""The plate reader end to end: how often is a plate found and its text exactly right, how fast?

Runs :class:`platelab.PlateReader` (default weights unless ``--detector``/``--reader``)
on

* the ccpd_base photos of ../shared/data/real (text and corners in the file names),
* synthetic test scenes (``render_scene`` with a seed no training run uses), by plate
  width in pixels,

and scores, per true plate: **found** (a reading whose box has IoU >= 0.5 with it,
each reading matched once, best IoU first) and **text right** (that reading's text
equals the truth exactly). Then it times ``read`` on 1280x720 JPEG frames (synthetic
dashcam scenes): decode, detect (with the second look for corners), the corner model,
crop, read and draw, in torch and in onnxruntime, at the given threads. On synthetic
scenes it also gives the found plates' mean corner error (their corners are exact).

    python benchmarks/read_e2e.py --threads 2 --out runs/read_e2e
    python benchmarks/read_e2e.py --no-corner-model --frames 0   # the detector's corners
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from platelab.data.imageio import decode_image, encode_jpeg, read_image
from platelab.data.synth.scenes import render_scene
from platelab.errors import PlatelabError
from platelab.infer.read_run import draw_readings
from platelab.infer.reader import PlateReader
from platelab.text import Charset

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SIZE_BUCKETS = ((0, 32, "<32 px"), (32, 96, "32-96 px"), (96, 1e9, ">=96 px"))


def match(truths: list[dict], readings) -> list[dict]:
    """Each truth plate with ``found`` and ``right``; readings matched once, best IoU first."""
    ious = box_iou(
        torch.tensor([t["box"] for t in truths], dtype=torch.float64).reshape(-1, 4),
        torch.tensor([r.box_xyxy for r in readings], dtype=torch.float64).reshape(-1, 4),
    )
    pairs = sorted(((float(ious[i, j]), i, j) for i in range(len(truths))
                    for j in range(len(readings))), reverse=True)  # fmt: skip
    used_t, used_r, out = set(), set(), [dict(t, found=False, right=False, read="") for t in truths]
    for v, i, j in pairs:
        if v < 0.5 or i in used_t or j in used_r:
            continue
        used_t.add(i)
        used_r.add(j)
        text = readings[j].text
        out[i].update(found=True, read=text, corners=readings[j].quad(),
                      right=Charset.normalize(text) == Charset.normalize(truths[i]["text"]))  # fmt: skip
    return out


def rates(rows: list[dict]) -> dict:
    """Found and text-right rates; the found plates' mean corner error where known (in
    pixels and as a share of the plate's width)."""
    n = len(rows)
    out = {
        "plates": n,
        "found": round(sum(r["found"] for r in rows) / n, 3) if n else float("nan"),
        "text_right": round(sum(r["right"] for r in rows) / n, 3) if n else float("nan"),
    }
    known = [r for r in rows if "corner_px" in r]
    if known:
        out["corner_error_px"] = round(float(np.mean([r["corner_px"] for r in known])), 2)
        out["corner_error_of_width"] = round(float(np.mean([r["corner_rel"] for r in known])), 4)
    return out


def real_ccpd(reader: PlateReader, root: Path) -> tuple[dict, list]:
    from platelab.data.sources.ccpd import read_ccpd

    records, _ = read_ccpd(root)
    rows, errors = [], []
    for rec in records:
        result = reader(read_image(rec.path))
        truths = [{"box": p.box_xyxy, "text": p.text or ""} for p in rec.plates]
        for plate, m in zip(rec.plates, match(truths, result.plates), strict=True):
            rows.append({"photo": rec.path.name[:24], "truth": m["text"], "read": m["read"],
                         "found": m["found"], "right": m["right"]})  # fmt: skip
            if m["found"] and plate.corners is not None:
                errors.append(np.linalg.norm(m["corners"] - plate.corners_array(), axis=1).mean())
    out = rates(rows)
    out["corner_error_px"] = round(float(np.mean(errors)), 1) if errors else float("nan")
    return out, rows


def synthetic(reader: PlateReader, n: int, seed: int) -> dict:
    rows = []
    for i in range(n):
        scene = render_scene((seed, i))
        result = reader(scene.image)
        truths = [{"box": p.box_xyxy, "text": p.text} for p in scene.plates]
        for plate, t, m in zip(scene.plates, truths, match(truths, result.plates), strict=True):
            width = t["box"][2] - t["box"][0]
            if m["found"]:
                err = np.linalg.norm(m["corners"] - plate.corners, axis=1).mean()
                m = dict(m, corner_px=float(err), corner_rel=float(err / max(width, 1.0)))
            rows.append(dict(m, width=width))
    out = {"all": rates(rows)}
    for lo, hi, name in SIZE_BUCKETS:
        out[name] = rates([r for r in rows if lo <= r["width"] < hi])
    return out


def speed(reader: PlateReader, frames: list[bytes], batch: int, repeat: int = 2) -> float:
    """Frames per second of decode + read + draw over ``frames`` (JPEG bytes)."""

    def once() -> None:
        for s in range(0, len(frames), batch):
            images = [decode_image(f) for f in frames[s : s + batch]]
            for image, result in zip(images, reader.read_rgb(images), strict=True):
                draw_readings(image, result)

    once()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        once()
    return repeat * len(frames) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/read_e2e"))
    p.add_argument("--real", type=Path, default=REAL)
    p.add_argument("--detector", type=Path)
    p.add_argument("--reader", type=Path)
    p.add_argument("--scenes", type=int, default=200, help="synthetic test scenes")
    p.add_argument("--seed", type=int, default=90210, help="no training run uses it")
    p.add_argument("--frames", type=int, default=40, help="1280x720 frames to time")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--corner-model", type=Path, help="the corner stage (default: shipped)")
    p.add_argument("--no-corner-model", action="store_true", help="the detector's corners")
    args = p.parse_args()
    corners = False if args.no_corner_model else args.corner_model
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"threads": args.threads, "batch": args.batch}

    reader = PlateReader(args.detector, args.reader, runtime="torch", threads=args.threads,
                         corner_model=corners)  # fmt: skip
    print(reader)
    if (args.real / "ccpd_base").is_dir():
        results["ccpd_base"], rows = real_ccpd(reader, args.real / "ccpd_base")
        for r in rows:
            print(f"  {r['photo']:<24}  truth {r['truth']:<9} read {r['read'] or '-':<9} "
                  f"{'found' if r['found'] else 'missed'} {'right' if r['right'] else ''}")  # fmt: skip
        print(f"ccpd_base: {results['ccpd_base']}")
        one_look = PlateReader(args.detector, args.reader, runtime="torch", threads=args.threads,
                               refine=False, corner_model=corners)  # fmt: skip
        results["ccpd_base_no_second_look"] = real_ccpd(one_look, args.real / "ccpd_base")[0]
        print(f"ccpd_base without the second look: {results['ccpd_base_no_second_look']}")
    results["synthetic"] = synthetic(reader, args.scenes, args.seed)
    print(f"synthetic ({args.scenes} scenes, seed {args.seed}): {results['synthetic']}")

    frames = [
        encode_jpeg(render_scene((args.seed + 1, i), size=(1280, 720)).image, 90)
        for i in range(args.frames)
    ]
    # With the corner stage, the reader without it is timed in turn with it (twice each,
    # in this one process): on a noisy machine only side-by-side ratios mean anything.
    settings = {"": corners} if corners is False else {"": corners, "_no_corner_model": False}
    results["fps_1280x720"] = {}
    for runtime in ("torch", "onnx") if frames else ():
        try:
            readers = {
                suffix: PlateReader(args.detector, args.reader, runtime=runtime,
                                    threads=args.threads, batch_size=args.batch, corner_model=c)
                for suffix, c in settings.items()
            }  # fmt: skip
        except PlatelabError as e:  # a checkpoint runs in torch only; export it to time onnx
            print(f"{runtime}: not timed ({e})")
            continue
        for _ in range(2):
            for suffix, r in readers.items():
                fps = speed(r, frames, args.batch)
                results["fps_1280x720"].setdefault(runtime + suffix, []).append(round(fps, 1))
                print(f"{runtime}{suffix.replace('_', ' ')}: {fps:.1f} frames/s end to end at "
                      f"1280x720 ({args.threads} threads, batch {args.batch})")  # fmt: skip
    (args.out / "read_e2e.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"wrote {args.out / 'read_e2e.json'}")


if __name__ == "__main__":
    main()
