"""Issue 10, item 4: a plate box that does not fit its photo skips the photo, with the reason.

Before, such a photo became a negative (its plate listed only under dropped boxes),
and a YOLO ``w = 7`` box silently became the whole image.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from platelab.data.manifest import load_split
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.records import Plate, fit_plates
from tests.data.test_sources import voc_obj, voc_xml, write_jpeg


@pytest.mark.parametrize(
    ("box", "clipped"),
    [
        ((10, 10, 30, 20), (10, 10, 30, 20)),  # inside
        ((-1, 10, 19, 20), (0, 10, 19, 20)),  # 1 px of a 20 px box: 5%, clipped
        ((50, 40, 70, 50.5), None),  # 6 of 20 px over the right edge: skipped
        ((10, 10, 10, 20), None),  # no area
        ((100, 100, 120, 110), None),  # outside
        ((-160, -120, 224, 168), None),  # a YOLO w = 6 box centred on the image
        ((float("nan"), 0, 5, 5), None),
    ],
)
def test_fit_plates(box, clipped):
    plates, why = fit_plates([Plate(box_xyxy=box)], 64, 48)
    if clipped is None:
        assert plates == [] and why
    else:
        assert why is None and plates[0].box_xyxy == pytest.approx(clipped)


def test_yolo_box_larger_than_the_image_skips_the_photo_with_its_reason(tmp_path):
    root = tmp_path / "yolo"
    labels = {
        "ok": "0 0.5 0.5 0.2 0.2\n",
        "huge": "0 0.5 0.5 7 0.2\n",  # w = 7: was the whole image
        "outside": "0 1.8 0.5 0.2 0.2\n",  # entirely right of the image: was a negative
        "overhang": "0 0.99 0.5 0.2 0.2\n",  # 45% of the box past the edge
        "slight": "0 0.095 0.5 0.2 0.2\n",  # 2.5% of the box past the left edge: clipped
    }
    for stem, text in labels.items():
        write_jpeg(root / "images" / f"{stem}.jpg", 64, 48)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{stem}.txt").write_text(text)
    out = tmp_path / "ds"
    report = prepare(PrepareConfig(out=out, yolo=[root], size=(64, 48), split=(1, 0, 0),
                                   progress=False))  # fmt: skip
    reasons = {s["path"].rsplit("/", 1)[1]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"huge.jpg", "outside.jpg", "overhang.jpg"}
    assert all("outside the 64x48 image" in r for r in reasons.values())
    assert report["counts"]["train"] == {"images": 2, "plates": 2, "negatives": 0}
    slight = next(m for m in load_split(out, "train") if "slight" in m.image)
    np.testing.assert_allclose(slight.boxes_xyxy[0], [0, 19.2, 12.48, 28.8], atol=1e-3)
    assert "dropped_boxes" not in json.loads((out / "prepare_report.json").read_text())


def test_voc_box_outside_the_image_is_a_skip_not_a_negative(tmp_path):
    root = tmp_path / "voc"
    write_jpeg(root / "a.jpg", 64, 48)
    (root / "a.xml").write_text(voc_xml("a.jpg", voc_obj("plate", (200, 10, 240, 20))))
    write_jpeg(root / "b.jpg", 64, 48)
    (root / "b.xml").write_text(voc_xml("b.jpg", voc_obj("plate", (10, 10, 40, 20))))
    report = prepare(PrepareConfig(out=tmp_path / "ds", voc=[root], size=(64, 48),
                                   split=(1, 0, 0), progress=False))  # fmt: skip
    assert [s["path"].endswith("a.jpg") for s in report["skipped"]] == [True]
    assert report["counts"]["train"]["negatives"] == 0
