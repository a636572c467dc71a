"""Predict plates in images of any size, in the original image's pixels.

A localiser (``task=localize``) gives one box and a presence score per image::

    from platelab.infer.predictor import Predictor
    predictor = Predictor("runs/exp/best_model_epoch_12.pth")   # or a run folder, or model.onnx
    pred = predictor("car.jpg")              # Prediction(box_xyxy=(x0, y0, x1, y1), score=0.97, ...)
    preds = predictor.predict([array, pil_image, "b.png"])

A detector (``task=detect``, read from the checkpoint or the ONNX metadata) gives every
plate scoring at least ``conf``, each with its box, its 4 corners and its score::

    predictor = Predictor("runs/det/model.onnx")
    result = predictor("street.jpg")         # DetectionResult(plates=[PlateBox(...), ...], ...)
    for plate in result.plates:              # best first
        quad = plate.quad()                  # float32 [4, 2]: TL, TR, BR, BL, for a perspective crop

Every image is letterboxed into the model's canvas with :class:`~platelab.geometry.Letterbox`
(the same geometry that prepared the training images), the model predicts on the canvas,
and the same letterbox maps boxes and corners back to the original image; boxes are
clipped to ``[0, width] x [0, height]``, corners are not (a plate cut by the image edge
keeps its true shape).

Backends:

* ``torch``: an ``nn.Module`` (give ``canvas``), a checkpoint file or a run folder (its best
  epoch; the canvas is the one it was trained at). uint8 pixels go in; the model normalises.
* ``onnx``: a file written by ``platelab export`` (:mod:`platelab.infer.export`): input
  ``images`` ``[B, 3, H, W]`` (uint8, or float32 in ``[0, 1]`` per its ``input_dtype``
  metadata), outputs ``boxes`` in canvas pixels and ``scores`` (sigmoid applied); a
  detector's also ``corners`` and ``num``, post-processed in the graph.

A recogniser (``task=read``) reads plate crops, or photos with their plates' corners
(:meth:`Predictor.read`), into :class:`~platelab.tasks.read.TextPrediction` (text,
score, per-character confidences and rows); see :mod:`platelab.infer.read_predictor`.

A detector in torch runs :func:`platelab.tasks.detect_ops.postprocess` with
:data:`platelab.tasks.detect.DEPLOY`'s settings (its threshold set to ``conf``), the
same as ``platelab export`` bakes into a graph by default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from platelab.data.imageio import read_image
from platelab.engine.trainer import resolve_device
from platelab.errors import PlatelabError, reason
from platelab.geometry import PAD_VALUE, Letterbox, box_area, clip_boxes, parse_size
from platelab.models.weights import model_task
from platelab.tasks import get_task

log = logging.getLogger(__name__)

ImageInput: TypeAlias = np.ndarray | Image.Image | str | Path
# (uint8 [B, 3, H, W] canvases) -> (boxes_xyxy [B, 4] canvas pixels, scores [B] in [0, 1])
Runner: TypeAlias = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# (uint8 [B, 3, H, W] canvases) -> {"boxes" [B, K, 4], "scores" [B, K], "corners"
# [B, K, 4, 2], "num" [B]}: postprocess's fixed-size output, canvas pixels, float64
DetectRunner: TypeAlias = Callable[[np.ndarray], dict[str, np.ndarray]]

BACKENDS = ("auto", "torch", "onnx")
CHECKPOINT_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class Prediction:
    """The plate box of one image.

    Attributes:
        box_xyxy: ``(x_min, y_min, x_max, y_max)`` in original-image pixels (continuous
            coordinates, the image spans ``[0, width] x [0, height]``), clipped to the image.
        score: plate-presence probability in ``[0, 1]``.
        width, height: the original image size in pixels.
    """

    box_xyxy: tuple[float, float, float, float]
    score: float
    width: int
    height: int

    def to_dict(self) -> dict[str, Any]:
        """``{"box_xyxy": [4 floats], "score", "width", "height"}``: plain JSON types."""
        d = asdict(self)
        d["box_xyxy"] = list(self.box_xyxy)
        return d


@dataclass(frozen=True)
class PlateBox:
    """One detected plate.

    Attributes:
        box_xyxy: ``(x_min, y_min, x_max, y_max)`` in original-image pixels, clipped to
            the image.
        corners: the 4 corners ``((x, y), ...)`` in original-image pixels, in the order
            TL, TR, BR, BL (as the plate reads); not clipped.
        score: the detection score in ``[0, 1]``.
    """

    box_xyxy: tuple[float, float, float, float]
    corners: tuple[tuple[float, float], ...]
    score: float

    def quad(self) -> np.ndarray:
        """The corners as a float32 ``[4, 2]`` array (what ``cv2.getPerspectiveTransform`` takes)."""
        return np.asarray(self.corners, dtype=np.float32).reshape(4, 2)

    def to_dict(self) -> dict[str, Any]:
        """``{"box_xyxy": [4 floats], "corners": [[x, y] x4], "det_score"}``: the plate of a
        ``predictions.jsonl`` line (the reader's layout, which adds the text)."""
        return {
            "box_xyxy": list(self.box_xyxy),
            "corners": [list(c) for c in self.corners],
            "det_score": self.score,
        }


@dataclass(frozen=True)
class DetectionResult:
    """Every plate a detector found in one image, best first.

    Attributes:
        plates: the plates scoring at least the predictor's ``conf``, by descending score.
        width, height: the original image size in pixels.
    """

    plates: list[PlateBox]
    width: int
    height: int

    @property
    def top(self) -> PlateBox | None:
        """The best-scored plate, or None when there is none."""
        return self.plates[0] if self.plates else None

    def above(self, conf: float) -> DetectionResult:
        """The same result with only the plates scoring at least ``conf``."""
        return DetectionResult([p for p in self.plates if p.score >= conf], self.width, self.height)

    def to_dict(self) -> dict[str, Any]:
        """``{"width", "height", "plates": [PlateBox.to_dict(), ...]}``: plain JSON types."""
        return {
            "width": self.width,
            "height": self.height,
            "plates": [p.to_dict() for p in self.plates],
        }


def to_rgb(image: ImageInput) -> np.ndarray:
    """Any supported image -> ``(H, W, 3)`` uint8 RGB.

    Accepts a numpy array ``(H, W, 3)`` RGB, ``(H, W)`` or ``(H, W, 1)`` grayscale, or
    ``(H, W, 4)`` RGBA (alpha dropped), all uint8; a PIL image in any mode (turned
    upright by its EXIF orientation, then converted to RGB); or a path, read with
    :func:`~platelab.data.imageio.read_image` (upright by its EXIF orientation, as when
    a dataset is prepared). Arrays are taken as they are.

    Raises:
        PlatelabError: an unreadable path, or an array of another dtype or shape.
    """
    if isinstance(image, str | Path):
        try:
            return read_image(Path(image))
        except (OSError, ValueError) as e:
            raise PlatelabError(f"cannot read image {image}: {reason(e)}") from None
    if isinstance(image, Image.Image):
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise PlatelabError(
            f"expected a numpy array, PIL image or path, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise PlatelabError(f"image arrays must be uint8 (0..255), got {image.dtype}")
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        channels = image.shape[2]
    elif image.ndim == 2:
        channels = 1
    else:
        raise PlatelabError(f"image arrays must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
    if min(image.shape[:2]) == 0:
        raise PlatelabError(f"empty image of shape {image.shape}")
    if channels == 1:
        gray = image.reshape(image.shape[:2])
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def _pick_backend(model: Path | str | nn.Module, backend: str) -> str:
    if backend not in BACKENDS:
        raise PlatelabError(f"unknown backend '{backend}'; choose from {', '.join(BACKENDS)}")
    if isinstance(model, nn.Module):
        if backend == "onnx":
            raise PlatelabError("the onnx backend takes an .onnx file, not an nn.Module")
        return "torch"
    path = Path(model)
    if not path.exists():
        raise PlatelabError(f"model not found: {path}")
    kind = "onnx" if path.suffix.lower() == ".onnx" else "torch"
    if path.is_file() and kind == "torch" and path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise PlatelabError(
            f"cannot tell what {path} is from its suffix '{path.suffix}': "
            "expected a .pth checkpoint, a run folder or an .onnx file"
        )
    if backend != "auto" and backend != kind:
        what = "an ONNX file" if kind == "onnx" else "a checkpoint"
        raise PlatelabError(f"{path} is {what}: use backend '{kind}' (or 'auto'), not '{backend}'")
    return kind


def _torch_runner(module: nn.Module, canvas: tuple[int, int], device: torch.device) -> Runner:
    scale = np.array(canvas * 2, dtype=np.float64)  # (W, H, W, H)

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            out = module(torch.from_numpy(images).to(device))
            boxes_norm = out["boxes_norm_xyxy"].float().cpu().numpy()
            scores = torch.sigmoid(out["logits"].float()).cpu().numpy()
        return boxes_norm.astype(np.float64) * scale, scores.astype(np.float64)

    return run


def _torch_detect_runner(module: nn.Module, cfg: Any, device: torch.device) -> DetectRunner:
    from platelab.tasks.detect_ops import postprocess

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            dets = postprocess(module(torch.from_numpy(images).to(device)), cfg)
            return {k: v.float().cpu().numpy().astype(np.float64) for k, v in dets.items()}

    return run


def _onnx_runner(session: Any, input_dtype: str) -> Runner:
    input_name = session.get_inputs()[0].name
    if input_dtype not in ("uint8", "float32"):
        raise PlatelabError(f"unsupported ONNX input_dtype '{input_dtype}' (uint8 or float32)")

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feed = images if input_dtype == "uint8" else images.astype(np.float32) / 255
        boxes, scores = session.run(["boxes", "scores"], {input_name: feed})
        return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64)

    return run


def _onnx_detect_runner(session: Any, input_dtype: str) -> DetectRunner:
    from platelab.tasks.detect import DETECT

    input_name = session.get_inputs()[0].name
    if input_dtype not in ("uint8", "float32"):
        raise PlatelabError(f"unsupported ONNX input_dtype '{input_dtype}' (uint8 or float32)")
    names = list(DETECT.output_names)

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        feed = images if input_dtype == "uint8" else images.astype(np.float32) / 255
        outs = session.run(names, {input_name: feed})
        return {k: np.asarray(v, np.float64) for k, v in zip(names, outs, strict=True)}

    return run


class Predictor:
    """Letterbox images of any size, run a model in batches, map the boxes back.

    The task is the model's own (a module's ``task`` attribute, the checkpoint's or the
    ONNX file's ``task``; a localiser when none is recorded): a localiser's
    :meth:`predict` gives a :class:`Prediction` per image, a detector's a
    :class:`DetectionResult`.

    Args:
        model: an ``nn.Module`` following the model output contract, a checkpoint
            ``.pth``, a run folder (its best epoch), or an ``.onnx`` file from
            ``platelab export``.
        backend: ``"auto"`` (``.onnx`` -> onnx, anything else -> torch), ``"torch"``
            or ``"onnx"``.
        canvas: ``(W, H)`` the model takes. Required for an ``nn.Module``; a checkpoint's
            own canvas is used when omitted (the torch models are fully convolutional, so
            another canvas works, usually less well); an ONNX file's canvas is fixed.
        device: torch device for the torch backend (``cpu``, ``cuda[:N]`` or ``auto``; the
            module is moved there and put in eval mode); onnx runs on the CPU provider.
        batch_size: images per forward pass; only one batch is held decoded at a time.
        threads: intra-op threads: the onnxruntime session's, or for torch
            ``torch.set_num_threads`` (process-wide); ``None`` keeps the default.
        conf: a detector's score threshold: plates scoring less are dropped (default
            :data:`platelab.tasks.detect.DEPLOY`'s, 0.25). An ONNX graph keeps only
            plates at or above the ``conf`` it was exported with, so a lower value finds
            no more there. A localiser ignores it (its predictions carry the score).

    Attributes:
        canvas: ``(W, H)``. model_name: the registry name (or class name of a bare
            module). backend: ``"torch"`` or ``"onnx"``. pad_value: the letterbox pad.
        task: ``"localize"`` or ``"detect"``. conf: the detector's threshold.
        postprocess: a detector's :class:`~platelab.tasks.detect_ops.PostprocessConfig`
            (the ONNX graph's, read from its metadata); None for a localiser.
        info: where the model came from (checkpoint ``info`` or ONNX metadata).

    Raises:
        PlatelabError: a missing model, an unknown suffix or backend, a missing
            onnxruntime, a module without ``canvas``, a canvas an ONNX file cannot take,
            an unknown task or a ``conf`` outside ``0..1``.
    """

    def __init__(
        self,
        model: Path | str | nn.Module,
        *,
        backend: str = "auto",
        canvas: tuple[int, int] | None = None,
        device: str = "cpu",
        batch_size: int = 8,
        threads: int | None = None,
        conf: float | None = None,
    ) -> None:
        from platelab.tasks.detect import DEPLOY

        if batch_size < 1:
            raise PlatelabError(f"batch_size must be at least 1, got {batch_size}")
        self.conf = DEPLOY.conf if conf is None else float(conf)
        if not 0.0 <= self.conf <= 1.0:
            raise PlatelabError(f"conf must be within 0..1, got {conf}")
        self.backend = _pick_backend(model, backend)
        self.batch_size = int(batch_size)
        self.pad_value = PAD_VALUE
        self.info: dict[str, Any] = {}
        self.task = "localize"
        self.postprocess: Any = None
        self._run_detect: DetectRunner | None = None
        self._run_read: Any = None  # a recogniser's (read_predictor.ReadRunner)
        self.charset: Any = None
        self.decoder: str | None = None
        if self.backend == "onnx":
            if device != "cpu":
                log.warning("the onnx backend runs on the CPU; device=%s is ignored", device)
            self._init_onnx(Path(model), canvas, threads)
        else:
            self._init_torch(model, canvas, device, threads)
        w, h = self.canvas
        if w <= 0 or h <= 0:
            raise PlatelabError(f"canvas must be positive, got {w}x{h}")

    def _init_torch(
        self,
        model: Path | str | nn.Module,
        canvas: tuple[int, int] | None,
        device: str,
        threads: int | None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(int(threads))
        dev = resolve_device(device)
        if isinstance(model, nn.Module):
            canvas = canvas or getattr(model, "input_size", None)  # a recogniser's crop size
            if canvas is None:
                raise PlatelabError("canvas=(W, H) is required when the model is an nn.Module")
            module = model.to(dev).eval()
            self.model_name = str(getattr(model, "name", type(model).__name__))
            self.task = model_task(model)
        else:
            from platelab.models.weights import load_model_from_checkpoint

            module, self.info = load_model_from_checkpoint(model, device=dev)
            self.model_name = str(self.info["model"])
            self.task = str(self.info.get("task") or model_task(module))
            canvas = canvas or self.info.get("input_size")
            if canvas is None:
                raise PlatelabError(f"{self.info['path']} records no input size: pass canvas")
        self.canvas = (int(canvas[0]), int(canvas[1]))
        get_task(self.task)  # an unknown task: one line
        if self.task == "read":
            from platelab.infer.read_predictor import torch_read_runner

            self.charset, self.decoder = module.charset, module.decoder
            self._run_read = torch_read_runner(module, dev)
        elif self.task == "detect":
            from platelab.tasks.detect import DEPLOY

            self.postprocess = replace(DEPLOY, conf=self.conf)
            self._run_detect = _torch_detect_runner(module, self.postprocess, dev)
        else:
            self._run = _torch_runner(module, self.canvas, dev)

    def _init_onnx(self, path: Path, canvas: tuple[int, int] | None, threads: int | None) -> None:
        from platelab.infer import export  # onnx/onnxruntime missing: a PlatelabError there

        meta = export.read_metadata(path)
        self.info = dict(meta, path=path)
        if "canvas" not in meta:
            raise PlatelabError(f"{path} has no 'canvas' metadata: export it with platelab export")
        own = parse_size(meta["canvas"])
        if canvas is not None and tuple(canvas) != own:
            raise PlatelabError(
                f"{path} takes a {own[0]}x{own[1]} canvas, not {canvas[0]}x{canvas[1]}"
            )
        self.canvas = own
        self.model_name = meta.get("model", path.stem)
        self.pad_value = int(meta.get("pad_value", PAD_VALUE))
        session = export.onnx_session(path, threads=threads)
        self.task = get_task(meta.get("task")).name  # none recorded: a localiser
        input_dtype = meta.get("input_dtype", "uint8")
        if self.task == "read":
            from platelab.infer.read_export import charset_from_metadata
            from platelab.infer.read_predictor import onnx_read_runner

            self.charset, self.decoder = charset_from_metadata(meta), meta.get("decoder", "ctc")
            self._run_read = onnx_read_runner(session, input_dtype)
        elif self.task == "detect":
            from platelab.infer.detect_export import postprocess_from_metadata

            self.postprocess = postprocess_from_metadata(meta)
            if self.conf < self.postprocess.conf:
                log.warning(
                    "%s keeps plates scoring >= %g (its export's conf); conf=%g finds no more",
                    path.name,
                    self.postprocess.conf,
                    self.conf,
                )
            self._run_detect = _onnx_detect_runner(session, input_dtype)
        else:
            self._run = _onnx_runner(session, input_dtype)

    def __repr__(self) -> str:
        w, h = self.canvas
        return (
            f"Predictor(model={self.model_name!r}, task={self.task!r}, "
            f"backend={self.backend!r}, canvas={w}x{h})"
        )

    def predict(self, images: Sequence[ImageInput]) -> list[Prediction] | list[DetectionResult]:
        """Predict every image, ``batch_size`` at a time.

        Args:
            images: numpy arrays (uint8 RGB ``HxWx3``, grayscale ``HxW``, RGBA ``HxWx4``),
                PIL images or paths, any sizes, mixed freely.

        Returns:
            One :class:`Prediction` (a localiser) or :class:`DetectionResult` (a detector)
            per image, in order, in that image's own pixels.

        Raises:
            PlatelabError: an unreadable path or unsupported array (see :func:`to_rgb`).
        """
        if self._run_read is not None:
            return self.read(images)
        preds: list = []
        for start in range(0, len(images), self.batch_size):
            chunk = [to_rgb(im) for im in images[start : start + self.batch_size]]
            preds.extend(self._predict_rgb(chunk))
        return preds

    def read(
        self,
        images: Sequence[ImageInput],
        corners: Sequence[Any] | None = None,
        rows: Sequence[int] | None = None,
    ) -> list[Any]:
        """A recogniser's readings (:class:`~platelab.tasks.read.TextPrediction`), one per image.

        Args:
            images: plate crops (any size: each is warped whole to the crop size), or
                photos with ``corners``.
            corners: per image, the plate's quad ``[[x, y] x 4]`` (TL, TR, BR, BL) in its
                pixels, or None for the whole image.
            rows: per image, 1 or 2 (a two-line plate is laid side by side); default 1.

        Raises:
            PlatelabError: not a recogniser, an unreadable image, or bad corners.
        """
        from platelab.infer.read_predictor import read_crops

        if self._run_read is None:
            raise PlatelabError(f"{self.model_name} is a {self.task} model, not a recogniser")
        preds: list = []
        for start in range(0, len(images), self.batch_size):
            end = start + self.batch_size
            chunk = [to_rgb(im) for im in images[start:end]]
            preds += read_crops(self._run_read, chunk, self.canvas, self.decoder, self.charset,
                                None if corners is None else corners[start:end],
                                None if rows is None else rows[start:end])  # fmt: skip
        return preds

    def __call__(
        self, image_or_images: ImageInput | Sequence[ImageInput]
    ) -> Prediction | DetectionResult | list[Prediction] | list[DetectionResult]:
        """One image -> one result; a list (or a ``[B, H, W, C]`` array) -> a list."""
        single = isinstance(image_or_images, str | Path | Image.Image) or (
            isinstance(image_or_images, np.ndarray) and image_or_images.ndim < 4
        )
        if single:
            return self.predict([image_or_images])[0]  # type: ignore[list-item]
        return self.predict(image_or_images)  # type: ignore[arg-type]

    def _predict_rgb(self, images: list[np.ndarray]) -> list[Prediction] | list[DetectionResult]:
        """``images``: ``(H, W, 3)`` uint8 RGB arrays -> predictions, one forward pass."""
        if not images:
            return []
        cw, ch = self.canvas
        letterboxes = [Letterbox.fit(im.shape[1], im.shape[0], cw, ch) for im in images]
        canvases = np.stack(
            [lb.apply(im, self.pad_value) for lb, im in zip(letterboxes, images, strict=True)]
        )
        batch = np.ascontiguousarray(canvases.transpose(0, 3, 1, 2))  # [B, 3, H, W]
        if self._run_detect is not None:
            dets = self._run_detect(batch)
            return [
                detections_to_original(dets, i, lb, self.conf) for i, lb in enumerate(letterboxes)
            ]
        boxes_canvas, scores = self._run(batch)
        preds = []
        for lb, box, score in zip(letterboxes, boxes_canvas, scores, strict=True):
            orig = clip_boxes(lb.boxes_to_original(box[None]), lb.orig_w, lb.orig_h)[0]
            preds.append(
                Prediction(
                    box_xyxy=tuple(float(v) for v in orig),  # type: ignore[arg-type]
                    score=float(score),
                    width=lb.orig_w,
                    height=lb.orig_h,
                )
            )
        return preds


def detections_to_original(
    dets: dict[str, np.ndarray], i: int, lb: Letterbox, conf: float
) -> DetectionResult:
    """Image ``i`` of a post-processed batch, mapped from the canvas to its photo by ``lb``.

    Args:
        dets: ``{"boxes" [B, K, 4], "scores" [B, K], "corners" [B, K, 4, 2], "num" [B]}``
            in canvas pixels (:func:`~platelab.tasks.detect_ops.postprocess`'s layout).
        i: the image's index in the batch.
        lb: the letterbox that made its canvas.
        conf: plates scoring less are dropped.

    Returns:
        The plates in original pixels, by descending score: boxes clipped to the photo
        (a plate wholly in the letterbox padding, whose clipped box is empty, is dropped),
        corners mapped but not clipped.
    """
    n = int(dets["num"][i])
    scores = dets["scores"][i, :n]
    boxes = clip_boxes(lb.boxes_to_original(dets["boxes"][i, :n]), lb.orig_w, lb.orig_h)
    corners = lb.points_to_original(dets["corners"][i, :n].reshape(-1, 4, 2))
    keep = (scores >= conf) & (box_area(boxes) > 0)
    plates = [
        PlateBox(
            box_xyxy=tuple(float(v) for v in box),  # type: ignore[arg-type]
            corners=tuple((float(x), float(y)) for x, y in quad),
            score=float(score),
        )
        for box, quad, score in zip(boxes[keep], corners[keep], scores[keep], strict=True)
    ]
    return DetectionResult(plates=plates, width=lb.orig_w, height=lb.orig_h)
