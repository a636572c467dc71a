"""``data prepare`` and ``data check``: real samples, re-runs, bad input, splits."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from platelab.cli import main
from platelab.data import prepare as prepare_mod
from platelab.data.check import check_dataset
from platelab.data.manifest import load_split, read_manifest, write_manifest
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.sources.ccpd import parse_ccpd_name

CANVAS = (160, 120)


def _all_images(dataset: Path):
    return [m for s in ("train", "val", "test") for m in load_split(dataset, s)]


def make_yolo(root: Path, n: int = 6, splits=("train", "val"), size=(200, 100), seed=0) -> Path:
    """A tiny YOLO dataset: one red plate per image at a known box, images/<split> layout."""
    rng = np.random.default_rng(seed)
    w, h = size
    for split in splits:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.full((h, w, 3), int(rng.integers(40, 200)), np.uint8)
            x0, y0 = 20 + 5 * i, 30
            img[y0 : y0 + 20, x0 : x0 + 60] = (0, 0, 255)  # BGR red
            cv2.imwrite(str(root / "images" / split / f"{split}{i}.jpg"), img)
            cx, cy, bw, bh = (x0 + 30) / w, (y0 + 10) / h, 60 / w, 20 / h
            (root / "labels" / split / f"{split}{i}.txt").write_text(
                f"0 {cx!r} {cy!r} {bw!r} {bh!r}\n"
            )
    return root


def test_real_samples_map_back_exactly(real_data, tmp_path):
    cfg = PrepareConfig(
        out=tmp_path / "ds",
        ccpd=[real_data / "ccpd_base"],
        voc=[real_data / "kaggle_voc"],
        size=(640, 480),
        progress=False,
    )
    report = prepare(cfg)
    assert report["canvas"] == [640, 480]
    images = _all_images(tmp_path / "ds")
    assert len(images) == 26  # 6 CCPD + 20 Kaggle photos
    # Cars106 is a 2x2 mosaic with 4 annotated plates: 6 + 19 + 4 = 29.
    assert sum(len(m.boxes_xyxy) for m in images) == 29
    ccpd = [m for m in images if m.source == "ccpd"]
    assert len(ccpd) == 6
    for m in ccpd:
        name = parse_ccpd_name(Path(m.orig_image).name)
        back = m.letterbox.boxes_to_original(m.boxes_xyxy.astype(np.float64))
        np.testing.assert_allclose(back[0], name.box_xyxy, atol=1e-3)  # float32 manifest arrays
        assert (m.letterbox.orig_w, m.letterbox.orig_h) == (720, 1160)
        assert m.texts[0] == name.text and m.subset == "ccpd_base"
    kaggle = [m for m in images if m.source == "voc"]
    assert all((m.letterbox.orig_w, m.letterbox.orig_h) == (416, 416) for m in kaggle)
    ok = check_dataset(tmp_path / "ds", progress=False)
    assert ok.ok, ok.errors


def test_rerun_skips_done_work_and_interrupt_keeps_it(tmp_path, monkeypatch):
    src = make_yolo(tmp_path / "yolo", n=5)
    cfg = PrepareConfig(out=tmp_path / "ds", yolo=[src], size=CANVAS, progress=False)
    calls = {"n": 0}
    real_decode = prepare_mod.decode_image

    def counting_decode(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # a Ctrl-C after three images were written
        return real_decode(*a, **k)

    monkeypatch.setattr(prepare_mod, "decode_image", counting_decode)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg)
    assert len(json.loads((tmp_path / "ds" / ".prepare_cache.json").read_text())) == 3
    calls["n"] = 10  # no more interrupts
    prepare(cfg)
    assert calls["n"] == 10 + 7  # only the 7 images not finished before were decoded
    first = (tmp_path / "ds" / "train.csv").read_text()
    prepare(cfg)
    assert calls["n"] == 17  # nothing decoded on a re-run
    assert (tmp_path / "ds" / "train.csv").read_text() == first


def test_bad_inputs_are_skipped_and_reported(tmp_path):
    src = make_yolo(tmp_path / "yolo", n=4, splits=("train",))
    (src / "images" / "train" / "train0.jpg").write_bytes(b"\xff\xd8not really a jpeg")
    (src / "labels" / "train" / "train1.txt").write_text("0 0.5 0.5 0.2\n")  # 4 fields
    report = prepare(PrepareConfig(out=tmp_path / "ds", yolo=[src], size=CANVAS, progress=False))
    reasons = {Path(s["path"]).stem: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"train0", "train1"}
    assert report["counts"]["train"]["images"] == 2  # the other two are there
    saved = json.loads((tmp_path / "ds" / "prepare_report.json").read_text())
    assert saved["skipped"] == report["skipped"]


def test_own_splits_kept_and_boxes_on_plate_pixels(tmp_path):
    src = make_yolo(tmp_path / "yolo", n=3, splits=("train", "val"))
    prepare(PrepareConfig(out=tmp_path / "ds", yolo=[src], size=CANVAS, progress=False))
    train = load_split(tmp_path / "ds", "train")
    assert sorted(Path(m.orig_image).stem for m in train) == ["train0", "train1", "train2"]
    assert [Path(m.orig_image).stem for m in load_split(tmp_path / "ds", "val")] == [
        "val0",
        "val1",
        "val2",
    ]
    for m in train:
        img = cv2.imread(str(tmp_path / "ds" / m.image))
        x0, y0, x1, y1 = m.boxes_xyxy[0]
        # 200x100 -> 160x120: scale 0.8, pad_y 20; the plate is pure red inside its box.
        assert m.letterbox.scale == pytest.approx(0.8) and m.letterbox.pad_y == 20
        inner = img[int(y0) + 2 : int(y1) - 2, int(x0) + 2 : int(x1) - 2]
        assert inner[..., 2].mean() > 200 and inner[..., 1].mean() < 60


def test_identical_images_share_a_split(tmp_path):
    src = tmp_path / "yolo"
    make_yolo(src, n=12, splits=("x",), seed=1)
    # Flatten into a split-less layout, each image twice under two names.
    flat_i, flat_l = src / "flat" / "images", src / "flat" / "labels"
    flat_i.mkdir(parents=True)
    flat_l.mkdir(parents=True)
    for p in (src / "images" / "x").glob("*.jpg"):
        for copy in ("a", "b"):
            (flat_i / f"{p.stem}{copy}.jpg").write_bytes(p.read_bytes())
            (flat_l / f"{p.stem}{copy}.txt").write_text(
                (src / "labels" / "x" / f"{p.stem}.txt").read_text()
            )
    prepare(
        PrepareConfig(
            out=tmp_path / "ds",
            yolo=[src / "flat"],
            size=CANVAS,
            split=(0.5, 0.25, 0.25),
            progress=False,
        )
    )
    split_of = {}
    for s in ("train", "val", "test"):
        for m in load_split(tmp_path / "ds", s):
            split_of[Path(m.orig_image).stem] = s
    assert len(split_of) == 24
    assert all(split_of[f"x{i}a"] == split_of[f"x{i}b"] for i in range(12))
    assert {split_of[f"x{i}a"] for i in range(12)} == {"train", "val", "test"}  # 6/3/3 groups


def test_check_finds_errors(tmp_path):
    src = make_yolo(tmp_path / "yolo", n=3, splits=("train",))
    ds = tmp_path / "ds"
    prepare(PrepareConfig(out=ds, yolo=[src], size=CANVAS, split=(1, 0, 0), progress=False))
    assert check_dataset(ds, progress=False).ok
    images = read_manifest(ds / "train.csv")
    images[0].boxes_xyxy = np.array(
        [[10, 10, 500, 50], [10, 10, 500, 50]], np.float32
    )  # outside, twice
    images[0].corners = np.full((2, 4, 2), np.nan, np.float32)
    images[0].texts = ["", ""]
    images[1].boxes_xyxy = np.array([[30, 30, 30, 40]], np.float32)  # zero width
    (ds / images[2].image).write_bytes(b"\xff\xd8\xff\xe0truncated")
    write_manifest(ds / "train.csv", images)
    report = check_dataset(ds, progress=False)
    text = "\n".join(report.errors)
    assert "outside the 160x120 canvas" in text and "duplicates" in text
    assert "degenerate" in text and "unreadable image" in text
    assert main(["data", "check", str(ds)]) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "prepare", "--yolo", "/no/such/dir", "--out", "X"], "not found"),
        (["data", "prepare", "--out", "X"], "no sources given"),
        (["data", "check", "/no/such/dataset"], "dataset folder not found"),
    ],
)
def test_cli_user_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
