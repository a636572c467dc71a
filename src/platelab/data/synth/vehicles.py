"""Procedural cars seen from the front or the back, with a slot where a plate goes.

A car is drawn front-on in its own canvas (``x`` right, ``y`` down, pixels) from
a handful of random proportions: cabin and glass, hood or boot, lights, grille,
bumper, air intake, wheels and a ground shadow. Shading (a vertical gradient, a
sky reflection band, low-frequency noise) keeps panels from looking flat. The
scene later warps the whole canvas with one homography, so the plate slot and
the body move together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from platelab.data.synth import text as T
from platelab.data.synth.textures import noise_texture

CAR_CANVAS_MAX = 1000  # wider cars are drawn smaller and scaled up by their homography

# Words real cars wear beside their plate (make, model, trim, drive): text that is not
# a plate, which a detector must learn to pass over (badges were its false positives).
BADGE_WORDS = ("FUSION", "SEL", "GT", "CIVIC", "SPORT", "4MATIC", "TDI", "HYBRID", "LIMITED",
               "XLE", "320i", "CAMRY", "POLO", "i20", "V6", "AWD", "4x4", "TURBO", "LX", "EX",
               "ACCORD", "COROLLA", "GOLF", "FOCUS", "ELANTRA", "SONATA", "OUTBACK", "RAV4",
               "C 200", "A4", "Q5", "X3", "CR-V", "PRIUS", "TIGUAN", "SWIFT", "DIESEL", "1.6",
               "VTEC", "16V", "GLS", "SE", "S-LINE", "AMG", "QUATTRO", "xDrive", "ECO")  # fmt: skip
# What service cars and vans wear in big letters on the boot or the bonnet: the
# shipped detector's surest false positive on a real photo was POLICE on a boot.
LIVERY_WORDS = ("POLICE", "TAXI", "AMBULANCE", "SECURITY", "FIRE", "RESCUE", "SHERIFF",
                "POLIZEI", "CAB", "DELIVERY", "MEDIC", "PATROL", "PIZZA", "COURIER", "TOW",
                "DRIVING SCHOOL", "RENTAL", "TRAFFIC", "SERVICE", "SCHOOL")  # fmt: skip
BADGE_FONTS = (
    "DejaVuSans-Bold.ttf",
    "BarlowSemiCondensed-SemiBold.ttf",
    "RobotoCondensed-Bold.ttf",
)

# Common car colours (RGB), weighted roughly by how often they are seen on roads.
PAINTS = (
    ((235, 235, 232), 0.22), ((175, 178, 182), 0.17), ((30, 30, 34), 0.17),
    ((95, 98, 104), 0.12), ((150, 25, 30), 0.09), ((25, 55, 120), 0.09),
    ((140, 115, 85), 0.05), ((35, 75, 45), 0.03), ((215, 120, 30), 0.03),
    ((225, 200, 60), 0.03),
)  # fmt: skip


@dataclass
class Vehicle:
    """A car canvas.

    Attributes:
        rgb: ``(h, w, 3)`` uint8.
        alpha: ``(h, w)`` uint8 coverage (the ground shadow is partly transparent).
        slot: ``(4, 2)`` float corners TL, TR, BR, BL of the plate slot, canvas pixels.
        lights: ``(n, 3)`` lamp centres and radii ``x, y, r``, canvas pixels (head
            lights for a front, tail lights for a rear): where the night glows.
        rear: whether this is the back of the car.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    slot: np.ndarray
    lights: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    rear: bool = False


def _paint(rng: np.random.Generator) -> np.ndarray:
    cols = np.array([c for c, _ in PAINTS], np.float32)
    p = np.array([w for _, w in PAINTS])
    base = cols[int(rng.choice(len(cols), p=p / p.sum()))]
    return np.clip(base * rng.uniform(0.85, 1.1) + rng.normal(0, 4, 3), 0, 235)


def _poly(img, pts, color, w: float, h: float) -> None:
    """Fill a polygon given in fractions of the canvas size."""
    p = np.round(np.asarray(pts, np.float64) * [w, h] * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(img, [p], tuple(float(c) for c in np.broadcast_to(color, 3)), cv2.LINE_AA, 4)


def _rrect(img, x0, y0, x1, y1, r, color, w, h) -> None:
    """A rounded rectangle in canvas fractions (``r`` in pixels)."""
    c = tuple(float(v) for v in np.broadcast_to(color, 3))
    X0, Y0, X1, Y1 = int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)
    r = int(max(0, min(r, (X1 - X0) / 2 - 1, (Y1 - Y0) / 2 - 1)))
    cv2.rectangle(img, (X0 + r, Y0), (X1 - r, Y1), c, -1, cv2.LINE_AA)
    cv2.rectangle(img, (X0, Y0 + r), (X1, Y1 - r), c, -1, cv2.LINE_AA)
    for cx, cy in ((X0 + r, Y0 + r), (X1 - r, Y0 + r), (X0 + r, Y1 - r), (X1 - r, Y1 - r)):
        cv2.circle(img, (cx, cy), r, c, -1, cv2.LINE_AA)


def _mirror_x(pts):
    return [(1 - x, y) for x, y in pts]


def draw_vehicle(
    rng: np.random.Generator,
    width_px: int,
    plate_aspect: float,
    plate_frac: float,
    rear: bool,
    livery_p: float = 0.0,
    wrap_p: float = 0.0,
) -> Vehicle:
    """Draw a random car ``width_px`` wide whose plate slot is ``plate_frac`` of that width.

    Args:
        plate_aspect: width / height of the plate that will go into the slot.
        plate_frac: slot width as a fraction of the car width (real plates: ~0.2-0.3).
        rear: draw the back (tail lights, rear window) instead of the front.
        livery_p: chance of a big word on the boot or bonnet (:func:`livery`).
        wrap_p: chance of a patterned wrap over the body (:func:`wrap`).
    """
    w = int(width_px)
    h = int(w * rng.uniform(0.68, 0.92))
    img = np.zeros((h, w, 3), np.float32)
    paint = _paint(rng)
    dark = np.array([22, 22, 25], np.float32) + rng.uniform(0, 18)
    glass = np.array([40, 50, 62], np.float32) * rng.uniform(0.5, 1.4)

    y_roof, y_glass = rng.uniform(0.0, 0.06), rng.uniform(0.3, 0.4)
    y_face, y_bottom = y_glass + rng.uniform(0.05, 0.2), rng.uniform(0.88, 0.93)
    top_w, belt_w = rng.uniform(0.24, 0.32), rng.uniform(0.4, 0.46)
    body = [(0.5 - top_w, y_roof), (0.5 + top_w, y_roof), (0.5 + belt_w, y_glass),
            (0.98, y_face), (0.99, y_bottom), (0.01, y_bottom), (0.02, y_face),
            (0.5 - belt_w, y_glass)]  # fmt: skip
    # Wheels under the body, a soft ground shadow under everything.
    sw, shh = max(8, w // 4), max(8, h // 4)  # blurred at a quarter size: a big sigma is slow
    sh = np.zeros((shh, sw), np.uint8)
    cv2.ellipse(
        sh, (sw // 2, int(shh * 0.985)), (int(sw * 0.52), int(shh * 0.05) + 1), 0, 0, 360, 150, -1
    )
    sh = cv2.GaussianBlur(sh, (0, 0), max(0.5, sw * 0.015))
    alpha = cv2.resize(sh, (w, h), interpolation=cv2.INTER_LINEAR)
    for x0 in (0.07, 0.77):
        _rrect(img, x0, y_bottom - 0.08, x0 + 0.16, 0.99, w * 0.02, dark * 0.6, w, h)
        _rrect(alpha, x0, y_bottom - 0.08, x0 + 0.16, 0.99, w * 0.02, 255, w, h)
    mirror = [
        (0.0, y_glass - 0.06),
        (0.06, y_glass - 0.07),
        (0.07, y_glass),
        (0.01, y_glass + 0.01),
    ]
    for canvas, colour in ((img, paint), (alpha, 255)):
        for pts in (body, mirror, _mirror_x(mirror)):
            _poly(canvas, pts, colour, w, h)
    if rng.random() < wrap_p:
        panels = np.zeros((h, w), np.uint8)
        for pts in (body, mirror, _mirror_x(mirror)):
            _poly(panels, pts, 255, w, h)
        wrap(img, rng, panels > 127)
    # Glass: the windscreen (front) or the smaller rear window.
    gi = rng.uniform(0.02, 0.04)
    glass_pts = [(0.5 - top_w + gi, y_roof + 0.03), (0.5 + top_w - gi, y_roof + 0.03),
                 (0.5 + belt_w - gi, y_glass - 0.01), (0.5 - belt_w + gi, y_glass - 0.01)]  # fmt: skip
    if rear:
        glass_pts[0] = (glass_pts[0][0] + 0.03, glass_pts[0][1] + 0.04)
        glass_pts[1] = (glass_pts[1][0] - 0.03, glass_pts[1][1] + 0.04)
    _poly(img, glass_pts, glass, w, h)
    if rng.random() < 0.7:  # a pale diagonal reflection across the glass
        a, b = rng.uniform(0.2, 0.6), rng.uniform(0.05, 0.15)
        streak = [(a, y_roof + 0.03), (a + b, y_roof + 0.03), (a + b - 0.15, y_glass - 0.01),
                  (a - 0.15, y_glass - 0.01)]  # fmt: skip
        _poly(img, streak, glass + rng.uniform(20, 60), w, h)

    plate_w = plate_frac
    plate_h = plate_frac * w / plate_aspect / h
    if rear:
        lights = _rear_face(img, rng, w, h, y_face, y_bottom, paint, dark)
        plate_cy = rng.uniform(y_face + 0.16, y_face + 0.26)
    else:
        lights = _front_face(img, rng, w, h, y_face, y_bottom, paint, dark)
        plate_cy = rng.uniform(0.66, 0.74)
    plate_cy = min(plate_cy, y_bottom - plate_h / 2 - 0.04)
    x0, x1 = 0.5 - plate_w / 2, 0.5 + plate_w / 2
    y0, y1 = plate_cy - plate_h / 2, plate_cy + plate_h / 2
    # A recess or holder around the plate, wider than the plate.
    m = rng.uniform(0.01, 0.04)
    holder = dark if rng.random() < 0.6 else paint * rng.uniform(0.5, 0.8)
    _rrect(img, x0 - m, y0 - m * 1.5, x1 + m, y1 + m * 1.5, w * 0.01, holder, w, h)
    keep_out = (x0 - m, y0 - m * 1.5, x1 + m, y1 + m * 1.5)
    badges(img, rng, keep_out, plate_h, y_face, y_bottom, paint, rear)
    if rng.random() < livery_p:
        livery(img, rng, keep_out, plate_h, y_glass, y_face, rear)
    _shade(img, rng, w, h, y_glass, alpha)
    slot = np.array([[x0 * w, y0 * h], [x1 * w, y0 * h], [x1 * w, y1 * h], [x0 * w, y1 * h]])
    rgb = cv2.convertScaleAbs(img)  # saturates above 255; nothing drawn is negative
    return Vehicle(rgb, alpha, slot, np.array(lights, np.float64).reshape(-1, 3), rear)


def _between(rng: np.random.Generator, lo: float, hi: float) -> float | None:
    """A uniform draw from ``[lo, hi]``, or None when the range is empty."""
    return float(rng.uniform(lo, hi)) if hi >= lo else None


def _badge_ink(rng: np.random.Generator, paint: np.ndarray) -> np.ndarray:
    """Chrome most often, else black or a shade of the paint."""
    u = rng.random()
    if u < 0.6:
        return np.full(3, rng.uniform(185, 240), np.float32)
    if u < 0.85:
        return np.full(3, rng.uniform(15, 50), np.float32)
    return paint * rng.uniform(0.4, 0.7)


def badges(
    img: np.ndarray,
    rng: np.random.Generator,
    keep_out: tuple[float, float, float, float],
    plate_h: float,
    y_face: float,
    y_bottom: float,
    paint: np.ndarray,
    rear: bool,
) -> list[tuple[float, float, float, float]]:
    """Model and trim names, an emblem, maybe a dealer sticker, in place; none inside
    ``keep_out`` (the plate holder, canvas fractions ``x0, y0, x1, y1``).

    Returns the boxes drawn, canvas fractions ``(x0, y0, x1, y1)``.
    """
    h, w = img.shape[:2]
    kx0, ky0, kx1, ky1 = keep_out
    drawn: list[tuple[float, float, float, float]] = []

    def free(b) -> bool:
        return (b[2] < kx0 or b[0] > kx1 or b[3] < ky0 or b[1] > ky1) and b[0] >= 0 and b[2] <= 1

    # Words: a rear wears one or two (make left, model or trim right); a front seldom.
    for side in (-1, 1):
        if rng.random() > (0.6 if rear else 0.15):
            continue
        word = BADGE_WORDS[int(rng.integers(0, len(BADGE_WORDS)))]
        th = plate_h * rng.uniform(0.25, 0.6)  # text height, fraction of the car height
        tw = th * h / w * len(word) * rng.uniform(0.5, 0.75)
        dx = _between(rng, kx1 - 0.5 + tw / 2 + 0.02, 0.42 - tw / 2)
        cy = _between(rng, y_face + 0.02, ky1) if rear else _between(rng, ky0, y_bottom - 0.08)
        if dx is None or cy is None:
            continue
        cx = 0.5 + side * dx
        b = (cx - tw / 2, cy - th / 2, cx + tw / 2, cy + th / 2)
        if free(b):
            font = T.latin_font(BADGE_FONTS[int(rng.integers(0, len(BADGE_FONTS)))])
            ink = tuple(float(v) for v in _badge_ink(rng, paint))
            T.draw_text_line(img, word, (b[0] * w, b[1] * h, tw * w, th * h), ink, font)
            drawn.append(b)
    # An emblem: a ring, an oval with a letter, or a three-pointed star, above the plate.
    if rng.random() < 0.7:
        r = plate_h * rng.uniform(0.35, 0.7)  # fraction of the car height
        cy = ky0 - r - rng.uniform(0.02, 0.08)
        b = (0.5 - r * h / w * 1.4, cy - r, 0.5 + r * h / w * 1.4, cy + r)
        if free(b) and cy - r > y_face - 0.1:
            ink = tuple(float(v) for v in _badge_ink(rng, paint))
            c, R = (int(w * 0.5), int(cy * h)), max(2, int(r * h))
            t = max(1, R // 5)
            kind = int(rng.integers(0, 3))
            if kind == 0:
                cv2.circle(img, c, R, ink, t, cv2.LINE_AA)
                cv2.line(img, (c[0] - R // 2, c[1]), (c[0] + R // 2, c[1]), ink, t, cv2.LINE_AA)
            elif kind == 1:
                cv2.ellipse(img, c, (int(R * 1.4), R), 0, 0, 360, (20, 40, 110), -1, cv2.LINE_AA)
                cv2.ellipse(img, c, (int(R * 1.4), R), 0, 0, 360, ink, t, cv2.LINE_AA)
                T.draw_text_line(img, "Ford" if rng.random() < 0.5 else "H",
                                 (c[0] - R, c[1] - R * 0.5, 2 * R, R), (235, 235, 235),
                                 T.latin_font(BADGE_FONTS[0]))  # fmt: skip
            else:
                cv2.circle(img, c, R, ink, t, cv2.LINE_AA)
                for a in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6):
                    tip = (int(c[0] + R * np.cos(a)), int(c[1] + R * np.sin(a)))
                    cv2.line(img, c, tip, ink, t, cv2.LINE_AA)
            drawn.append(b)
    # A dealer's sticker on the bumper: a small light rectangle with a line of text.
    if rng.random() < 0.25:
        sh_ = plate_h * rng.uniform(0.3, 0.5)
        sw_ = sh_ * h / w * rng.uniform(3, 6)
        sx = _between(rng, 0.05, 0.95 - sw_)
        sy = _between(rng, ky1 + 0.01, y_bottom - 0.02 - sh_)
        b = (sx or 0, sy or 0, (sx or 0) + sw_, (sy or 0) + sh_)
        if sx is not None and sy is not None and free(b):
            bg = tuple(float(v) for v in rng.uniform(150, 250, 3))
            _rrect(img, *b, 2, bg, w, h)
            word = BADGE_WORDS[int(rng.integers(0, len(BADGE_WORDS)))] + " AUTO"
            T.draw_text_line(img, word, (sx * w + 2, sy * h + sh_ * h * 0.2, sw_ * w - 4,
                                         sh_ * h * 0.6), (30, 30, 60), T.latin_font(BADGE_FONTS[0]))  # fmt: skip
            drawn.append(b)
    return drawn


def livery(
    img: np.ndarray,
    rng: np.random.Generator,
    keep_out: tuple[float, float, float, float],
    plate_h: float,
    y_glass: float,
    y_face: float,
    rear: bool,
) -> tuple[float, float, float, float] | None:
    """A service car's word (POLICE, TAXI, ...) in big letters, in place, above the plate
    holder ``keep_out``: on the boot under the rear window, or on the bonnet. Half the time
    it sits on a band of colour across the body, plain or chequered (Battenburg).

    Returns the word's box in canvas fractions ``(x0, y0, x1, y1)``, or None when no
    room was found.
    """
    h, w = img.shape[:2]
    ky0 = keep_out[1]
    lo = y_glass + 0.01
    hi = ky0 - 0.01 if rear else min(y_face + 0.02, ky0 - 0.01)
    word = LIVERY_WORDS[int(rng.integers(0, len(LIVERY_WORDS)))]
    th = min(plate_h * rng.uniform(0.6, 1.6), (hi - lo) * 0.8)  # so the word fits in lo..hi
    tw = min(th * h / w * len(word) * rng.uniform(0.55, 0.8), 0.8)
    if th * h < 5:  # no room (hi <= lo gives th <= 0), or letters too small to matter
        return None
    cy = float(rng.uniform(lo + th / 2, hi - th / 2))
    b = (0.5 - tw / 2, cy - th / 2, 0.5 + tw / 2, cy + th / 2)
    ink = (235.0, 235.0, 235.0) if rng.random() < 0.5 else (20.0, 30.0, 90.0)
    if rng.random() < 0.5:  # the band: one colour, or squares of two
        by0, by1 = int(round(b[1] * h)) - 2, int(round(b[3] * h)) + 3
        a = tuple(float(v) for v in rng.uniform(0, 255, 3))
        c = tuple(float(v) for v in rng.uniform(0, 255, 3)) if rng.random() < 0.5 else a
        step = max(2, by1 - by0)
        for i, x in enumerate(range(int(0.02 * w), int(0.98 * w), step)):
            cv2.rectangle(img, (x, by0), (min(x + step, int(0.98 * w)) - 1, by1 - 1),
                          a if i % 2 == 0 else c, -1)  # fmt: skip
        ink = (235.0, 235.0, 235.0) if np.mean(a) < 128 else (15.0, 15.0, 20.0)
    font = T.latin_font(BADGE_FONTS[int(rng.integers(0, len(BADGE_FONTS)))])
    T.draw_text_line(img, word, (b[0] * w, b[1] * h, tw * w, th * h), ink, font)
    return b


def wrap(img: np.ndarray, rng: np.random.Generator, body: np.ndarray) -> None:
    """Cover the pixels of ``body`` (a boolean mask) with a high-contrast pattern, in
    place: a test car's black-and-white triangles, camouflage blobs or stripes."""
    h, w = body.shape
    a = np.array(rng.uniform(0, 60, 3) if rng.random() < 0.7 else rng.uniform(0, 255, 3))
    c = np.array(rng.uniform(180, 245, 3) if rng.random() < 0.7 else rng.uniform(0, 255, 3))
    if abs(c.mean() - a.mean()) < 80:  # a loud colour goes with black or white
        c = np.full(3, 20.0 if a.mean() > 128 else 235.0)
    kind = int(rng.integers(0, 3))
    size = max(3.0, w * rng.uniform(0.03, 0.1))
    pattern = np.empty((h, w, 3), np.float32)
    pattern[:] = c
    if kind == 0:  # triangles on a grid, each cell's diagonal one way or the other
        s = int(size)
        for y in range(0, h, s):
            for x in range(0, w, s):
                if rng.random() < 0.5:
                    pts = [(x, y), (x + s, y), (x, y + s)] if rng.random() < 0.5 else [
                        (x + s, y), (x + s, y + s), (x, y + s)]  # fmt: skip
                    cv2.fillPoly(pattern, [np.array(pts, np.int32)], tuple(map(float, a)))
    elif kind == 1:  # camouflage: two thresholded noise layers
        for colour in (a, (a + c) / 2):
            blob = noise_texture(rng, max(8, int(w * 8 / size)), max(8, int(h * 8 / size)), 2)
            blob = cv2.resize(blob, (w, h), interpolation=cv2.INTER_LINEAR)
            pattern[blob > np.quantile(blob, rng.uniform(0.4, 0.7))] = colour
    else:  # stripes at an angle
        ang = rng.uniform(0, np.pi)
        ys, xs = np.mgrid[0:h, 0:w]
        phase = (xs * np.cos(ang) + ys * np.sin(ang)) / size
        pattern[(phase % 1) < 0.5] = a
    img[body] = pattern[body]


def _front_face(img, rng, w, h, y_face, y_bottom, paint, dark) -> None:
    # Headlights: slanted polygons at both sides, bright with a darker inner part.
    ly0, ly1 = y_face + rng.uniform(0.0, 0.03), y_face + rng.uniform(0.09, 0.15)
    lx0, lx1 = rng.uniform(0.04, 0.08), rng.uniform(0.22, 0.3)
    lamp = np.array([215, 218, 220], np.float32) * rng.uniform(0.75, 1.15)
    pts = [(lx0, ly0 + 0.02), (lx1, ly0), (lx1 - 0.02, ly1), (lx0 + 0.02, ly1)]
    lights = []
    for p in (pts, _mirror_x(pts)):
        _poly(img, p, lamp, w, h)
        c = np.mean(p, axis=0)
        cv2.circle(
            img, (int(c[0] * w), int(c[1] * h)), int(w * 0.025), (255, 255, 250), -1, cv2.LINE_AA
        )
        lights.append((c[0] * w, c[1] * h, w * 0.035))
    # Grille between the lights: horizontal bars, vertical bars or a mesh, and a badge.
    gx0 = lx1 + rng.uniform(-0.02, 0.05)
    gy0, gy1 = ly0 + 0.01, ly1 + rng.uniform(0.0, 0.08)
    _rrect(img, gx0, gy0, 1 - gx0, gy1, w * 0.02, dark, w, h)
    bar = tuple(map(float, dark + rng.uniform(40, 160)))
    X0, X1, Y0, Y1 = int(gx0 * w) + 4, int((1 - gx0) * w) - 4, int(gy0 * h) + 3, int(gy1 * h) - 3
    kind, t = rng.integers(0, 3), max(1, int(h * 0.006))
    if kind == 0:
        for y in np.linspace(Y0, Y1, int(rng.integers(3, 8)))[1:-1]:
            cv2.line(img, (X0, int(y)), (X1, int(y)), bar, t, cv2.LINE_AA)
    elif kind == 1:
        for x in np.linspace(X0, X1, int(rng.integers(8, 20)))[1:-1]:
            cv2.line(img, (int(x), Y0), (int(x), Y1), bar, t, cv2.LINE_AA)
    else:
        step = max(3, int(w * rng.uniform(0.012, 0.03)))
        for y in range(Y0 + step // 2, Y1, step):
            for x in range(X0 + (step // 2) * ((y // step) % 2), X1, step):
                cv2.circle(img, (x, y), max(1, step // 4), bar, -1)
    cv2.circle(
        img, (w // 2, int((gy0 + gy1) / 2 * h)), int(w * 0.03), (200, 200, 205), -1, cv2.LINE_AA
    )
    # Bumper crease, lower air intake, fog lights.
    crease = int((gy1 + 0.04) * h)
    cv2.line(img, (int(0.03 * w), crease), (int(0.97 * w), crease), tuple(map(float, paint * 0.7)),
             max(1, int(h * 0.008)), cv2.LINE_AA)  # fmt: skip
    iy0 = y_bottom - rng.uniform(0.06, 0.1)
    _poly(
        img,
        [(0.28, iy0), (0.72, iy0), (0.68, y_bottom - 0.02), (0.32, y_bottom - 0.02)],
        dark,
        w,
        h,
    )
    if rng.random() < 0.6:
        for fx in (0.14, 0.86):
            cv2.circle(img, (int(fx * w), int((iy0 + 0.02) * h)), int(w * 0.025), (200, 200, 190), -1,
                       cv2.LINE_AA)  # fmt: skip
    return lights


def _rear_face(img, rng, w, h, y_face, y_bottom, paint, dark) -> None:
    # Tail lights: red blocks at the sides, sometimes joined by a dark or chrome strip.
    ty0, ty1 = y_face - rng.uniform(0.0, 0.04), y_face + rng.uniform(0.08, 0.14)
    red = np.array([190, 25, 30], np.float32) * rng.uniform(0.7, 1.15)
    pts = [(0.02, ty0), (rng.uniform(0.2, 0.3), ty0 + 0.01), (0.22, ty1), (0.03, ty1)]
    lights = []
    for p in (pts, _mirror_x(pts)):
        _poly(img, p, red, w, h)
        _poly(img, [(x, y + (ty1 - ty0) * 0.55) for x, y in p[:2]] + p[2:], red * 0.6 + 90, w, h)
        c = np.mean(p, axis=0)
        lights.append((c[0] * w, c[1] * h, w * 0.03))
    if rng.random() < 0.5:
        strip = dark if rng.random() < 0.5 else np.array([200, 200, 205], np.float32)
        _rrect(img, 0.25, ty0 + 0.02, 0.75, ty0 + 0.05, 2, strip, w, h)
    cv2.circle(
        img, (w // 2, int((ty0 + 0.09) * h)), int(w * 0.025), (200, 200, 205), -1, cv2.LINE_AA
    )
    # Bumper: a lighter band with a crease, exhaust pipes, reflectors.
    by = int((y_bottom - rng.uniform(0.12, 0.18)) * h)
    cv2.line(img, (int(0.02 * w), by), (int(0.98 * w), by), tuple(map(float, paint * 0.65)),
             max(1, int(h * 0.008)), cv2.LINE_AA)  # fmt: skip
    _rrect(img, 0.02, y_bottom - 0.04, 0.98, y_bottom, 3, paint * 0.55, w, h)
    if rng.random() < 0.6:
        ex = 0.2 if rng.random() < 0.5 else 0.75
        cv2.ellipse(img, (int(ex * w), int((y_bottom - 0.01) * h)), (int(w * 0.03), int(h * 0.015)),
                    0, 0, 360, (15, 15, 15), -1, cv2.LINE_AA)  # fmt: skip
    for rx in (0.1, 0.9):
        cv2.rectangle(img, (int((rx - 0.03) * w), int((y_bottom - 0.07) * h)),
                      (int((rx + 0.03) * w), int((y_bottom - 0.055) * h)), (150, 20, 20), -1)  # fmt: skip
    return lights


def _shade(img, rng, w, h, y_glass, alpha) -> None:
    """Paint-like shading in place: lit from above, the sky reflected in the upper body
    and the ground in the lower, curvature toward the sides, specular highlights, and
    darker edges where the body turns away (ambient occlusion)."""
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    g = 1.12 - 0.4 * ys  # lit from above
    band_y = rng.uniform(y_glass + 0.02, y_glass + 0.25)
    noise = cv2.resize(
        rng.normal(0, 1, (4, 5)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    shade = g * (1 + 0.05 * noise) * (1 - rng.uniform(0.1, 0.35) * xs**2)
    # A soft outline: the body darkens where it curves away from the camera.
    sw, sh = max(4, w // 8), max(4, h // 8)
    edge = cv2.GaussianBlur(cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA), (0, 0), 1.5)
    shade *= 0.7 + 0.3 * cv2.resize(edge, (w, h)).astype(np.float32) / 255
    img *= shade[..., None]
    # Reflections are added, not multiplied: a black car still mirrors the bright sky.
    sky = np.array([185, 200, 220], np.float32) * rng.uniform(0.15, 0.45)
    above = 1 / (1 + np.exp((ys - band_y) / 0.015))  # sky above the reflected horizon
    img += (above * (0.35 + 0.65 * (1 - xs**2)))[..., None] * sky * 0.6
    line = np.exp(-(((ys - band_y) / 0.01) ** 2)) * rng.uniform(40, 110)
    img += line[..., None]
    for _ in range(int(rng.integers(1, 4))):  # specular highlights: small soft blobs
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(y_glass, 0.85) * h
        r = rng.uniform(0.02, 0.08) * w
        blob = np.exp(-((((xs + 1) / 2 * w - cx) / (r * 2.5)) ** 2) - ((ys * h - cy) / r) ** 2)
        img += (blob * rng.uniform(60, 160))[..., None]
    # A real car's outline is never a crisp vector edge.
    cv2.GaussianBlur(img, (0, 0), max(0.4, w / 500), dst=img)
