"""Source readers: CCPD names, YOLO labels, Pascal VOC XML, on real samples and tiny built trees."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platelab.data.sources.ccpd import (
    ADS,
    ALPHABETS,
    PROVINCES,
    CCPDName,
    format_ccpd_name,
    parse_ccpd_name,
    read_ccpd,
    text_to_indices,
)
from platelab.data.sources.voc import read_voc
from platelab.data.sources.yolo import read_yolo

README_NAME = (
    "025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg"
)


def write_jpeg(path: Path, w: int, h: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return path


def shoelace(corners) -> float:
    """Twice the signed area; positive means clockwise on screen (y points down)."""
    c = np.asarray(corners, dtype=float)
    x, y = c[:, 0], c[:, 1]
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


# -- CCPD ------------------------------------------------------------------------------------

# Read by eye from the names (vertices RB_LB_LT_RT reordered to TL, TR, BR, BL); the texts were
# also checked against the plate crops of the real photos.
# fmt: off
REAL_CCPD = [
    # name, then: area, (tilt_h, tilt_v), box_xyxy, corners TL TR BR BL, text, brightness, blur
    ("03-92_88-249&560_561&670-561&668_265&654_266&562_562&576-0_0_10_8_30_26_28-114-73.jpg",
     0.03, (92, 88), (249, 560, 561, 670),
     ((266, 562), (562, 576), (561, 668), (265, 654)), "皖ALJ624", 114, 73),
    ("0490469348659-95_86-191&427_509&585-509&591_177&552_177&422_509&461-0_0_20_17_30_25_28-157-140.jpg",
     0.0490469348659, (95, 86), (191, 427, 509, 585),
     ((177, 422), (509, 461), (509, 591), (177, 552)), "皖AWT614", 157, 140),
    ("0130387931034-92_78-208&514_430&581-440&588_205&575_185&501_420&514-0_0_24_12_31_25_32-134-19.jpg",
     0.0130387931034, (92, 78), (208, 514, 430, 581),
     ((185, 501), (420, 514), (440, 588), (205, 575)), "皖A0N718", 134, 19),
    (README_NAME,  # the example in CCPD's README, not a file of the sample
     0.025, (95, 113), (154, 383, 386, 473),
     ((154, 383), (363, 402), (386, 473), (177, 454)), "皖AY339S", 37, 15),
]
# fmt: on


@pytest.mark.parametrize(
    "name,area,tilt,box,corners,text,brightness,blur", REAL_CCPD, ids=[r[5] for r in REAL_CCPD]
)
def test_parse_ccpd_name(real_data, name, area, tilt, box, corners, text, brightness, blur):
    if name != README_NAME:
        assert (real_data / "ccpd_base" / name).is_file()
    got = parse_ccpd_name(name)
    assert got.area == area
    assert (got.tilt_h, got.tilt_v) == tilt
    assert got.box_xyxy == box
    assert got.corners == corners
    assert got.vertices == (corners[2], corners[3], corners[0], corners[1])  # RB, LB, LT, RT
    assert got.text == text
    assert (got.brightness, got.blur) == (brightness, blur)


def test_all_real_names_round_trip_exactly_with_clockwise_corners(real_data):
    names = sorted(p.name for p in (real_data / "ccpd_base").glob("*.jpg"))
    assert len(names) == 6
    for name in names:
        n = parse_ccpd_name(name)
        again = format_ccpd_name(
            n.box_xyxy,
            n.corners,
            n.text,
            area=n.area,
            tilt=(n.tilt_h, n.tilt_v),
            brightness=n.brightness,
            blur=n.blur,
        )
        assert again == name
        assert shoelace(n.corners) > 0  # clockwise on screen
        assert np.argmin([x + y for x, y in n.corners]) == 0  # the first corner is top-left
        # The area field is the plate's share of the 720x1160 photo (within CCPD's own rounding).
        assert 0.6 < n.area / (shoelace(n.corners) / 2 / (720 * 1160)) < 1.1


def test_format_then_parse_round_trip_rounds_floats():
    corners = ((100.4, 200.6), (300.0, 210.0), (305.2, 260.0), (98.0, 250.5))
    name = format_ccpd_name(
        (97.6, 199.5, 305.4, 261.2),
        corners,
        "粤B12345",
        area=0.0123,
        tilt=(80, 100),
        brightness=5,
        blur=77,
        suffix=".png",
    )
    want = "0123-80_100-98&200_305&261-305&260_98&250_100&201_300&210-19_1_25_26_27_28_29-5-77.png"
    assert name == want
    assert parse_ccpd_name(name) == CCPDName(
        area=0.0123,
        tilt_h=80,
        tilt_v=100,
        box_xyxy=(98, 200, 305, 261),
        vertices=((305, 260), (98, 250), (100, 201), (300, 210)),
        indices=(19, 1, 25, 26, 27, 28, 29),
        text="粤B12345",
        brightness=5,
        blur=77,
    )


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 33),
    st.integers(0, 24),
    st.lists(st.integers(0, 34), min_size=5, max_size=6),
    st.lists(st.integers(0, 4000), min_size=12, max_size=12),
    st.floats(0, 1, exclude_max=True),
)
def test_format_parse_round_trip_property(province, letter, ads, coords, area):
    text = PROVINCES[province] + ALPHABETS[letter] + "".join(ADS[i] for i in ads)
    (x0, x1), (y0, y1) = sorted(coords[0:2]), sorted(coords[2:4])
    corners = tuple(zip(coords[4::2], coords[5::2], strict=True))
    name = format_ccpd_name((x0, y0, x1, y1), corners, text, area=area, tilt=(3, 177))
    got = parse_ccpd_name(name)
    assert (got.text, got.indices, got.area) == (text, (province, letter, *ads), area)
    assert (got.box_xyxy, got.corners) == ((x0, y0, x1, y1), corners)


def test_green_plate_has_eight_characters():
    name = "042-90_90-10&20_110&50-110&50_10&50_10&20_110&20-0_0_3_25_26_27_28_29-100-0.jpg"
    n = parse_ccpd_name(name)
    assert n.text == "皖AD12345" and len(n.indices) == 8
    assert text_to_indices("皖AD12345") == (0, 0, 3, 25, 26, 27, 28, 29)
    assert format_ccpd_name(n.box_xyxy, n.corners, n.text, area=0.042, brightness=100) == name


def test_read_real_ccpd(real_data):
    records, skips = read_ccpd(real_data / "ccpd_base")
    assert skips == [] and len(records) == 6
    assert {r.subset for r in records} == {"ccpd_base"}
    assert {r.source for r in records} == {"ccpd"}
    rec = next(r for r in records if r.path.name.startswith("03-"))
    assert rec.plates[0].box_xyxy == (249.0, 560.0, 561.0, 670.0)
    assert rec.plates[0].corners == ((266, 562), (562, 576), (561, 668), (265, 654))
    assert rec.plates[0].text == "皖ALJ624" and rec.split is None
    assert rec.meta == {"area": 0.03, "tilt_h": 92, "tilt_v": 88, "brightness": 114, "blur": 73}


def make_ccpd(root: Path) -> dict[str, Path]:
    """A CCPD2019-like tree; CCPD's reader never opens the images, so empty files do."""
    files = {
        "base": root / "ccpd_base" / REAL_CCPD[0][0],
        "blur": root / "ccpd_blur" / REAL_CCPD[1][0],
        "np_plain": root / "ccpd_np" / "1234-no-plate-here.jpg",
        "np_named": root / "ccpd_np" / REAL_CCPD[2][0],
        "bad": root / "ccpd_base" / "not-a-ccpd-name.jpg",
    }
    for p in files.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text(f"ccpd_base/{files['base'].name}\n")
    (root / "splits" / "test.txt").write_text(f"ccpd_np/{files['np_plain'].name}\n\n")
    return files


def test_read_ccpd_tree_subsets_negatives_splits_and_skips(tmp_path):
    files = make_ccpd(tmp_path)
    records, skips = read_ccpd(tmp_path)
    by_path = {r.path: r for r in records}
    assert len(records) == 4
    assert [s.path for s in skips] == [str(files["bad"])]
    assert "expected 7 fields" in skips[0].reason
    assert by_path[files["base"]].subset == "ccpd_base" and by_path[files["base"]].split == "train"
    assert by_path[files["blur"]].subset == "ccpd_blur" and by_path[files["blur"]].split is None
    assert by_path[files["blur"]].plates[0].text == "皖AWT614"
    for key in ("np_plain", "np_named"):  # negatives whatever the name
        assert by_path[files[key]].plates == [] and by_path[files[key]].subset == "ccpd_np"
    assert by_path[files["np_plain"]].split == "test"
    assert by_path[files["np_named"]].split is None

    records, _ = read_ccpd(tmp_path, split_files=False)
    assert all(r.split is None for r in records)


def test_ccpd2020_split_folders(tmp_path):
    name = "0042-90_90-10&20_110&50-110&50_10&50_10&20_110&20-0_0_3_25_26_27_28_29-100-0.jpg"
    for split in ("train", "val", "test"):
        (tmp_path / "ccpd_green" / split).mkdir(parents=True)
        (tmp_path / "ccpd_green" / split / name).touch()
    records, skips = read_ccpd(tmp_path)
    assert skips == []
    assert sorted(r.split for r in records) == ["test", "train", "val"]
    assert {r.subset for r in records} == {"ccpd_green"}


# -- YOLO ------------------------------------------------------------------------------------


def make_yolo(root: Path, layout: str) -> dict[str, Path]:
    """Three 200x100 images per split; labels hand-written so the boxes are easy to check."""
    labels = {
        "two": "0 0.5 0.5 0.2 0.4\n1 0.25 0.75 0.1 0.2\n",  # (80,30,120,70) and (40,65,60,85) in 200x100
        "cls1": "1 0.5 0.5 1.0 1.0\n",  # the whole image
        "empty": "",
    }
    out = {}
    for split in ("train", "valid"):
        for stem, text in labels.items():
            if layout == "images_split":
                img_dir, lbl_dir = root / "images" / split, root / "labels" / split
            elif layout == "split_images":
                img_dir, lbl_dir = root / split / "images", root / split / "labels"
            else:
                img_dir, lbl_dir = root / "images", root / "labels"
            out[f"{split}/{stem}"] = write_jpeg(img_dir / f"{split}_{stem}.jpg", 200, 100)
            lbl_dir.mkdir(parents=True, exist_ok=True)
            (lbl_dir / f"{split}_{stem}.txt").write_text(text)
        out[f"{split}/nolabel"] = write_jpeg(img_dir / f"{split}_nolabel.jpg", 200, 100)
    return out


@pytest.mark.parametrize("layout", ["images_split", "split_images", "flat"])
def test_yolo_layouts(tmp_path, layout):
    root = tmp_path / "plates"
    files = make_yolo(root, layout)
    # two class ids and no data.yaml naming them: the caller says both are plates
    records, skips = read_yolo(root, classes={0, 1}, missing_labels="negative")
    assert skips == []
    by_path = {r.path: r for r in records}
    assert len(records) == 8
    two = by_path[files["train/two"]]
    np.testing.assert_allclose(
        [p.box_xyxy for p in two.plates], [[80, 30, 120, 70], [40, 65, 60, 85]]
    )
    assert two.plates[0].corners is None and two.plates[0].text is None
    assert two.size == (200, 100) and two.subset == "plates" and two.meta["class_ids"] == [0, 1]
    assert by_path[files["valid/cls1"]].plates[0].box_xyxy == (0.0, 0.0, 200.0, 100.0)
    assert (
        by_path[files["train/empty"]].plates == [] and by_path[files["train/nolabel"]].plates == []
    )
    want = (
        {"train": "train", "valid": "val"} if layout != "flat" else {"train": None, "valid": None}
    )
    for key, path in files.items():
        assert by_path[path].split == want[key.split("/")[0]]


def test_yolo_class_filter(tmp_path):
    files = make_yolo(tmp_path, "images_split")
    records, _ = read_yolo(tmp_path, classes={1})
    by_path = {r.path: r for r in records}
    assert [p.box_xyxy for p in by_path[files["train/two"]].plates] == [(40.0, 65.0, 60.0, 85.0)]
    records, _ = read_yolo(tmp_path, classes={0})
    by_path = {r.path: r for r in records}
    assert by_path[files["train/cls1"]].plates == []  # all its boxes filtered out: a negative
    assert len(by_path[files["train/two"]].plates) == 1


def test_yolo_data_yaml_names_paths_and_roboflow_parent(tmp_path):
    files = make_yolo(tmp_path, "split_images")
    (tmp_path / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['plate', 'car']\n"
    )
    records, skips = read_yolo(tmp_path, missing_labels="negative")
    assert skips == [] and len(records) == 8
    two = next(r for r in records if r.path == files["train/two"])
    # data.yaml names the classes: only "plate" boxes are plates, "car" ones are dropped
    assert two.meta["class_names"] == ["plate"] and two.split == "train"
    records, _ = read_yolo(tmp_path, classes=["plate", "car"], missing_labels="negative")
    two = next(r for r in records if r.path == files["train/two"])
    assert two.meta["class_names"] == ["plate", "car"]
    assert next(r for r in records if r.path == files["valid/two"]).split == "val"

    (tmp_path / "val.txt").write_text(f"./valid/images/{files['valid/two'].name}\n")
    yaml_text = f"path: {tmp_path}\ntrain: train/images\nval: val.txt\ntest: nowhere\n"
    (tmp_path / "data.yaml").write_text(yaml_text)
    records, skips = read_yolo(tmp_path, classes={0, 1}, missing_labels="negative")
    assert len(records) == 5  # only what the yaml lists
    assert [r.path for r in records if r.split == "val"] == [files["valid/two"]]
    assert len(skips) == 1 and "nowhere" in skips[0].reason


def test_yolo_polygon_becomes_enclosing_box_and_bad_line_skips_only_its_image(tmp_path):
    files = make_yolo(tmp_path, "images_split")
    label = tmp_path / "labels" / "train" / "train_two.txt"
    label.write_text("0 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n")  # a 4-point polygon
    bad = tmp_path / "labels" / "valid" / "valid_two.txt"
    bad.write_text("0 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.2\n")  # line 2 has 4 fields
    records, skips = read_yolo(tmp_path, classes={0, 1}, missing_labels="negative")
    assert len(records) == 7
    poly = next(r for r in records if r.path == files["train/two"])
    np.testing.assert_allclose(poly.plates[0].box_xyxy, [20, 20, 100, 60])
    assert [s.path for s in skips] == [str(files["valid/two"])]
    assert f"{bad}:2" in skips[0].reason and "4 fields" in skips[0].reason


# -- VOC -------------------------------------------------------------------------------------


def test_read_real_kaggle_voc(real_data, caplog):
    with caplog.at_level(logging.WARNING, logger="platelab.data.sources.voc"):
        records, skips = read_voc(real_data / "kaggle_voc")
    assert skips == [] and len(records) == 20
    counts = {r.path.stem: len(r.plates) for r in records}
    # The sample's README says one photo has two plates; Cars106 is a 2x2 mosaic of four cars,
    # each plate annotated (checked by drawing the boxes).
    assert {k: v for k, v in counts.items() if v != 1} == {"Cars106": 4}
    assert sum(counts.values()) == 23
    cars2 = next(r for r in records if r.path.name == "Cars2.jpg")  # XML says Cars2.png
    assert [p.box_xyxy for p in cars2.plates] == [(238.0, 183.0, 280.0, 200.0)]  # from Cars2.xml
    assert cars2.size == (416, 416) and cars2.meta["xml_size"] == (400, 400)
    assert all(r.size == (416, 416) and r.subset == "kaggle_voc" for r in records)
    assert all(r.plates[0].text is None and r.split is None for r in records)
    # Every XML in the sample has a stale <size>: one warning for the dataset, with an example.
    (warned,) = caplog.messages
    assert "20 of 20" in warned and "Cars106.xml: 400x247 vs 416x416" in warned


def voc_xml(filename: str, objects: str, size=(64, 48), path: str = "") -> str:
    return (
        f"<annotation><filename>{filename}</filename><path>{path}</path><size><width>{size[0]}"
        f"</width><height>{size[1]}</height><depth>3</depth></size>{objects}</annotation>"
    )


def voc_obj(name: str, box, extra: str = "") -> str:
    x0, y0, x1, y1 = box
    return (
        f"<object><name>{name}</name>{extra}<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
    )


def test_voc_standard_layout_classes_text_and_splits(tmp_path, caplog):
    root = tmp_path / "VOC2012"
    write_jpeg(root / "JPEGImages" / "a.jpg", 64, 48)
    write_jpeg(root / "JPEGImages" / "b.jpg", 64, 48)
    write_jpeg(root / "JPEGImages" / "c.jpg", 64, 48)
    cvat = (
        "<attributes><attribute><name>occluded</name><value>no</value></attribute>"
        "<attribute><name>plate</name><value>AB 123</value></attribute></attributes>"
    )
    ann = root / "Annotations"
    ann.mkdir()
    (ann / "a.xml").write_text(
        voc_xml(
            "a.jpg",
            voc_obj("License_Plate", (1.5, 2, 30.25, 12), "<text>XY-99</text>")
            + voc_obj("car", (0, 0, 64, 48))
            + voc_obj("LP", (40, 30, 60, 40), cvat),
        )
    )
    (ann / "b.xml").write_text(voc_xml("b.jpg", voc_obj("car", (0, 0, 64, 48))))
    # <filename> is wrong, <path> (from another machine) has the right base name.
    (ann / "c.xml").write_text(
        voc_xml("zzz.jpg", voc_obj("plate", (5, 5, 9, 9)), path="C:\\labels\\c.jpg")
    )
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nc\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    with caplog.at_level(logging.WARNING):
        records, skips = read_voc(root)
    assert skips == [] and caplog.messages == []  # <size> agrees: no warning
    a, b, c = records
    assert [p.box_xyxy for p in a.plates] == [(1.5, 2.0, 30.25, 12.0), (40.0, 30.0, 60.0, 40.0)]
    assert [p.text for p in a.plates] == ["XY-99", "AB 123"]
    assert b.plates == [] and b.split == "val"  # only a car: a negative
    assert c.path == root / "JPEGImages" / "c.jpg" and c.split == "train" and a.split == "train"
    assert "xml_size" not in a.meta and a.size == (64, 48) and a.subset == "VOC2012"

    records, _ = read_voc(root, class_names=None)
    assert len(records[0].plates) == 3 and len(records[1].plates) == 1
    records, _ = read_voc(root, class_names={"CAR"})
    assert [len(r.plates) for r in records] == [1, 1, 0]


def test_voc_xml_beside_image(tmp_path):
    write_jpeg(tmp_path / "set" / "photo.png", 30, 20)
    (tmp_path / "set" / "photo.xml").write_text(
        voc_xml("photo.png", voc_obj("plate", (1, 2, 3, 4)), size=(0, 0))
    )
    records, skips = read_voc(tmp_path)
    assert skips == [] and len(records) == 1
    assert records[0].size == (30, 20) and records[0].meta == {}  # a 0x0 <size> says nothing
    assert (
        records[0].plates[0].box_xyxy == (1.0, 2.0, 3.0, 4.0) and records[0].subset == tmp_path.name
    )


def test_yolo_pose_corners_are_read_in_order_and_visibility_zero_is_unknown(tmp_path):
    from platelab.data.sources.yolo import read_yolo

    write_jpeg(tmp_path / "images" / "a.jpg", 200, 100)
    (tmp_path / "labels").mkdir()
    # box (20..60, 40..60) px; corners TL (20, 40), TR (60, 42), BR (58, 60), BL (22, 58)
    good = "0 0.2 0.5 0.2 0.2 0.1 0.4 2 0.3 0.42 2 0.29 0.6 2 0.11 0.58 2"
    hidden = "0 0.7 0.5 0.2 0.2 0.6 0.4 2 0.8 0.4 0 0.8 0.6 2 0.6 0.6 2"
    (tmp_path / "labels" / "a.txt").write_text(f"{good}\n{hidden}\n")
    (tmp_path / "data.yaml").write_text(
        "path: .\ntrain: images\nkpt_shape: [4, 3]\nnames:\n  0: plate\n"
    )
    records, skips = read_yolo(tmp_path)
    assert not skips
    first, second = records[0].plates
    np.testing.assert_allclose(
        first.corners_array(), [[20, 40], [60, 42], [58, 60], [22, 58]], atol=1e-9
    )
    assert first.box_xyxy == pytest.approx((20.0, 40.0, 60.0, 60.0))
    assert second.corners is None  # one corner with visibility 0: the quad is not known
