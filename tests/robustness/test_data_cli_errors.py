"""Issue 10, items 7-11: user mistakes in the data commands are one line and exit 2."""

from __future__ import annotations

import pytest

from platelab.cli import main
from platelab.data.prepare import MAX_CANVAS_SIDE, PrepareConfig, prepare
from platelab.errors import PlatelabError
from tests.data.test_prepare import CANVAS, make_yolo


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("prepare:", "synth:"))]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "100000x100000"], f"each side must be 1..{MAX_CANVAS_SIDE}"),  # item 7
        (["--size", "8193x480"], "each side must be"),
        (["--split", "0.5,0.5,0.5"], "sum to 1"),  # item 10
        (["--split", "80,10,10"], "sum to 1"),
    ],
)
def test_prepare_settings(tmp_path, capsys, extra, message):
    src = make_yolo(tmp_path / "yolo", n=1, splits=("train",))
    code = main(["data", "prepare", "--yolo", str(src), "--out", str(tmp_path / "ds"), *extra])
    assert message in _one_line_error(capsys, code)
    assert not (tmp_path / "ds").exists()  # refused before anything was written


def test_split_within_tolerance_and_largest_canvas_are_accepted():
    cfg = PrepareConfig(out="/nonexistent/x", yolo=["/nonexistent/y"], split=(0.7, 0.2, 0.1),
                        size=(MAX_CANVAS_SIDE, 1))  # fmt: skip
    cfg.validate()  # 0.7 + 0.2 + 0.1 != 1.0 in floats, but within 1e-6


def test_empty_source_is_an_error_not_an_empty_dataset(tmp_path, capsys):  # item 11
    (tmp_path / "empty").mkdir()
    code = main(["data", "prepare", "--voc", str(tmp_path / "empty"), "--out", str(tmp_path / "d")])
    assert "voc source" in (line := _one_line_error(capsys, code)) and "no usable images" in line
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(PlatelabError, match=r"no usable images \(1 files skipped, e.g. unread"):
        prepare(PrepareConfig(out=tmp_path / "d", yolo=[bad], size=CANVAS, progress=False))


def test_synth_out_is_a_file(tmp_path, capsys):  # item 8
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "sub"):
        code = main(["data", "synth", str(out), "--count", "1"])
        assert "is not a folder" in _one_line_error(capsys, code)


def test_show_out_with_an_unsupported_extension(tmp_path, capsys):  # item 9
    src = make_yolo(tmp_path / "yolo", n=2, splits=("train",))
    prepare(PrepareConfig(out=tmp_path / "ds", yolo=[src], size=CANVAS, progress=False,
                          split=(1, 0, 0)))  # fmt: skip
    code = main(["data", "show", str(tmp_path / "ds"), "--out", str(tmp_path / "x.txt")])
    assert ".png, .jpg, .jpeg, .webp" in _one_line_error(capsys, code)
    assert main(["data", "show", str(tmp_path / "ds"), "--out", str(tmp_path / "g.webp")]) == 0
