"""How sharp are synthetic plate crops next to real ones? (the figure behind ``SHARPEN_P``)

The median (and 10th/90th percentile) ratio of the Laplacian's spread to the image's
contrast, each crop resized to 94x24 (the LPRNet crop size), for the real
``ocr_crops`` and ``ccpd_base`` plates (cut by their corners) and for rendered
Chinese blue crops with and without the camera's sharpening::

    python benchmarks/crop_sharpness.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from platelab.data.imageio import read_image
from platelab.data.sources.ccpd import parse_ccpd_name
from platelab.data.synth import crops
from platelab.geometry import CROP_SIZE, warp_quad

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def sharpness(rgb: np.ndarray) -> float:
    """Laplacian standard deviation over grey-level standard deviation at 94x24."""
    grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (94, 24), interpolation=cv2.INTER_AREA)
    lap = cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F)
    return float(lap.std() / max(1.0, grey.std()))


def report(name: str, values: list[float]) -> None:
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    print(f"{name:<34} {len(values):>5}  median {p50:.2f}  (p10 {p10:.2f}, p90 {p90:.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path, default=REAL)
    p.add_argument("--n", type=int, default=400, help="synthetic crops per row")
    args = p.parse_args()
    ocr = sorted((args.real / "ocr_crops").glob("*.jpg"))
    if ocr:
        report("real ocr_crops", [sharpness(read_image(f)) for f in ocr])
    ccpd = sorted((args.real / "ccpd_base").glob("*.jpg"))
    if ccpd:
        cut = [
            warp_quad(
                read_image(f), np.array(parse_ccpd_name(f.name).corners, np.float64), CROP_SIZE
            )
            for f in ccpd
        ]
        report("real ccpd_base (cut by corners)", [sharpness(c) for c in cut])
    for p_sharp in (0.0, crops.SHARPEN_P):
        cfg = crops.CropConfig(styles={"cn_blue": 1.0}, sharpen_p=p_sharp)
        values = [sharpness(crops.render_crop((11, i), cfg).image) for i in range(args.n)]
        report(f"synthetic cn_blue, sharpen p={p_sharp}", values)


if __name__ == "__main__":
    main()
