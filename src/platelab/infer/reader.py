"""The plate reader: detect every plate, straighten it by its 4 corners, read its text.

::

    from platelab import PlateReader
    reader = PlateReader()                       # the default weights shipped with platelab
    result = reader("car.jpg")                   # ReadResult(plates=[PlateReading(...)], ...)
    for plate in result.plates:
        print(plate.text, plate.text_score, plate.box_xyxy)

A :class:`PlateReader` chains two :class:`~platelab.infer.predictor.Predictor` s: a
detector (``task=detect``) finds each plate's box and corners in original-photo
pixels; the recogniser (``task=read``) reads the crop that
:func:`platelab.geometry.warp_quad` cuts from those corners, the same warp its training
crops went through. Either model is a checkpoint, a run folder or an ``.onnx`` file;
``None`` takes the default weights shipped in the package
(:mod:`platelab.infer.defaults`), and ``runtime="onnx"`` exports them once into a cache
folder. A pipeline folder written by ``platelab export DETECTOR --reader READER``
(``pipeline.json`` beside the two ``.onnx`` files) is read with
:meth:`PlateReader.from_pipeline`.

Corners: a plate far away covers a few canvas pixels, so its corners, mapped back to
the photo, are off by several photo pixels. With ``refine`` (the default) the detector
takes a second look at a window :data:`REFINE_GROW` plate widths wide around each plate,
cut from the full-resolution photo, where the plate is large, and its corners from that
look replace the first ones (with the shipped weights, the mean corner error on the 6
ccpd_base photos falls from 17 to 12 px, and 5 plates instead of 3 are read exactly:
``benchmarks/read_e2e.py``). Then the corner model
(:mod:`platelab.models.corner_refiner`, ``corner_model``; the shipped one by default)
finds the 4 corners again in a window around each plate's box, at the plate's own
resolution: the detector's corners follow a plate's box but hardly its lean.

Two-line plates: a plate's rows are not given by the detector. A plate whose corners
are at most :data:`SQUAT_ASPECT` times wider than high may be a two-line plate (Chinese
yellow and green, many US plates are single-line at the same shape), so it is read both
ways and the reading with the higher score is kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchvision.ops import box_iou, nms

from platelab.errors import PlatelabError
from platelab.infer.predictor import DetectionResult, ImageInput, PlateBox, Predictor, to_rgb

if TYPE_CHECKING:
    from platelab.models.corner_refiner import CornerRefiner, OnnxCornerModel

log = logging.getLogger(__name__)

SQUAT_ASPECT = 2.6  # width / height at or below which a plate is also read as two lines
REFINE_GROW = 3.0  # the second look's window: this many plate widths around the plate
CORNER_BATCH = 64  # plates per corner-model pass
PIPELINE = "pipeline.json"
RUNTIMES = ("auto", "torch", "onnx")


@dataclass
class PlateReading:
    """One plate of a photo: where it is and what it says.

    Attributes:
        box_xyxy: ``(x_min, y_min, x_max, y_max)`` in original-photo pixels.
        corners: its 4 corners ``((x, y), ...)``, TL, TR, BR, BL, in original pixels.
        det_score: the detector's score in ``[0, 1]``.
        text: the characters read (top row first for a two-line plate).
        text_score: the product of ``char_scores`` (0 for an empty text).
        char_scores: each character's confidence.
        rows: the row (0 = top) each character came from.
        track_id: the plate's track in a video (None for a photo).
    """

    box_xyxy: tuple[float, float, float, float]
    corners: tuple[tuple[float, float], ...]
    det_score: float
    text: str = ""
    text_score: float = 0.0
    char_scores: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    track_id: int | None = None

    def quad(self) -> np.ndarray:
        return np.asarray(self.corners, dtype=np.float32).reshape(4, 2)

    def to_dict(self) -> dict[str, Any]:
        """A plate of a ``predictions.jsonl`` line (plain JSON types)."""
        return {
            "box_xyxy": [round(float(v), 2) for v in self.box_xyxy],
            "corners": [[round(float(x), 2), round(float(y), 2)] for x, y in self.corners],
            "det_score": round(float(self.det_score), 4),
            "text": self.text,
            "text_score": round(float(self.text_score), 4),
            "char_scores": [round(float(s), 4) for s in self.char_scores],
            "track_id": self.track_id,
        }


@dataclass
class ReadResult:
    """Every plate read in one photo or frame, by descending detection score."""

    plates: list[PlateReading]
    width: int
    height: int

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.plates]

    def to_dict(self) -> dict[str, Any]:
        """``{"width", "height", "plates": [...]}`` (a jsonl line without source and frame)."""
        return {
            "width": self.width,
            "height": self.height,
            "plates": [p.to_dict() for p in self.plates],
        }


def _load_corner_model(
    spec: Any, device: str, threads: int | None, runtime: str
) -> CornerRefiner | OnnxCornerModel | None:
    """``PlateReader``'s ``corner_model``: None/True the shipped one (with ``runtime="onnx"``
    its export, cached as the other defaults'), False none, a path its checkpoint or
    ``.onnx`` export, a model itself."""
    from platelab.models.corner_refiner import CornerRefiner, OnnxCornerModel, load_refiner

    if spec is False:
        return None
    if isinstance(spec, CornerRefiner | OnnxCornerModel):
        return spec
    if isinstance(spec, str | Path) and Path(spec).suffix.lower() == ".onnx":
        return OnnxCornerModel(spec, threads)
    if spec is None or spec is True:
        from platelab.infer.defaults import default_model

        spec = default_model("corners", runtime)
        if runtime == "onnx":
            return OnnxCornerModel(spec, threads)
    return load_refiner(spec, device)


def _box_ious(a: Any, b: Any) -> np.ndarray:
    """``(len(a), len(b))`` IoU of two lists of xyxy boxes (:func:`torchvision.ops.box_iou`)."""
    ta = torch.as_tensor(np.asarray(a, np.float64).reshape(-1, 4))
    tb = torch.as_tensor(np.asarray(b, np.float64).reshape(-1, 4))
    return box_iou(ta, tb).numpy()


def quad_aspect(quad: np.ndarray) -> float:
    """Mean width over mean height of a TL, TR, BR, BL quad."""
    q = np.asarray(quad, np.float64).reshape(4, 2)
    width = (np.hypot(*(q[1] - q[0])) + np.hypot(*(q[2] - q[3]))) / 2
    height = (np.hypot(*(q[3] - q[0])) + np.hypot(*(q[2] - q[1]))) / 2
    return float(width / max(height, 1e-6))


class PlateReader:
    """Detect, straighten and read every plate of photos or video frames.

    Args:
        detector: a ``task=detect`` checkpoint, run folder, ``.onnx`` file or ready
            :class:`Predictor`; None: the default detector.
        reader: a ``task=read`` one likewise; None: the default recogniser.
        runtime: ``"torch"``, ``"onnx"`` or ``"auto"`` (each model by its file; the
            defaults in torch). With ``"onnx"`` the default weights are exported once
            into the cache folder (:func:`platelab.infer.defaults.default_onnx`).
        conf: the detection score at or above which a plate is read (default the
            detector's, 0.25).
        device: torch device. threads: intra-op threads (None: the default).
        batch_size: photos per detector pass (plates are read in batches of 16).
        refine: take a second, closer look at each plate for its corners (see above).
        corner_model: the corner stage: a :class:`CornerRefiner` checkpoint, its ``.onnx``
            export or the model; None: the shipped one (a pipeline's own); False: none
            (the detector's corners are kept).

    Raises:
        PlatelabError: a model of the wrong task, or one the Predictor refuses.
    """

    def __init__(
        self,
        detector: Path | str | Predictor | None = None,
        reader: Path | str | Predictor | None = None,
        *,
        runtime: str = "auto",
        conf: float | None = None,
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 8,
        refine: bool = True,
        corner_model: Path | str | CornerRefiner | OnnxCornerModel | bool | None = None,
    ) -> None:
        from platelab.infer.defaults import default_model

        if runtime not in RUNTIMES:
            raise PlatelabError(f"unknown runtime '{runtime}'; choose from {', '.join(RUNTIMES)}")
        backend = "onnx" if runtime == "onnx" else "auto" if runtime == "auto" else "torch"

        def load(model: Any, task: str, batch: int) -> Predictor:
            if model is not None and not isinstance(model, str | Path):
                return model  # a Predictor (or anything with its task, predict and read)
            path = default_model(task, runtime) if model is None else model
            return Predictor(path, backend=backend, device=device, threads=threads,
                             batch_size=batch, conf=conf if task == "detect" else None)  # fmt: skip

        self.detector = load(detector, "detect", batch_size)
        self.recognizer = load(reader, "read", 16)
        for p, task in ((self.detector, "detect"), (self.recognizer, "read")):
            if p.task != task:
                role = "detector" if task == "detect" else "reader"
                raise PlatelabError(
                    f"the {role} must be a task={task} model; {p.model_name} is a {p.task} model"
                )
        if conf is not None and not isinstance(detector, str | Path | None):
            self.detector.conf = float(conf)
        self.conf = self.detector.conf
        self.refine = bool(refine)
        self.corner_model = _load_corner_model(corner_model, device, threads, runtime)

    @classmethod
    def from_pipeline(cls, folder: Path | str, **kwargs: Any) -> PlateReader:
        """The reader of a pipeline folder written by ``platelab export --reader``."""
        folder = Path(folder)
        manifest = folder / PIPELINE if folder.is_dir() else folder
        try:
            spec = json.loads(manifest.read_text(encoding="utf-8"))
            det, rec = manifest.parent / spec["detector"], manifest.parent / spec["reader"]
            corners = manifest.parent / spec["corners"] if spec.get("corners") else False
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PlatelabError(f"{manifest} is not a platelab pipeline manifest ({e})") from None
        kwargs.setdefault("runtime", "onnx")
        if kwargs.get("corner_model") is None:  # the pipeline's own corner stage, or none
            kwargs["corner_model"] = corners
        return cls(det, rec, **kwargs)

    @property
    def backend(self) -> str:
        return self.detector.backend

    def __repr__(self) -> str:
        return (
            f"PlateReader(detector={self.detector.model_name!r}, "
            f"reader={self.recognizer.model_name!r}, backend={self.backend!r}, conf={self.conf:g})"
        )

    def read(self, images: Sequence[ImageInput]) -> list[ReadResult]:
        """Read every plate of every image (paths, arrays or PIL images, any sizes)."""
        rgb = [to_rgb(im) for im in images]
        return self.read_rgb(rgb)

    def read_rgb(self, images: list[np.ndarray]) -> list[ReadResult]:
        """``(H, W, 3)`` uint8 RGB arrays -> one :class:`ReadResult` each. Every stage
        runs batched over all the images: one detector pass, one second look over
        every plate window, one recogniser pass over every crop."""
        dets: list[DetectionResult] = self.detector.predict(images)  # type: ignore[assignment]
        if self.refine:
            dets = self.refine_all(images, dets)
        if self.corner_model is not None:
            dets = self.refine_corners(images, dets)
        return self.read_all(images, [d.plates for d in dets])

    def refine_plates(self, image: np.ndarray, det: DetectionResult) -> DetectionResult:
        """:meth:`refine_all` for one image."""
        return self.refine_all([image], [det])[0]

    def refine_all(
        self, images: Sequence[np.ndarray], dets: Sequence[DetectionResult]
    ) -> list[DetectionResult]:
        """Each ``det`` with its plates' boxes and corners from a second look at a window
        around each; a plate the second look does not find again keeps its first ones."""
        windows, crops = [], []
        for image, det in zip(images, dets, strict=True):
            h, w = image.shape[:2]
            for p in det.plates:
                x0, y0, x1, y1 = p.box_xyxy
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                half_w = max(x1 - x0, 8.0) * REFINE_GROW / 2
                half_h = max(half_w * 0.75, (y1 - y0) * REFINE_GROW / 2)  # the canvas's 4:3
                wx0, wy0 = int(max(0, cx - half_w)), int(max(0, cy - half_h))
                wx1, wy1 = int(min(w, np.ceil(cx + half_w))), int(min(h, np.ceil(cy + half_h)))
                windows.append((wx0, wy0))
                crops.append(image[wy0:wy1, wx0:wx1])
        looks: list[DetectionResult] = self.detector.predict(crops) if crops else []  # type: ignore[assignment]
        out, k = [], 0
        for det in dets:
            plates = []
            for p in det.plates:
                (ox, oy), look = windows[k], looks[k]
                k += 1
                box = np.subtract(p.box_xyxy, [ox, oy, ox, oy])
                ious = _box_ious(box[None], [q.box_xyxy for q in look.plates])[0]
                if not len(ious) or ious.max() < 0.3:
                    plates.append(p)
                    continue
                match = look.plates[int(ious.argmax())]
                shifted = np.add(match.box_xyxy, [ox, oy, ox, oy])
                plates.append(
                    PlateBox(
                        box_xyxy=tuple(float(v) for v in shifted),  # type: ignore[arg-type]
                        corners=tuple((float(x + ox), float(y + oy)) for x, y in match.corners),
                        score=p.score,
                    )
                )
            # Two first-look plates may be one plate seen closer: keep the better one.
            if len(plates) > 1:
                boxes = torch.tensor([q.box_xyxy for q in plates], dtype=torch.float64)
                scores = torch.tensor([q.score for q in plates], dtype=torch.float64)
                plates = [plates[int(i)] for i in nms(boxes, scores, 0.5)]
            out.append(DetectionResult(plates, det.width, det.height))
        return out

    def refine_corners(
        self, images: Sequence[np.ndarray], dets: Sequence[DetectionResult]
    ) -> list[DetectionResult]:
        """Each ``det`` with its plates' corners from the corner model (boxes and scores
        unchanged); ``dets`` as they are without one."""
        if self.corner_model is None:
            return list(dets)
        from platelab.models.corner_refiner import refine_corners_many

        owners = [i for i, det in enumerate(dets) for _ in det.plates]
        boxes = [p.box_xyxy for det in dets for p in det.plates]
        quads = []
        for k in range(0, len(boxes), CORNER_BATCH):
            chunk = slice(k, k + CORNER_BATCH)
            imgs = [images[i] for i in owners[chunk]]
            quads.extend(refine_corners_many(self.corner_model, imgs, boxes[chunk]))
        out, k = [], 0
        for det in dets:
            plates = []
            for p in det.plates:
                corners = tuple((float(x), float(y)) for x, y in quads[k])
                plates.append(PlateBox(box_xyxy=p.box_xyxy, corners=corners, score=p.score))
                k += 1
            out.append(DetectionResult(plates, det.width, det.height))
        return out

    def read_plates(self, image: np.ndarray, plates: Sequence[PlateBox]) -> ReadResult:
        """Read ``plates`` (their corners in ``image``'s pixels) of one RGB image."""
        return self.read_all([image], [plates])[0]

    def read_all(
        self, images: Sequence[np.ndarray], plates: Sequence[Sequence[PlateBox]]
    ) -> list[ReadResult]:
        """Read every plate of every image (corners in its image's pixels), in one batch."""
        jobs = []  # (image index, plate index, rows)
        for i, ps in enumerate(plates):
            for j, p in enumerate(ps):
                jobs.append((i, j, 1))
                if quad_aspect(p.quad()) <= SQUAT_ASPECT:
                    jobs.append((i, j, 2))
        texts = self.recognizer.read(
            [images[i] for i, _, _ in jobs],
            corners=[plates[i][j].quad() for i, j, _ in jobs],
            rows=[r for _, _, r in jobs],
        ) if jobs else []  # fmt: skip
        best: dict[tuple[int, int], Any] = {}
        for (i, j, _), t in zip(jobs, texts, strict=True):
            if (i, j) not in best or t.score > best[i, j].score:
                best[i, j] = t
        results = []
        for i, (image, ps) in enumerate(zip(images, plates, strict=True)):
            h, w = image.shape[:2]
            readings = [
                PlateReading(
                    box_xyxy=p.box_xyxy,
                    corners=p.corners,
                    det_score=p.score,
                    text=best[i, j].text,
                    text_score=float(best[i, j].score),
                    char_scores=[float(c) for c in best[i, j].char_scores],
                    rows=list(best[i, j].rows),
                )
                for j, p in enumerate(ps)
            ]
            results.append(ReadResult(readings, w, h))
        return results

    def __call__(
        self, image_or_images: ImageInput | Sequence[ImageInput]
    ) -> ReadResult | list[ReadResult]:
        """One image -> one :class:`ReadResult`; a list -> a list."""
        from PIL import Image

        single = isinstance(image_or_images, str | Path | Image.Image) or (
            isinstance(image_or_images, np.ndarray) and image_or_images.ndim < 4
        )
        if single:
            return self.read([image_or_images])[0]  # type: ignore[list-item]
        return self.read(image_or_images)  # type: ignore[arg-type]
