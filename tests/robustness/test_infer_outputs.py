"""predict and export never overwrite their inputs; file names that are not UTF-8 are predicted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from platelab import cli
from platelab.errors import PlatelabError
from platelab.infer.predict import PREDICTIONS, run_predict
from platelab.infer.predictor import Predictor
from tests.infer import RedSpot, save_tiny_checkpoint

CANVAS = (96, 64)


def _photo(path: Path, value: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((40, 60, 3), value, np.uint8)
    img[10:20, 10:30] = (0, 0, 255)  # red in BGR: RedSpot draws a box on it
    ok, data = cv2.imencode(".png", img)  # cv2.imwrite cannot take a name that is not UTF-8
    assert ok
    path.write_bytes(data.tobytes())
    return path.read_bytes()


def test_out_inside_source_cannot_replace_a_photo(tmp_path):
    src = tmp_path / "src"
    _photo(src / "a.png", 100)
    original = _photo(src / "sub" / "a.png", 150)  # an original, where a.png's drawing would go
    predictor = Predictor(RedSpot(), canvas=CANVAS)
    with pytest.raises(PlatelabError, match="overlaps SOURCE"):
        run_predict(predictor, src, src / "sub", progress=False)
    assert (src / "sub" / "a.png").read_bytes() == original


def test_source_inside_out_is_refused(tmp_path):
    src = tmp_path / "photos" / "src"
    _photo(src / "a.png", 100)
    with pytest.raises(PlatelabError, match="overlaps SOURCE"):
        run_predict(Predictor(RedSpot(), canvas=CANVAS), src, tmp_path, progress=False)


def test_names_that_are_not_utf8_are_predicted_and_printed(tmp_path, capsys):
    src = tmp_path / "src"
    names = [b"\xff\xfe.png", b"caf\xe9.png", b"ok.png"]
    for n in names:
        _photo(Path(os.fsdecode(os.path.join(os.fsencode(src), n))), 100)
    ckpt = tmp_path / "tiny.pth"
    save_tiny_checkpoint(ckpt, CANVAS)
    out = tmp_path / "out"
    assert cli.main(["predict", str(ckpt), str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "predicted 3 images" in printed
    lines = [json.loads(line) for line in (out / PREDICTIONS).read_text("utf-8").splitlines()]
    assert sorted(r["source"] for r in lines) == ["\\xff\\xfe.png", "caf\\xe9.png", "ok.png"]
    drawn = sorted(os.listdir(os.fsencode(out)))
    assert drawn == sorted([*names, PREDICTIONS.encode()])  # the drawings keep the names


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    ckpt = tmp_path / "run" / "last.pth"
    save_tiny_checkpoint(ckpt, CANVAS)
    return ckpt


@pytest.mark.parametrize("target", ["itself", "renamed", "no_suffix"])
def test_export_never_replaces_a_checkpoint(checkpoint, target, capsys):
    out = {
        "itself": checkpoint,
        "renamed": checkpoint.parent / "best.onnx",
        "no_suffix": checkpoint.parent / "model",
    }[target]
    if target == "renamed":  # a checkpoint someone named .onnx
        out.write_bytes(checkpoint.read_bytes())
    before = checkpoint.read_bytes()
    assert cli.main(["export", str(checkpoint), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"platelab: error: --out {out}")
    assert checkpoint.read_bytes() == before
    if target == "renamed":
        assert out.read_bytes() == before
