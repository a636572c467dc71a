"""YOLO-format detection data: one ``cls cx cy w h`` line per box, normalised to the image.

Layouts (the label of ``.../images/.../x.jpg`` is ``.../labels/.../x.txt``: the
last ``images`` folder of the path becomes ``labels``, as ultralytics does):

    ROOT/images/{train,val,test}/x.jpg + ROOT/labels/{train,val,test}/x.txt
    ROOT/{train,valid,test}/images/x.jpg + ROOT/{train,valid,test}/labels/x.txt   (Roboflow)
    ROOT/images/x.jpg + ROOT/labels/x.txt                                         (no split)
    ROOT/x.jpg + ROOT/x.txt                        (no ``images`` folder: the label sits beside)

When ``ROOT/data.yaml`` exists, its ``train``/``val``/``test`` entries (folders of
images, or ``.txt`` lists of image paths, relative to its ``path:`` or to the
yaml's own folder) say where the images are and which split they belong to, and
its ``names`` give class names. Without it every image under ROOT is read, and a
``train``/``val``/``valid``/``test`` folder on its path sets the split
(``valid`` -> ``val``).

Label lines with more than 5 fields and an odd count are segmentation polygons
``cls x1 y1 x2 y2 ...``: they become the box enclosing their points (corners stay
unknown: a polygon's point order is not fixed). If ``data.yaml`` declares
``kpt_shape`` (a pose dataset), the fields after the first 5 are keypoints: with
``kpt_shape: [4, 2]`` or ``[4, 3]`` they are the plate's 4 corners, TL, TR, BR, BL,
normalised like the box (``x y`` or ``x y visibility``; a corner with visibility 0
makes the plate's corners unknown), the layout of YOLO-pose plate datasets and of
``platelab data synth --formats yolo``; any other ``kpt_shape`` is ignored.
Boxes are normalised to the image as displayed, i.e. after its EXIF orientation
(as ultralytics and CVAT use it; see :mod:`platelab.data.imageio`). A label file
may start with a UTF-8 byte-order mark (Windows editors write one).

Which classes are plates: the ids or names the caller gives; else the classes
whose data.yaml ``names`` look like a plate
(:data:`~platelab.data.records.PLATE_CLASS_NAMES`, compared loosely); else,
without names, the one class id the labels use. A dataset where none of this
finds a plate class is a :class:`PlatelabError` listing the classes seen.

An empty label file makes the image a negative. A *missing* label file is either
a skip (``missing_labels="skip"``, the default: an unlabelled photo may well show
a plate) or a negative (``"negative"``, what ultralytics does); either way it is
counted.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

from platelab.data.imageio import IMAGE_EXTS, file_image_size
from platelab.data.records import (
    MISSING_LABEL,
    MISSING_LABEL_POLICIES,
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
from platelab.geometry import cxcywh_norm_to_xyxy

logger = logging.getLogger(__name__)

DATA_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")


def label_path(image: Path) -> Path:
    """The label file of an image: the last ``images`` folder becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _find_yaml(root: Path) -> Path | None:
    return next((root / n for n in DATA_YAML_NAMES if (root / n).is_file()), None)


def _resolve(entry: str, base: Path, yaml_dir: Path) -> Path:
    path = Path(entry)
    if path.is_absolute():
        return path
    found = base / path
    # Roboflow writes ``train: ../train/images`` beside a yaml that sits in the root.
    if not found.exists() and entry.startswith("../"):
        found = yaml_dir / entry.removeprefix("../")
    return found


def _images_in(path: Path) -> list[Path]:
    """The images a data.yaml entry names: a folder (recursively) or a ``.txt`` list."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    lines = path.read_text(encoding="utf-8-sig").splitlines()  # relative to the list's folder
    return [path.parent / line.strip() for line in lines if line.strip()]


def _from_yaml(data_yaml: Path, skips: list[Skip]) -> tuple[list[tuple[Path, str | None]], dict]:
    """``[(image, split)]`` and the parsed yaml; a missing split folder is a skip."""
    try:
        cfg = yaml.safe_load(data_yaml.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as e:
        raise PlatelabError(f"{data_yaml} is not valid YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise PlatelabError(f"{data_yaml} must be a mapping with train/val/test keys")
    base = data_yaml.parent
    if cfg.get("path"):
        base = Path(cfg["path"]) if Path(cfg["path"]).is_absolute() else base / cfg["path"]
    images: list[tuple[Path, str | None]] = []
    for key in ("train", "val", "test"):
        entries = cfg.get(key) or []
        for entry in [entries] if isinstance(entries, str) else entries:
            path = _resolve(str(entry), base, data_yaml.parent)
            if not path.exists():
                skips.append(
                    Skip(str(path), f"{data_yaml} lists {key}: {entry}, which does not exist")
                )
                continue
            try:
                images += [(p, key) for p in _images_in(path)]
            except (OSError, UnicodeDecodeError) as e:
                skips.append(Skip(str(path), f"unreadable image list: {e}"))
    return images, cfg


def _walk(root: Path) -> list[tuple[Path, str | None]]:
    """Every image under ``root`` with the split named by a folder on its path."""
    out = []
    for p in sorted(root.rglob("*")):
        folders = p.relative_to(root).parts[:-1]
        if p.suffix.lower() not in IMAGE_EXTS or "labels" in folders or not p.is_file():
            continue
        split = next(
            (SPLIT_ALIASES[f.lower()] for f in folders if f.lower() in SPLIT_ALIASES), None
        )
        out.append((p, split))
    return out


def parse_label_file(
    path: Path, keypoints: bool = False, corners: int = 0
) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
    """Read a label file into ``[(class_id, (4,) cxcywh_norm box, (4, 2) corners_norm | None)]``.

    Args:
        path: the ``.txt`` file; blank lines are ignored.
        keypoints: a pose dataset: the fields after the first 5 are keypoints.
        corners: with ``keypoints``, the values per keypoint of a 4-corner pose
            dataset (2 or 3; 0: ignore the keypoints).

    Raises:
        ValueError: (the message names the file and line) a line with a wrong number of fields, a non-numeric or non-finite
            value, a non-integer class, or a non-positive box size.
    """
    boxes = []
    text = path.read_text(encoding="utf-8-sig")  # a BOM is not part of the first class id
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{line_no}"
        n = len(fields)
        if n < 5 or (n != 5 and not keypoints and (n < 7 or n % 2 == 0)):
            raise ValueError(
                f"{where}: expected 'cls cx cy w h' or a polygon 'cls x1 y1 x2 y2 x3 y3 ...',"
                f" got {n} fields"
            )
        if keypoints and corners and n != 5 + 4 * corners:
            raise ValueError(f"{where}: expected 'cls cx cy w h' and 4 corners, got {n} fields")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise ValueError(f"{where}: not a number in {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{where}: a value is not finite in {line.strip()!r}")
        if values[0] < 0 or values[0] != int(values[0]):
            raise ValueError(f"{where}: class must be a non-negative integer, got {fields[0]!r}")
        quad = None
        if n == 5 or keypoints:
            box = np.array(values[1:5])
            if keypoints and corners:
                kpts = np.array(values[5:]).reshape(4, corners)
                if corners == 2 or (kpts[:, 2] > 0).all():
                    quad = kpts[:, :2]
        else:  # a polygon: its enclosing box, in the same normalised cxcywh
            pts = np.array(values[1:]).reshape(-1, 2)
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            box = np.concatenate([(lo + hi) / 2, hi - lo])
        if box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"{where}: box width and height must be positive: {line.strip()!r}")
        boxes.append((int(values[0]), box, quad))
    return boxes


def corner_layout(kpt_shape: object) -> int:
    """Values per keypoint when ``kpt_shape`` is a 4-corner layout (``[4, 2]``/``[4, 3]``), else 0."""
    if isinstance(kpt_shape, list | tuple) and len(kpt_shape) == 2:
        k, d = kpt_shape
        if k == 4 and d in (2, 3):
            return int(d)
    return 0


def plate_class_ids(
    classes: Iterable[int | str] | None, names: dict[int, str] | None, root: Path
) -> set[int] | None:
    """The class ids that are plates: ``classes`` (ids, or names looked up in ``names``),
    else the ids whose name looks like a plate; None means "decide from the labels".

    Raises:
        PlatelabError: a class name that data.yaml does not have.
    """
    by_key = {class_key(n): i for i, n in (names or {}).items()}
    if classes is None:
        return {i for k, i in by_key.items() if k in plate_class_keys()} if names else None
    ids = set()
    for c in classes:
        if isinstance(c, int) or str(c).strip().isdigit():
            ids.add(int(c))
        elif class_key(c) in by_key:
            ids.add(by_key[class_key(c)])
        else:
            have = ", ".join(f"{i}: {n}" for i, n in (names or {}).items()) or "none"
            raise PlatelabError(
                f"yolo source {root}: no class named {c!r} (data.yaml names: {have})"
            )
    return ids


def read_yolo(
    root: Path, classes: Iterable[int | str] | None = None, missing_labels: str = "skip"
) -> tuple[list[ImageRecord], list[Skip]]:
    """Read a YOLO dataset into records, one per image.

    Args:
        root: the dataset folder (holding ``data.yaml`` and/or the image folders).
        classes: the plate classes, as ids or data.yaml names (None: see the module
            docstring); boxes of other classes are dropped, and an image whose boxes
            are all dropped becomes a negative.
        missing_labels: ``"skip"`` or ``"negative"``: what an image without a label
            file becomes (its :class:`Skip` reason, or ``meta["missing_label"]``).

    Returns:
        ``(records, skips)``: records with boxes in original pixels (corners and text
        unknown), ``size`` the image's real ``(width, height)``, ``split`` from
        data.yaml or the folder layout, ``subset`` the root folder's name, and
        ``meta["class_ids"]`` (and ``meta["class_names"]`` when data.yaml names
        them) for the kept boxes. An unreadable image or a malformed label is a
        :class:`Skip` naming the file (and line).

    Raises:
        PlatelabError: ``root`` is not a folder, its data.yaml is not valid YAML, or no
            class of its labels is a plate class (the message lists those seen).
    """
    root = Path(root)
    if not root.is_dir():
        raise PlatelabError(f"YOLO folder not found: {root}")
    if missing_labels not in MISSING_LABEL_POLICIES:
        raise PlatelabError(
            f"missing_labels must be one of {', '.join(MISSING_LABEL_POLICIES)}, "
            f"got {missing_labels!r}"
        )
    skips: list[Skip] = []
    data_yaml = _find_yaml(root)
    images, cfg = _from_yaml(data_yaml, skips) if data_yaml else (_walk(root), {})
    names = cfg.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    names = {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else None
    wanted = plate_class_ids(classes, names, root)
    keypoints = "kpt_shape" in cfg
    corners = corner_layout(cfg.get("kpt_shape")) if keypoints else 0
    class_counts: Counter = Counter()
    records: list[ImageRecord] = []
    seen: dict[Path, str | None] = {}
    for image, split in images:
        if image in seen:  # e.g. ``train: images`` and ``val: images`` in one yaml
            logger.warning("%s is in %s and %s; keeping %s", image, seen[image], split, seen[image])
            continue
        seen[image] = split
        try:
            w, h = file_image_size(image)
        except OSError as e:
            skips.append(Skip(display_path(image), f"unreadable image: {e}"))
            continue
        label = label_path(image)
        if not label.is_file() and missing_labels == "skip":
            skips.append(Skip(display_path(image), f"{MISSING_LABEL} ({display_path(label)})"))
            continue
        try:
            boxes = parse_label_file(label, keypoints, corners) if label.is_file() else []
        except (ValueError, OSError) as e:  # UnicodeDecodeError is a ValueError
            skips.append(Skip(display_path(image), f"malformed label: {e}"))
            continue
        class_counts.update(c for c, _, _ in boxes)
        boxes = [x for x in boxes if wanted is None or x[0] in wanted]
        record = ImageRecord(path=image, source="yolo", subset=root.name, split=split, size=(w, h))
        record.meta["missing_label"] = not label.is_file()
        if boxes:
            xyxy = cxcywh_norm_to_xyxy(np.stack([b for _, b, _ in boxes]), w, h)
            record.plates = [
                Plate(
                    box_xyxy=tuple(float(v) for v in row),
                    corners=None
                    if q is None
                    else tuple((float(x * w), float(y * h)) for x, y in q),
                )
                for row, (_, _, q) in zip(xyxy, boxes, strict=True)
            ]
        record.meta["class_ids"] = [c for c, _, _ in boxes]
        if names:
            record.meta["class_names"] = [str(names.get(c, c)) for c, _, _ in boxes]
        records.append(record)
    _check_classes(root, wanted, names, class_counts)
    logger.info("YOLO %s: %d images, %d skipped", root, len(records), len(skips))
    return records, skips


def _check_classes(
    root: Path, wanted: set[int] | None, names: dict[int, str] | None, seen: Counter
) -> None:
    """Refuse a source where no box is of a plate class, or where, without names,
    several class ids leave it unclear which one is the plate."""
    if not seen:
        return  # only negatives: nothing to tell apart
    named = Counter({(names.get(c, f"class {c}") if names else f"class {c}"): n
                     for c, n in seen.items()})  # fmt: skip
    if wanted is None and len(seen) > 1:
        listed = ", ".join(f"{k} x{n}" for k, n in named.most_common(10))
        raise PlatelabError(
            f"yolo source {root}: labels use several classes ({listed}) and no data.yaml "
            "names them; name the plate class with --yolo-classes"
        )
    if wanted is not None and not wanted & set(seen):
        raise no_plate_class_error("yolo", root, named, "--yolo-classes (ids or names)")
