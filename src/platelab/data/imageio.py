"""Fast image decoding: simplejpeg (bundled libjpeg-turbo) for JPEG, OpenCV for the rest.

Measured on this machine (../shared/ECOSYSTEM.md): simplejpeg decodes a
letterboxed 640x480 JPEG at ~890/s against ~660/s for PIL, and decoding a large
photo at a reduced DCT scale before a small cv2 resize is ~1.4x faster still.

EXIF orientation: a phone stores a portrait photo as landscape pixels plus an
EXIF ``Orientation`` tag (6 or 8) that viewers apply. Every function here returns
the *displayed* image: :func:`decode_image` (and so :func:`read_image`, used by
prepare, predict, eval, the stream and the synthetic backgrounds) applies the
tag, and :func:`image_size` / :func:`file_image_size` (the header-only reads the
source readers use) report the displayed ``(width, height)``, swapped for
orientations 5-8. Annotation tools (labelImg, CVAT, Roboflow) draw boxes on the
displayed image, so VOC/YOLO boxes are read in those displayed pixels.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

# OpenCV's own thread pool does not survive fork(): a DataLoader worker forked while
# the pool is busy can deadlock in its first cv2 call. platelab parallelises with
# processes instead, so OpenCV stays sequential (ultralytics does the same).
cv2.setNumThreads(0)

JPEG_MAGIC = b"\xff\xd8"
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
ORIENTATION_TAG = 0x0112
_CV2_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # orientation is ours to apply


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation tag of IFD0 in a TIFF-structured EXIF block (1 when absent)."""
    if tiff[:2] not in (b"II", b"MM"):
        return 1
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(end + "I", tiff, 4)
    (count,) = struct.unpack_from(end + "H", tiff, ifd)
    for i in range(count):
        tag, _, _, value = struct.unpack_from(end + "HHIH", tiff, ifd + 2 + 12 * i)
        if tag == ORIENTATION_TAG:
            return value if 1 <= value <= 8 else 1
    return 1


def _jpeg_orientation(data: bytes) -> int:
    """Orientation from a JPEG's APP1 ``Exif`` segment, walking markers up to the scan."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more headers
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return _tiff_orientation(data[pos + 10 : pos + 2 + length])
        pos += 2 + length
    return 1


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of encoded image bytes; 1 when absent or unreadable."""
    try:
        if data[:2] == JPEG_MAGIC:
            return _jpeg_orientation(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n" and b"eXIf" not in data:
            return 1  # PIL would decode the whole PNG to look for a late eXIf chunk
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return _pil_orientation(im)
    except Exception:  # a broken EXIF block is ignored, as viewers do
        return 1


def _pil_orientation(im) -> int:
    try:
        value = int(im.getexif().get(ORIENTATION_TAG, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into displayed pixels for an EXIF orientation (as PIL's
    ``ImageOps.exif_transpose``): 3 rotates 180 degrees, 6 rotates 90 degrees clockwise,
    8 counter-clockwise, 2/4/5/7 add a mirror."""
    if orientation == 2:
        image = image[:, ::-1]
    elif orientation == 3:
        image = image[::-1, ::-1]
    elif orientation == 4:
        image = image[::-1]
    elif orientation == 5:
        image = image.swapaxes(0, 1)
    elif orientation == 6:
        image = image.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        image = image[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        image = image.swapaxes(0, 1)[::-1]
    else:
        return image
    return np.ascontiguousarray(image)


def _displayed(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """A stored ``(width, height)`` as displayed: swapped for orientations 5-8."""
    return (size[1], size[0]) if orientation >= 5 else (size[0], size[1])


def file_image_size(path: Path) -> tuple[int, int]:
    """Displayed ``(width, height)`` of an image file from its header (no pixels decoded).

    Raises:
        OSError: not a readable image.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "PNG" and "exif" not in im.info:
                return im.size  # see exif_orientation: no eXIf chunk before the pixels
            return _displayed(im.size, _pil_orientation(im))
    except (SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise OSError(str(e)) from e


def image_size(data: bytes) -> tuple[int, int]:
    """Displayed ``(width, height)`` of an encoded image, reading only the header for JPEG.

    Raises:
        ValueError: the bytes are not a decodable image.
    """
    if data[:2] == JPEG_MAGIC:
        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            return _displayed((int(w), int(h)), exif_orientation(data))
        except ValueError:
            pass  # fall through to OpenCV, which tolerates more JPEG variants
    img = decode_image(data)
    return img.shape[1], img.shape[0]


def decode_image(data: bytes, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode image bytes to an ``(H, W, 3)`` uint8 RGB array, EXIF orientation applied.

    Args:
        data: encoded JPEG/PNG/BMP/... bytes.
        min_size: displayed ``(width, height)``: a JPEG may be decoded at a reduced DCT
            scale (1/2, 1/4, 1/8) as long as the result is at least this large. The
            caller resizes the rest of the way.

    Raises:
        ValueError: the bytes are not a decodable image (truncated, corrupt, not an image).
    """
    orientation = exif_orientation(data)
    if data[:2] == JPEG_MAGIC:
        kw = {}
        if min_size is not None:
            w, h = _displayed((int(min_size[0]), int(min_size[1])), orientation)
            kw = {"min_width": w, "min_height": h}  # the stored image's axes
        try:
            image = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, **kw)
            return apply_orientation(image, orientation)
        except ValueError:
            pass  # e.g. CMYK or arithmetic-coded JPEG: let OpenCV try
    return apply_orientation(_cv2_decode(data), orientation)


def _cv2_decode(data: bytes) -> np.ndarray:
    if not data:  # cv2.imdecode raises cv2.error, not None, on an empty buffer
        raise ValueError("empty file")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_FLAGS)
    if img is None:
        raise ValueError("not a decodable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path: Path, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read and decode an image file to ``(H, W, 3)`` uint8 RGB (see :func:`decode_image`)."""
    return decode_image(Path(path).read_bytes(), min_size)


def encode_jpeg(image_rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB array as JPEG bytes (no EXIF: upright pixels)."""
    return simplejpeg.encode_jpeg(
        np.ascontiguousarray(image_rgb), quality=quality, colorspace="RGB"
    )
