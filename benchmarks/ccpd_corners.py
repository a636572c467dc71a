"""Where do CCPD's corner annotations sit, and how far are a detector's corners from them?

The corner target of ``task=detect`` (mean corner error on ccpd_base) compares the
detector's corners with CCPD's four vertices. The synthetic scenes put a plate's
corners on the plate's own outer edge (:mod:`platelab.data.synth.scenes`). This
script measures both conventions on the real ccpd_base photos, so the corner error
can be split into the detector's error and the gap between the two conventions:

* **annotated**: CCPD's vertices (from the file name);
* **plate edge**: the blue plate's outer edge, measured from the photo: the blue
  pixels (HSV) around the annotated quad, closed over the characters and the white
  border line, the largest blob's outline split into its 4 sides, a straight line
  fitted to the middle 70% of each side (real plates have rounded corners), and the
  sides' intersections as corners. JPEG's 2x2 chroma makes this good to about 1 px;
* **detector**: the detector's corners for the plate (the best-IoU detection), once
  from the photo and once after :class:`~platelab.infer.reader.PlateReader`'s second
  look;
* **corner model**: the reader's corner stage after the second look
  (:mod:`platelab.models.corner_refiner`, the shipped one unless ``--corner-model``).

It prints the mean corner distance (photo pixels) between each pair, the annotated
quad's outward offset per side from the plate edge, the floor for any one convention
(the measured plate edge with every side moved out by the one margin, a share of the
plate's width, that comes closest to the annotation on these photos; and with each
photo's own best margin), and draws each plate's corner regions: annotated (red), plate edge (cyan), detector after the second look (yellow),
corner model (green).

    python benchmarks/ccpd_corners.py --out runs/ccpd_corners
    python benchmarks/ccpd_corners.py --detector runs/detect/best_model_epoch_20.pth

Only measurement: nothing here is fed back into training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.ops import box_iou

from platelab.data.imageio import read_image
from platelab.data.sources.ccpd import parse_ccpd_name
from platelab.errors import PlatelabError, one_line
from platelab.geometry import corners_to_xyxy
from platelab.infer.reader import PlateReader

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
BLUE_HUE = (95, 135)  # OpenCV hue (0-180) of blue plates
SIDE_KEEP = 0.7  # the middle share of each side the edge lines are fitted to
MARGINS = np.linspace(0.0, 0.1, 101)  # the oracle's margins, shares of the plate's width


def order_tl_tr_br_bl(pts: np.ndarray) -> np.ndarray:
    """4 points in any order -> TL, TR, BR, BL (by angle around their centroid)."""
    c = pts.mean(axis=0)
    ang = np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0])
    p = pts[np.argsort(ang)]  # from -pi: TL, TR, BR, BL for a roughly level quad
    start = int(np.argmin(p.sum(axis=1)))
    return np.roll(p, -start, axis=0)


def plate_edge_quad(rgb: np.ndarray, annotated: np.ndarray) -> np.ndarray | None:
    """The blue plate's outer-edge corners (TL, TR, BR, BL, photo pixels) near ``annotated``,
    or None when no plate-shaped blue blob is there."""
    h, w = rgb.shape[:2]
    pw = float(np.ptp(annotated[:, 0]))
    m = int(0.15 * pw) + 4
    x0, y0 = max(0, int(annotated[:, 0].min()) - m), max(0, int(annotated[:, 1].min()) - m)
    x1, y1 = min(w, int(annotated[:, 0].max()) + m), min(h, int(annotated[:, 1].max()) + m)
    hsv = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2HSV)
    # The plate's own blue, from a band across its middle (photos differ in exposure):
    # pixels within 12 hue steps of it and at least half as saturated and bright.
    cx, cy = (annotated.mean(axis=0) - [x0, y0]).astype(int)
    band = hsv[max(0, cy - 4) : cy + 5, max(0, cx - int(pw / 3)) : cx + int(pw / 3)].reshape(-1, 3)
    band = band[(band[:, 0] >= BLUE_HUE[0]) & (band[:, 0] <= BLUE_HUE[1])]
    if len(band) < 20:
        return None
    hue, sat, val = np.median(band, axis=0)
    blue = cv2.inRange(hsv, (int(hue) - 12, int(sat / 2), int(val / 2)), (int(hue) + 12, 255, 255))
    k = max(3, int(0.04 * pw) | 1)
    blue = cv2.morphologyEx(
        blue, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    )
    contours, _ = cv2.findContours(blue, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    inside = [c for c in contours if cv2.pointPolygonTest(c, (float(cx), float(cy)), False) >= 0]
    contour = max(inside or contours, key=cv2.contourArea)[:, 0, :].astype(np.float64)
    hull = cv2.convexHull(contour.astype(np.float32))
    eps, approx = 0.01, None
    while eps < 0.2:
        a = cv2.approxPolyDP(hull, eps * cv2.arcLength(hull, True), True)
        if len(a) == 4:
            approx = a[:, 0, :].astype(np.float64)
            break
        eps *= 1.25
    if approx is None:
        return None
    rough = order_tl_tr_br_bl(approx)
    lines = []
    for i in range(4):
        a, b = rough[i], rough[(i + 1) % 4]
        d = b - a
        length = float(np.hypot(*d))
        t = ((contour - a) @ d) / length**2  # position along the side, 0..1
        normal = np.abs((contour - a) @ np.array([-d[1], d[0]]) / length)
        lo = (1 - SIDE_KEEP) / 2
        pts = contour[(t > lo) & (t < 1 - lo) & (normal < 0.08 * length + 3)]
        if len(pts) < 5:
            return None
        vx, vy, px, py = cv2.fitLine(pts.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([px, py]), np.array([vx, vy])))
    return meet(lines) + [x0, y0]  # pixel indices, as the annotation's (cv2's centres)


def meet(lines: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The corners of 4 sides given as (point, direction) lines: corner i is where side
    i-1 (ending there) meets side i (starting there)."""
    quad = []
    for i in range(4):
        (p1, v1), (p2, v2) = lines[i - 1], lines[i]
        s = np.linalg.solve(np.stack([v1, -v2], axis=1), p2 - p1)
        quad.append(p1 + s[0] * v1)
    return np.asarray(quad)


def sides(quad: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per side (top, right, bottom, left) of a TL, TR, BR, BL quad: its start point, unit
    direction and unit outward normal (pointing away from the quad's centre)."""
    c = quad.mean(axis=0)
    out = []
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        d = (b - a) / np.hypot(*(b - a))
        n = np.array([d[1], -d[0]])
        out.append((a, d, n if (a - c) @ n >= 0 else -n))
    return out


def outward_offsets(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Per side (top, right, bottom, left): how far ``outer``'s side midpoint lies outside
    ``inner``'s side line, along the inner side's outward normal (pixels)."""
    mids = (outer + np.roll(outer, -1, axis=0)) / 2
    return np.array([float((m - a) @ n) for m, (a, _, n) in zip(mids, sides(inner), strict=True)])


def grow_quad(quad: np.ndarray, margins) -> np.ndarray:
    """``quad`` (TL, TR, BR, BL) with each side (top, right, bottom, left) moved outward
    by its margin (pixels; negative moves it in), the new corners where the moved sides meet."""
    margins = np.broadcast_to(np.asarray(margins, dtype=np.float64), (4,))
    return meet([(a + m * n, d) for m, (a, d, n) in zip(margins, sides(quad), strict=True)])


def convention_floor(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """How close corners that follow one convention can come to the annotation: each
    (annotated, plate edge) pair's edge grown by a margin of ``MARGINS`` x the plate's
    width, the one margin best over all pairs, and the best margin per pair (an oracle
    fitted to the photos it is scored on: a floor, not a method)."""
    errs = np.array([[corner_err(ann, grow_quad(edge, f * np.ptp(edge[:, 0]))) for f in MARGINS]
                     for ann, edge in pairs])  # fmt: skip
    best = int(errs.mean(axis=0).argmin())
    per_photo = errs.min(axis=1)
    return {"one_margin_px": float(errs[:, best].mean()), "one_margin_share": float(MARGINS[best]),
            "per_photo_margin_px": float(per_photo.mean()),
            "per_photo_margin_range_px": [float(per_photo.min()), float(per_photo.max())]}  # fmt: skip


def corner_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=1).mean())


def best_match(plates, annotated: np.ndarray):
    """The detected plate whose box overlaps the annotated quad's box most (None if none)."""
    if not plates:
        return None
    ious = box_iou(torch.tensor([p.box_xyxy for p in plates]),
                   torch.from_numpy(corners_to_xyxy(annotated)).float())[:, 0]  # fmt: skip
    return plates[int(ious.argmax())] if ious.max() > 0 else None


def draw(rgb: np.ndarray, quads: dict[str, np.ndarray], zoom: int = 2) -> Image.Image:
    """The plate's crop, ``zoom`` times, with each quad's outline in its colour."""
    colours = {"annotated": (255, 40, 40), "plate edge": (0, 230, 255),
               "detector": (255, 230, 0), "corner model": (60, 255, 60)}  # fmt: skip
    allq = np.concatenate(list(quads.values()))
    m = 12
    x0, y0 = np.floor(allq.min(axis=0)).astype(int) - m
    x1, y1 = np.ceil(allq.max(axis=0)).astype(int) + m
    x0, y0 = max(0, x0), max(0, y0)
    crop = Image.fromarray(rgb[y0:y1, x0:x1]).resize(((x1 - x0) * zoom, (y1 - y0) * zoom),
                                                     Image.NEAREST)  # fmt: skip
    d = ImageDraw.Draw(crop)
    for name, q in quads.items():
        pts = [((x - x0 + 0.5) * zoom, (y - y0 + 0.5) * zoom) for x, y in q]
        d.line(pts + pts[:1], fill=colours[name], width=2)
    return crop


def sheet_of(tiles: list[Image.Image], columns: int = 2, gap: int = 4) -> Image.Image:
    """The tiles in rows of ``columns`` (columns as wide as their widest tile)."""
    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    widths = [max(r[c].width for r in rows if c < len(r)) for c in range(min(columns, len(tiles)))]
    heights = [max(t.height for t in r) for r in rows]
    sheet = Image.new("RGB", (sum(widths) + gap * (len(widths) - 1),
                              sum(heights) + gap * (len(rows) - 1)), "white")  # fmt: skip
    y = 0
    for r, h in zip(rows, heights, strict=True):
        for c, t in enumerate(r):
            sheet.paste(t, (sum(widths[:c]) + gap * c, y))
        y += h + gap
    return sheet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path, default=REAL)
    p.add_argument("--detector", default=None, help="a detector (default: the shipped weights)")
    p.add_argument("--out", type=Path, default=Path("runs/ccpd_corners"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--corner-model", default=None, help="the corner stage (default: shipped)")
    args = p.parse_args(argv)
    photos = sorted((args.real / "ccpd_base").glob("*.jpg"))
    if not photos:
        print(f"error: no ccpd_base photos under {args.real}", file=sys.stderr)
        return 2
    reader = PlateReader(args.detector, threads=args.threads, corner_model=args.corner_model)
    rows, tiles, pairs = [], [], []
    for path in photos:
        rgb = read_image(path)
        annotated = np.asarray(parse_ccpd_name(path.name).corners, dtype=np.float64)
        edge = plate_edge_quad(rgb, annotated)
        first = reader.detector.predict([rgb])[0]
        second = reader.refine_all([rgb], [first])[0]
        third = reader.refine_corners([rgb], [second])[0]
        row = {"photo": path.name, "plate_width_px": round(float(np.ptp(annotated[:, 0])), 1)}
        quads = {"annotated": annotated}
        if edge is not None:
            pairs.append((annotated, edge))
            quads["plate edge"] = edge
            row["annotated_vs_edge_px"] = corner_err(annotated, edge)
            row["annotated_outward_px"] = [round(v, 1) for v in outward_offsets(annotated, edge)]
        for name, det in (("first", first), ("second", second), ("model", third)):
            match = best_match(det.plates, annotated)
            if match is None:
                continue
            q = match.quad().astype(np.float64)
            row[f"{name}_vs_annotated_px"] = corner_err(q, annotated)
            if edge is not None:
                row[f"{name}_vs_edge_px"] = corner_err(q, edge)
            if name in ("second", "model"):
                quads["detector" if name == "second" else "corner model"] = q
        rows.append(row)
        tiles.append(draw(rgb, quads))
    args.out.mkdir(parents=True, exist_ok=True)
    keys = ("annotated_vs_edge_px", "first_vs_annotated_px", "first_vs_edge_px",
            "second_vs_annotated_px", "second_vs_edge_px", "model_vs_annotated_px",
            "model_vs_edge_px")  # fmt: skip
    summary = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys
               if any(k in r for r in rows)}  # fmt: skip
    sides = np.array([r["annotated_outward_px"] for r in rows if "annotated_outward_px" in r])
    if len(sides):
        summary["annotated_outward_px_top_right_bottom_left"] = [
            round(float(v), 1) for v in sides.mean(axis=0)
        ]
    if pairs:
        summary["convention_floor"] = convention_floor(pairs)
    summary["n_plates"] = len(rows)
    summary["n_plate_edges"] = int(sum("annotated_vs_edge_px" in r for r in rows))
    (args.out / "corners.json").write_text(json.dumps({"summary": summary, "plates": rows},
                                                      indent=2))  # fmt: skip
    sheet_of(tiles).save(args.out / "corners.jpg", quality=90)
    heads = ("ann-edge", "det-ann", "det-edge", "look2-ann", "look2-edge", "model-ann",
             "model-edge")  # fmt: skip
    print(f"{'photo':<28} {'width':>6} " + " ".join(f"{h:>10}" for h in heads))
    for r in rows:
        cells = " ".join(f"{r.get(k, float('nan')):>10.1f}" for k in keys)
        print(f"{r['photo'][:28]:<28} {r['plate_width_px']:>6.0f} {cells}")
    print("mean corner distance (photo px):",
          ", ".join(f"{k} {v:.1f}" for k, v in summary.items() if isinstance(v, float)))  # fmt: skip
    if len(sides):
        print("annotated quad outside the plate edge, per side (top, right, bottom, left):",
              summary["annotated_outward_px_top_right_bottom_left"])  # fmt: skip
    if pairs:
        floor = summary["convention_floor"]
        print(
            f"plate edge grown by one margin ({floor['one_margin_share']:.1%} of the width, "
            f"fitted here) vs annotated: {floor['one_margin_px']:.1f} px; by each photo's "
            f"own best margin: {floor['per_photo_margin_px']:.1f} px "
            "({:.1f} to {:.1f} per photo)".format(*floor["per_photo_margin_range_px"])
        )
    print(f"wrote {args.out / 'corners.json'} and {args.out / 'corners.jpg'}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except PlatelabError as e:  # a missing or wrong --detector: one line, exit 2
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        raise SystemExit(2) from None
