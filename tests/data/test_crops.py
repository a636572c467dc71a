"""Plate crops for the recogniser: synthetic crops, crop datasets from folders and from scenes,
bad inputs, and the crop stream."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from platelab.cli import main
from platelab.data.crop_manifest import CROP_COLUMNS, crop_size, load_crop_split
from platelab.data.crops import CropAugment, CropDataset, build_crop_loader
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.sources.ccpd import parse_ccpd_name
from platelab.data.sources.crops import text_from_name
from platelab.data.synth import generate
from platelab.data.synth.crops import LABEL_COLUMNS, CropConfig, _box_around, render_crop
from platelab.errors import PlatelabError
from platelab.geometry import CROP_SIZE


def _digest(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def _labels(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# -- synthetic crops -----------------------------------------------------------------------
def test_render_crop_is_deterministic_and_crop_sized():
    a, b = render_crop((3, 5)), render_crop((3, 5))
    assert a.image.shape == (CROP_SIZE[1], CROP_SIZE[0], 3) and a.image.dtype == np.uint8
    assert a.text == b.text and np.array_equal(a.image, b.image)


def test_two_line_yellow_crops_are_rendered():
    cfg = CropConfig(styles={"cn_yellow": 1.0})
    crops = [render_crop((0, i), cfg) for i in range(30)]
    two = [c for c in crops if c.rows == 2]
    assert two and len(two) < len(crops)
    assert all(len(c.text) == 7 and c.row_split == pytest.approx(0.4) for c in two)


def test_box_crops_cut_into_one_row_plates_only_within_their_bounds():
    # A 200 x 50 plate's upright box, far from the image edges: each side moves out by
    # -7%..10% of the width (-14 .. +20 px) or -8%..25% of the height (-4 .. +12.5 px);
    # a two-row plate's top and bottom are never cut.
    quad = np.array([[300, 300], [500, 300], [500, 350], [300, 350]], np.float64)
    rng = np.random.default_rng(0)
    one = np.array([_box_around(rng, quad, 1000, 1000) for _ in range(2000)])
    two = np.array([_box_around(rng, quad, 1000, 1000, rows=2) for _ in range(2000)])
    for boxes, cut in ((one, 4.0), (two, 0.0)):
        x0, y0, x1, y1 = boxes[:, 0, 0], boxes[:, 0, 1], boxes[:, 2, 0], boxes[:, 2, 1]
        assert np.all((x0 >= 280) & (x0 <= 314) & (x1 >= 486) & (x1 <= 520))
        assert np.all((y0 >= 287.5) & (y0 <= 300 + cut) & (y1 >= 350 - cut) & (y1 <= 362.5))
        assert np.all(boxes[:, 1] == np.stack([x1, y0], 1))  # upright: TL, TR, BR, BL
    x0, y0 = one[:, 0, 0], one[:, 0, 1]
    assert 0.33 < np.mean(x0 > 300) < 0.5  # 7 of the 17 points of the range cut in
    assert 0.15 < np.mean(y0 > 300) < 0.3  # 8 of 33
    # The image's edges bound the box: a plate at the top-left corner, moved out, stops at 0.
    edge = np.array([_box_around(rng, quad - 300, 1000, 1000) for _ in range(200)])
    assert edge[:, 0].min(0).tolist() == [0.0, 0.0] and np.all(edge >= 0)


def test_synth_crops_are_named_by_text_and_independent_of_workers(tmp_path):
    one = generate(tmp_path / "a", 8, seed=1, formats="crops", progress=False)
    two = generate(tmp_path / "b", 8, seed=1, formats="crops", workers=2, progress=False)
    assert one["formats"]["crops"] == two["formats"]["crops"]
    assert one["formats"]["crops"]["crops"] == 8 and one["scenes"] == 0
    assert _digest(tmp_path / "a" / "crops") == _digest(tmp_path / "b" / "crops")
    rows = _labels(tmp_path / "a" / "crops")
    assert list(rows[0]) == LABEL_COLUMNS and len(rows) == 8
    for r in rows:
        assert (tmp_path / "a" / "crops" / r["image"]).is_file()
        assert text_from_name(r["image"]) == r["text"]  # the LPRNet layout reads it back
        assert r["rows"] in ("1", "2") and r["split"] in ("train", "val", "test")


# -- crop datasets ---------------------------------------------------------------------------
def _crop_file(path: Path, seed: int = 0, size=(94, 24)) -> None:
    img = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)


def test_prepare_a_named_crop_folder_with_bad_inputs(tmp_path, capsys, caplog):
    src = tmp_path / "ocr"
    src.mkdir()
    good = ["皖A12345.jpg", "皖A12345_1.jpg", "粤BD12345.png", "AB123CD-2.jpg"]
    for i, name in enumerate(good):
        _crop_file(src / name, i)
    (src / "浙B54321.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # corrupt
    (src / "苏E11111.jpg").write_bytes(b"")  # empty
    _crop_file(src / "鲁C22222.jpg", size=(1, 1))  # 1x1
    _crop_file(src / "AB€12.jpg")  # a character outside the charset
    out = tmp_path / "ds"
    assert (
        main(["data", "prepare", "--crops", str(src), "--out", str(out), "--split", "1,0,0"]) == 0
    )
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert len(skipped) == 4 and all("\n" not in m for m in skipped)  # one line each
    assert "skipped 4 inputs" in capsys.readouterr().out  # and a summary
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["kind"] == "crops" and report["task"] == "read"
    assert report["crop_size"] == list(CROP_SIZE) and crop_size(out) == CROP_SIZE
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"浙B54321.jpg", "苏E11111.jpg", "鲁C22222.jpg", "AB€12.jpg"}
    assert "empty" in reasons["苏E11111.jpg"] and "1x1" in reasons["鲁C22222.jpg"]
    assert "'€'" in reasons["AB€12.jpg"] and "unreadable" in reasons["浙B54321.jpg"]
    items = load_crop_split(out, "train")
    assert sorted(it.text for it in items) == sorted(
        ["皖A12345", "皖A12345", "粤BD12345", "AB123CD"]
    )
    with open(out / "train.csv", encoding="utf-8") as f:
        assert next(csv.reader(f)) == CROP_COLUMNS
    for it in items:
        assert cv2.imread(str(out / it.image)).shape == (CROP_SIZE[1], CROP_SIZE[0], 3)


def test_prepare_a_csv_crop_folder(tmp_path):
    src = tmp_path / "fpo"
    (src / "imgs").mkdir(parents=True)
    for i in range(4):
        _crop_file(src / "imgs" / f"{i}.jpg", i, size=(140, 70))
    (src / "labels.csv").write_text(
        "image_path,plate_text\nimgs/0.jpg,AB-123-CD\nimgs/1.jpg,皖A·12345\n"
        "imgs/2.jpg,XY99\nimgs/missing.jpg,ZZ11\n",
        encoding="utf-8",
    )
    out = tmp_path / "ds"
    report = prepare(PrepareConfig(out=out, crops=[src], split=(1, 0, 0), progress=False))
    texts = sorted(it.text for it in load_crop_split(out, "train"))
    assert texts == ["AB123CD", "XY99", "皖A12345"]  # 3.jpg is not listed: not read
    assert [Path(s["path"]).name for s in report["skipped"]] == ["labels.csv:5"]


def test_crops_cut_from_ccpd_photos_carry_their_names_text(tmp_path):
    generate(tmp_path / "s", 6, seed=0, formats="ccpd", progress=False)
    photos = sorted((tmp_path / "s" / "ccpd" / "ccpd_synth").glob("*.jpg"))
    assert photos
    out = tmp_path / "ds"
    prepare(PrepareConfig(out=out, ccpd=[tmp_path / "s" / "ccpd"], kind="crops", progress=False))
    items = [it for s in ("train", "val", "test") for it in load_crop_split(out, s)]
    assert sorted(it.text for it in items) == sorted(parse_ccpd_name(p.name).text for p in photos)
    for it in items:
        assert parse_ccpd_name(it.orig_image).text == it.text and it.source == "ccpd"
        assert np.allclose(it.corners, parse_ccpd_name(it.orig_image).corners)


def test_a_scene_dataset_is_not_a_crop_dataset(tmp_path):
    with pytest.raises(PlatelabError, match="--kind must be"):
        PrepareConfig(out=tmp_path / "x", crops=[tmp_path], kind="scenes").validate()
    (tmp_path / "scene").mkdir()
    (tmp_path / "scene" / "prepare_report.json").write_text('{"canvas": [640, 480]}')
    with pytest.raises(PlatelabError, match="not a crop dataset"):
        crop_size(tmp_path / "scene")


# -- the stream ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crop_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crops")
    generate(root / "synth", 12, seed=4, formats="crops", progress=False,
             split_fractions=(0.0, 0.0))  # fmt: skip
    # One two-line crop for sure.
    two = render_crop((9, 0), CropConfig(styles={"cn_yellow": 1.0}))
    for i in range(1, 40):
        if two.rows == 2:
            break
        two = render_crop((9, i), CropConfig(styles={"cn_yellow": 1.0}))
    cv2.imwrite(str(root / "synth" / "crops" / "two.jpg"), two.image[..., ::-1])
    with open(root / "synth" / "crops" / "labels.csv", "a", encoding="utf-8") as f:
        f.write(f"two.jpg,{two.text},cn_yellow,2,0.4,train\n")
    prepare(PrepareConfig(out=root / "ds", crops=[root / "synth" / "crops"], progress=False))
    return root / "ds"


def test_crop_loader_batches_texts_and_shards(crop_dataset):
    loader = build_crop_loader(crop_dataset, "train", 4, augment=None, shuffle=True, seed=0)
    loader.dataset.set_epoch(0)
    batches = list(loader)
    assert len(batches) == len(loader)
    texts = [t for _, tg in batches for t in tg["texts"]]
    assert len(texts) == 13 and sorted(texts) == sorted(it.text for it in CropDataset(
        crop_dataset, "train").items)  # fmt: skip
    images, targets = batches[0]
    assert images.dtype.is_floating_point is False and images.shape[1:] == (3, 32, 128)
    assert targets["rows"].dtype.is_floating_point is False and len(targets["styles"]) == 4


def test_two_line_crops_are_laid_side_by_side(crop_dataset):
    ds = CropDataset(crop_dataset, "train")
    i = next(k for k, it in enumerate(ds.items) if it.rows == 2)
    image, target = ds[i]
    flat = CropDataset(crop_dataset, "train", two_line=False)[i][0]
    assert target["rows"] == 2 and not np.array_equal(image.numpy(), flat.numpy())


def test_crop_augment_is_seeded_and_keeps_the_size():
    img = render_crop((1, 1)).image
    a, b = CropAugment(seed=3), CropAugment(seed=3)
    out = a(img)
    assert out.shape == img.shape and np.array_equal(out, b(img))
