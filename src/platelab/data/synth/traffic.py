"""Road traffic seen from a car: a perspective road, lanes, and cars at many distances.

A pinhole camera ``cam_h`` metres above a flat road with focal length ``f``
pixels sees the ground at depth ``Z`` on image row ``y = y_h + f * cam_h / Z``
(``y_h`` the horizon), where one metre spans ``ppm = f / Z = (y - y_h) / cam_h``
pixels. A car is placed by its lane (a lateral offset ``X`` in metres) and the
row its wheels touch: its width is its real width times ``ppm`` and its centre
is at ``x = x_v + X * ppm`` (``x_v`` the vanishing point). Far cars are small,
so their plates are 10-40 pixels wide; near ones fill half the frame. Cars
ahead show their backs, oncoming ones their fronts, and every car carries its
plate (cars whose plate would be under 10 pixels carry an empty holder).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from platelab.data.synth import plates, textures, vehicles
from platelab.data.synth.compose import Frame, apply_h, disjoint, draw_car, translate
from platelab.data.synth.lighting import SODIUM, Light

PLATE_M = {"cn_blue": 0.44, "cn_green": 0.48, "cn_yellow": 0.44, "eu": 0.52, "us": 0.305}
MIN_PLATE_PX = 10  # narrower plates are left empty: a few grey pixels, not a labelled plate
LANE_M = 3.5


@dataclass
class Road:
    """The camera and road of one traffic scene (see the module docstring)."""

    y_h: float  # horizon row
    x_v: float  # vanishing point column
    cam_h: float  # camera height, metres
    f: float  # focal length, pixels
    cam_x: float  # camera's lateral position, metres from the left road edge
    lanes: int
    oncoming: int  # the leftmost lanes carry oncoming traffic

    def ppm(self, y: float) -> float:
        """Pixels per metre on the ground at image row ``y``."""
        return max(1e-6, (y - self.y_h) / self.cam_h)

    def x_at(self, lateral_m: float, y: float) -> float:
        """Image column of the ground point ``lateral_m`` metres from the left road edge."""
        return self.x_v + (lateral_m - self.cam_x) * self.ppm(y)

    def y_at(self, depth_m: float) -> float:
        """Image row of the ground ``depth_m`` metres ahead."""
        return self.y_h + self.f * self.cam_h / depth_m


def sample_road(rng: np.random.Generator, w: int, h: int) -> Road:
    lanes = int(rng.integers(2, 5))
    oncoming = int(rng.integers(0, lanes)) if rng.random() < 0.6 else 0
    cam_lane = int(rng.integers(oncoming, lanes)) if oncoming < lanes else lanes - 1
    return Road(
        y_h=h * rng.uniform(0.36, 0.52),
        x_v=w * rng.uniform(0.4, 0.6),
        cam_h=rng.uniform(1.1, 1.5),
        f=w * rng.uniform(0.8, 1.3),
        cam_x=(cam_lane + 0.5 + rng.normal(0, 0.1)) * LANE_M,
        lanes=lanes,
        oncoming=oncoming,
    )


def draw_road(rng: np.random.Generator, img: np.ndarray, road: Road) -> None:
    """Sky and skyline above the horizon; verge, asphalt and lane markings below, in place."""
    h, w = img.shape[:2]
    yh = int(road.y_h)
    textures.skyline(rng, img[: yh + 1])
    ground = textures.ground_texture(rng, w, h - yh)
    img[yh:] = ground
    edges = (-rng.uniform(0.3, 1.5), road.lanes * LANE_M + rng.uniform(0.3, 1.5))
    poly = np.array([[road.x_at(edges[0], h * 3), h * 3], [road.x_at(edges[1], h * 3), h * 3],
                     [road.x_v, road.y_h], [road.x_v, road.y_h]])  # fmt: skip
    mask = np.zeros((h - yh, w), np.uint8)
    cv2.fillPoly(mask, [np.round((poly - [0, yh]) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    asphalt = textures.asphalt_texture(rng, w, h - yh)
    a = mask[..., None].astype(np.float32) / 255
    img[yh:] = (ground * (1 - a) + asphalt * a).astype(np.uint8)
    # Markings: solid edge lines, dashed lane lines (dashes evenly spaced in depth).
    paint = np.array((225, 225, 215) if rng.random() < 0.8 else (225, 190, 60), np.float32)
    paint *= rng.uniform(0.7, 1.0)
    width = rng.uniform(0.1, 0.18)
    phase, period, dash = rng.uniform(0, 12), rng.uniform(9, 15), rng.uniform(2.5, 4.5)
    for k in range(road.lanes + 1):
        lat = k * LANE_M
        if k in (0, road.lanes):
            lat = edges[0] + 0.3 if k == 0 else edges[1] - 0.3
            spans = [(2.0, 400.0)]
        elif k == road.oncoming and rng.random() < 0.6:
            spans = [(2.0, 400.0)]  # a solid centre line
        else:
            spans = [(z, z + dash) for z in np.arange(2.0 + phase, 300.0, period)]
        for z0, z1 in spans:
            ya, yb = road.y_at(z1), min(road.y_at(z0), h * 3)
            quad = [[road.x_at(lat - width / 2, ya), ya], [road.x_at(lat + width / 2, ya), ya],
                    [road.x_at(lat + width / 2, yb), yb], [road.x_at(lat - width / 2, yb), yb]]  # fmt: skip
            pts = np.round(np.array(quad) * 16).astype(np.int32)
            cv2.fillPoly(img, [pts], tuple(float(v) for v in paint), cv2.LINE_AA, 4)


def street_lamps(rng: np.random.Generator, fr: Frame, road: Road) -> None:
    """Poles along one or both road edges, lamp heads over the road (lights at night)."""
    h, w = fr.img.shape[:2]
    sides = [s for s in (-1.5, road.lanes * LANE_M + 1.5) if rng.random() < 0.6]
    spacing, phase = rng.uniform(20, 40), rng.uniform(5, 25)
    grey = rng.uniform(60, 140)
    for lat in sides:
        for z in np.arange(phase, 200.0, spacing)[::-1]:  # far first
            y = road.y_at(z)
            ppm = road.ppm(y)
            x, top = road.x_at(lat, y), y - 8 * ppm
            if ppm < 1.5 or top < -h:
                continue
            t = max(1, int(round(0.18 * ppm)))
            arm = 1.5 * ppm * (1 if lat < 0 else -1)
            col = (grey, grey, grey * 1.05)
            cv2.line(fr.img, (int(x), int(y)), (int(x), int(top)), col, t, cv2.LINE_AA)
            cv2.line(fr.img, (int(x), int(top)), (int(x + arm), int(top + 0.3 * ppm)), col,
                     max(1, t // 2), cv2.LINE_AA)  # fmt: skip
            fr.lights.append(Light(x + arm, top + 0.4 * ppm, 0.25 * ppm + 0.5, SODIUM, 0.6))


def traffic(rng: np.random.Generator, fr: Frame, with_plates: bool = True) -> Road:
    """Draw a road and 3-8 cars into ``fr`` (plates recorded in ``fr.placed``)."""
    h, w = fr.img.shape[:2]
    road = sample_road(rng, w, h)
    draw_road(rng, fr.img, road)
    if rng.random() < 0.6:
        street_lamps(rng, fr, road)
    n = int(rng.integers(3, 9))
    # Depths log-uniform in pixels per metre: as many far cars as near ones.
    ppm_max = (h * 1.02 - road.y_h) / road.cam_h
    ppms = np.exp(rng.uniform(np.log(16), np.log(ppm_max), n))
    lanes = rng.integers(0, road.lanes, n)
    style = fr.style(rng)
    for ppm, lane in sorted(zip(ppms, lanes, strict=True)):  # far cars first
        s = style if rng.random() < 0.75 else fr.style(rng)
        _car(rng, fr, road, float(ppm), int(lane), s, with_plates)
    return road


def _car(rng, fr: Frame, road: Road, ppm: float, lane: int, style: str, with_plate: bool) -> None:
    h, w = fr.img.shape[:2]
    y = road.y_h + ppm * road.cam_h
    lat = (lane + 0.5 + rng.normal(0, 0.08)) * LANE_M
    car_m = rng.uniform(1.7, 1.95)
    plate_px = PLATE_M[style] * ppm
    rear = lane >= road.oncoming
    plate = None
    if with_plate and plate_px >= MIN_PLATE_PX:
        plate = plates.render_plate(style, rng, int(round(plate_px)))
        ph, pw = plate.rgb.shape[:2]
        frac = pw / (car_m * ppm)
        aspect = pw / ph
    else:
        frac, aspect = PLATE_M[style] / car_m, 4.0
    car_px = car_m * ppm
    canvas_w = int(max(12, min(car_px, vehicles.CAR_CANVAS_MAX)))
    car = vehicles.draw_vehicle(
        rng, canvas_w, aspect, frac, rear=rear, livery_p=fr.livery_rate, wrap_p=fr.wrap_rate
    )
    ch, cw = car.alpha.shape
    k = car_px / canvas_w
    # A car's back or front is a plane square to the road, so it projects without
    # foreshortening wherever its lane is; a little yaw for cars not driving straight.
    yaw = float(np.clip(rng.normal(0, 0.03), -0.1, 0.1))
    persp = np.array([[1, 0, 0], [0, 1, 0], [yaw / (cw / 2), 0, 1]])
    theta = np.deg2rad(rng.normal(0, 1.0))
    c, s_ = np.cos(theta) * k, np.sin(theta) * k
    rot = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]])
    foot = np.array([[1, 0, -cw / 2], [0, 1, -ch * 0.99], [0, 0, 1]], np.float64)
    H = translate(rot @ persp @ foot, road.x_at(lat, y), y)
    corners = None
    if plate is not None:
        corners = np.round(apply_h(H, car.slot))
        box = corners.min(0).tolist() + corners.max(0).tolist()
        inside = box[0] >= 1 and box[1] >= 1 and box[2] <= w - 1 and box[3] <= h - 1
        if not inside:
            plate = corners = None  # a plate cut by the frame edge: the car keeps an empty holder
        elif any(not disjoint(box, p.box_xyxy) for p in fr.placed):
            return
    draw_car(rng, fr, car, H, plate, corners)
