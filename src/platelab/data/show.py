"""``platelab data show``: a grid picture of samples with their boxes and corners."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from platelab.data.imageio import read_image
from platelab.data.manifest import ManifestImage, load_split
from platelab.errors import PlatelabError

PICTURE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
BOX_COLOUR = (0, 255, 0)
CORNER_COLOUR = (255, 64, 255)


def draw_sample(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    corners: np.ndarray | None = None,
    texts: list[str] | None = None,
    colour=BOX_COLOUR,
) -> np.ndarray:
    """Draw ``(N, 4)`` boxes (and ``(N, 4, 2)`` corners, NaN = unknown) on a copy of an RGB image.

    Corner 1 (top-left) is drawn as a filled dot so a wrong corner order shows.
    """
    out = np.ascontiguousarray(image.copy())
    thick = max(1, round(min(out.shape[:2]) / 240))
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes_xyxy).reshape(-1, 4)):
        cv2.rectangle(out, (round(x0), round(y0)), (round(x1), round(y1)), colour, thick)
        if corners is not None and not np.isnan(corners[i]).any():
            pts = np.round(corners[i]).astype(np.int32)
            cv2.polylines(out, [pts], True, CORNER_COLOUR, thick)
            cv2.circle(out, tuple(int(v) for v in pts[0]), thick + 2, CORNER_COLOUR, -1)
        if texts and texts[i]:
            # OpenCV's Hershey fonts have no CJK glyphs: show the ASCII part only.
            label = texts[i].encode("ascii", "replace").decode()
            cv2.putText(
                out,
                label,
                (round(x0), max(12, round(y0) - 4)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4 * thick,
                colour,
                thick,
                cv2.LINE_AA,
            )
    return out


def make_grid(tiles: list[np.ndarray], columns: int | None = None, gap: int = 4) -> np.ndarray:
    """Tile equally sized ``(H, W, 3)`` images into one picture, row by row."""
    if not tiles:
        raise ValueError("no tiles")
    h, w = tiles[0].shape[:2]
    cols = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        grid[y : y + h, x : x + w] = tile
    return grid


def show(
    dataset: Path,
    split: str = "train",
    augment: bool = False,
    n: int = 16,
    out: Path = Path("grid.png"),
    seed: int = 0,
    tile_width: int = 320,
) -> Path:
    """Write a grid of ``n`` random samples of ``split`` with their boxes to ``out``.

    Raises:
        PlatelabError: ``out`` is not a ``.png``/``.jpg``/``.jpeg``/``.webp`` file name,
            the split is empty, or ``n`` is not positive.
    """
    out = Path(out)
    if out.suffix.lower() not in PICTURE_EXTS:
        raise PlatelabError(
            f"--out {out}: a picture needs one of the extensions {', '.join(PICTURE_EXTS)}"
        )
    images = load_split(dataset, split)
    if not images:
        raise PlatelabError(f"{dataset}: split {split!r} has no images")
    if n <= 0:
        raise PlatelabError(f"--n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    chosen: list[ManifestImage] = [
        images[i] for i in rng.choice(len(images), min(n, len(images)), replace=False)
    ]
    aug = None
    if augment:
        from platelab.data.augment import AugmentConfig, build_augment

        lb = chosen[0].letterbox
        aug = build_augment(AugmentConfig(), lb.canvas_w, lb.canvas_h, seed=seed)
    tiles = []
    for m in chosen:
        image = read_image(Path(dataset) / m.image)
        boxes, corners, texts = m.boxes_xyxy, m.corners, m.texts
        if aug is not None:
            r = aug.transform(image, boxes, corners)
            image, boxes, corners = r.image, r.boxes_xyxy, r.corners
            texts = [texts[k] for k in r.kept]  # the texts of the plates that survived
        tile = draw_sample(image, boxes, corners, texts)
        scale = tile_width / tile.shape[1]
        tiles.append(
            cv2.resize(
                tile, (tile_width, round(tile.shape[0] * scale)), interpolation=cv2.INTER_AREA
            )
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(make_grid(tiles), cv2.COLOR_RGB2BGR)):
        raise PlatelabError(f"could not write {out}")
    return out
