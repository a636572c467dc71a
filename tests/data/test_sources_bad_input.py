"""Source readers on malformed input: each bad file is a reported skip, the rest still loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from platelab.data.sources.ccpd import format_ccpd_name, parse_ccpd_name, read_ccpd
from platelab.data.sources.voc import read_voc
from platelab.data.sources.yolo import read_yolo
from platelab.errors import PlatelabError
from tests.data.test_sources import voc_obj, voc_xml, write_jpeg

GOOD = "025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15"


@pytest.mark.parametrize(
    "name,reason",
    [
        ("photo_001.jpg", "expected 7 fields"),
        (GOOD + "-9.jpg", "got 8"),
        ("0.25" + GOOD[3:], "area must be digits"),
        (GOOD.replace("95_113", "95"), "tilt must be 2 integers"),
        (GOOD.replace("154&383_386&473-", "154&383-"), "box must be 2 points"),
        (GOOD.replace("154&383_386&473-", "386&473_154&383-"), "left of or above"),
        (GOOD.replace("_363&402-", "-"), "vertices must be 4 points"),
        (GOOD.replace("363&402", "363&x"), "vertices must be 2 integers"),
        (GOOD.replace("-0_0_22_27_27_33_16-", "-0_0_22_27_27_33-"), "7 or 8 characters"),
        (GOOD.replace("-0_0_22_", "-34_0_22_"), "index 34 at position 0"),
        (GOOD.replace("-0_0_22_", "-0_25_22_"), "index 25 at position 1"),
        (GOOD.replace("_33_16-", "_33_35-"), "index 35 at position 6"),
        (GOOD.replace("-37-15", "-bright-15"), "brightness"),
        (GOOD.replace("-37-15", "-37-"), "blur"),
    ],
)
def test_malformed_ccpd_names(name, reason):
    with pytest.raises(ValueError, match=reason):
        parse_ccpd_name(name)


@pytest.mark.parametrize(
    "text,kw,reason",
    [
        ("皖AY339", {}, "7 or 8 characters"),
        ("皖IY339S", {}, "'I' at position 1"),  # I is not a CCPD letter
        ("港AY339S", {}, "'港' at position 0"),
        ("皖AY339S", {"area": 1.0}, r"\[0, 1\)"),
        ("皖AY339S", {"blur": -1}, "no negative"),
    ],
)
def test_format_ccpd_name_refuses_what_it_cannot_write(text, kw, reason):
    corners = ((0, 0), (10, 0), (10, 5), (0, 5))
    with pytest.raises(ValueError, match=reason):
        format_ccpd_name((0, 0, 10, 5), corners, text, **{"area": 0.01, **kw})


@pytest.mark.parametrize("reader", [read_ccpd, read_yolo, read_voc])
def test_missing_root_is_a_user_error(tmp_path, reader):
    with pytest.raises(PlatelabError, match=f"not found: {tmp_path / 'nope'}"):
        reader(tmp_path / "nope")


def test_ccpd_split_listed_twice_keeps_the_first(tmp_path, caplog):
    (tmp_path / "ccpd_base").mkdir()
    (tmp_path / "ccpd_base" / f"{GOOD}.jpg").touch()
    (tmp_path / "split").mkdir()  # the singular spelling works too
    for split in ("train", "test"):
        (tmp_path / "split" / f"{split}.txt").write_text(f"./ccpd_base/{GOOD}.jpg\n")
    records, _ = read_ccpd(tmp_path)
    assert records[0].split == "train"
    assert "listed in both train and test" in caplog.text


@pytest.mark.parametrize(
    "line,reason",
    [
        ("0 0.5 0.5 0.2", "got 4 fields"),
        ("0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9", "got 10 fields"),  # even: not a polygon
        ("0 0.5 abc 0.2 0.1", "not a number"),
        ("0 nan 0.5 0.2 0.1", "finite"),
        ("1.5 0.5 0.5 0.2 0.1", "non-negative integer"),
        ("-1 0.5 0.5 0.2 0.1", "non-negative integer"),
        ("0 0.5 0.5 -0.2 0.1", "must be positive"),
        ("0 0.5 0.5 0.2 0", "must be positive"),
    ],
)
def test_bad_yolo_line_skips_its_image_only(tmp_path, line, reason):
    for stem in ("good", "bad"):
        write_jpeg(tmp_path / "images" / f"{stem}.jpg", 40, 20)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "good.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "labels" / "bad.txt").write_text(f"\n0 0.5 0.5 0.5 0.5\n{line}\n")
    records, skips = read_yolo(tmp_path)
    assert [r.path.stem for r in records] == ["good"]
    assert records[0].plates[0].box_xyxy == (10.0, 5.0, 30.0, 15.0)
    assert len(skips) == 1 and skips[0].path == str(tmp_path / "images" / "bad.jpg")
    assert "labels/bad.txt:3: " in skips[0].reason and reason in skips[0].reason


def test_short_line_in_a_keypoint_dataset_is_a_skip_not_a_crash(tmp_path):
    from platelab.data.sources.yolo import parse_label_file

    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.5\n")  # pose datasets skip the polygon check: not the box one
    with pytest.raises(ValueError, match="got 3 fields"):
        parse_label_file(label, keypoints=True)


def test_yolo_corrupt_image_and_undecodable_label(tmp_path):
    write_jpeg(tmp_path / "images" / "ok.jpg", 40, 20)
    (tmp_path / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8not really a jpeg")
    (tmp_path / "images" / "empty.png").write_bytes(b"")  # cv2 raises on an empty buffer
    write_jpeg(tmp_path / "images" / "latin1.jpg", 40, 20)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "latin1.txt").write_bytes(b"0 0.5 0.5 0.5 0.5 \xe9\n")
    records, skips = read_yolo(tmp_path, missing_labels="negative")
    assert [r.path.stem for r in records] == ["ok"] and records[0].plates == []
    reasons = {Path(s.path).stem: s.reason for s in skips}
    assert reasons["corrupt"].startswith("unreadable image")
    assert reasons["empty"].startswith("unreadable image")
    assert reasons["latin1"].startswith("malformed label")


def test_yolo_invalid_data_yaml_is_a_user_error(tmp_path):
    (tmp_path / "data.yaml").write_text("train: [unclosed\n")
    with pytest.raises(PlatelabError, match="not valid YAML"):
        read_yolo(tmp_path)


@pytest.mark.parametrize(
    "xml,reason",
    [
        (voc_xml("x.jpg", voc_obj("plate", (1, 2, 3, 4)))[:-30], "malformed VOC XML"),  # truncated
        ("", "malformed VOC XML"),
        ("<notvoc><filename>x.jpg</filename></notvoc>", "not <annotation>"),
        (voc_xml("x.jpg", "<object><name>plate</name></object>"), "has no <bndbox>"),
        (voc_xml("x.jpg", voc_obj("plate", (1, "two", 3, 4))), "<ymin> is not a number: 'two'"),
        (voc_xml("x.jpg", voc_obj("plate", (10, 2, 3, 4))), "inverted box"),
        (voc_xml("x.jpg", voc_obj("plate", (1, 2, "nan", 4))), "<xmax> is not a number: 'nan'"),
        (voc_xml("missing.jpg", voc_obj("plate", (1, 2, 3, 4))), "'missing.jpg' not found"),
    ],
)
def test_bad_voc_annotation_skips_its_image_only(tmp_path, xml, reason):
    write_jpeg(tmp_path / "images" / "ok.jpg", 40, 20)
    write_jpeg(tmp_path / "images" / "x.jpg", 40, 20)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "ok.xml").write_text(
        voc_xml("ok.jpg", voc_obj("plate", (1, 2, 3, 4)))
    )
    name = "missing" if "missing" in xml else "x"
    (tmp_path / "annotations" / f"{name}.xml").write_text(xml)
    records, skips = read_voc(tmp_path)
    assert [r.path.name for r in records] == ["ok.jpg"]
    assert len(skips) == 1 and skips[0].path == str(tmp_path / "annotations" / f"{name}.xml")
    assert reason in skips[0].reason


def test_voc_corrupt_image_is_skipped(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "photo.xml").write_text(voc_xml("photo.jpg", voc_obj("plate", (1, 2, 3, 4))))
    records, skips = read_voc(tmp_path)
    assert records == []
    assert skips[0].path == str(tmp_path / "photo.jpg") and "unreadable image" in skips[0].reason
