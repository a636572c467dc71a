"""``platelab read``: a :class:`~platelab.infer.reader.PlateReader` over photos, folders, videos and streams.

SOURCE is an image, a folder (searched recursively, sorted), a video file, or a stream
OpenCV opens (a URL such as ``rtsp://...`` or a camera index such as ``0``). Outputs
under ``OUT``:

* ``predictions.jsonl``: one JSON line per image or frame, flushed batch by batch::

      {"source": "a.jpg", "frame": null, "width": 1280, "height": 720,
       "plates": [{"box_xyxy": [...], "corners": [[x, y] x4], "det_score": 0.91,
                   "text": "皖A12345", "text_score": 0.97, "char_scores": [...],
                   "track_id": null}]}

  in original-photo pixels (``frame``: the 0-based index in a video or stream).
* drawn images (box, corners, text and confidence) at the same relative paths, or
  ``OUT/<stem>.mp4`` for a video (``OUT/stream.mp4`` for a stream);
* for a video or stream, ``tracks.jsonl``: one line per plate track (first and last
  frame, the voted text, the votes), the plates of a track sharing ``track_id`` in
  ``predictions.jsonl``.

Video frames are decoded in a background thread while the models run on the previous
batch; the progress bar shows frames per second. An unreadable image in a folder is
reported and skipped; the rest is read.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from platelab.data.imageio import IMAGE_EXTS, read_image
from platelab.errors import PlatelabError, display_path, reason
from platelab.infer.predict import (
    BOX_COLOR,
    DEFAULT_FPS,
    PREDICTIONS,
    QUAD_COLOR,
    VIDEO_EXTS,
    _check_out,
    _Results,
    find_images,
    image_batches,
    write_image,
)
from platelab.infer.reader import PlateReader, ReadResult
from platelab.infer.tracking import TRACKS, PlateTracker, write_tracks

log = logging.getLogger(__name__)

TRACK_HIGH = 0.35  # a detection score that may start a video track


# -- drawing -----------------------------------------------------------------------------------
def draw_readings(image: np.ndarray, result: ReadResult) -> np.ndarray:
    """A copy of the RGB ``image`` with each plate's box (green), corners (magenta) and
    ``text score`` label (white on green; CJK characters need the CJK font)."""
    from PIL import Image, ImageDraw

    from platelab.eval.evaluate_read import _font

    out = image.copy()
    h, w = out.shape[:2]
    thick = max(1, round((w + h) / 2 * 0.002))
    for p in result.plates:
        x0, y0, x1, y1 = (int(round(v)) for v in p.box_xyxy)
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOR, thick)
        quad = np.round(p.quad()).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [quad], True, QUAD_COLOR, thick, cv2.LINE_AA)
    if not result.plates:
        return out
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    font = _font(max(12, int(round((w + h) / 2 * 0.025))))
    for p in result.plates:
        label = f"{p.text or '?'} {p.text_score:.2f}"
        x0, y0 = p.box_xyxy[0], p.box_xyxy[1]
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tw, th = right - left, bottom - top
        y = y0 - th - 6 if y0 - th - 6 >= 0 else p.box_xyxy[3] + 2
        draw.rectangle((x0, y, x0 + tw + 6, y + th + 6), fill=BOX_COLOR)
        draw.text((x0 + 3 - left, y + 3 - top), label, fill=(255, 255, 255), font=font)
    return np.asarray(pil)


# -- sources -----------------------------------------------------------------------------------
def source_kind(source: str | Path) -> str:
    """``image``, ``folder``, ``video`` or ``stream`` (a URL or a camera index)."""
    text = str(source)
    path = Path(source)
    if path.is_dir():
        return "folder"
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in IMAGE_EXTS:
            return "image"
        if suffix in VIDEO_EXTS:
            return "video"
        raise PlatelabError(
            f"cannot read {source}: not a folder, an image ({' '.join(sorted(IMAGE_EXTS))}) "
            f"or a video ({' '.join(sorted(VIDEO_EXTS))})"
        )
    if text.isdigit() or "://" in text or path.is_char_device():  # 0, rtsp://..., /dev/video0
        return "stream"
    raise PlatelabError(f"source not found: {source}")


class _FrameReader:
    """Decode frames in a background thread, ``prefetch`` ahead of the consumer."""

    def __init__(self, cap: cv2.VideoCapture, prefetch: int, max_frames: int | None) -> None:
        self.cap, self.max_frames = cap, max_frames
        self.frames: queue.Queue = queue.Queue(maxsize=max(2, prefetch))
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="platelab-frames", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        try:
            while not self._stop.is_set() and (self.max_frames is None or n < self.max_frames):
                ok, frame = self.cap.read()
                if not ok:
                    break
                self._put(frame)
                n += 1
        finally:
            self._put(None)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self.frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def batches(self, size: int) -> Iterator[list[np.ndarray]]:
        """Lists of up to ``size`` BGR frames, in order, until the source ends."""
        done = False
        while not done:
            batch = []
            while len(batch) < size:
                frame = self.frames.get()
                if frame is None:
                    done = True
                    break
                batch.append(frame)
                if self.frames.empty() and batch:  # a live stream: do not wait for a full batch
                    break
            if batch:
                yield batch

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


# -- the run -----------------------------------------------------------------------------------
class _Writer(_Results):
    """``predictions.jsonl``, the skipped files and the counts of a reading run."""

    def __init__(self, out: Path) -> None:
        super().__init__(out, conf=0.0, save=False)  # drawings are the reader's own
        self.read = 0

    def add(self, source: str, frame: int | None, result: ReadResult) -> None:  # type: ignore[override]
        line = {"source": display_path(source), "frame": frame} | result.to_dict()
        self.file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.plates += len(result.plates)
        self.read += sum(bool(p.text) for p in result.plates)
        if frame is None:
            self.images += 1
        else:
            self.frames += 1


def _read_images(
    reader: PlateReader, files: list[Path], root: Path, res: _Writer, save: bool, progress: bool
) -> None:
    bs = reader.detector.batch_size
    for names, images in image_batches(files, root, bs, res, "read", progress):
        for rel, image, result in zip(names, images, reader.read_rgb(images), strict=True):
            res.add(rel.as_posix(), None, result)
            if save:
                write_image(res.out / rel, draw_readings(image, result))


def _open_quietly(source: str) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` of a file, URL or camera index, without the pages OpenCV and
    FFmpeg print when it fails (the caller says it in one line)."""
    import os

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's AV_LOG_QUIET
    logging_ = getattr(getattr(cv2, "utils", None), "logging", None)
    level = logging_.getLogLevel() if logging_ else None
    if logging_:
        logging_.setLogLevel(logging_.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(int(source) if source.isdigit() else source)
    finally:
        if logging_:
            logging_.setLogLevel(level)


def _read_video(
    reader: PlateReader,
    source: str,
    res: _Writer,
    save: bool,
    progress: bool,
    max_frames: int | None,
) -> tuple[Path | None, list[dict]]:
    is_stream = not Path(source).is_file()  # a URL, a camera index or a device
    cap = _open_quietly(source)
    if not cap.isOpened():
        raise PlatelabError(f"cannot open {'stream' if is_stream else 'video'} {source}")
    name = "stream" if is_stream else Path(source).name
    video_out = res.out / ("stream.mp4" if is_stream else f"{Path(source).stem}.mp4")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_stream else 0
    if max_frames is not None:
        total = min(total, max_frames) if total > 0 else max_frames
    frames = _FrameReader(cap, 2 * reader.detector.batch_size, max_frames)
    # Plates below the reader's conf are not in the results; between it and TRACK_HIGH
    # they only extend tracks (ByteTrack's second pass), above they may start one.
    tracker = PlateTracker(high_score=max(TRACK_HIGH, reader.conf), low_score=reader.conf)
    writer, index = None, 0
    try:
        with tqdm(
            total=total if total > 0 else None, desc=name, unit="frame", disable=not progress
        ) as bar:
            for batch in frames.batches(reader.detector.batch_size):
                rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in batch]
                for image, result in zip(rgb, reader.read_rgb(rgb), strict=True):
                    tracker.update(index, result.plates)
                    res.add(name, index, result)
                    if save:
                        h, w = image.shape[:2]
                        if writer is None:
                            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                            writer = cv2.VideoWriter(str(video_out), fourcc, fps, (w, h))
                            if not writer.isOpened():
                                raise PlatelabError(f"cannot write video {video_out}")
                        drawn = cv2.cvtColor(draw_readings(image, result), cv2.COLOR_RGB2BGR)
                        writer.write(
                            drawn if drawn.shape[:2] == (h, w) else cv2.resize(drawn, (w, h))
                        )
                    index += 1
                res.file.flush()
                bar.update(len(batch))
    finally:
        frames.close()
        cap.release()
        if writer is not None:
            writer.release()  # also on an interrupt: the frames done stay playable
        tracks = tracker.summaries()
        write_tracks(res.out / TRACKS, tracks)
    if index == 0:
        raise PlatelabError(f"cannot read {name} {source}: no decodable frame")
    return (video_out if writer is not None else None), tracks


def run_read(
    source: str | Path,
    out: str | Path,
    *,
    reader: PlateReader | None = None,
    detector: str | Path | None = None,
    recognizer: str | Path | None = None,
    pipeline: str | Path | None = None,
    runtime: str = "auto",
    conf: float | None = None,
    batch_size: int = 8,
    threads: int | None = None,
    device: str = "cpu",
    refine: bool = True,
    corner_model: str | Path | bool | None = None,
    save: bool = True,
    max_frames: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Read the plates of ``source`` into ``out`` (see the module docstring).

    Args:
        reader: a ready :class:`PlateReader` (then the model arguments are ignored).
        detector, recognizer: checkpoints, run folders or ``.onnx`` files (None: the
            default weights). pipeline: a folder from ``platelab export --reader``.
        runtime: ``torch``, ``onnx`` or ``auto``.
        conf: detection score at or above which a plate is read (default 0.25).
        refine, corner_model: the second look and the corner stage
            (:class:`~platelab.infer.reader.PlateReader`).
        save: write drawn images or video (else only the jsonl files).
        max_frames: read at most this many frames of a video or stream.

    Returns:
        A summary: ``kind``, ``source``, ``out``, ``detector``, ``reader``, ``backend``,
        counts ``images``, ``frames``, ``plates``, ``read`` (plates with a text),
        ``tracks``, ``skipped``, ``predictions``, ``video``, ``seconds``, ``per_second``
        and ``rows`` (``[(source, frame, [texts])]``, the first 50 images or frames with
        a plate, for printing).

    Raises:
        PlatelabError: a missing or unreadable source, an OUT that overlaps SOURCE, a
            bad ``conf`` or a model of the wrong task.
    """
    out = Path(out)
    if conf is not None and not 0.0 <= conf <= 1.0:
        raise PlatelabError(f"conf must be within 0..1, got {conf}")
    if max_frames is not None and max_frames < 1:
        raise PlatelabError(f"max_frames must be at least 1, got {max_frames}")
    kind = source_kind(source)
    files: list[Path] = []
    if kind == "folder":
        root = Path(source)
        inside = out.resolve() != root.resolve() and out.resolve().is_relative_to(root.resolve())
        files, _ = find_images(root, exclude=out if inside else None)
        if not files:
            raise PlatelabError(f"no images ({' '.join(sorted(IMAGE_EXTS))}) under {source}")
    elif kind == "image":
        files = [Path(source)]
        try:
            read_image(Path(source))
        except (OSError, ValueError) as e:
            raise PlatelabError(f"cannot read image {source}: {reason(e)}") from None
    if kind != "stream":
        _check_out(Path(source), out, kind, save)
    if reader is None:
        common = dict(conf=conf, device=device, threads=threads, batch_size=batch_size,
                      refine=refine, corner_model=corner_model)  # fmt: skip
        if pipeline is not None:
            reader = PlateReader.from_pipeline(pipeline, **common)
        else:
            reader = PlateReader(detector, recognizer, runtime=runtime, **common)

    res = _Writer(out)
    video, tracks = None, []
    start = time.perf_counter()
    try:
        with logging_redirect_tqdm():
            if kind in ("video", "stream"):
                video, tracks = _read_video(reader, str(source), res, save, progress, max_frames)
            else:
                _read_images(reader, files, Path(source), res, save, progress)
    finally:
        res.file.close()
    seconds = time.perf_counter() - start
    done = res.images + res.frames
    return {
        "kind": kind,
        "source": str(source),
        "out": str(out),
        "detector": reader.detector.model_name,
        "reader": reader.recognizer.model_name,
        "backend": reader.backend,
        "images": res.images,
        "frames": res.frames,
        "plates": res.plates,
        "read": res.read,
        "tracks": tracks,
        "skipped": res.skipped,
        "saved": save,
        "predictions": str(out / PREDICTIONS),
        "video": str(video) if video is not None else None,
        "seconds": seconds,
        "per_second": done / seconds if seconds > 0 else 0.0,
    }


def _rows(predictions: Path, limit: int = 50) -> list[tuple[str, Any, list[str]]]:
    rows = []
    with open(predictions, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            rows.append((r["source"], r["frame"], [p["text"] for p in r["plates"]]))
            if len(rows) >= limit:
                break
    return rows


def summary_lines(summary: dict[str, Any], table: int = 50) -> list[str]:
    """What ``platelab read`` prints: a table (source, plates, texts), then the totals."""
    lines = []
    if summary["kind"] in ("video", "stream"):
        for t in summary["tracks"][:table]:
            lines.append(
                f"track {t['track_id']:>3}  frames {t['first_frame']}-{t['last_frame']}  "
                f"{t['text'] or '?'}"
            )
    else:
        rows = _rows(Path(summary["predictions"]), table)
        width = max([len(s) for s, _, _ in rows] + [5])
        lines.append(f"{'photo':<{width}}  plates  texts")
        for source, _, texts in rows:
            lines.append(f"{source:<{width}}  {len(texts):>6}  {' '.join(t or '?' for t in texts)}")
        n = summary["images"]
        if n > table:
            lines.append(f"... and {n - table} more in {summary['predictions']}")
    unit = "frames" if summary["kind"] in ("video", "stream") else "images"
    lines.append(
        f"read {summary[unit]} {unit} with {summary['detector']} + {summary['reader']} "
        f"({summary['backend']}) in {summary['seconds']:.2f} s ({summary['per_second']:.1f} "
        f"{unit}/s): {summary['plates']} plate(s), {summary['read']} with a text"
        + (f", {len(summary['tracks'])} track(s)" if unit == "frames" else "")
    )
    if summary["skipped"]:
        lines.append(f"skipped {len(summary['skipped'])} unreadable file(s):")
        lines += [f"  {s['path']}: {s['reason']}" for s in summary["skipped"]]
    lines.append(f"predictions: {summary['predictions']}")
    if unit == "frames":
        lines.append(f"tracks: {Path(summary['out']) / TRACKS}")
    if summary["video"]:
        lines.append(f"drawn video: {summary['video']}")
    elif summary["saved"] and unit == "images" and summary["images"]:
        lines.append(f"drawn images: {summary['out']}")
    return [display_path(line) for line in lines]
