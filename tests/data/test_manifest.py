"""Manifests: exact float round trip, negatives, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from platelab.data.manifest import COLUMNS, ManifestImage, load_split, read_manifest, write_manifest
from platelab.errors import PlatelabError
from platelab.geometry import Letterbox


def _image(name, boxes, corners=None, texts=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if corners is None:
        corners = np.full((len(boxes), 4, 2), np.nan)
    return ManifestImage(
        image=name,
        boxes_xyxy=boxes,
        corners=np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2),
        texts=texts or [""] * len(boxes),
        source="synth",
        subset="s",
        letterbox=Letterbox.fit(720, 1160, 640, 480),
        orig_image=f"/photos/{name}",
    )


def test_round_trip_exact(tmp_path):
    corners = [[[1 / 3, 2.5], [10.125, 2.5], [10.125, 9.75], [1 / 3, 9.75]]]
    images = [
        _image("a.jpg", [[1 / 3, 2.5, 10.125, 9.75]], corners, ["皖A12345"]),
        _image("neg.jpg", []),
        _image("two.jpg", [[0, 0, 5, 5], [6, 6, 9, 9]], texts=["", "AB"]),
    ]
    write_manifest(tmp_path / "train.csv", images)
    header = (tmp_path / "train.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == COLUMNS
    back = read_manifest(tmp_path / "train.csv")
    assert [m.image for m in back] == ["a.jpg", "neg.jpg", "two.jpg"]
    # Manifest arrays are float32; the CSV holds float64 text exactly.
    np.testing.assert_array_equal(back[0].boxes_xyxy, np.float32([[1 / 3, 2.5, 10.125, 9.75]]))
    np.testing.assert_array_equal(back[0].corners, np.float32(corners))
    assert back[0].texts == ["皖A12345"]
    assert back[1].boxes_xyxy.shape == (0, 4) and back[1].corners.shape == (0, 4, 2)
    assert np.isnan(back[2].corners).all() and back[2].texts == ["", "AB"]
    assert back[0].letterbox.scale == images[0].letterbox.scale
    assert back[0].orig_image == "/photos/a.jpg"


def test_load_split_takes_canvas_from_report(tmp_path):
    write_manifest(tmp_path / "val.csv", [_image("a.jpg", [[1, 2, 3, 4]])])
    (tmp_path / "prepare_report.json").write_text(json.dumps({"canvas": [640, 480]}))
    (m,) = load_split(tmp_path, "val")
    assert (m.letterbox.canvas_w, m.letterbox.canvas_h) == (640, 480)
    with pytest.raises(PlatelabError, match="unknown split"):
        load_split(tmp_path, "training")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image,x_min\na.jpg,1\n", "missing columns"),
        (",".join(COLUMNS) + "\na.jpg,oops" + "," * (len(COLUMNS) - 2) + "\n", "not a number"),
    ],
)
def test_bad_manifest_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(PlatelabError, match=message):
        read_manifest(path)


def test_missing_dataset(tmp_path):
    with pytest.raises(PlatelabError, match="not found"):
        load_split(tmp_path / "nope", "train")
    with pytest.raises(PlatelabError, match="not a prepared dataset"):
        load_split(tmp_path, "train")
