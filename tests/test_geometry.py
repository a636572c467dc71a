"""Geometry: hand-computed letterbox cases and round-trip properties."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from platelab.geometry import (
    CROP_SIZE,
    Letterbox,
    box_area,
    clip_boxes,
    corners_to_xyxy,
    cxcywh_norm_to_xyxy,
    parse_size,
    quad_lean_deg,
    quad_to_crop_matrix,
    two_line_to_one,
    warp_quad,
    xyxy_to_cxcywh_norm,
)


@pytest.mark.parametrize(
    ("orig", "canvas", "scale", "pad"),
    [
        # CCPD portrait 720x1160 into 640x480: height limits, 480/1160; width 720*0.41379 = 297.9 -> 298,
        # pad_x = (640 - 298) // 2 = 171.
        ((720, 1160), (640, 480), 480 / 1160, (171, 0)),
        # Kaggle square 416x416 into 640x480: 480/416, new 480x480, pad_x = 80.
        ((416, 416), (640, 480), 480 / 416, (80, 0)),
        # Same aspect: no padding.
        ((1280, 960), (640, 480), 0.5, (0, 0)),
        # Wide 1000x100: width limits, 0.64; height 64, pad_y = (480 - 64) // 2 = 208.
        ((1000, 100), (640, 480), 0.64, (0, 208)),
    ],
)
def test_fit_hand_computed(orig, canvas, scale, pad):
    lb = Letterbox.fit(*orig, *canvas)
    assert lb.scale == pytest.approx(scale)
    assert (lb.pad_x, lb.pad_y) == pad


def test_apply_places_pixels_where_boxes_map():
    # A white square at (100..200, 300..400) in a 720x1160 photo lands at the mapped box.
    img = np.zeros((1160, 720, 3), np.uint8)
    img[300:400, 100:200] = 255
    lb = Letterbox.fit(720, 1160, 640, 480)
    canvas = lb.apply(img)
    assert canvas.shape == (480, 640, 3)
    x0, y0, x1, y1 = lb.boxes_to_canvas(np.array([[100, 300, 200, 400]]))[0]
    inside = canvas[int(np.ceil(y0)) + 1 : int(y1) - 1, int(np.ceil(x0)) + 1 : int(x1) - 1]
    assert inside.min() > 200
    assert (canvas[:, : lb.pad_x] == 114).all()  # left padding
    mask = canvas[..., 0] > 128
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1
    assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1


@given(
    w=st.integers(1, 4000),
    h=st.integers(1, 4000),
    cw=st.integers(16, 1280),
    ch=st.integers(16, 1280),
    pts=st.lists(st.tuples(st.floats(-10, 5000), st.floats(-10, 5000)), min_size=1, max_size=8),
)
def test_letterbox_round_trip(w, h, cw, ch, pts):
    lb = Letterbox.fit(w, h, cw, ch)
    p = np.array(pts)
    back = lb.points_to_original(lb.points_to_canvas(p))
    np.testing.assert_allclose(back, p, rtol=1e-9, atol=1e-9)
    # The whole photo maps inside the canvas.
    corners = lb.points_to_canvas(np.array([[0, 0], [w, h]]))
    assert corners.min() >= -1e-9
    assert corners[1, 0] <= cw + 0.5 + 1e-9 and corners[1, 1] <= ch + 0.5 + 1e-9


@given(
    boxes=st.lists(
        st.tuples(st.floats(0, 600), st.floats(0, 400), st.floats(1, 100), st.floats(1, 100)),
        min_size=1,
        max_size=5,
    )
)
def test_cxcywh_round_trip(boxes):
    b = np.array(boxes)
    xyxy = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)
    back = cxcywh_norm_to_xyxy(xyxy_to_cxcywh_norm(xyxy, 640, 480), 640, 480)
    np.testing.assert_allclose(back, xyxy, atol=1e-9)


def test_box_helpers_hand_computed():
    np.testing.assert_allclose(
        xyxy_to_cxcywh_norm([[0, 0, 320, 240]], 640, 480), [[0.25, 0.25, 0.5, 0.5]]
    )
    np.testing.assert_allclose(clip_boxes([[-5, 10, 700, 500]], 640, 480), [[0, 10, 640, 480]])
    np.testing.assert_allclose(box_area([[0, 0, 2, 3], [5, 5, 4, 9]]), [6, 0])
    corners = [[[10, 5], [30, 7], [29, 20], [9, 18]]]
    np.testing.assert_allclose(corners_to_xyxy(corners), [[9, 5, 30, 20]])


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("640x480", (640, 480)),
        ("320X240", (320, 240)),
        ("640", None),
        ("0x480", None),
        ("axb", None),
    ],
)
def test_parse_size(text, ok):
    if ok is None:
        with pytest.raises(ValueError, match="size"):
            parse_size(text)
    else:
        assert parse_size(text) == ok


# -- the perspective crop ----------------------------------------------------------------------
def _checkerboard(h: int, w: int, cell: int = 1) -> np.ndarray:
    yy, xx = np.indices((h, w)) // cell
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = ((yy + xx) % 2) * 255
    img[..., 1] = (xx * 7 % 256).astype(np.uint8)  # columns told apart: a 1 px shift shows
    img[..., 2] = (yy * 11 % 256).astype(np.uint8)
    return img


def test_warp_quad_of_a_rectangle_is_the_plain_crop():
    img = _checkerboard(60, 200)
    x0, y0, w, h = 37, 11, *CROP_SIZE[:1], CROP_SIZE[1]
    quad = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], np.float64)
    np.testing.assert_array_equal(warp_quad(img, quad, (w, h)), img[y0 : y0 + h, x0 : x0 + w])


def test_warp_quad_halves_a_double_size_rectangle_exactly():
    small = _checkerboard(16, 32)
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # every pixel a 2x2 block
    quad = np.array([[0, 0], [64, 0], [64, 32], [0, 32]], np.float64)
    np.testing.assert_array_equal(warp_quad(big, quad, (32, 16)), small)


def test_warp_quad_puts_the_quad_corners_on_the_crop_corners():
    quad = np.array([[31.3, 20.7], [140.2, 31.0], [137.9, 66.4], [25.5, 52.1]])
    w, h = CROP_SIZE
    m = quad_to_crop_matrix(quad, (w, h))
    pts = np.c_[quad, np.ones(4)] @ m.T
    np.testing.assert_allclose(pts[:, :2] / pts[:, 2:], [[0, 0], [w, 0], [w, h], [0, h]],
                               atol=1e-3)  # fmt: skip
    # Pixels: a white quad drawn at 8x and area-averaged (exact coverage) fills the crop.
    big = np.zeros((80 * 8, 160 * 8), np.uint8)
    cv2.fillPoly(big, [np.round(quad * 8).astype(np.int32)], 255)
    img = cv2.resize(big, (160, 80), interpolation=cv2.INTER_AREA)
    crop = warp_quad(img, quad, (w, h)).astype(float)
    assert crop[1:-1, 1:-1].min() > 225  # inside: all plate
    # The outermost crop pixels sample half a crop pixel inside the plate's edge: mostly plate.
    for edge in (crop[0, 2:-2], crop[-1, 2:-2], crop[2:-2, 0], crop[2:-2, -1]):
        assert edge.mean() > 150
    # A quad 1.5 px too large samples background there: the test would see a misplacement.
    grown = quad + [[0, -1.5], [0, -1.5], [0, 1.5], [0, 1.5]]
    loose = warp_quad(img, grown, (w, h)).astype(float)
    assert loose[0, 2:-2].mean() < 100 and loose[-1, 2:-2].mean() < 100


def test_warp_quad_area_averages_a_large_plate():
    # A 1-pixel checkerboard shrunk 4x must come out grey, not aliased stripes.
    img = np.repeat(((np.indices((128, 512)).sum(0) % 2) * 255).astype(np.uint8)[..., None], 3, 2)
    quad = np.array([[0, 0], [512, 0], [512, 128], [0, 128]], np.float64)
    crop = warp_quad(img, quad, (128, 32))
    assert crop.shape == (32, 128, 3) and abs(crop.mean() - 127.5) < 2 and crop.std() < 3


def test_two_line_to_one_puts_the_top_row_left():
    crop = np.zeros((32, 128, 3), np.uint8)
    crop[:13] = (255, 0, 0)  # the top row: 40% of 32 rows, rounded
    crop[13:] = (0, 0, 255)
    out = two_line_to_one(crop, 0.4)
    assert out.shape == crop.shape
    assert (out[:, :64] == (255, 0, 0)).all() and (out[:, 64:] == (0, 0, 255)).all()


def test_lean_of_upright_sheared_and_mirrored_quads():
    lean = quad_lean_deg
    upright = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 30.0], [0.0, 30.0]])
    assert lean(upright) == pytest.approx(0.0)
    # both sides' tops 30 * tan(10 deg) to the right of their bottoms
    dx = 30 * np.tan(np.radians(10))
    sheared = upright + np.array([[dx, 0.0], [dx, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert lean(sheared) == pytest.approx(10.0)
    mirrored = sheared * [-1.0, 1.0]
    assert lean(mirrored[[1, 0, 3, 2]]) == pytest.approx(-10.0)
    # a trapezoid (a plate turned away: sides lean opposite ways) has no mean lean
    trapezoid = upright + np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert lean(trapezoid) == pytest.approx(0.0)
