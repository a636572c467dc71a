"""The gallery of ``platelab eval``: the worst cases drawn on their letterboxed images.

Each tile is a canvas image as it is on disk (``DATASET/images``), scaled to
``tile_width``, with the ground truth in green, the prediction in red, and
``IoU 0.43 / p 0.91`` (or ``negative / p 0.91``) written on it. The predicted box
comes from the record's original-pixel box, mapped forward through the image's own
:class:`~platelab.geometry.Letterbox`: the tile shows the clipped box that was scored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from platelab.atomic import atomic_write_bytes
from platelab.data.imageio import read_image
from platelab.data.manifest import ManifestImage
from platelab.data.show import draw_sample, make_grid

log = logging.getLogger(__name__)

TRUTH_COLOUR = (0, 255, 0)  # RGB
PRED_COLOUR = (255, 0, 0)
PRED_KEYS = ("pred_x_min", "pred_y_min", "pred_x_max", "pred_y_max")

# A confident box on a negative is an error as bad as its score; below the
# detection threshold it is no error at all (the same 0.5 as the metrics).
SCORE_THR = 0.5


def badness(record: dict[str, Any]) -> float | None:
    """How wrong one image's prediction is, in ``[0, 1]``, or None when it is not an error case.

    A plate image: ``1 - iou`` (every plate image ranks, the worst first). A negative:
    its score when ``score >= 0.5`` (a false positive), else None.
    """
    if record["plates"] > 0:
        return 1.0 - float(record["iou"])
    return float(record["score"]) if record["score"] >= SCORE_THR else None


def select_worst(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` records of highest :func:`badness`, worst first (manifest order on ties)."""
    ranked = [(b, k) for k, r in enumerate(records) if (b := badness(r)) is not None]
    ranked.sort(key=lambda bk: (-bk[0], bk[1]))
    return [records[k] for _, k in ranked[: max(n, 0)]]


def _label(tile: np.ndarray, lines: list[str]) -> None:
    """Write ``lines`` top-left on ``tile`` in white over a dark band (in place)."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, tile.shape[1] / 640), 1
    (_, th), base = cv2.getTextSize("Ag", font, scale, thick)
    step = th + base + 3
    width = max(cv2.getTextSize(t, font, scale, thick)[0][0] for t in lines) + 6
    cv2.rectangle(tile, (0, 0), (width, step * len(lines) + 2), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        y = step * (i + 1) - base
        cv2.putText(tile, text, (3, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)


def draw_case(
    image: np.ndarray, m: ManifestImage, record: dict[str, Any], tile_width: int = 320
) -> np.ndarray:
    """One tile: ``image`` (the ``(H, W, 3)`` RGB canvas) scaled to ``tile_width``, boxes and label.

    Args:
        image: the letterboxed canvas image of ``m``.
        m: its manifest entry (``m.boxes_xyxy`` are the truth in canvas pixels).
        record: its :func:`~platelab.eval.evaluate.evaluate_checkpoint` record (the
            predicted box ``pred_*`` in original pixels, ``iou``, ``score``).
    """
    f = tile_width / image.shape[1]
    tile = cv2.resize(image, (tile_width, round(image.shape[0] * f)), interpolation=cv2.INTER_AREA)
    pred_orig = np.array([[record[k] for k in PRED_KEYS]], dtype=np.float64)
    pred_canvas = m.letterbox.boxes_to_canvas(pred_orig)
    tile = draw_sample(tile, np.asarray(m.boxes_xyxy, np.float64) * f, colour=TRUTH_COLOUR)
    tile = draw_sample(tile, pred_canvas * f, colour=PRED_COLOUR)
    score = f"p {record['score']:.2f}"
    first = f"IoU {record['iou']:.2f} / {score}" if record["plates"] else f"negative / {score}"
    _label(tile, [first, Path(m.image).name[:40]])
    return tile


def write_gallery(
    dataset: Path,
    images: list[ManifestImage],
    records: list[dict[str, Any]],
    out: Path,
    n: int = 16,
    tile_width: int = 320,
) -> Path | None:
    """Write the ``n`` worst cases (:func:`select_worst`) as one PNG grid at ``out``.

    Args:
        dataset: the prepared dataset folder (the images are read from it).
        images: the manifest entries the records' ``index`` points into.
        records: one per evaluated image.
        out: the PNG path, written atomically.

    Returns:
        ``out``, or None when there is nothing to show (no plate image, no false
        positive, or ``n <= 0``); then no file is written.
    """
    tiles = []
    for record in select_worst(records, n):
        m = images[record["index"]]
        try:
            image = read_image(Path(dataset) / m.image)
        except (OSError, ValueError) as err:  # evaluated a moment ago; gone since
            log.warning("gallery: skipping unreadable image %s: %s", m.image, err)
            continue
        tiles.append(draw_case(image, m, record, tile_width))
    if not tiles:
        return None
    ok, png = cv2.imencode(".png", cv2.cvtColor(make_grid(tiles), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("cv2 could not encode the gallery as PNG")
    atomic_write_bytes(out, png.tobytes())
    return Path(out)
