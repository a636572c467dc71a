"""Do a detector's corners follow a plate's shape? Synthetic close-ups, exact corners.

Renders synthetic close-up scenes (``render_scene`` with a seed no training run uses;
the plates' corners are exact), runs a detector (the shipped one unless
``--detector``) on each photo and, for every plate at least ``--min-width`` pixels
wide that it finds (best box overlap), compares its 4 corners with the truth:

* the mean corner error, in pixels and as a share of the plate's width;
* the **lean**: the mean slant of the plate's left and right sides, in degrees
  (a plate seen from above and to the side leans, as CCPD's do). ``slope`` is the
  least-squares slope of the predicted lean on the true lean: 1 when the corners
  follow it, 0 when they stand upright whatever the plate does.

``--second-look`` takes the corners after :class:`~platelab.infer.reader.PlateReader`'s
second look (the detector again on a window around each plate, cut from the photo);
``--corner-model [PATH]`` then those of the reader's corner stage
(:mod:`platelab.models.corner_refiner`).

    python benchmarks/corner_lean.py
    python benchmarks/corner_lean.py --detector runs/detect_transfer/run --scenes 300
    python benchmarks/corner_lean.py --second-look --corner-model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou
from tqdm import tqdm

from platelab.data.synth.scenes import SceneConfig, render_scene
from platelab.errors import PlatelabError, one_line
from platelab.geometry import quad_lean_deg
from platelab.infer.defaults import default_model
from platelab.infer.predictor import Predictor
from platelab.infer.reader import PlateReader

SEED = 4242  # no training run renders with it


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector", default=None, help="a detector (default: the shipped weights)")
    p.add_argument("--scenes", type=int, default=150)
    p.add_argument("--min-width", type=float, default=60.0, help="plates at least this wide (px)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--second-look", action="store_true", help="the reader's refined corners")
    p.add_argument("--corner-model", nargs="?", const="default", default=None,
                   help="then the corner stage (no value: the shipped one)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="write corner_lean.json here")
    args = p.parse_args(argv)
    detector = Predictor(args.detector or default_model("detect", "torch"), threads=args.threads)
    # "default": the shipped corner model (None); not asked for: none loaded (False)
    corner_model = {None: False, "default": None}.get(args.corner_model, args.corner_model)
    reader = PlateReader(detector, threads=args.threads, corner_model=corner_model)
    cfg = SceneConfig(kinds={"closeup": 1.0}, negative_rate=0.0)
    rows = []
    for i in tqdm(range(args.scenes), desc="scenes", leave=False):
        scene = render_scene((SEED, i), cfg)
        plates = [p for p in scene.plates if np.ptp(p.corners[:, 0]) >= args.min_width]
        if not plates:
            continue
        det = detector.predict([scene.image])[0]
        if args.second_look:
            det = reader.refine_all([scene.image], [det])[0]
        det = reader.refine_corners([scene.image], [det])[0]  # as it is without a model
        for plate in plates:
            if not det.plates:
                continue
            ious = box_iou(torch.tensor([d.box_xyxy for d in det.plates]),
                           torch.tensor([plate.box_xyxy]))[:, 0]  # fmt: skip
            if ious.max() < 0.5:
                continue
            pred = det.plates[int(ious.argmax())].quad().astype(np.float64)
            true = plate.corners.astype(np.float64)
            err = float(np.linalg.norm(pred - true, axis=1).mean())
            rows.append((quad_lean_deg(true), quad_lean_deg(pred), err, err / np.ptp(true[:, 0])))
    if len(rows) < 2:
        print("error: fewer than 2 plates found; nothing to fit")
        return 1
    a = np.asarray(rows)
    leaning = np.abs(a[:, 0]) > 6
    summary = {
        "plates": len(a),
        "corner_error_px": float(a[:, 2].mean()),
        "corner_error_of_width": float(a[:, 3].mean()),
        "true_lean_sd_deg": float(a[:, 0].std()),
        "lean_slope": float(np.polyfit(a[:, 0], a[:, 1], 1)[0]),
        "leaning_plates": int(leaning.sum()),
        "leaning_true_abs_deg": float(np.abs(a[leaning, 0]).mean()) if leaning.any() else None,
        "leaning_pred_abs_deg": float(np.abs(a[leaning, 1]).mean()) if leaning.any() else None,
    }
    print(f"{summary['plates']} plates >= {args.min_width:.0f} px found; corner error "
          f"{summary['corner_error_px']:.1f} px ({100 * summary['corner_error_of_width']:.1f}% "
          f"of the width); predicted lean = {summary['lean_slope']:.2f} x true lean "
          f"(true sd {summary['true_lean_sd_deg']:.1f} deg)")  # fmt: skip
    if leaning.any():
        print(f"plates leaning over 6 deg: {summary['leaning_plates']}, true "
              f"{summary['leaning_true_abs_deg']:.1f} deg, predicted "
              f"{summary['leaning_pred_abs_deg']:.1f} deg (mean of absolute values)")  # fmt: skip
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "corner_lean.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except PlatelabError as e:  # a missing or wrong --detector: one line, exit 2
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        raise SystemExit(2) from None
