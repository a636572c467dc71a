"""A classical baseline for scale: OpenCV's bundled plate Haar cascade on the real samples.

Takes the largest detection per photo as the prediction and reports the share of
plate photos whose best-matching plate it hits at IoU > 0.5 / 0.7 (the same
acc_iou50/70 as ``platelab``'s metrics), in original-photo pixels.

    python benchmarks/haar_baseline.py [--real ../shared/data/real]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from platelab.data.sources.ccpd import read_ccpd
from platelab.data.sources.voc import read_voc
from platelab.eval.metrics import best_ious, localization_metrics

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CASCADE = "haarcascade_russian_plate_number.xml"


def largest_detection(cascade: cv2.CascadeClassifier, path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:  # unreadable: no detection, reported, the rest goes on
        print(f"skipped unreadable {path}")
        return np.zeros(4)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3)
    if len(found) == 0:
        return np.zeros(4)  # no detection: an empty box, IoU 0
    x, y, w, h = max(found, key=lambda r: r[2] * r[3])
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path, default=REAL)
    args = p.parse_args()
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / CASCADE))
    if cascade.empty():
        raise SystemExit(f"{CASCADE} not found in {cv2.data.haarcascades}")
    print(f"{'real set':<12}{'images':>8}{'acc_iou50':>11}{'acc_iou70':>11}{'mean_iou':>10}")
    for name, reader in (("kaggle_voc", read_voc), ("ccpd_base", read_ccpd)):
        records, _ = reader(args.real / name)
        preds = np.stack([largest_detection(cascade, r.path) for r in records])
        gts = [np.array([pl.box_xyxy for pl in r.plates]).reshape(-1, 4) for r in records]
        ious = best_ious(preds, gts)
        m = localization_metrics(ious, np.array([len(g) > 0 for g in gts]))
        print(
            f"{name:<12}{len(records):>8}{m['acc_iou50']:>11.3f}{m['acc_iou70']:>11.3f}"
            f"{m['mean_iou']:>10.3f}"
        )


if __name__ == "__main__":
    main()
