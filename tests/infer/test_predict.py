"""run_predict on a folder, a video and a single image; drawing; the summary lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from platelab.errors import PlatelabError
from platelab.infer.predict import (
    BOX_COLOR,
    PREDICTIONS,
    draw_prediction,
    run_predict,
    summary_lines,
)
from platelab.infer.predictor import Prediction, Predictor
from tests.infer import FixedBox, RedSpot, save_tiny_checkpoint

CANVAS = (96, 64)


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]


def _scene(w: int, h: int, square: tuple[int, int, int, int] | None) -> np.ndarray:
    """RGB grey picture with a red square at ``square`` (xyxy) when given."""
    img = np.full((h, w, 3), 128, np.uint8)
    if square is not None:
        x0, y0, x1, y1 = square
        img[y0:y1, x0:x1] = (255, 0, 0)
    return img


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture
def folder(tmp_path) -> Path:
    """src/ with 3 good images (one without a plate) in nested folders, a corrupt .jpg,
    a text file and a video (not predicted inside a folder)."""
    src = tmp_path / "src"
    _write(src / "a.png", _scene(120, 80, (10, 20, 50, 40)))
    _write(src / "sub" / "b.jpg", _scene(200, 300, (100, 100, 160, 140)))
    _write(src / "sub" / "deeper" / "c.png", _scene(64, 64, None))  # no plate
    (src / "bad.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    (src / "notes.txt").write_text("not an image")
    (src / "sub" / "clip.mp4").write_bytes(b"ignored")
    return src


def test_folder_skips_the_corrupt_image_and_predicts_the_rest(folder, tmp_path, caplog):
    predictor = Predictor(RedSpot(), canvas=CANVAS, batch_size=2)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="platelab.infer.predict"):
        summary = run_predict(predictor, folder, out, conf=0.5, progress=False)

    assert (summary["kind"], summary["images"], summary["frames"]) == ("folder", 3, 0)
    assert summary["plates"] == 2 and summary["ignored_videos"] == ["sub/clip.mp4"]
    assert [s["path"] for s in summary["skipped"]] == ["bad.jpg"]
    assert summary["skipped"][0]["reason"] == "not a decodable image"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"skipped {folder / 'bad.jpg'}: not a decodable image"]

    lines = _lines(out)
    assert [x["source"] for x in lines] == ["a.png", "sub/b.jpg", "sub/deeper/c.png"]
    files = [folder / x["source"] for x in lines]
    for line, pred in zip(lines, predictor.predict(files), strict=True):
        expected = {"frame": None, "plate": pred.score >= 0.5, **pred.to_dict()}
        assert line == {"source": line["source"], **expected}
    assert [x["plate"] for x in lines] == [True, True, False]
    assert (lines[0]["width"], lines[0]["height"]) == (120, 80)

    # annotated copies keep the relative paths; the plate-less one is untouched
    for line in lines:
        drawn = cv2.imread(str(out / line["source"]))
        assert drawn.shape[:2] == (line["height"], line["width"])
    a = cv2.cvtColor(cv2.imread(str(out / "a.png")), cv2.COLOR_BGR2RGB)
    x0, y0 = (round(v) for v in lines[0]["box_xyxy"][:2])
    assert tuple(a[y0 + 5, x0]) == BOX_COLOR  # the box's left edge
    c_in, c_out = (cv2.imread(str(p / "sub/deeper/c.png")) for p in (folder, out))
    np.testing.assert_array_equal(c_in, c_out)
    assert not (out / "bad.jpg").exists()

    text = "\n".join(summary_lines(summary))
    assert "predicted 3 images with RedSpot (torch, 96x64)" in text
    assert "2 with a plate (score >= 0.5)" in text
    assert "skipped 1 unreadable file(s):\n  bad.jpg: not a decodable image" in text
    assert f"predictions: {out / PREDICTIONS}" in text and f"annotated images: {out}" in text


def test_out_inside_source_with_save_false_writes_only_jsonl(folder):
    predictor = Predictor(RedSpot(), canvas=CANVAS)
    jsonl_only = folder / "jsonl_only"
    summary = run_predict(predictor, folder, jsonl_only, save=False, progress=False)
    assert sorted(p.name for p in jsonl_only.iterdir()) == [PREDICTIONS]
    assert "annotated" not in "\n".join(summary_lines(summary))
    summary = run_predict(predictor, folder, jsonl_only, save=False, progress=False)
    assert summary["images"] == 3 and len(_lines(jsonl_only)) == 3  # a re-run reads no jsonl


def _write_video(path: Path, n: int, size=(96, 64), fps: float = 10.0) -> list[tuple]:
    """An mp4v clip of a red square moving right by 4 px a frame; returns its boxes."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    boxes = []
    for i in range(n):
        box = (8 + 4 * i, 16, 32 + 4 * i, 40)
        writer.write(cv2.cvtColor(_scene(w, h, box), cv2.COLOR_RGB2BGR))
        boxes.append(box)
    writer.release()
    return boxes


def test_video_gives_one_line_per_frame_and_a_playable_video(tmp_path):
    clip = tmp_path / "clip.mp4"
    boxes = _write_video(clip, 10)
    out = tmp_path / "out"
    predictor = Predictor(RedSpot(), canvas=(64, 48), batch_size=4)  # batches of 4, 4, 2
    summary = run_predict(predictor, clip, out, progress=False)

    assert (summary["kind"], summary["frames"], summary["images"]) == ("video", 10, 0)
    assert summary["video"] == str(out / "clip.mp4") and summary["plates"] == 10
    lines = _lines(out)
    assert [x["frame"] for x in lines] == list(range(10))
    assert {(x["source"], x["width"], x["height"]) for x in lines} == {("clip.mp4", 96, 64)}
    for line, box in zip(lines, boxes, strict=True):
        # mp4 compression blurs the edges; the canvas is at 2/3 scale (1 px = 1.5 px)
        np.testing.assert_allclose(line["box_xyxy"], box, atol=3.0)
        assert line["plate"]

    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    try:
        assert cap.isOpened()
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
        frames = []
        while (got := cap.read())[0]:
            frames.append(got[1])
    finally:
        cap.release()
    assert len(frames) == 10 and {f.shape for f in frames} == {(64, 96, 3)}
    # frame 0's box has its left edge at x = 8: drawn green over red; the inside untouched
    cap = cv2.VideoCapture(str(clip))
    source = cap.read()[1].astype(int)
    cap.release()
    gain = frames[0].astype(int) - source
    assert gain[22:36, 8, 1].mean() > 60  # green channel (BGR index 1) up on the edge
    assert np.abs(gain[24:34, 14:26]).max() < 30
    assert "annotated video: " in "\n".join(summary_lines(summary))


def test_single_image_and_a_checkpoint_path(tmp_path):
    ckpt = tmp_path / "run" / "last.pth"
    save_tiny_checkpoint(ckpt, canvas=CANVAS)
    image = tmp_path / "car.jpg"
    _write(image, _scene(160, 90, (20, 20, 60, 40)))
    summary = run_predict(ckpt, image, tmp_path / "out", batch_size=1, progress=False)
    assert (summary["kind"], summary["images"], summary["model"]) == ("image", 1, "dwsep_tiny")
    (line,) = _lines(tmp_path / "out")
    assert line["source"] == "car.jpg" and line["frame"] is None
    assert line == {**line, **Predictor(ckpt).predict([image])[0].to_dict()}
    assert (tmp_path / "out" / "car.jpg").is_file()


def test_user_mistakes_are_one_line_errors(tmp_path):
    predictor = Predictor(RedSpot(), canvas=CANVAS)
    out = tmp_path / "out"
    with pytest.raises(PlatelabError, match=r"source not found: .*nowhere"):
        run_predict(predictor, tmp_path / "nowhere", out)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("x")
    with pytest.raises(PlatelabError, match=r"no images \(.*\.jpg.*\) under .*empty"):
        run_predict(predictor, empty, out)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(1).bytes(2000))
    with pytest.raises(PlatelabError, match=r"cannot read video .*broken\.mp4: no decodable frame"):
        run_predict(predictor, broken, out, progress=False)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(PlatelabError, match=r"cannot read image .*bad\.png: not a decodable image"):
        run_predict(predictor, bad, out)
    with pytest.raises(PlatelabError, match=r"cannot predict .*notes\.txt: not a folder, an image"):
        (tmp_path / "notes.txt").write_text("x")
        run_predict(predictor, tmp_path / "notes.txt", out)
    good = tmp_path / "pics" / "car.png"
    _write(good, _scene(40, 30, None))
    for src in (good, good.parent):
        with pytest.raises(PlatelabError, match="would overwrite the images in"):
            run_predict(predictor, src, good.parent, progress=False)
    assert run_predict(predictor, good, good.parent, save=False, progress=False)["images"] == 1
    with pytest.raises(PlatelabError, match="conf must be within 0..1, got 1.5"):
        run_predict(predictor, bad, out, conf=1.5)


def test_draw_prediction_draws_above_conf_only_and_leaves_the_input_alone():
    image = np.zeros((100, 200, 3), np.uint8)
    pred = Prediction(box_xyxy=(50.0, 40.0, 150.0, 80.0), score=0.9, width=200, height=100)
    drawn = draw_prediction(image, pred, conf=0.5)
    assert not image.any()  # a copy was drawn on
    assert tuple(drawn[60, 50]) == BOX_COLOR and tuple(drawn[60, 149]) == BOX_COLOR
    assert tuple(drawn[79, 100]) == BOX_COLOR and not drawn[60, 100].any()
    assert drawn[:40, 50:90].any()  # the "plate 0.90" label sits above the box
    assert not drawn[85:].any() and not drawn[:, :45].any()
    np.testing.assert_array_equal(draw_prediction(image, pred, conf=0.95), image)


def test_real_photos_keep_their_own_size(real_data, tmp_path):
    photos = real_data / "ccpd_base"
    summary = run_predict(
        Predictor(FixedBox(), canvas=(64, 48)), photos, tmp_path / "out", progress=False
    )
    lines = _lines(tmp_path / "out")
    names = sorted(p.name for p in photos.glob("*.jpg"))
    assert summary["images"] == len(names) == 6 and [x["source"] for x in lines] == names
    # 720x1160 portrait: scale min(64/720, 48/1160) = 48/1160, resized round(29.79) = 30 x 48,
    # pad_x 17; box x (24-17)*1160/48 = 169.1667, (40-17)*1160/48 = 555.8333; y 290, 870
    for x in lines:
        assert (x["width"], x["height"]) == (720, 1160)
        np.testing.assert_allclose(
            x["box_xyxy"], [7 * 1160 / 48, 290, 23 * 1160 / 48, 870], atol=1e-6
        )


def test_cli_predict_prints_where_things_are_and_refuses_in_one_line(folder, tmp_path, capsys):
    from platelab.cli import main

    ckpt = tmp_path / "run" / "last.pth"
    save_tiny_checkpoint(ckpt, canvas=CANVAS)
    out = tmp_path / "cli_out"
    assert main(["predict", str(ckpt), str(folder), "--out", str(out), "--batch", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"predictions: {out / 'predictions.jsonl'}" in printed and "bad.jpg" in printed
    assert len(_lines(out)) == 3
    assert main(["predict", str(tmp_path / "none.pth"), str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("platelab: error:")
