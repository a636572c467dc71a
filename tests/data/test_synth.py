"""The synthetic generator: determinism, exact geometry, and round trips through the readers."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from platelab.data.sources.ccpd import read_ccpd, text_to_indices
from platelab.data.sources.voc import read_voc
from platelab.data.sources.yolo import read_yolo
from platelab.data.synth import (
    SceneConfig,
    compose,
    effects,
    generate,
    render_plate,
    render_scene,
    scene_split,
    text,
    vehicles,
)
from platelab.data.synth.plates import STYLE_WEIGHTS, PlateImage
from platelab.data.synth.writers import ccpd_encodable
from platelab.errors import PlatelabError

# Chinese plates only (so CCPD gets every plate scene), some negatives and multi-plate scenes.
CN = SceneConfig(
    negative_rate=0.25, multi_rate=0.5, styles={"cn_blue": 2, "cn_green": 1, "cn_yellow": 1}
)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- scenes ---------------------------------------------------------------------------------
def test_render_scene_is_deterministic_per_seed():
    a, b = render_scene((7, 3)), render_scene((7, 3))
    assert a.image.tobytes() == b.image.tobytes()
    assert [(p.text, p.corners.tolist()) for p in a.plates] == [
        (p.text, p.corners.tolist()) for p in b.plates
    ]
    assert render_scene((7, 4)).image.tobytes() != a.image.tobytes()


@pytest.mark.parametrize("index", range(8))
def test_scene_geometry(index):
    scene = render_scene((11, index), SceneConfig(multi_rate=0.5))
    h, w = scene.image.shape[:2]
    assert scene.image.dtype == np.uint8 and scene.image.shape == (h, w, 3)
    assert scene.kind in ("negative", "closeup", "traffic", "street", "plate_only")
    assert (scene.kind == "negative") == (not scene.plates)
    for p in scene.plates:
        c = p.corners
        assert c.shape == (4, 2) and np.array_equal(c, np.round(c))  # integer corners
        assert (
            c[:, 0].min() >= 0 and c[:, 0].max() <= w and c[:, 1].min() >= 0 and c[:, 1].max() <= h
        )
        assert p.box_xyxy == (c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max())
        # TL, TR, BR, BL of the plate itself: clockwise, so the signed area is positive (y down).
        x, y = c.T
        assert np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)) > 0
        assert p.style in STYLE_WEIGHTS and p.text
        if p.style.startswith("cn_"):
            assert ccpd_encodable(p.text) and len(p.text) == (8 if p.style == "cn_green" else 7)
    boxes = [p.box_xyxy for p in scene.plates]
    for i, a in enumerate(boxes):  # several plates never overlap
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def _corner_skew(lean_std, monkeypatch, n=2000):
    """The posed TL corner's angle minus 90 degrees, for a plate slot on a car (the car's
    span is 5x the plate's, so the perspective barely bends the plate)."""
    from platelab.data.synth import scenes
    from platelab.data.synth.compose import apply_h

    monkeypatch.setattr(scenes, "LEAN_STD", lean_std)
    rng = np.random.default_rng(0)
    quad = np.array([[240, 300], [360, 300], [360, 340], [240, 340]], np.float64)
    skew = []
    for _ in range(n):
        c = apply_h(scenes._pose(rng, (300, 320), 1.0, (600, 400)), quad)
        top, left = c[1] - c[0], c[3] - c[0]
        skew.append(np.degrees(np.arctan2(left[1], left[0]) - np.arctan2(top[1], top[0])) - 90)
    return np.abs(np.array(skew))


def test_plates_on_cars_lean_like_a_camera_above_and_aside(monkeypatch):
    # without the shear a car's plate stays a rectangle to a degree or two; CCPD's lean
    # 2 to 12 degrees, and the shear spreads them about as wide
    from platelab.data.synth.scenes import LEAN_STD  # the default, before the patching

    upright = _corner_skew(0.0, monkeypatch)
    leaning = _corner_skew(LEAN_STD, monkeypatch)
    assert np.percentile(upright, 90) < 3.0
    assert 3.0 < np.median(leaning) < 7.0 and 8.0 < np.percentile(leaning, 90) < 16.0


def test_negative_rate_extremes():
    assert all(not render_scene((1, i), SceneConfig(negative_rate=1.0)).plates for i in range(3))
    assert all(render_scene((1, i), SceneConfig(negative_rate=0.0)).plates for i in range(3))


def test_plate_lands_exactly_on_integer_corners():
    # A flat 100x32 plate onto corners 100x32 apart: pixel centres map onto pixel
    # centres, so every pixel inside takes the plate colour exactly, none outside.
    img = np.zeros((80, 160, 3), np.uint8)
    plate = PlateImage(np.full((32, 100, 3), (20, 60, 200), np.uint8), np.full((32, 100), 255, np.uint8),
                       "皖A12345", "cn_blue")  # fmt: skip
    corners = np.array([[10, 20], [110, 20], [110, 52], [10, 52]], np.float64)
    placed = []
    compose.put_plate(img, plate, corners, placed)
    assert (img[20:52, 10:110] == (20, 60, 200)).all()
    img[20:52, 10:110] = 0
    assert not img.any()
    assert placed[0].box_xyxy == (10.0, 20.0, 110.0, 52.0)


@pytest.mark.parametrize("style", sorted(STYLE_WEIGHTS))
def test_plate_styles(style):
    rng = np.random.default_rng(5)
    plate = render_plate(style, rng, 240)
    h, w = plate.rgb.shape[:2]
    assert w == 240 and plate.alpha.shape == (h, w) and 1.5 < w / h < 5
    assert plate.alpha[h // 2, w // 2] == 255 and plate.alpha[0, 0] < 255  # rounded corners
    if style.startswith("cn_"):
        text_to_indices(plate.text)  # raises if a character is outside CCPD's tables
        assert plate.text[0] in text.CN_PROVINCES
    else:
        assert plate.text.isalnum() and plate.text.isascii() and 3 <= len(plate.text) <= 10
    # The characters are drawn: the plate is not one flat colour.
    assert plate.rgb.reshape(-1, 3).std(0).max() > 30


def test_stroke_weight_thickens_and_thins_every_stroke():
    font = text.latin_font("RobotoCondensed-Medium.ttf")
    regular, bold, light = (text.glyph_mask("H", font, w) for w in (0, 2, -2))
    # A dilation by 2 px a side grows the tight box by 4 px each way; an erosion shrinks it.
    assert bold.shape == (regular.shape[0] + 4, regular.shape[1] + 4)
    assert light.shape == (regular.shape[0] - 4, regular.shape[1] - 4)
    ink = [float((m > 127).sum()) for m in (light, regular, bold)]
    assert ink[0] < ink[1] < ink[2]
    # H's crossbar survives the thinning: the middle row still joins the two stems.
    assert (light[light.shape[0] // 2] > 127).all()


def test_plate_w_is_the_plate_typeface_w():
    m = text.plate_w() > 127
    h, w = m.shape
    assert h > 0.9 * text.GLYPH_PX and 0.5 < w / h < 0.7  # fills a plate cell, like "0"
    assert (m != m[:, ::-1]).mean() < 0.02  # mirror-symmetric
    mid = w // 2
    assert not m[int(0.2 * h), mid - 2 : mid + 3].any()  # the middle apex stops at a third
    assert m[int(0.5 * h), mid - 2 : mid + 3].all()
    assert m[int(0.2 * h), : w // 6].any() and m[int(0.2 * h), -w // 6 :].any()  # upright sides
    assert (text.plate_w(2) > 127).sum() > m.sum() > (text.plate_w(-1) > 127).sum()


def test_plate_g_is_the_plate_typeface_g():
    m = text.plate_g() > 127
    h, w = m.shape
    assert h > 0.9 * text.GLYPH_PX and 0.45 < w / h < 0.55  # a plate cell, like "0"
    row = m[int(0.52 * h)]  # the bar: from the right side half way in, clear of the left side
    assert row[w // 2 : -2].all() and row[: w // 6].any() and not row[w // 4 : w * 3 // 8].any()
    assert not m[int(0.38 * h), -w // 6 :].any()  # open at the upper right, above the bar
    assert m[int(0.75 * h), -w // 6 :].any() and m[-3:, w // 2].any()  # closed below it
    assert (text.plate_g(2) > 127).sum() > m.sum() > (text.plate_g(-1) > 127).sum()


def test_every_cn_latin_font_and_province_face_draws_every_character():
    for name in text.CN_LATIN_FONTS:
        font = text.latin_font(name)
        for ch in text.CN_ADS:
            m = text.glyph_mask(ch, font)
            assert m.shape[0] > 0.5 * text.GLYPH_PX and (m > 127).any(), (name, ch)
    assert all(f.is_file() for f in text.PLATE_CJK_FONTS)  # shipped (fonts/README.md)
    faces = (*range(len(text.PLATE_CJK_FONTS)), None)
    for ch in text.CN_PROVINCES:
        masks = [text.cjk_glyph(ch, face) for face in faces]
        assert all(m.shape[0] > 0.6 * text.GLYPH_PX for m in masks), ch
        ink = [int((m > 127).sum()) for m in masks[:3]]
        assert ink[0] < ink[1] < ink[2], (ch, ink)  # Regular, Medium, Bold: heavier in turn


def test_cjk_font_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(text, "CJK_FONT", tmp_path / "nope.ttc")
    with pytest.raises(PlatelabError, match="install fonts-wqy-microhei"):
        text.cjk_font()
    with pytest.raises(PlatelabError, match="fonts-wqy-microhei"):
        generate(tmp_path / "out", 1, progress=False)


# -- generate -------------------------------------------------------------------------------
def test_generate_is_independent_of_worker_count(tmp_path):
    one = generate(tmp_path / "a", 6, seed=2, workers=1, progress=False)
    two = generate(tmp_path / "b", 6, seed=2, workers=2, progress=False)
    assert {k: v for k, v in one.items() if k != "out"} == {
        k: v for k, v in two.items() if k != "out"
    }
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_scene_split_spreads_evenly():
    counts = Counter(scene_split(i, (0.1, 0.05)) for i in range(1000))
    assert abs(counts["val"] - 100) <= 3 and abs(counts["test"] - 50) <= 3
    assert [scene_split(i, (0.0, 0.0)) for i in range(5)] == ["train"] * 5


def test_generate_rejects_bad_arguments(tmp_path):
    with pytest.raises(PlatelabError, match="did you mean 'yolo'"):
        generate(tmp_path, 1, formats=["yolov8"], progress=False)
    with pytest.raises(PlatelabError, match="count"):
        generate(tmp_path, -1, progress=False)
    generate(tmp_path, 1, formats=["yolo"], progress=False)
    with pytest.raises(PlatelabError, match="already holds files"):
        generate(tmp_path, 1, formats=["yolo"], progress=False)
    with pytest.raises(PlatelabError, match="unknown plate styles"):  # refused before deleting
        generate(tmp_path, 1, formats="yolo", overwrite=True, config=SceneConfig(styles={"x": 1}))
    assert len(list((tmp_path / "yolo" / "images").rglob("*.jpg"))) == 1
    summary = generate(tmp_path, 2, formats="yolo", progress=False, overwrite=True)
    assert summary["formats"]["yolo"]["written"] == 2
    assert len(list((tmp_path / "yolo" / "images").rglob("*.jpg"))) == 2


def test_round_trip_through_the_readers(tmp_path):
    n, seed = 10, 7  # a seed whose 10 scenes hold negatives, single- and multi-plate scenes
    summary = generate(
        tmp_path, n, seed=seed, config=CN, split_fractions=(0.2, 0.2), progress=False
    )
    expected = [render_scene((seed, i), CN) for i in range(n)]
    stems = [f"synth_{seed}_{i:07d}" for i in range(n)]
    # frac(i * 0.618...) < 0.2 -> val, < 0.4 -> test: worked out by hand for i = 0..9.
    splits = ["val", "train", "test", "train", "train", "val", "train", "test", "train", "train"]
    assert summary["scenes"] == n and summary["by_split"] == {"train": 6, "val": 2, "test": 2}
    assert summary["negatives"] == sum(not s.plates for s in expected) > 0
    multi = sum(len(s.plates) > 1 for s in expected)
    assert multi > 0 and summary["formats"]["ccpd"] == {"written": n - multi, "skipped": multi}

    def same_plates(record, scene, corners: bool):
        assert record.size in (None, scene.image.shape[1::-1])
        got = sorted((p.box_xyxy, p.text, p.corners) for p in record.plates)
        want = sorted(
            (p.box_xyxy, p.text, tuple(map(tuple, p.corners.tolist())) if corners else None)
            for p in scene.plates
        )
        assert got == want

    records, skips = read_voc(tmp_path / "voc")
    assert not skips and [r.path.stem for r in records] == stems
    for r, scene, split in zip(records, expected, splits, strict=True):
        same_plates(r, scene, corners=False)
        assert r.split == split

    records, skips = read_yolo(tmp_path / "yolo")
    assert not skips and sorted(r.path.stem for r in records) == stems
    for r in records:
        i = stems.index(r.path.stem)
        assert r.split == splits[i] and r.size == expected[i].image.shape[1::-1]
        got = np.array(sorted(p.box_xyxy for p in r.plates)).reshape(-1, 4)
        want = np.array(sorted(p.box_xyxy for p in expected[i].plates)).reshape(-1, 4)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

    records, skips = read_ccpd(tmp_path / "ccpd")
    assert not skips and len(records) == n - multi
    by_image = {r.path.read_bytes(): r for r in records}
    for i, scene in enumerate(expected):
        jpeg = (tmp_path / "voc" / "JPEGImages" / f"{stems[i]}.jpg").read_bytes()
        if len(scene.plates) > 1:
            assert jpeg not in by_image
            continue
        r = by_image[jpeg]  # the same JPEG bytes in every format
        assert (
            r.subset == ("ccpd_np" if not scene.plates else "ccpd_synth") and r.split == splits[i]
        )
        same_plates(r, scene, corners=True)


@pytest.mark.parametrize("fmt", ["ccpd", "yolo", "voc"])
def test_prepare_round_trips_every_box_corner_and_text(tmp_path, fmt):
    """synth -> data prepare -> manifest -> letterbox inverse gives back the rendered plates."""
    from platelab.data.manifest import load_split
    from platelab.data.prepare import PrepareConfig, prepare

    n, seed = 8, 16  # negatives, single- and multi-plate scenes among the 8
    generate(tmp_path / "s", n, seed=seed, config=CN, progress=False)  # all three formats
    prepare(
        PrepareConfig(
            out=tmp_path / "ds", size=(320, 240), progress=False, **{fmt: [tmp_path / "s" / fmt]}
        )
    )
    scenes = {f"synth_{seed}_{i:07d}": render_scene((seed, i), CN) for i in range(n)}
    # Every format holds the same JPEG bytes; CCPD names encode the plate, not the index.
    stem_of = {
        hashlib.sha1(f.read_bytes()).hexdigest(): f.stem
        for f in (tmp_path / "s" / "yolo" / "images").rglob("*.jpg")
    }
    images = [m for split in ("train", "val", "test") for m in load_split(tmp_path / "ds", split)]
    single = sum(len(sc.plates) <= 1 for sc in scenes.values())
    assert len(images) == (single if fmt == "ccpd" else n)
    for m in images:
        scene = scenes[stem_of[hashlib.sha1(Path(m.orig_image).read_bytes()).hexdigest()]]
        lb = m.letterbox
        assert (lb.orig_w, lb.orig_h) == scene.image.shape[1::-1]
        tol = 1e-3 / lb.scale  # the manifest arrays are float32 canvas pixels
        got = lb.boxes_to_original(m.boxes_xyxy.astype(np.float64))
        order = np.argsort(got[:, 0])
        want = sorted(scene.plates, key=lambda p: p.box_xyxy[0])
        want_boxes = np.array([p.box_xyxy for p in want], dtype=np.float64).reshape(-1, 4)
        np.testing.assert_allclose(got[order], want_boxes, rtol=0, atol=tol)
        texts = [m.texts[i] for i in order]
        corners = lb.points_to_original(m.corners.astype(np.float64))[order]
        if fmt == "voc":  # VOC objects carry no corners
            assert np.isnan(corners).all()
        else:  # CCPD names and YOLO-pose keypoints carry the 4 corners
            want_corners = np.array([p.corners for p in want], dtype=np.float64).reshape(-1, 4, 2)
            np.testing.assert_allclose(corners, want_corners, rtol=0, atol=tol)
        if fmt == "yolo":  # YOLO labels carry no text
            assert all(t == "" for t in texts)
        else:
            assert texts == [p.text for p in want]


# -- the synthetic-to-real gap: traffic, far plates, tight boxes ----------------------------
@pytest.fixture(scope="module")
def sample():
    """200 default scenes (about 10 s): the share checks below read the same sample."""
    return [render_scene((3, i)) for i in range(200)]


def test_every_box_is_its_corners_bounding_box_inside_the_image(sample):
    for scene in sample:
        h, w = scene.image.shape[:2]
        for p in scene.plates:
            x, y = p.corners.T
            assert p.box_xyxy == (x.min(), y.min(), x.max(), y.max())
            assert 0 <= x.min() < x.max() <= w and 0 <= y.min() < y.max() <= h


def test_sample_mixes_far_plates_traffic_and_light(sample):
    widths = [p.box_xyxy[2] - p.box_xyxy[0] for s in sample for p in s.plates]
    far = sum(wd < 40 for wd in widths) / len(widths)
    assert 0.2 < far < 0.7 and min(widths) >= 9  # far cars, yet every plate a few px tall
    assert max(wd / s.image.shape[1] for s in sample for p in s.plates
               for wd in [p.box_xyxy[2] - p.box_xyxy[0]]) > 0.35  # fmt: skip  # close-ups too
    traffic = [s for s in sample if s.kind == "traffic"]
    assert len(traffic) > 30 and sum(len(s.plates) >= 2 for s in traffic) > len(traffic) / 3
    assert any(s.image.shape[:2] == (720, 1280) for s in traffic)
    lights = Counter(s.light for s in sample)
    assert lights["day"] > 100 and lights["night"] > 10 and len(lights) >= 4
    assert 0.05 < sum(not s.plates for s in sample) / len(sample) < 0.16  # ~10% negatives


@pytest.mark.parametrize("style", sorted(STYLE_WEIGHTS))
def test_far_plates_render_at_ten_pixels(style):
    plate = render_plate(style, np.random.default_rng(0), 10)
    assert plate.rgb.shape[1] == 10 and plate.rgb.shape[0] >= 2


@pytest.mark.parametrize("seed", range(6))
def test_plate_edge_is_the_box(seed):
    """A plate's visible outer edge (frame included) is its recorded box: no margin."""
    rng = np.random.default_rng(seed)
    style = sorted(STYLE_WEIGHTS)[seed % len(STYLE_WEIGHTS)]
    plate = render_plate(style, rng, int(rng.integers(20, 200)))
    plate.rgb[:] = 255  # white plate on black: every covered pixel shows
    ph, pw = plate.rgb.shape[:2]
    quad = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64)
    quad += rng.uniform(-0.15, 0.15, (4, 2)) * [pw, ph] + [60, 60]  # a perspective warp
    corners = np.round(quad)
    img = np.zeros((int(corners[:, 1].max()) + 60, int(corners[:, 0].max()) + 60, 3), np.uint8)
    placed = []
    compose.put_plate(img, plate, corners, placed)
    ys, xs = np.nonzero(img[..., 0] >= 128)
    seen = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # pixel squares' outer edges
    # Rounded plate corners may trim the extreme corner pixel; nothing reaches outside.
    np.testing.assert_allclose(seen, placed[0].box_xyxy, atol=1.5)
    x0, y0, x1, y1 = placed[0].box_xyxy
    assert seen[0] >= x0 and seen[1] >= y0 and seen[2] <= x1 and seen[3] <= y1


def test_traffic_scenes_are_independent_of_worker_count(tmp_path):
    cfg = SceneConfig(kinds={"traffic": 1}, negative_rate=0.0)
    one = generate(tmp_path / "a", 4, seed=5, formats="yolo", config=cfg, progress=False)
    two = generate(tmp_path / "b", 4, seed=5, formats="yolo", config=cfg, workers=2, progress=False)
    assert one["by_kind"] == {"traffic": 4} and one["plates"] >= 8
    assert {k: v for k, v in one.items() if k != "out"} == {
        k: v for k, v in two.items() if k != "out"
    }
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


@pytest.mark.parametrize("seed", range(4))
def test_motion_blur_keeps_the_corners_of_a_tall_image(seed):
    # Rotating within the image's own canvas once cut off its corners, plates there included.
    img = np.zeros((300, 100, 3), np.uint8)
    img[275:295, 5:45] = 255
    out = effects.motion(np.random.default_rng(seed), img, 5)
    assert out[280:290, 10:40].mean() > 150 and abs(float(out.mean()) - float(img.mean())) < 1


@pytest.mark.parametrize("seed", range(3))
def test_sharpen_overshoots_an_edge_and_keeps_flat_areas(seed):
    # An unsharp mask: a halo on both sides of a step, nothing changes far from it.
    img = np.full((20, 40, 3), 60, np.uint8)
    img[:, 20:] = 180
    out = effects.sharpen(np.random.default_rng(seed), img)
    assert out.shape == img.shape and out.dtype == np.uint8
    out = out.astype(int)
    assert out[:, 19].max() < 60 and out[:, 20].min() > 180  # darker dark side, brighter bright
    assert (out[:, :12] == 60).all() and (out[:, 28:] == 180).all()


@pytest.mark.parametrize("rear", [True, False])
def test_badges_write_outside_the_plate_holder_only(rear):
    # Words, an emblem and stickers: ink beside the plate, none in its holder.
    w, h = 400, 320
    keep_out = (0.38, 0.55, 0.62, 0.68)
    inked = 0
    for seed in range(30):
        img = np.full((h, w, 3), 120, np.float32)
        drawn = vehicles.badges(img, np.random.default_rng(seed), keep_out, 0.1, 0.45, 0.9,
                                np.array([120.0, 120.0, 120.0]), rear)  # fmt: skip
        changed = (img != 120).any(axis=2)
        x0, y0, x1, y1 = (int(keep_out[0] * w), int(keep_out[1] * h), int(keep_out[2] * w),
                          int(keep_out[3] * h))  # fmt: skip
        assert not changed[y0:y1, x0:x1].any(), f"seed {seed}: ink in the plate holder"
        for bx0, by0, bx1, by1 in drawn:
            assert bx1 < keep_out[0] or bx0 > keep_out[2] or by1 < keep_out[1] or by0 > keep_out[3]
            assert changed[int(by0 * h) : int(by1 * h) + 1, int(bx0 * w) : int(bx1 * w) + 1].any()
        inked += len(drawn)
    assert inked >= 20  # most cars wear something


@pytest.mark.parametrize("rear", [True, False])
def test_livery_writes_a_big_word_above_the_plate_holder(rear):
    w, h = 400, 320
    keep_out = (0.38, 0.6, 0.62, 0.72)
    found = 0
    for seed in range(20):
        img = np.full((h, w, 3), 120, np.float32)
        b = vehicles.livery(img, np.random.default_rng(seed), keep_out, 0.1, 0.3, 0.45, rear)
        changed = (img != 120).any(axis=2)
        assert not changed[int(keep_out[1] * h) :].any(), f"seed {seed}: ink at or below the holder"
        if b is None:
            assert not changed.any()
            continue
        found += 1
        assert b[1] >= 0.3 and b[3] < keep_out[1]  # between the glass and the holder
        assert b[3] - b[1] >= 0.05  # at least half the plate's height: big letters
        inside = changed[int(b[1] * h) : int(b[3] * h) + 1, int(b[0] * w) : int(b[2] * w) + 1]
        assert inside.mean() > 0.1  # the word is drawn in its box
    assert found >= 15


def test_wrap_patterns_the_body_only_in_two_contrasting_tones():
    h, w = 120, 200
    body = np.zeros((h, w), bool)
    body[20:100, 30:170] = True
    for seed in range(12):
        img = np.full((h, w, 3), 90, np.float32)
        vehicles.wrap(img, np.random.default_rng(seed), body)
        assert (img[~body] == 90).all()
        lum = img[body].mean(axis=1)
        assert lum.max() - lum.min() > 40, f"seed {seed}: no pattern"
        assert (lum == lum.max()).mean() > 0.05 and (lum < lum.max()).mean() > 0.05


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_scene_config_sets_how_many_cars_wear_liveries_and_wraps(monkeypatch, rate):
    calls = Counter()

    def spy(name, real):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(vehicles, "livery", spy("livery", vehicles.livery))
    monkeypatch.setattr(vehicles, "wrap", spy("wrap", vehicles.wrap))
    cfg = SceneConfig(kinds={"traffic": 1.0}, negative_rate=0.0, livery_rate=rate, wrap_rate=rate)
    cars = 0
    for seed in range(3):
        scene = render_scene(seed, cfg, size=(640, 360))
        cars += len(scene.plates)
    assert cars >= 3  # traffic: a car per plate, more without a readable one
    if rate == 0:
        assert calls == Counter()
    else:  # every car drawn, plate or not, wears both
        assert calls["livery"] == calls["wrap"] >= cars
