"""Write rendered scenes in the formats platelab's readers read (``data/sources``).

Layouts under ``OUT``:

    ccpd/ccpd_synth/<CCPD name>.jpg      one Chinese plate; the name is the annotation
    ccpd/ccpd_np/<stem>.jpg              negatives
    ccpd/splits/{train,val,test}.txt     paths relative to ccpd/
    yolo/data.yaml                       path: ., train/val/test: images/{train,val,test}
    yolo/images/{train,val,test}/<stem>.jpg
    yolo/labels/{train,val,test}/<stem>.txt  "0 cx cy w h x1 y1 2 ... x4 y4 2" per plate
                                         (YOLO-pose, kpt_shape [4, 3]: the 4 corners
                                         TL, TR, BR, BL), empty for a negative
    voc/JPEGImages/<stem>.jpg
    voc/Annotations/<stem>.xml           objects named "plate", with a <text> child
    voc/ImageSets/Main/{train,val,test}.txt
    crops/<text>.jpg, crops/labels.csv   plate crops for the recogniser (see .crops)

A CCPD name can only hold one plate of 7 or 8 characters from CCPD's tables, so
the ``ccpd`` format receives single-plate Chinese scenes and negatives; other
scenes are counted as skipped for it. Every format gets its own copy of the same
JPEG bytes. Corners are integers, so CCPD's integer names are exact; YOLO values
are written with 12 significant digits (far below a millionth of a pixel off).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

from platelab.data.manifest import SPLITS
from platelab.data.sources.ccpd import NEGATIVE_SUBSET, format_ccpd_name, text_to_indices
from platelab.data.synth.scenes import Scene, ScenePlate
from platelab.geometry import xyxy_to_cxcywh_norm

SCENE_FORMATS = ("ccpd", "yolo", "voc")
# "crops" is not a scene format: plate crops for the recogniser, rendered by .crops.
FORMATS = (*SCENE_FORMATS, "crops")
CCPD_SUBSET = "ccpd_synth"
CCPD_NEGATIVES = NEGATIVE_SUBSET  # the folder the CCPD reader takes for negatives


def ccpd_encodable(text: str) -> bool:
    """Whether a plate text fits CCPD's tables (7 or 8 characters)."""
    try:
        text_to_indices(text)
    except ValueError:
        return False
    return True


def polygon_area(corners: np.ndarray) -> float:
    """Area of a ``(4, 2)`` polygon in pixels² (shoelace)."""
    x, y = np.asarray(corners, np.float64).T
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def ccpd_name(scene: Scene) -> str:
    """The CCPD file name of a single-plate scene (its plate must be CCPD-encodable).

    Fields CCPD measures its own way are filled with honest stand-ins: ``tilt`` is
    90 plus the angles (degrees) of the bottom edge from horizontal and of the left
    edge from vertical; ``brightness`` is the mean grey level inside the box;
    ``blur`` is 0 (not measured).
    """
    (plate,) = scene.plates
    h, w = scene.image.shape[:2]
    c = plate.corners
    (tl, tr, br, bl) = c
    tilt_h = 90 + np.degrees(np.arctan2(br[1] - bl[1], br[0] - bl[0]))
    tilt_v = 90 + np.degrees(np.arctan2(bl[0] - tl[0], bl[1] - tl[1]))
    x0, y0, x1, y1 = (int(v) for v in plate.box_xyxy)
    gray = cv2.cvtColor(scene.image[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)], cv2.COLOR_RGB2GRAY)
    return format_ccpd_name(
        plate.box_xyxy,
        c.tolist(),
        plate.text,
        area=min(polygon_area(c) / (w * h), 0.999),
        tilt=(max(0, round(tilt_h)), max(0, round(tilt_v))),
        brightness=int(round(float(gray.mean()))) if gray.size else 0,
        blur=0,
    )


def write_scene(out: Path, stem: str, scene: Scene, split: str, jpeg: bytes, formats) -> dict:
    """Write one scene in each of ``formats``; returns ``{format: relative path or None}``.

    ``None`` marks a format the scene cannot be written in (CCPD for a non-Chinese
    or multi-plate scene).
    """
    written: dict[str, str | None] = {}
    for fmt in formats:
        written[fmt] = _WRITERS[fmt](Path(out) / fmt, stem, scene, split, jpeg)
    return written


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)


def _ccpd(root: Path, stem: str, scene: Scene, split: str, jpeg: bytes) -> str | None:
    if not scene.plates:
        rel = f"{CCPD_NEGATIVES}/{stem}.jpg"
    elif len(scene.plates) == 1 and ccpd_encodable(scene.plates[0].text):
        rel = f"{CCPD_SUBSET}/{ccpd_name(scene)}"
    else:
        return None
    _write(root / rel, jpeg)
    return rel


def _yolo(root: Path, stem: str, scene: Scene, split: str, jpeg: bytes) -> str:
    h, w = scene.image.shape[:2]
    rel = f"images/{split}/{stem}.jpg"
    _write(root / rel, jpeg)
    lines = []
    for p in scene.plates:
        cx, cy, bw, bh = xyxy_to_cxcywh_norm(np.array([p.box_xyxy]), w, h)[0]
        kpts = " ".join(f"{x / w:.12g} {y / h:.12g} 2" for x, y in np.asarray(p.corners))
        lines.append(f"0 {cx:.12g} {cy:.12g} {bw:.12g} {bh:.12g} {kpts}\n")
    _write(root / f"labels/{split}/{stem}.txt", "".join(lines))
    return rel


def _voc(root: Path, stem: str, scene: Scene, split: str, jpeg: bytes) -> str:
    h, w = scene.image.shape[:2]
    rel = f"JPEGImages/{stem}.jpg"
    _write(root / rel, jpeg)
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "JPEGImages"
    ET.SubElement(ann, "filename").text = f"{stem}.jpg"
    size = ET.SubElement(ann, "size")
    for tag, v in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    for p in scene.plates:
        _voc_object(ann, p)
    ET.indent(ann)
    _write(root / f"Annotations/{stem}.xml", ET.tostring(ann, encoding="unicode") + "\n")
    return rel


def _voc_object(ann: ET.Element, plate: ScenePlate) -> None:
    obj = ET.SubElement(ann, "object")
    ET.SubElement(obj, "name").text = "plate"
    ET.SubElement(obj, "truncated").text = "0"
    ET.SubElement(obj, "difficult").text = "0"
    box = ET.SubElement(obj, "bndbox")
    for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), plate.box_xyxy, strict=True):
        ET.SubElement(box, tag).text = repr(float(v))
    ET.SubElement(obj, "text").text = plate.text


_WRITERS = {"ccpd": _ccpd, "yolo": _yolo, "voc": _voc}


def write_index_files(out: Path, formats, splits: dict[str, dict[str, list[str]]]) -> None:
    """Write each format's split lists (and YOLO's data.yaml) once all scenes are written.

    Args:
        splits: ``{format: {split: [relative image paths or stems]}}`` in scene order.
    """
    out = Path(out)
    for fmt in formats:
        lists = splits.get(fmt, {})
        if fmt == "ccpd":
            for split in SPLITS:
                _write(
                    out / "ccpd" / "splits" / f"{split}.txt",
                    "".join(f"{p}\n" for p in lists.get(split, [])),
                )
        elif fmt == "voc":
            for split in SPLITS:
                stems = [Path(p).stem for p in lists.get(split, [])]
                _write(
                    out / "voc" / "ImageSets" / "Main" / f"{split}.txt",
                    "".join(f"{s}\n" for s in stems),
                )
        elif fmt == "yolo":
            for split in SPLITS:  # the folders data.yaml names must exist, even if empty
                (out / "yolo" / "images" / split).mkdir(parents=True, exist_ok=True)
                (out / "yolo" / "labels" / split).mkdir(parents=True, exist_ok=True)
            yaml = "path: .\ntrain: images/train\nval: images/val\ntest: images/test\n"
            yaml += "kpt_shape: [4, 3]  # the plate's corners: TL, TR, BR, BL (x, y, visible)\n"
            yaml += "names:\n  0: plate\n"
            _write(out / "yolo" / "data.yaml", yaml)
