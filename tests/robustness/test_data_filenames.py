"""Issue 10, item 5: file names that are not UTF-8 are processed, not a crash.

Choice: the photo is used. Its letterboxed image gets a safe name (undecodable
bytes become ``_``, the hash is of the path's bytes), and ``orig_image`` in the
UTF-8 manifest (and paths in prepare_report.json) shows those bytes as ``\\xNN``
escapes (``caf\\xe9.jpg``): readable, but not a name to reopen.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from platelab.data.manifest import load_split
from platelab.data.prepare import PrepareConfig, prepare
from platelab.data.records import display_path
from tests.data.test_sources import write_jpeg

pytestmark = pytest.mark.skipif(
    sys.platform == "darwin", reason="macOS file systems refuse names that are not UTF-8"
)


def _bytes_name(folder, raw: bytes):
    path = os.fsdecode(os.path.join(os.fsencode(folder), raw))
    tmp = write_jpeg(folder / "tmp.jpg", 64, 48)
    os.rename(tmp, path)
    return path


def test_non_utf8_names_are_prepared_and_listed_readably(tmp_path):
    images, labels = tmp_path / "yolo" / "images", tmp_path / "yolo" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for raw in (b"\xff\xfe", b"caf\xe9", b"plain"):  # raw bytes, latin-1 e-acute, ASCII
        _bytes_name(images, raw + b".jpg")
        label = os.path.join(os.fsencode(labels), raw + b".txt")
        with open(label, "w") as f:
            f.write("0 0.5 0.5 0.2 0.2\n")
    out = tmp_path / "ds"
    report = prepare(PrepareConfig(out=out, yolo=[tmp_path / "yolo"], size=(64, 48),
                                   split=(1, 0, 0), progress=False))  # fmt: skip
    assert report["skipped"] == [] and report["counts"]["train"]["plates"] == 3
    rows = load_split(out, "train")
    origs = sorted(m.orig_image.rsplit("/", 1)[1] for m in rows)
    assert origs == sorted(["caf\\xe9.jpg", "plain.jpg", "\\xff\\xfe.jpg"])
    for m in rows:
        m.image.encode("ascii")  # the letterboxed image's own name is plain ASCII
        assert (out / m.image).is_file()
    json.loads((out / "prepare_report.json").read_text(encoding="utf-8"))


def test_display_path():
    assert display_path("/a/b.jpg") == "/a/b.jpg"
    assert display_path("/a/皖A.jpg") == "/a/皖A.jpg"
    assert display_path(os.fsdecode(b"/a/caf\xe9.jpg")) == "/a/caf\\xe9.jpg"
