"""The README's pictures of the shipped weights, made again after new weights ship.

* ``docs/images/reader_demo.jpg``: :class:`platelab.PlateReader` with the shipped
  weights on the 4 demo photos (``platelab/assets/demo``) and 2 synthetic test scenes
  (``read_e2e.py``'s set, seed 90210: the first two with a plate at least 48 px
  wide, chosen by their truth, not by how they were read), each cut to a square
  around its plates.
* ``docs/images/detect_kaggle_worst.jpg``: the worst-photo gallery that
  ``detect_transfer.py`` wrote for the Kaggle photos (``--run``).

    python benchmarks/pictures.py --run runs/detect_transfer
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from platelab.data.imageio import read_image
from platelab.data.synth.scenes import render_scene
from platelab.infer.read_run import draw_readings
from platelab.infer.reader import PlateReader

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "platelab" / "assets" / "demo"
IMAGES = ROOT / "docs" / "images"
TILE = 400


def synthetic_scenes(count: int = 2, seed: int = 90210, min_width: float = 48.0) -> list:
    """The first ``count`` scenes of the end-to-end test set with a plate ``min_width`` wide."""
    out, i = [], 0
    while len(out) < count:
        scene = render_scene((seed, i))
        if any(p.box_xyxy[2] - p.box_xyxy[0] >= min_width for p in scene.plates):
            out.append(scene.image)
        i += 1
    return out


def square_around(image: np.ndarray, boxes: list) -> np.ndarray:
    """A ``TILE`` x ``TILE`` cut centred on ``boxes`` (the whole middle when there are none)."""
    h, w = image.shape[:2]
    if boxes:
        b = np.asarray(boxes, np.float64)
        x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
        side = min(h, w, max(TILE, 2.5 * (x1 - x0)))
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    else:
        side, cx, cy = min(h, w), w / 2, h / 2
    side = int(side)
    left = int(np.clip(cx - side / 2, 0, w - side))
    top = int(np.clip(cy - side / 2, 0, h - side))
    return cv2.resize(image[top : top + side, left : left + side], (TILE, TILE),
                      interpolation=cv2.INTER_AREA)  # fmt: skip


def reader_demo(out: Path) -> None:
    reader = PlateReader(runtime="torch")
    photos = [read_image(p) for p in sorted(DEMO.glob("*.jpg"))] + synthetic_scenes()
    tiles = []
    for image in photos:
        result = reader(image)
        drawn = draw_readings(image, result)
        tiles.append(square_around(drawn, [p.box_xyxy for p in result.plates]))
        print(", ".join(f"{p.text} {p.text_score:.2f}" for p in result.plates) or "(none)")
    rows = [np.concatenate(tiles[k : k + 3], axis=1) for k in range(0, len(tiles), 3)]
    grid = np.concatenate(rows, axis=0)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="a detect_transfer.py output folder")
    p.add_argument("--out", type=Path, default=IMAGES)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    reader_demo(args.out / "reader_demo.jpg")
    if args.run:
        gallery = cv2.imread(str(args.run / "eval_kaggle_voc" / "worst.png"))
        if gallery is None:
            raise SystemExit(f"no gallery at {args.run / 'eval_kaggle_voc' / 'worst.png'}")
        out = args.out / "detect_kaggle_worst.jpg"
        cv2.imwrite(str(out), gallery, [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
