"""The corner benchmarks' measuring pieces: ``benchmarks/ccpd_corners.py``'s plate-edge fit
and per-side offsets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from platelab.data.imageio import decode_image, encode_jpeg

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("ccpd_corners")


def _blue_plate_photo(quad: np.ndarray) -> np.ndarray:
    """A grey photo with a blue plate on ``quad`` (white border line and characters),
    through JPEG as a real photo comes."""
    img = np.full((300, 420, 3), (110, 105, 100), np.uint8)
    cv2.fillPoly(img, [np.round(quad * 16).astype(np.int32)], (30, 95, 225), cv2.LINE_AA, shift=4)
    inner = quad.mean(axis=0) + 0.93 * (quad - quad.mean(axis=0))
    cv2.polylines(img, [np.round(inner).astype(np.int32)], True, (245, 245, 245), 2, cv2.LINE_AA)
    for i in range(6):  # characters: white bars across the middle
        x = int(quad[0, 0] + 30 + 30 * i)
        cv2.rectangle(img, (x, 118), (x + 12, 150), (245, 245, 245), -1)
    return decode_image(encode_jpeg(img, 90))


def test_plate_edge_fit_finds_a_sheared_plate_within_a_pixel(bench):
    plate = np.array([[100.0, 100.0], [300.0, 110.0], [310.0, 170.0], [110.0, 160.0]])
    photo = _blue_plate_photo(plate)
    centre = plate.mean(axis=0)
    annotated = centre + 1.08 * (plate - centre)  # a looser quad around it, as CCPD's
    edge = bench.plate_edge_quad(photo, annotated)
    assert edge is not None
    assert np.abs(edge - plate).max() < 1.0, edge - plate
    assert bench.corner_err(edge, plate) < 0.7


def test_no_blue_blob_gives_none(bench):
    grey = np.full((200, 300, 3), 120, np.uint8)
    assert (
        bench.plate_edge_quad(grey, np.array([[50.0, 50], [250, 50], [250, 110], [50, 110]]))
        is None
    )


def test_outward_offsets_per_side_by_hand(bench):
    inner = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 40.0], [0.0, 40.0]])
    # top 3 px out, right 4, bottom 5, left 6
    outer = np.array([[-6.0, -3.0], [104.0, -3.0], [104.0, 45.0], [-6.0, 45.0]])
    assert bench.outward_offsets(outer, inner) == pytest.approx([3.0, 4.0, 5.0, 6.0])
    assert bench.outward_offsets(inner, outer) == pytest.approx([-3.0, -4.0, -5.0, -6.0])


def test_order_any_four_points_as_tl_tr_br_bl(bench):
    quad = np.array([[10.0, 12.0], [90.0, 8.0], [95.0, 40.0], [12.0, 44.0]])
    shuffled = quad[[2, 0, 3, 1]]
    assert np.array_equal(bench.order_tl_tr_br_bl(shuffled), quad)


def test_grow_quad_moves_each_side_out_by_its_margin(bench):
    quad = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 40.0], [0.0, 40.0]])
    grown = bench.grow_quad(quad, [3.0, 4.0, 5.0, 6.0])  # top, right, bottom, left
    assert grown == pytest.approx(
        np.array([[-6.0, -3.0], [104.0, -3.0], [104.0, 45.0], [-6.0, 45.0]])
    )
    sheared = np.array([[10.0, 12.0], [90.0, 8.0], [95.0, 40.0], [12.0, 44.0]])
    margins = [2.0, -1.0, 3.5, 0.5]
    assert bench.outward_offsets(bench.grow_quad(sheared, margins), sheared) == pytest.approx(
        margins
    )


def test_convention_floor_by_hand(bench):
    edge = np.array([[0.0, 0.0], [200.0, 0.0], [200.0, 60.0], [0.0, 60.0]])
    near, far = bench.grow_quad(edge, 0.03 * 200), bench.grow_quad(edge, 0.05 * 200)
    floor = bench.convention_floor([(near, edge), (far, edge)])
    # two plates annotated 6 and 10 px out: a margin per photo fits each exactly; one margin
    # for both is best anywhere from 6 to 10 px, where a corner (moving sqrt(2) px per px of
    # margin) is sqrt(2) x 4 px off summed over the two plates
    assert floor["per_photo_margin_px"] == pytest.approx(0.0, abs=1e-9)
    assert floor["per_photo_margin_range_px"] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert 0.03 - 1e-9 <= floor["one_margin_share"] <= 0.05 + 1e-9
    assert floor["one_margin_px"] == pytest.approx(np.sqrt(2) * 2.0, rel=1e-6)
