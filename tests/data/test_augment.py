"""Augmentation keeps boxes and corners on their plate's pixels, through flips and warps."""

from __future__ import annotations

import cv2
import numpy as np
import pydantic
import pytest

from platelab.data.augment import AugmentConfig, build_augment, mosaic
from platelab.geometry import PAD_VALUE, clip_boxes, corners_to_xyxy

W, H = 160, 120
PLATE_XYXY = (50.0, 40.0, 110.0, 64.0)
NO_PHOTO = dict(colour_p=0.0, blur_p=0.0, noise_p=0.0, jpeg_p=0.0)
STRONG_GEOMETRY = AugmentConfig(flip_p=0.5, affine_p=1.0, perspective_p=1.0, **NO_PHOTO)


def affine_only(**kw) -> AugmentConfig:
    """Only the affine transform, with nothing of it on but what ``kw`` turns on."""
    off = dict(flip_p=0.0, affine_p=1.0, scale=0.0, translate=0.0, rotate_deg=0.0)
    off |= dict(shear_deg=0.0, perspective_p=0.0)
    return AugmentConfig(**{**off, **NO_PHOTO, **kw})


def quad_of(box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], np.float32)


def red_plate_scene(box=PLATE_XYXY) -> np.ndarray:
    """A pure red plate on grey; its pixels tell where the plate really went."""
    img = np.full((H, W, 3), 128, np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    img[y0:y1, x0:x1] = (255, 0, 0)
    return img


def red_mask(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[..., k].astype(int) for k in range(3))
    return (r > 170) & (g < 90) & (b < 90)


def inside_box(box) -> np.ndarray:
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[0:H, 0:W] + 0.5  # pixel centres
    return (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)


def signed_area(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return 0.5 * float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum())


@pytest.mark.parametrize("corners_known", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_box_stays_on_the_plate_pixels(seed, corners_known):
    aug = build_augment(STRONG_GEOMETRY, W, H, seed=seed)
    corners = quad_of(PLATE_XYXY) if corners_known else np.full((1, 4, 2), np.nan, np.float32)
    image, boxes, out_corners = aug(red_plate_scene(), np.array([PLATE_XYXY]), corners)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    red = red_mask(image)
    if len(boxes) == 0:  # only if the plate was pushed off the canvas; then so were its pixels
        pytest.fail("a positive image came back without its plate")
    inside = inside_box(boxes[0])
    assert (red & inside).sum() / red.sum() > 0.97, "red pixels outside the box"
    # A rotated/sheared plate leaves empty triangles in its enclosing box, never most of it.
    assert (red & inside).sum() / inside.sum() > 0.55, "box much larger than the plate"
    if corners_known:
        poly = np.zeros((H, W), np.uint8)
        cv2.fillPoly(poly, [np.round(out_corners[0] - 0.5).astype(np.int32)], 1)
        poly = poly.astype(bool)
        iou = (poly & red).sum() / (poly | red).sum()
        assert iou > 0.85, f"corners do not outline the plate (IoU {iou:.2f})"
        # Known corners give the box: the clamped enclosing box of the moved corners.
        np.testing.assert_allclose(boxes, clip_boxes(corners_to_xyxy(out_corners), W, H), atol=1e-3)
    else:
        assert np.isnan(out_corners).all()


def test_flip_moves_box_and_reorders_corners_exactly():
    cfg = AugmentConfig(flip_p=1.0, affine_p=0.0, perspective_p=0.0, **NO_PHOTO)
    aug = build_augment(cfg, W, H, seed=0)
    image, boxes, corners = aug(red_plate_scene(), np.array([PLATE_XYXY]), quad_of(PLATE_XYXY))
    x0, y0, x1, y1 = PLATE_XYXY
    np.testing.assert_allclose(boxes[0], [W - x1, y0, W - x0, y1])
    # Still clockwise from the top-left of the image: TL, TR, BR, BL.
    expected = [[W - x1, y0], [W - x0, y0], [W - x0, y1], [W - x1, y1]]
    np.testing.assert_allclose(corners[0], expected, atol=1e-4)
    assert red_mask(image)[int(y0) : int(y1), int(W - x1) : int(W - x0)].all()


@pytest.mark.parametrize("seed", range(8))
def test_corners_stay_clockwise_from_top_left_through_flip_and_warp(seed):
    cfg = AugmentConfig(flip_p=1.0, affine_p=1.0, perspective_p=1.0, **NO_PHOTO)
    aug = build_augment(cfg, W, H, seed=seed)
    _, _, corners = aug(red_plate_scene(), np.array([PLATE_XYXY]), quad_of(PLATE_XYXY))
    q = corners[0]
    assert signed_area(q) > 0, "corner order became counter-clockwise"
    assert int(np.argmin(q.sum(axis=1))) == 0, "corner 0 is not the top-left one"
    assert q[1, 0] > q[0, 0] and q[3, 1] > q[0, 1]


def test_plate_that_cannot_stay_visible_falls_back_to_an_unwarped_positive():
    # A plate filling the whole canvas loses area to any rotation; min_visible=1 drops it,
    # so every geometric draw fails and the photometric-only fallback keeps the plate.
    cfg = affine_only(rotate_deg=10, min_visible=1.0, retries=2)
    aug = build_augment(cfg, W, H, seed=1)
    full = (0.0, 0.0, float(W), float(H))
    image = red_plate_scene()
    r = aug.transform(image, np.array([full]), quad_of(full))
    np.testing.assert_allclose(r.boxes_xyxy, [full])
    np.testing.assert_allclose(r.corners, quad_of(full))
    np.testing.assert_array_equal(r.kept, [0])
    np.testing.assert_array_equal(r.image, image)


@pytest.mark.parametrize("seed", range(4))
def test_partly_pushed_off_plates_are_dropped_by_visible_fraction(seed):
    # A plate at the left edge, a strong zoom-in about the centre: it often leaves the canvas.
    cfg = affine_only(scale=0.9, min_visible=0.5)
    edge, centre = (0.0, 50.0, 30.0, 70.0), (70.0, 50.0, 90.0, 70.0)
    aug = build_augment(cfg, W, H, seed=seed)
    boxes_in = np.array([edge, centre])
    kept_edge = []
    for _ in range(10):
        r = aug.transform(
            red_plate_scene(), boxes_in, np.concatenate([quad_of(edge), quad_of(centre)])
        )
        assert 1 in r.kept.tolist(), "the central plate never leaves the canvas under zoom"
        kept_edge.append(0 in r.kept.tolist())
        for box, quad in zip(r.boxes_xyxy, r.corners, strict=True):
            lo, hi = quad.min(axis=0), quad.max(axis=0)
            full = (hi - lo).prod()
            seen = (np.minimum(hi, [W, H]) - np.maximum(lo, 0)).clip(0).prod()
            assert seen / full >= 0.5 - 1e-6
            assert 0 <= box[0] <= box[2] <= W and 0 <= box[1] <= box[3] <= H
    assert any(kept_edge) and not all(kept_edge), "zoom should sometimes keep, sometimes drop it"


def test_strength_zero_is_identity_and_negatives_stay_negative():
    aug = build_augment(AugmentConfig(strength=0.0, flip_p=0.0), W, H, seed=0)
    image = red_plate_scene()
    out, boxes, corners = aug(image, np.array([PLATE_XYXY]), quad_of(PLATE_XYXY))
    np.testing.assert_array_equal(out, image)
    np.testing.assert_allclose(boxes, [PLATE_XYXY])
    np.testing.assert_allclose(corners, quad_of(PLATE_XYXY), atol=1e-4)

    out, boxes, corners = build_augment(AugmentConfig(), W, H, seed=0)(
        np.full((H, W, 3), PAD_VALUE, np.uint8), np.zeros((0, 4)), np.zeros((0, 4, 2))
    )
    assert out.shape == (H, W, 3) and boxes.shape == (0, 4) and corners.shape == (0, 4, 2)


def test_same_seed_same_draws_and_reseed_changes_them():
    args = (red_plate_scene(), np.array([PLATE_XYXY]), quad_of(PLATE_XYXY))
    a, b = (
        build_augment(STRONG_GEOMETRY, W, H, seed=5),
        build_augment(STRONG_GEOMETRY, W, H, seed=5),
    )
    first = [a(*args)[1] for _ in range(3)]
    np.testing.assert_array_equal(first, [b(*args)[1] for _ in range(3)])
    a.reseed(6)
    assert not np.allclose(a(*args)[1], first[0])


def test_bad_inputs_are_refused():
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig(rotate=5)  # a typo of rotate_deg
    aug = build_augment(AugmentConfig(), W, H)
    with pytest.raises(ValueError, match="canvas"):
        aug(np.zeros((H + 1, W, 3), np.uint8), np.zeros((0, 4)), np.zeros((0, 4, 2)))


class MidRng:
    """A stand-in generator: every uniform draw is its range's middle, every integer its low."""

    def uniform(self, lo, hi):
        return (lo + hi) / 2

    def integers(self, lo, hi=None):
        return lo if hi is not None else 0


def tile(value: int, box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = np.full((H, W, 3), value, np.uint8)
    return img, np.array([box], np.float32), quad_of(box)


def test_mosaic_halves_four_tiles_into_their_quadrants_by_hand():
    # Centre at (0.5 W, 0.5 H) and scale 0.5: each tile fills its quadrant exactly.
    tiles = [tile(10 * (k + 1), (20.0 + k, 20.0, 60.0 + k, 36.0)) for k in range(4)]
    image, boxes, corners = mosaic(tiles, MidRng(), scale=(0.5, 0.5))
    assert image.shape == (H, W, 3)
    for k, (x, y) in enumerate([(0, 0), (80, 0), (80, 60), (0, 60)]):  # TL, TR, BR, BL
        assert (image[y : y + 60, x : x + 80] == 10 * (k + 1)).all()
    expected = np.array(
        [[10 + k / 2 + x, 10 + y, 30 + k / 2 + x, 18 + y]
         for k, (x, y) in enumerate([(0, 0), (80, 0), (80, 60), (0, 60)])],
        np.float32,
    )  # fmt: skip
    np.testing.assert_allclose(boxes, expected)
    np.testing.assert_allclose(corners, np.concatenate([quad_of(b) for b in expected]))


def test_mosaic_clips_cut_plates_drops_hidden_ones_and_forgets_cut_corners():
    # Scale 1: a tile's top-left 80x60 window fills its quadrant. A plate half across the
    # window's right edge keeps its clipped box without corners; one 20% in is dropped.
    half = (70.0, 10.0, 90.0, 20.0)  # 10 of its 20 px show
    hidden = (76.0, 30.0, 96.0, 40.0)  # 4 of 20 px
    whole = (10.0, 40.0, 30.0, 50.0)
    img = np.full((H, W, 3), 50, np.uint8)
    boxes = np.array([half, hidden, whole], np.float32)
    tl = (img, boxes, np.concatenate([quad_of(b) for b in boxes]))
    empty = (img, np.zeros((0, 4), np.float32), np.zeros((0, 4, 2), np.float32))
    _, out_boxes, out_corners = mosaic([tl, empty, empty, empty], MidRng(), scale=(1.0, 1.0))
    np.testing.assert_allclose(out_boxes, [[70, 10, 80, 20], [10, 40, 30, 50]])
    assert np.isnan(out_corners[0]).all()
    np.testing.assert_allclose(out_corners[1], quad_of(whole)[0])


def test_mosaic_places_a_small_tile_against_the_centre():
    # Scale 0.25 (40x30) in a 80x60 quadrant: the top-left tile sits at the centre's corner.
    tiles = [tile(200, (0.0, 0.0, 40.0, 20.0))] + [tile(0, (0.0, 0.0, 40.0, 20.0))] * 3
    image, boxes, _ = mosaic(tiles, MidRng(), scale=(0.25, 0.25))
    assert (image[30:60, 40:80] == 200).all()
    assert (image[:30, :80] == PAD_VALUE).all() and (image[30:60, :40] == PAD_VALUE).all()
    np.testing.assert_allclose(boxes[0], [40, 30, 50, 35])
