"""The corner stage: window geometry, soft-argmax, the model, its file, its training data."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from platelab.data.synth.corner_samples import (
    augment_windows,
    detector_box,
    pose,
    render_corner_sample,
    render_corner_samples,
)
from platelab.errors import PlatelabError
from platelab.geometry import warp_quad
from platelab.models.corner_refiner import (
    WINDOW_SIZE,
    CornerRefiner,
    load_refiner,
    photo_to_window,
    refine_corners,
    save_refiner,
    soft_argmax,
    window_around,
    window_to_photo,
)

W, H = WINDOW_SIZE


def test_window_around_a_box_by_hand():
    # a 100 x 30 box: 15% of 100 + 2 = 17 px left and right, 30% of 30 + 2 = 11 px up and down
    win = window_around([50, 40, 150, 70])
    np.testing.assert_allclose(win, [[33, 29], [167, 29], [167, 81], [33, 81]])
    # photo -> window: the window's corners are the input's outer corners
    np.testing.assert_allclose(photo_to_window(win, win), [[0, 0], [W, 0], [W, H], [0, H]])
    pts = np.array([[50.0, 40.0], [150.0, 70.0], [91.3, 55.5]])
    np.testing.assert_allclose(window_to_photo(photo_to_window(pts, win), win), pts)
    # (50, 40) is 17 of 134 px in and 11 of 52 px down
    np.testing.assert_allclose(photo_to_window(pts[:1], win), [[17 / 134 * W, 11 / 52 * H]])


def test_window_crop_puts_a_photo_point_where_photo_to_window_says():
    photo = np.zeros((200, 300, 3), np.uint8)
    photo[120:122, 200:202] = 255  # a 2x2 dot centred on (201, 121)
    win = window_around([150, 100, 250, 130])
    crop = warp_quad(photo, win, WINDOW_SIZE)
    ys, xs = np.nonzero(crop[..., 0] > 60)
    w = crop[ys, xs, 0].astype(np.float64)
    centroid = [np.average(xs + 0.5, weights=w), np.average(ys + 0.5, weights=w)]
    np.testing.assert_allclose(centroid, photo_to_window(np.array([[201.0, 121.0]]), win)[0],
                               atol=0.3)  # fmt: skip


def test_soft_argmax_by_hand():
    maps = torch.full((1, 2, 4, 5), -1e4)
    maps[0, 0, 2, 3] = 0.0  # all mass on cell (row 2, col 3): centre (3.5, 2.5) * stride
    maps[0, 1, 0, 0] = maps[0, 1, 3, 4] = 0.0  # two equal peaks: their midpoint
    out = soft_argmax(maps, stride=4)
    torch.testing.assert_close(out[0, 0], torch.tensor([14.0, 10.0]))
    torch.testing.assert_close(out[0, 1], torch.tensor([(2 + 18) / 2, (2 + 14) / 2]))
    # a flat map: the middle of the input
    flat = soft_argmax(torch.zeros(1, 1, 4, 5), stride=4)
    torch.testing.assert_close(flat[0, 0], torch.tensor([10.0, 8.0]))


def test_refiner_shapes_and_uint8_input():
    torch.manual_seed(0)
    model = CornerRefiner(width=8).eval()
    u8 = torch.randint(0, 256, (3, 3, H, W), dtype=torch.uint8)
    out = model(u8)
    assert out.shape == (3, 4, 2)
    torch.testing.assert_close(out, model(u8.float() / 255))
    assert (out[..., 0] >= 0).all() and (out[..., 0] <= W).all()
    assert (out[..., 1] >= 0).all() and (out[..., 1] <= H).all()


def test_save_load_round_trip_and_bad_files(tmp_path):
    torch.manual_seed(1)
    model = CornerRefiner(width=8).eval()
    path = tmp_path / "refiner.pth"
    save_refiner(path, model, meta={"epoch": 3})
    state = torch.load(path, weights_only=True)
    assert state["kind"] == "corner_refiner" and state["meta"]["epoch"] == 3
    again = load_refiner(path)
    x = torch.randint(0, 256, (2, 3, H, W), dtype=torch.uint8)
    torch.testing.assert_close(again(x), model(x))
    other = tmp_path / "other.pth"
    torch.save({"format": state["format"], "model": {}}, other)
    with pytest.raises(PlatelabError, match="not a platelab corner refiner"):
        load_refiner(other)
    with pytest.raises(PlatelabError):
        load_refiner(tmp_path / "missing.pth")


def test_refine_corners_maps_the_models_window_corners_to_the_photo():
    class Fixed(CornerRefiner):  # always answers the window's own corners
        def forward(self, images):
            c = torch.tensor([[0.0, 0.0], [W, 0.0], [W, H], [0.0, H]])
            return c.expand(len(images), 4, 2)

    photo = np.zeros((100, 200, 3), np.uint8)
    boxes = [[10, 20, 110, 50], [120, 60, 180, 80]]
    out = refine_corners(Fixed(width=8), photo, boxes)
    for quad, box in zip(out, boxes, strict=True):
        np.testing.assert_allclose(quad, window_around(box))
    assert refine_corners(Fixed(width=8), photo, []).shape == (0, 4, 2)


def test_pose_keeps_the_width_and_leans():
    rng = np.random.default_rng(0)
    quads = [pose(rng, 200, 60) for _ in range(400)]
    np.testing.assert_allclose([np.ptp(q[:, 0]) for q in quads], 200)
    leans = [((q[0, 0] - q[3, 0]) + (q[1, 0] - q[2, 0])) / 2 / 60 for q in quads]
    assert 0.08 < np.std(leans) < 0.25  # tan of the lean: sd 0.12 before rotation and perspective


def test_detector_box_errors_are_detector_sized():
    rng = np.random.default_rng(0)
    quad = np.array([[0, 0], [100, 0], [100, 30], [0, 30]], np.float64)
    boxes = np.array([detector_box(rng, quad, wide_p=0.0) for _ in range(2000)])
    err = boxes - [0, 0, 100, 30]
    np.testing.assert_allclose(err.mean(0), 0, atol=0.5)
    np.testing.assert_allclose(err.std(0), [4, 3, 4, 3], rtol=0.15)  # 4% of 100, 10% of 30
    assert np.abs(err).max(0) == pytest.approx([12, 9, 12, 9], rel=0.01)  # clipped at 3 sd
    # all wide: 10% of the width, 25% of the height
    wide = np.array([detector_box(rng, quad, wide_p=1.0) for _ in range(2000)]) - [0, 0, 100, 30]
    np.testing.assert_allclose(wide.std(0), [10, 7.5, 10, 7.5], rtol=0.15)


def test_corner_samples_are_reproducible_and_hold_the_plate():
    a_img, a_c = render_corner_sample((5, 1))
    b_img, b_c = render_corner_sample((5, 1))
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_c, b_c)
    assert a_img.shape == (H, W, 3) and a_img.dtype == np.uint8
    imgs, corners = render_corner_samples(12, seed=5, workers=1, progress=False)
    np.testing.assert_array_equal(imgs[1], a_img)
    np.testing.assert_allclose(corners[1], a_c, rtol=1e-6)
    # the window is grown around a box that is mostly a few per cent off: the corners
    # are inside it (a wide box error may cut into the plate by more than the growth)
    inside = (corners >= 0).all(axis=(1, 2)) & (corners < [W, H]).all(axis=(1, 2))
    assert inside.mean() >= 0.75
    assert (corners[..., 0] > -0.3 * W).all() and (corners[..., 0] < 1.3 * W).all()


def test_augment_moves_the_corners_with_the_pixels():
    """Dots drawn at the corners in 4 colours: after the flip, zoom and shift each dot sits
    at its corner's new position (its own label, or the mirrored one when flipped)."""
    colours = torch.eye(3).tolist() + [[1.0, 1.0, 1.0]]
    quadrants = [(0.25, 0.3), (0.75, 0.3), (0.75, 0.7), (0.25, 0.7)]  # TL, TR, BR, BL
    b = 16
    corners = torch.empty(b, 4, 2)
    images = torch.zeros(b, 3, H, W)
    rng = np.random.default_rng(0)
    for i in range(b):
        img = np.zeros((H, W, 3), np.float32)
        for k, (colour, (qx, qy)) in enumerate(zip(colours, quadrants, strict=True)):
            x, y = qx * W + rng.uniform(-12, 12), qy * H + rng.uniform(-5, 5)
            corners[i, k] = torch.tensor([x, y])
            # a disc centred on the continuous point (x, y): pixel (j, i) has its centre at +0.5
            cv2.circle(img, (int((x - 0.5) * 16), int((y - 0.5) * 16)), 40, colour, -1,
                       cv2.LINE_AA, shift=4)  # fmt: skip
        images[i] = torch.from_numpy(img).permute(2, 0, 1)
    gen = torch.Generator().manual_seed(3)
    out, moved = augment_windows(images, corners, gen)
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    flips = 0
    for i in range(b):
        found = []
        for colour in colours:
            c = torch.tensor(colour)[:, None, None]
            w = (1 - (out[i] - c).abs().sum(0)).clamp(min=0) ** 4  # this colour's dot only
            found.append(torch.stack([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()]))
        found = torch.stack(found)
        flipped = bool(found[0, 0] > found[1, 0])  # the first-drawn dot is now on the right
        expect = moved[i, [1, 0, 3, 2]] if flipped else moved[i]
        torch.testing.assert_close(found, expect, atol=0.35, rtol=0)
        flips += flipped
    assert 0 < flips < b


def test_a_small_refiner_learns_plate_corners():
    """200 steps on drawn leaning quads: the corners land within 2.5 window px (from 50)."""
    rng = np.random.default_rng(0)
    n = 96
    images = np.zeros((n, H, W, 3), np.uint8)
    corners = np.zeros((n, 4, 2), np.float32)
    for i in range(n):
        images[i] = rng.integers(0, 90, 3)
        pw = rng.uniform(90, 130)
        q = pose(rng, int(pw), int(pw / 3.1)) + [W / 2, H / 2] + rng.normal(0, 4, 2)
        cv2.fillPoly(images[i], [np.round(q * 16).astype(np.int32)], (40, 100, 230),
                     cv2.LINE_AA, shift=4)  # fmt: skip
        corners[i] = q
    torch.manual_seed(0)
    model = CornerRefiner(width=8)
    x, c = torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(corners)
    before = (model.eval()(x) - c).norm(dim=2).mean()
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    model.train()
    for _ in range(200):
        idx = torch.from_numpy(rng.choice(n, 12, replace=False))
        loss = F.l1_loss(model(x[idx]), c[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = (model.eval()(x) - c).norm(dim=2).mean()
    assert before > 15 and after < 2.5, (float(before), float(after))
