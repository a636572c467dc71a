"""Geometry: hand-computed letterbox cases and round-trip properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from platelab.geometry import (
    Letterbox,
    box_area,
    clip_boxes,
    corners_to_xyxy,
    cxcywh_norm_to_xyxy,
    parse_size,
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
