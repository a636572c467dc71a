"""Issue 10, item 3: EXIF orientation is applied wherever an image is decoded or sized."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from platelab.data.imageio import (
    decode_image,
    exif_orientation,
    file_image_size,
    image_size,
    read_image,
)


def _photo(w: int = 64, h: int = 32) -> np.ndarray:
    """A picture whose every quadrant differs, so a wrong rotation or mirror shows."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2 :] = (0, 255, 0)
    img[h // 2 :, : w // 2] = (0, 0, 255)
    img[h // 2 :, w // 2 :] = (255, 255, 255)
    return img


def _save(path, pixels: np.ndarray, orientation: int, fmt: str = "JPEG") -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format=fmt, exif=exif, quality=98)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_decode_matches_pil_exif_transpose(tmp_path, orientation, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    _save(path, _photo(), orientation, fmt)
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path)
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 4  # JPEG noise only
    h, w = want.shape[:2]
    assert file_image_size(path) == (w, h)
    assert image_size(path.read_bytes()) == (w, h)


def test_phone_portrait_orientation_6_is_upright_and_sizes_swap(tmp_path):
    path = tmp_path / "phone.jpg"
    stored = _photo(64, 32)  # landscape pixels, displayed as a 32x64 portrait
    _save(path, stored, 6)
    data = path.read_bytes()
    assert exif_orientation(data) == 6
    assert image_size(data) == (32, 64) and file_image_size(path) == (32, 64)
    img = decode_image(data)
    assert img.shape == (64, 32, 3)
    # rotated 90 degrees clockwise: the stored bottom-left (blue) is now the top-left
    np.testing.assert_allclose(img[4, 4], (0, 0, 255), atol=12)
    np.testing.assert_allclose(img[4, 28], (255, 0, 0), atol=12)
    # the reduced-scale DCT path: min_size is the displayed size, the result is upright
    big = tmp_path / "big.jpg"
    _save(big, _photo(640, 320), 6)
    small = decode_image(big.read_bytes(), min_size=(80, 160))
    assert small.shape[0] > small.shape[1] and small.shape[1] >= 80 and small.shape[0] >= 160
    assert small.shape[:2] != (640, 320)  # it did decode at a reduced scale


def test_broken_exif_is_ignored(tmp_path):
    path = tmp_path / "x.jpg"
    _save(path, _photo(), 6)
    data = bytearray(path.read_bytes())
    i = data.index(b"Exif\x00\x00") + 6
    data[i : i + 2] = b"ZZ"  # not II/MM
    assert exif_orientation(bytes(data)) == 1
    assert decode_image(bytes(data)).shape == (32, 64, 3)


def test_prepare_letterboxes_upright_and_boxes_land_on_the_plate(tmp_path):
    from platelab.data.manifest import load_split
    from platelab.data.prepare import PrepareConfig, prepare
    from tests.data.test_sources import voc_obj, voc_xml

    displayed = np.full((64, 32, 3), 90, np.uint8)  # a 32x64 portrait as the phone shows it
    displayed[40:52, 4:28] = (255, 0, 0)  # the plate, where the annotator drew it
    root = tmp_path / "voc"
    root.mkdir()
    _save(root / "p.jpg", np.rot90(displayed, 1), 6)  # stored sideways, EXIF says rotate
    (root / "p.xml").write_text(voc_xml("p.jpg", voc_obj("plate", (4, 40, 28, 52)), (32, 64)))
    out = tmp_path / "ds"
    prepare(PrepareConfig(out=out, voc=[root], size=(32, 64), split=(1, 0, 0), progress=False))
    (m,) = load_split(out, "train")
    assert (m.letterbox.orig_w, m.letterbox.orig_h) == (32, 64)
    canvas = read_image(out / m.image)
    x0, y0, x1, y1 = (int(v) for v in m.boxes_xyxy[0])
    assert (x0, y0, x1, y1) == (4, 40, 28, 52)
    assert canvas[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2, 0].min() > 200  # red inside the box
    assert canvas[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2, 1].max() < 60


def test_predictor_turns_a_pil_photo_upright_like_a_path():
    from PIL import Image

    from platelab.infer.predictor import to_rgb

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255  # a white band on the left of the stored pixels
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif, quality=95)
    out = to_rgb(Image.open(io.BytesIO(buf.getvalue())))
    assert out.shape == (40, 20, 3)  # upright: width and height swapped
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # the band is now on top
