"""Pascal VOC XML: one ``<annotation>`` per photo, one ``<object>`` per box.

Layouts, found by walking ROOT for ``*.xml``:

    ROOT/Annotations/x.xml + ROOT/JPEGImages/x.jpg   (VOC; ROOT/ImageSets/Main/{train,val,test}.txt)
    ROOT/annotations/x.xml + ROOT/images/x.jpg       (Kaggle)
    ROOT/.../x.xml beside ROOT/.../x.jpg             (labelImg)

The image is looked up, in the XML's folder and in an ``images``/``JPEGImages``
folder beside ``annotations``/``Annotations``, by ``<filename>``, then by
``<path>``, then by the same stem with any image suffix (Kaggle's XML say
``Cars2.png`` for ``Cars2.jpg``), then by the XML's own stem.

Boxes are taken as written (VOC's 1-based pixel indices are not shifted: a half
pixel is below what annotators hit). The opened image's size wins over
``<size>``: datasets get resized after annotation with their boxes rescaled but
``<size>`` left stale (Kaggle's plates: 400x247 in the XML, 416x416 on disk). A
disagreement is kept in ``meta["xml_size"]`` and summed up in one warning for the
dataset; boxes are not rescaled. Boxes refer to the image as displayed, i.e. after
its EXIF orientation (what labelImg and CVAT show; see :mod:`platelab.data.imageio`).

Plate objects are chosen by ``<name>``, compared loosely (case, ``-``, ``_`` and
spaces ignored: ``license-plate`` is ``License Plate``) against
:data:`~platelab.data.records.PLATE_CLASS_NAMES` or the names the caller gives. A
source with objects of which none is a plate is a :class:`PlatelabError` that
lists the names it saw, never a set of silent negatives.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from platelab.data.imageio import IMAGE_EXTS, file_image_size
from platelab.data.records import (
    SPLIT_ALIASES,
    ImageRecord,
    Plate,
    Skip,
    class_key,
    display_path,
    no_plate_class_error,
    plate_class_keys,
)
from platelab.errors import PlatelabError

logger = logging.getLogger(__name__)

DEFAULT_PLATE_CLASSES = plate_class_keys()
ANNOTATION_DIRS = {"annotations"}
IMAGE_DIRS = {"jpegimages", "images"}
# <attributes><attribute><name>NAME</name><value>TEXT</value></attribute></attributes> (CVAT)
TEXT_ATTRIBUTES = {"text", "plate", "plate_text", "number", "license", "licence"}
# Image suffixes tried for an XML's stem, in a fixed order: ".jpg" before ".png" whatever
# the hash seed (a set's order is not), so the same photo is chosen on every run.
_EXT_ORDER = [e for x in sorted(IMAGE_EXTS) for e in (x, x.upper())]


def _image_dirs(xml: Path) -> list[Path]:
    """Folders that may hold the image of ``xml``: its own, then images/JPEGImages beside it."""
    dirs = [xml.parent]
    if xml.parent.name.lower() in ANNOTATION_DIRS:
        dirs += sorted(
            d for d in xml.parent.parent.iterdir() if d.is_dir() and d.name.lower() in IMAGE_DIRS
        )
    return dirs


def _find_image(xml: Path, tree: ET.Element) -> Path | None:
    filename = (tree.findtext("filename") or "").strip()
    given = (tree.findtext("path") or "").strip().replace("\\", "/")
    dirs = _image_dirs(xml)
    names = [n for n in (filename, Path(given).name) if n]
    candidates = [d / n for n in names for d in dirs]
    if given:
        candidates.append(Path(given) if Path(given).is_absolute() else xml.parent / given)
    for path in candidates:
        if path.is_file():
            return path
    for stem in dict.fromkeys([Path(n).stem for n in names] + [xml.stem]):
        for d in dirs:
            for ext in _EXT_ORDER:
                if (d / f"{stem}{ext}").is_file():
                    return d / f"{stem}{ext}"
    return None


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = node.findtext(tag)
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{where}: <{tag}> is not a number: {text!r}")
    return value


def _plate_text(obj: ET.Element) -> str | None:
    text = obj.findtext("text")
    if text is None:
        for attr in obj.iterfind("attributes/attribute"):
            if (attr.findtext("name") or "").strip().lower() in TEXT_ATTRIBUTES:
                text = attr.findtext("value")
                break
    text = (text or "").strip()
    return text or None


def parse_voc_objects(
    tree: ET.Element, class_names: Iterable[str] | None, seen: Counter | None = None
) -> list[Plate]:
    """The plates of one ``<annotation>``: objects whose ``<name>`` is in ``class_names``
    (compared by :func:`~platelab.data.records.class_key`; None keeps every object),
    boxes ``(x_min, y_min, x_max, y_max)`` as floats in the XML's pixels.

    Args:
        tree: the ``<annotation>`` element.
        class_names: the plate class names.
        seen: when given, counts every object's name (plates or not).

    Raises:
        ValueError: an object without a ``<bndbox>``, a non-numeric or inverted box.
    """
    wanted = None if class_names is None else {class_key(c) for c in class_names}
    plates = []
    for i, obj in enumerate(tree.iterfind("object")):
        name = (obj.findtext("name") or "").strip()
        if seen is not None:
            seen[name or "(no name)"] += 1
        if wanted is not None and class_key(name) not in wanted:
            continue
        where = f"object {i} ({name or 'no name'})"
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{where} has no <bndbox>")
        x0, y0, x1, y1 = (_number(box, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        if x1 < x0 or y1 < y0:
            raise ValueError(f"{where}: inverted box {[x0, y0, x1, y1]}")
        plates.append(Plate(box_xyxy=(x0, y0, x1, y1), text=_plate_text(obj)))
    return plates


def _xml_size(tree: ET.Element) -> tuple[int, int] | None:
    """``<size>`` when it holds two positive integers (labelImg writes 0 when unsure)."""
    try:
        w, h = (int(float(tree.findtext(f"size/{k}") or "")) for k in ("width", "height"))
    except ValueError:
        return None
    return (w, h) if w > 0 and h > 0 else None


def _read_splits(root: Path) -> dict[tuple[Path, str], str]:
    """``{(VOC folder, image id): split}`` from every ``ImageSets/Main/{train,val,test}.txt``."""
    out: dict[tuple[Path, str], str] = {}
    for main in sorted(root.rglob("ImageSets/Main")):
        for name, split in SPLIT_ALIASES.items():
            path = main / f"{name}.txt"
            if path.is_file():
                text = path.read_text(encoding="utf-8-sig", errors="replace")
                for line in text.splitlines():
                    if line.split():  # "id" or, in per-class lists, "id  1"
                        out.setdefault((main.parent.parent, line.split()[0]), split)
    return out


def read_voc(
    root: Path, class_names: Iterable[str] | None = DEFAULT_PLATE_CLASSES
) -> tuple[list[ImageRecord], list[Skip]]:
    """Read a Pascal VOC dataset into records, one per annotated image.

    Args:
        root: the folder to walk for ``*.xml``.
        class_names: object names that are plates, compared loosely (see the module
            docstring; None: every object). An image whose objects are all of other
            classes is a negative.

    Returns:
        ``(records, skips)``: records sorted by XML path with float boxes in the
        opened image's pixels, ``text`` from ``<text>`` or a text-like
        ``<attributes>`` entry when present, ``size`` the opened image's
        ``(width, height)``, ``subset`` the root folder's name, ``split`` from
        ``ImageSets/Main``. Malformed XML, a missing or unreadable image is a :class:`Skip`.

    Raises:
        PlatelabError: ``root`` is not a folder, or it has objects and none of them is
            of a plate class (the message lists the names seen, with counts).
    """
    root = Path(root)
    if not root.is_dir():
        raise PlatelabError(f"VOC folder not found: {root}")
    splits = _read_splits(root)
    records: list[ImageRecord] = []
    skips: list[Skip] = []
    stale: list[str] = []
    seen: Counter = Counter()
    for xml in sorted(root.rglob("*.xml")):
        try:
            tree = ET.parse(xml).getroot()  # expat reads the encoding and skips a BOM
            if tree.tag != "annotation":
                raise ValueError(f"root element is <{tree.tag}>, not <annotation>")
            plates = parse_voc_objects(tree, class_names, seen)
        except (ET.ParseError, ValueError, OSError) as e:
            skips.append(Skip(display_path(xml), f"malformed VOC XML: {e}"))
            continue
        image = _find_image(xml, tree)
        if image is None:
            where = "beside the XML or in an images/JPEGImages folder"
            name = tree.findtext("filename")
            skips.append(Skip(display_path(xml), f"image {name!r} not found {where}"))
            continue
        try:
            size = file_image_size(image)
        except OSError as e:
            skips.append(Skip(display_path(image), f"unreadable image: {e}"))
            continue
        record = ImageRecord(path=image, source="voc", subset=root.name, plates=plates, size=size)
        stated = _xml_size(tree)
        if stated is not None and stated != size:
            msg = "%s: <size> says %dx%d but %s is %dx%d; trusting the image, boxes as written"
            logger.debug(msg, xml, *stated, image.name, *size)
            record.meta["xml_size"] = stated
            stale.append(f"{xml.name}: {stated[0]}x{stated[1]} vs {size[0]}x{size[1]}")
        voc_dir = xml.parent.parent if xml.parent.name.lower() in ANNOTATION_DIRS else xml.parent
        record.split = splits.get((voc_dir, xml.stem))
        records.append(record)
    if (
        class_names is not None
        and seen
        and not plate_class_keys(class_names) & {class_key(n) for n in seen}
    ):
        raise no_plate_class_error("voc", root, seen, "--voc-classes")
    if stale:  # one line for the dataset: resized-after-annotation sets have it on every file
        logger.warning(
            "VOC %s: %d of %d XML <size> elements disagree with the image on disk (e.g. %s); "
            "trusting the images, boxes as written",
            root,
            len(stale),
            len(records),
            stale[0],
        )
    logger.info("VOC %s: %d images, %d skipped", root, len(records), len(skips))
    return records, skips
