"""The gallery of ``platelab eval``: the worst cases drawn on their letterboxed images.

Each tile is a canvas image as it is on disk (``DATASET/images``), scaled to
``tile_width``, with the ground truth in green, the prediction in red, and
``IoU 0.43 / p 0.91`` (or ``negative / p 0.91``) written on it. The predicted box
comes from the record's original-pixel box, mapped forward through the image's own
:class:`~platelab.geometry.Letterbox`: the tile shows the clipped box that was scored.

A detector's tiles (:func:`write_detection_gallery`) show every plate (green box, its
corners as a green outline when known), every detection at or above the deployment
threshold (red box, its corners as a magenta outline with a dot on the top-left one,
its score above it), and ``miss 1/3 | top IoU 0.43 | p 0.91`` (plates missed at IoU
0.5, the best-scored detection's IoU and score; ``negative | fp 2 | p 0.91`` on an
image without plates) over ``fp N | <file name>`` (``fp N``: detections that match
no plate, on a plate image).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
PRED_CORNER_COLOUR = (255, 0, 255)
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


def _band(tile_width: int, lines: list[str]) -> tuple[int, int, int, int, float]:
    """``(width, height, step, base, scale)`` of :func:`_label`'s band for ``lines``."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, tile_width / 640), 1
    (_, th), base = cv2.getTextSize("Ag", font, scale, thick)
    step = th + base + 3
    width = max(cv2.getTextSize(t, font, scale, thick)[0][0] for t in lines) + 6
    return width, step * len(lines) + 2, step, base, scale


def _label(tile: np.ndarray, lines: list[str]) -> None:
    """Write ``lines`` top-left on ``tile`` in white over a dark band (in place)."""
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, 1
    width, height, step, base, scale = _band(tile.shape[1], lines)
    cv2.rectangle(tile, (0, 0), (width, height), (0, 0, 0), -1)
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
    return _write_tiles(dataset, images, select_worst(records, n), draw_case, out, tile_width)


def _write_tiles(
    dataset: Path,
    images: list[ManifestImage],
    chosen: list[dict[str, Any]],
    draw: Callable[..., np.ndarray],
    out: Path,
    tile_width: int,
) -> Path | None:
    """Draw each ``chosen`` record's tile with ``draw`` and write the grid as PNG at ``out``."""
    tiles = []
    for record in chosen:
        m = images[record["index"]]
        try:
            image = read_image(Path(dataset) / m.image)
        except (OSError, ValueError) as err:  # evaluated a moment ago; gone since
            log.warning("gallery: skipping unreadable image %s: %s", m.image, err)
            continue
        tiles.append(draw(image, m, record, tile_width))
    if not tiles:
        return None
    ok, png = cv2.imencode(".png", cv2.cvtColor(make_grid(tiles), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("cv2 could not encode the gallery as PNG")
    atomic_write_bytes(out, png.tobytes())
    return Path(out)


# -- detector ------------------------------------------------------------------------
def _deploy_threshold() -> float:
    from platelab.tasks.detect import SCORE_THRESHOLD

    return SCORE_THRESHOLD


def detection_badness(record: dict[str, Any], score_thr: float | None = None) -> float | None:
    """How wrong one image's detections are, in ``[0, 1]``, or None when it is no error case.

    Args:
        record: an :func:`~platelab.eval.evaluate_detect.image_record`.
        score_thr: the deployment threshold (None: the detector's).

    A plate image: the largest of the share of its plates missed, ``1 - top_iou`` and
    the score of its most confident false positive (every plate image ranks). A
    negative: its most confident detection's score when it reaches ``score_thr``.
    """
    thr = _deploy_threshold() if score_thr is None else score_thr
    fp = [s for s, t in zip(record["scores"], record["tp"], strict=True) if t == 0]
    worst_fp = float(max(fp, default=0.0))
    if record["plates"] > 0:
        return max(record["misses"] / record["plates"], 1.0 - record["top_iou"], worst_fp)
    return record["max_score"] if record["max_score"] >= thr else None


def select_worst_detections(
    records: list[dict[str, Any]], n: int, score_thr: float | None = None
) -> list[dict[str, Any]]:
    """The ``n`` records of highest :func:`detection_badness`, worst first (manifest order on ties)."""
    ranked = [
        (b, k) for k, r in enumerate(records) if (b := detection_badness(r, score_thr)) is not None
    ]
    ranked.sort(key=lambda bk: (-bk[0], bk[1]))
    return [records[k] for _, k in ranked[: max(n, 0)]]


def detection_caption(record: dict[str, Any]) -> str:
    """``miss 1/3 | top IoU 0.43 | p 0.91``; ``negative | fp 2 | p 0.91`` on an image
    without plates (``p``: the best-scored detection's score)."""
    p = f"p {record['max_score']:.2f}" if len(record["scores"]) else "no detection"
    if record["plates"] == 0:
        return f"negative | fp {record['fp']} | {p}"
    return f"miss {record['misses']}/{record['plates']} | top IoU {record['top_iou']:.2f} | {p}"


def _fit(text: str, tile_width: int) -> str:
    """``text``, its middle cut out (``..``) until it fits :func:`_label`'s band."""
    while len(text) > 8 and _band(tile_width, [text])[0] > tile_width:
        half = len(text) // 2
        text = text[: half - 2] + ".." + text[half + 1 :].removeprefix(".")
    return text


def _polygon(tile: np.ndarray, quad: np.ndarray, colour, thick: int, dot: bool) -> None:
    if np.isnan(quad).any():
        return
    pts = np.round(quad).astype(np.int32)
    cv2.polylines(tile, [pts], True, colour, thick, cv2.LINE_AA)
    if dot:  # the top-left corner: a wrong corner order shows
        cv2.circle(tile, (int(pts[0, 0]), int(pts[0, 1])), thick + 2, colour, -1)


def draw_detection_case(
    image: np.ndarray,
    m: ManifestImage,
    record: dict[str, Any],
    tile_width: int = 320,
    score_thr: float | None = None,
) -> np.ndarray:
    """One detector tile: ``image`` (the ``(H, W, 3)`` RGB canvas of ``m``) scaled to ``tile_width``.

    Args:
        m: the manifest entry (its letterbox maps the record's photo pixels forward).
        record: its :func:`~platelab.eval.evaluate_detect.image_record` (boxes and
            corners in original pixels, by descending score).
        score_thr: detections below it are not drawn (None: the deployment threshold).
    """
    thr = _deploy_threshold() if score_thr is None else score_thr
    f = tile_width / image.shape[1]
    tile = cv2.resize(image, (tile_width, round(image.shape[0] * f)), interpolation=cv2.INTER_AREA)
    tile = np.ascontiguousarray(tile)
    lb, thick = m.letterbox, max(1, round(tile_width / 320))
    gt_boxes = lb.boxes_to_canvas(record["gt_boxes_xyxy"]) * f
    gt_quads = lb.points_to_canvas(record["gt_corners"]).reshape(-1, 4, 2) * f
    for box, quad in zip(gt_boxes, gt_quads, strict=True):
        x0, y0, x1, y1 = np.round(box).astype(int).tolist()
        cv2.rectangle(tile, (x0, y0), (x1, y1), TRUTH_COLOUR, thick)
        _polygon(tile, quad, TRUTH_COLOUR, thick, dot=False)
    keep = record["scores"] >= thr
    boxes = lb.boxes_to_canvas(record["boxes_xyxy"][keep]) * f
    quads = lb.points_to_canvas(record["corners"][keep]).reshape(-1, 4, 2) * f
    name = (f"fp {record['fp']} | " if record["plates"] and record["fp"] else "") + Path(
        m.image
    ).name
    lines = [_fit(detection_caption(record), tile_width), _fit(name, tile_width)]
    band_w, band_h = _band(tile_width, lines)[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, tile_width / 800)
    for box, quad, score in zip(boxes, quads, record["scores"][keep], strict=True):
        x0, y0, x1, y1 = np.round(box).astype(int).tolist()
        cv2.rectangle(tile, (x0, y0), (x1, y1), PRED_COLOUR, thick)
        _polygon(tile, quad, PRED_CORNER_COLOUR, thick, dot=True)
        text = f"{score:.2f}"
        (tw, th), base = cv2.getTextSize(text, font, scale, 1)
        ty = y0 - 2  # the score above the box; below it where the caption or the edge is
        if ty - th - base < 0 or (x0 < band_w and ty - th - base < band_h):
            ty = y1 + th + base + 1
        cv2.rectangle(tile, (x0, ty - th - base), (x0 + tw + 2, ty + 1), (0, 0, 0), -1)
        cv2.putText(
            tile, text, (x0 + 1, ty - base + 1), font, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    _label(tile, lines)
    return tile


def write_detection_gallery(
    dataset: Path,
    images: list[ManifestImage],
    records: list[dict[str, Any]],
    out: Path,
    n: int = 16,
    tile_width: int = 320,
) -> Path | None:
    """:func:`write_gallery` for a detector: the ``n`` worst images
    (:func:`select_worst_detections`) drawn with :func:`draw_detection_case`.

    Returns:
        ``out``, or None when there is nothing to show (no plate image, no negative with
        a detection at the deployment threshold, or ``n <= 0``); then nothing is written.
    """
    chosen = select_worst_detections(records, n)
    return _write_tiles(dataset, images, chosen, draw_detection_case, out, tile_width)
