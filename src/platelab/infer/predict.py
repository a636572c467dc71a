"""``platelab predict``: a :class:`~platelab.infer.predictor.Predictor` over an image, a folder or a video.

Outputs under ``OUT``:

* ``predictions.jsonl``: one JSON line per image or video frame, written and flushed
  batch by batch (an interrupt keeps the finished work)::

      {"source": "sub/a.jpg", "frame": null, "width": 800, "height": 600,
       "box_xyxy": [x_min, y_min, x_max, y_max], "score": 0.93, "plate": true}

  for a localiser; a detector's line lists every plate scoring at least ``conf``, best
  first, in the layout the reader (``platelab read``) extends with the text::

      {"source": "sub/a.jpg", "frame": null, "width": 800, "height": 600,
       "plates": [{"box_xyxy": [x_min, y_min, x_max, y_max],
                   "corners": [[x, y], [x, y], [x, y], [x, y]], "det_score": 0.93}]}

  (no top-level box: ``plates[0]`` is the best plate, ``plates == []`` an image without
  one; corners are TL, TR, BR, BL). ``source`` is relative to a SOURCE folder (the
  file name for a single file), ``frame`` the 0-based frame index for a video, boxes
  and corners in original pixels. A file
  name that is not valid UTF-8 is still predicted; in ``source`` (and in printed lines)
  each undecodable byte is written as a backslash, ``x`` and two hex digits (the name
  bytes ``caf`` E9 ``.jpg`` become the text ``caf\\xe9.jpg``), control characters
  likewise, so every line is valid UTF-8 JSON. The drawn image keeps the original bytes
  of the name.
  A recogniser's (``task=read``, SOURCE a crop or a folder of crops) line holds the
  reading: ``{"source", "frame", "width", "height", "text", "score", "char_scores",
  "rows"}`` (``score``: the product of the character confidences).
* annotated images at the same relative paths (an image SOURCE: ``OUT/<name>``), or
  ``OUT/<stem>.mp4`` (``mp4v``, the input's fps and frame size) for a video. A box and its
  score are drawn when ``score >= conf``; for a detector every plate: its box (green),
  its corner polygon (magenta, a white dot on the top-left corner) and its score.

A folder is searched recursively (sorted) for files with an extension from
:data:`~platelab.data.imageio.IMAGE_EXTS`; videos inside a folder are not predicted
(they are counted and reported, and each can be passed as SOURCE), nor is anything under
``OUT`` when ``OUT`` lies inside SOURCE (allowed with ``--no-save`` only). An unreadable
image in a folder is logged as a warning and listed in ``skipped``; the rest goes on.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from platelab.data.imageio import IMAGE_EXTS, read_image
from platelab.errors import PlatelabError, display_path, reason
from platelab.infer.predictor import DetectionResult, Prediction, Predictor
from platelab.tasks.read import TextPrediction

log = logging.getLogger(__name__)

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
PREDICTIONS = "predictions.jsonl"
BOX_COLOR = (0, 200, 0)  # green: the same in RGB and BGR order, so frames need no swap
QUAD_COLOR = (255, 0, 255)  # magenta: symmetric in channel order too
TEXT_COLOR = (255, 255, 255)
LOCALIZE_CONF = 0.5  # a localiser's default threshold; a detector's is its DEPLOY conf
DEFAULT_FPS = 25.0  # when a container does not report its frame rate


def draw_prediction(image: np.ndarray, pred: Prediction, conf: float = 0.5) -> np.ndarray:
    """Draw the box and ``plate 0.93`` on a copy of ``image`` when ``pred.score >= conf``.

    Args:
        image: ``(H, W, 3)`` uint8, RGB or BGR (the colours are symmetric in channel order),
            the image ``pred`` was made on (``box_xyxy`` in its pixels).
        pred: the prediction.
        conf: the score threshold for drawing.

    Returns:
        The annotated copy (an unchanged copy below ``conf``).
    """
    out = image.copy()
    if not pred.score >= conf:
        return out
    _draw_box(out, pred.box_xyxy, f"plate {pred.score:.2f}")
    return out


def _thickness(image: np.ndarray) -> int:
    h, w = image.shape[:2]
    return max(1, round((w + h) / 2 * 0.003))  # ultralytics' line width rule


def _draw_box(
    out: np.ndarray, box_xyxy: Any, label: str, thick: int | None = None, font_scale: float = 0.0
) -> None:
    """Draw a box and its label (above the box, else inside its top edge) on ``out``.

    ``thick`` (default :func:`_thickness`) is the line width; ``font_scale`` (default
    ``thick / 3``) the label's size.
    """
    thick = thick or _thickness(out)
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), BOX_COLOR, thick)
    font_scale = font_scale or max(0.3, thick / 3)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    # Above the box when it fits, else inside its top edge.
    top = y0 - th - base - 2 if y0 - th - base - 2 >= 0 else y0
    cv2.rectangle(out, (x0, top), (x0 + tw + 2, top + th + base + 2), BOX_COLOR, -1)
    cv2.putText(
        out,
        label,
        (x0 + 1, top + th + 1),
        cv2.FONT_HERSHEY_SIMPLEX,
        font_scale,
        TEXT_COLOR,
        1,
        cv2.LINE_AA,
    )


def draw_detections(image: np.ndarray, result: DetectionResult, conf: float = 0.0) -> np.ndarray:
    """Draw every plate of ``result`` scoring at least ``conf`` on a copy of ``image``.

    Each plate: its box and score label (green), its corner polygon over the box
    (magenta; the two coincide for a plate seen head-on) and a white dot ringed in
    magenta on the top-left corner, so the reading direction shows. Plates are small,
    so lines are thinner and labels smaller than a localiser's, and the dot is at most
    a third of the plate's height. Lower plates are drawn first, so the best one's
    label stays on top.

    Args:
        image: ``(H, W, 3)`` uint8, RGB or BGR (the colours are symmetric in channel
            order), the image ``result`` was made on.
        result: the detections, in ``image``'s pixels.
        conf: the score threshold for drawing.
    """
    out = image.copy()
    thick = max(1, _thickness(out) - 1)
    for plate in reversed(result.plates):
        if not plate.score >= conf:
            continue
        _draw_box(out, plate.box_xyxy, f"{plate.score:.2f}", thick, max(0.35, thick / 3))
        quad = np.round(plate.quad()).astype(np.int32)
        cv2.polylines(out, [quad.reshape(-1, 1, 2)], True, QUAD_COLOR, thick, cv2.LINE_AA)
        plate_h = plate.box_xyxy[3] - plate.box_xyxy[1]
        r = int(max(2, min(thick + 2, plate_h / 3)))
        tl = (int(quad[0, 0]), int(quad[0, 1]))
        cv2.circle(out, tl, r, QUAD_COLOR, -1, cv2.LINE_AA)
        cv2.circle(out, tl, max(1, r - max(1, thick // 2) - 1), TEXT_COLOR, -1, cv2.LINE_AA)
    return out


def draw_result(image: np.ndarray, result: Prediction | DetectionResult, conf: float) -> np.ndarray:
    """:func:`draw_prediction`, :func:`draw_detections` or a reading, as ``result`` is."""
    if isinstance(result, TextPrediction):
        from platelab.infer.read_predictor import draw_reading

        return draw_reading(image, result)
    if isinstance(result, DetectionResult):
        return draw_detections(image, result, conf)
    return draw_prediction(image, result, conf)


def find_images(folder: Path, exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """``(images, videos)`` under ``folder``, recursive and sorted; nothing under ``exclude``."""
    images, videos = [], []
    skip = exclude.resolve() if exclude is not None else None
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        if skip is not None and p.resolve().is_relative_to(skip):
            continue
        suffix = p.suffix.lower()
        if suffix in IMAGE_EXTS:
            images.append(p)
        elif suffix in VIDEO_EXTS:
            videos.append(p)
    return images, videos


class _Results:
    """Writes jsonl lines, the annotated images, and keeps the counts."""

    def __init__(self, out: Path, conf: float, save: bool) -> None:
        self.out, self.conf, self.save = out, conf, save
        self.images = self.frames = self.plates = self.with_plates = 0
        self.skipped: list[dict[str, str]] = []
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.file: IO[str] = open(out / PREDICTIONS, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise PlatelabError(f"cannot write to {out}: {reason(e)}") from None

    def add(self, source: str, frame: int | None, pred: Prediction | DetectionResult) -> None:
        line = {
            "source": display_path(source),
            "frame": frame,
            "width": pred.width,
            "height": pred.height,
        }
        if isinstance(pred, TextPrediction):  # a recogniser: the text of the crop
            line |= pred.to_dict()
            self.plates += bool(pred.text) and pred.score >= self.conf
            self.with_plates += bool(pred.text) and pred.score >= self.conf
        elif isinstance(pred, DetectionResult):
            plates = pred.above(self.conf).plates
            line["plates"] = [p.to_dict() for p in plates]
            self.plates += len(plates)
            self.with_plates += bool(plates)
        else:
            plate = pred.score >= self.conf
            line |= {"box_xyxy": list(pred.box_xyxy), "score": pred.score, "plate": plate}
            self.plates += plate
            self.with_plates += plate
        self.file.write(json.dumps(line, ensure_ascii=False) + "\n")
        if frame is None:
            self.images += 1
        else:
            self.frames += 1

    def save_image(
        self, rel: Path, image_rgb: np.ndarray, pred: Prediction | DetectionResult
    ) -> None:
        if self.save:
            write_image(self.out / rel, draw_result(image_rgb, pred, self.conf))

    def skip(self, path: Path, rel: str, e: BaseException) -> None:
        why = reason(e)
        log.warning("skipped %s: %s", display_path(path), why)
        self.skipped.append({"path": display_path(rel), "reason": why})


def write_image(path: Path, image_rgb: np.ndarray) -> None:
    """Encode an RGB image by ``path``'s suffix and write it (folders made); one-line errors."""
    ok, data = cv2.imencode(path.suffix.lower(), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise PlatelabError(f"cannot encode {path} as {path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.tobytes())
    except OSError as e:
        raise PlatelabError(f"cannot write {path}: {reason(e)}") from None


def image_batches(
    files: list[Path], root: Path, batch_size: int, res: _Results, desc: str, progress: bool
) -> Iterator[tuple[list[Path], list[np.ndarray]]]:
    """``(names relative to root, RGB images)`` of ``files``, ``batch_size`` files at a
    time; an unreadable file is skipped into ``res``. Flushes ``res`` and moves a
    progress bar after each batch."""
    with tqdm(total=len(files), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            names, images = [], []
            for f in chunk:
                rel = f.relative_to(root) if f != root else Path(f.name)
                try:
                    images.append(read_image(f))
                    names.append(rel)
                except (OSError, ValueError) as e:
                    res.skip(f, rel.as_posix(), e)
            yield names, images
            res.file.flush()
            bar.update(len(chunk))


def _predict_images(
    predictor: Predictor, files: list[Path], root: Path, res: _Results, progress: bool
) -> None:
    """Read, predict, draw and record ``files`` one batch at a time (``root``: for names)."""
    for names, images in image_batches(files, root, predictor.batch_size, res, "predict", progress):
        for rel, image, pred in zip(names, images, predictor.predict(images), strict=True):
            res.add(rel.as_posix(), None, pred)
            res.save_image(rel, image, pred)


def _read_frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """BGR frames until the first one that does not decode."""
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        yield frame


def _predict_video(predictor: Predictor, path: Path, res: _Results, progress: bool) -> Path | None:
    """Predict every frame of ``path``; returns the annotated video written (or None)."""
    cap = cv2.VideoCapture(str(path))
    writer = None
    try:
        frames = _read_frames(cap)
        first = next(frames, None) if cap.isOpened() else None
        if first is None:
            raise PlatelabError(f"cannot read video {path}: no decodable frame")
        h, w = first.shape[:2]
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not (math.isfinite(fps) and fps > 0):
            log.info(
                "%s does not report its frame rate; writing %g fps", display_path(path), DEFAULT_FPS
            )
            fps = DEFAULT_FPS
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        video_out = res.out / f"{path.stem}.mp4"
        if res.save:
            writer = cv2.VideoWriter(str(video_out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not writer.isOpened():
                raise PlatelabError(f"cannot write video {video_out}")
        index = 0
        it = chain([first], frames)
        with tqdm(
            total=total if total > 0 else None, desc=path.name, unit="frame", disable=not progress
        ) as bar:
            while batch := list(islice(it, predictor.batch_size)):
                rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in batch]
                for frame, pred in zip(batch, predictor.predict(rgb), strict=True):
                    res.add(path.name, index, pred)
                    index += 1
                    if writer is not None:
                        drawn = draw_result(frame, pred, res.conf)
                        if drawn.shape[:2] != (h, w):  # a writer drops frames of another size
                            drawn = cv2.resize(drawn, (w, h))
                        writer.write(drawn)
                res.file.flush()
                bar.update(len(batch))
    finally:
        cap.release()
        if writer is not None:
            writer.release()  # also on an interrupt: the frames done stay playable
    return video_out if writer is not None else None


def _check_out(source: Path, out: Path, kind: str, save: bool) -> None:
    """Refuse an ``out`` whose drawings could replace an input (see :func:`run_predict`)."""
    if not save:  # predictions.jsonl alone: no image can be overwritten
        return
    src, dst = source.resolve(), out.resolve()
    if kind == "folder":
        if dst.is_relative_to(src) or src.is_relative_to(dst):
            raise PlatelabError(
                f"--out {out} overlaps SOURCE {source}: drawn images would overwrite the "
                f"images in it; choose an --out outside {source} (or --no-save)"
            )
        return
    drawn = dst / (f"{source.stem}.mp4" if kind == "video" else source.name)
    if drawn == src:
        raise PlatelabError(
            f"--out {out} would overwrite the images in it: the drawing of {source} is "
            f"{drawn}; choose another --out"
        )


def run_predict(
    model: Predictor | Path | str,
    source: Path | str,
    out: Path | str,
    *,
    backend: str = "auto",
    batch_size: int = 8,
    conf: float | None = None,
    save: bool = True,
    threads: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Predict an image, a folder of images (recursive) or a video into ``out``.

    Args:
        model: a checkpoint, run folder or ``.onnx`` file, or a ready :class:`Predictor`
            (then ``backend``, ``batch_size``, ``threads`` and ``device`` are its own).
        source: an image file, a folder, or a video (``.mp4 .avi .mov .mkv .webm``).
        out: output folder (created); see the module docstring for its contents.
        conf: score at or above which a plate counts, is drawn and (for a detector) is
            written; None: 0.5 for a localiser, the Predictor's ``conf`` for a detector
            (:data:`platelab.tasks.detect.DEPLOY`'s 0.25 unless it was given another).
        save: write annotated images or video; ``False`` writes only ``predictions.jsonl``.
        progress: show a tqdm bar.

    Returns:
        A summary: ``kind`` (image, folder or video), ``source``, ``out``, ``model``,
        ``backend``, ``task``, ``canvas`` ``[W, H]``, ``conf`` (as resolved), counts
        ``images``, ``frames``, ``plates`` (score >= conf: images with a plate for a
        localiser, plates for a detector), ``with_plates`` (images or frames with at
        least one), ``skipped`` (``[{"path", "reason"}]``), ``ignored_videos``
        (videos inside a folder), ``predictions`` (the jsonl), ``video`` (the annotated
        video or None), ``seconds`` and ``per_second`` (images or frames per second).

    Outputs never overwrite inputs. With ``save`` (drawings), a folder SOURCE and
    ``out`` must not overlap: ``out`` equal to SOURCE, inside it or containing it is
    refused, whatever is in it (files under an ``out`` inside SOURCE cannot be told
    apart from photos); for an image or a video, the drawing must not be SOURCE itself.
    ``save=False`` writes only ``predictions.jsonl`` and may go anywhere.

    Raises:
        PlatelabError: a missing SOURCE, a folder without images, an unreadable single
            image or video, an OUT that overlaps SOURCE (see above), a bad ``conf``, or
            a model the Predictor refuses.
    """
    source, out = Path(source), Path(out)
    if conf is not None and not 0.0 <= conf <= 1.0:
        raise PlatelabError(f"conf must be within 0..1, got {conf}")
    if not source.exists():
        raise PlatelabError(f"source not found: {source}")
    suffix = source.suffix.lower()
    if source.is_dir():
        kind = "folder"
        # OUT inside SOURCE: do not read back earlier drawings (OUT == SOURCE is refused below)
        inside = out.resolve() != source.resolve() and out.resolve().is_relative_to(
            source.resolve()
        )
        files, videos = find_images(source, exclude=out if inside else None)
        if not files:
            exts = " ".join(sorted(IMAGE_EXTS))
            raise PlatelabError(f"no images ({exts}) under {source}")
    elif suffix in IMAGE_EXTS or suffix in VIDEO_EXTS:
        kind, files, videos = ("video" if suffix in VIDEO_EXTS else "image"), [source], []
    else:
        raise PlatelabError(
            f"cannot predict {source}: not a folder, an image ({' '.join(sorted(IMAGE_EXTS))}) "
            f"or a video ({' '.join(sorted(VIDEO_EXTS))})"
        )
    _check_out(source, out, kind, save)
    if kind == "image":  # one file and nothing else to do: unreadable is an error, not a skip
        try:
            read_image(source)
        except (OSError, ValueError) as e:
            raise PlatelabError(f"cannot read image {source}: {reason(e)}") from None
    predictor = (
        model
        if isinstance(model, Predictor)
        else Predictor(
            model,
            backend=backend,
            batch_size=batch_size,
            threads=threads,
            device=device,
            conf=conf,
        )
    )
    if conf is None:
        conf = {"detect": predictor.conf, "read": 0.0}.get(predictor.task, LOCALIZE_CONF)

    res = _Results(out, conf, save)
    video = None
    start = time.perf_counter()
    try:
        with logging_redirect_tqdm():
            if kind == "video":
                video = _predict_video(predictor, source, res, progress)
            else:
                _predict_images(predictor, files, source, res, progress)
    finally:
        res.file.close()
    seconds = time.perf_counter() - start
    done = res.images + res.frames
    return {
        "kind": kind,
        "source": str(source),
        "out": str(out),
        "model": predictor.model_name,
        "backend": predictor.backend,
        "task": predictor.task,
        "canvas": list(predictor.canvas),
        "images": res.images,
        "frames": res.frames,
        "plates": res.plates,
        "with_plates": res.with_plates,
        "conf": conf,
        "saved": save,
        "skipped": res.skipped,
        "ignored_videos": [v.relative_to(source).as_posix() for v in videos],
        "predictions": str(out / PREDICTIONS),
        "video": str(video) if video is not None else None,
        "seconds": seconds,
        "per_second": done / seconds if seconds > 0 else 0.0,
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The lines ``platelab predict`` prints for a :func:`run_predict` summary."""
    unit = "frames" if summary["kind"] == "video" else "images"
    n = summary[unit]
    w, h = summary["canvas"]
    lines = [
        f"predicted {n} {unit} with {summary['model']} ({summary['backend']}, {w}x{h}) in "
        f"{summary['seconds']:.2f} s ({summary['per_second']:.1f} {unit}/s); "
        + (
            f"{summary['plates']} plate(s) in {summary['with_plates']} {unit}"
            if summary.get("task") == "detect"
            else f"{summary['plates']} read (a non-empty text)"
            if summary.get("task") == "read"
            else f"{summary['plates']} with a plate"
        )
        + f" (score >= {summary['conf']:g})"
    ]
    skipped = summary["skipped"]
    if skipped:
        lines.append(f"skipped {len(skipped)} unreadable file(s):")
        lines += [f"  {s['path']}: {s['reason']}" for s in skipped]
    if summary["ignored_videos"]:
        lines.append(
            f"ignored {len(summary['ignored_videos'])} video(s) in the folder "
            "(predict each by passing it as SOURCE)"
        )
    lines.append(f"predictions: {summary['predictions']}")
    if summary["video"]:
        lines.append(f"annotated video: {summary['video']}")
    elif summary["saved"] and summary["kind"] != "video" and n:
        lines.append(f"annotated images: {summary['out']}")
    return [display_path(line) for line in lines]  # file names that are not UTF-8: \xNN
