"""ONNX export of a localiser or a detector, its metadata, and a parity check against PyTorch.

The exported graph is all a user needs (timm ``utils/onnx.py`` does the same checks).
A localiser (``task = "localize"``):

* one input ``images`` ``[batch, 3, H, W]``: the photo already letterboxed to the
  canvas (pad value 114), RGB, uint8 ``0..255`` (the default) or float32 ``0..1``
  (chosen at export); ``batch`` is a dynamic axis, ``H`` and ``W`` are fixed;
* output ``boxes`` ``[batch, 4]`` float32: xyxy in canvas pixels (the model's
  normalised box times ``W, H``, done in the graph); map them to the photo with
  :meth:`platelab.geometry.Letterbox.boxes_to_original`;
* output ``scores`` ``[batch]`` float32: ``sigmoid(logit)``, the plate-presence
  probability;
* ``metadata_props``: ``platelab_version``, ``task``, ``model``, ``model_kwargs``
  (JSON), ``canvas`` (``"WxH"``), ``input_dtype``, ``pad_value``, ``mean`` and ``std``
  (JSON; informational, normalisation is inside the graph), and ``epoch`` and
  ``checkpoint`` (file name) when exported from a checkpoint.

A recogniser (``task = "read"``) takes plate crops and outputs ``logits`` and ``positions``,
decoded outside the graph; see :mod:`platelab.infer.read_export`.

A detector (``task = "detect"``) has the same input and metadata, and the model's
post-processing inside the graph: outputs ``boxes [batch, K, 4]``, ``scores [batch, K]``,
``corners [batch, K, 4, 2]`` and ``num [batch]`` (int64), ``K = max_det``, and the
settings in ``metadata_props`` (``conf``, ``iou``, ``max_det``, ``pre_nms``,
``nms_iterations``); see :mod:`platelab.infer.detect_export`. A file without ``task``
metadata is a localiser (exported before tasks existed).

Export uses torch's dynamo exporter (the TorchScript one is deprecated in torch
2.14) and writes the file atomically. :func:`onnx_session` is the one place that
makes onnxruntime sessions.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from platelab import __version__
from platelab.atomic import atomic_write_bytes
from platelab.errors import PlatelabError, reason
from platelab.geometry import PAD_VALUE, Letterbox

if TYPE_CHECKING:
    import onnxruntime

    from platelab.tasks.detect_ops import PostprocessConfig

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores")
INPUT_DTYPES = ("uint8", "float32")
# Largest box difference (canvas pixels) and score difference that parity accepts.
# Measured at 640x480 on the 26 real sample photos, both input dtypes, every
# registered model with random weights made to look at the picture (batch-norm
# statistics recalibrated, a non-zero heatmap): 1e-3 px (dwsep_tiny) to 0.025 px
# (mobilenet_v3_small, efficientnet_b0), 0.097 px for resnet50 (0.21 px in the
# 720x1160 CCPD photos); scores within 1e-5. onnxruntime folds batch norms into
# convolutions and sums in another order, and a sharp heatmap softmax amplifies
# that, so bitwise equality is not expected. 0.5 px is 5x the worst case measured
# and still far below anything that moves an IoU.
TOLERANCE_PX = 0.5
TOLERANCE_SCORE = 1e-3


class ExportedModel(nn.Module):
    """A :class:`~platelab.models.Localizer` with the ONNX contract's outputs.

    ``images`` ``[B, 3, H, W]`` (uint8 ``0..255`` or float ``0..1``, letterboxed to the
    ``canvas``) -> ``(boxes [B, 4] xyxy canvas pixels, scores [B] in 0..1)``.

    For a Localizer (a module with ``mean``, ``std``, ``backbone`` and ``head``) the
    normalisation ``(x / 255 - mean) / std`` is rewritten as one multiply-add,
    ``x * (1 / (255 std)) - mean / std``: the same values to float rounding (1e-7
    relative), but two cheap elementwise ops instead of three with two divisions. In
    onnxruntime the original form took 35% of dwsep_tiny's time at 640x480 (Div, Sub,
    Div over the whole image); the multiply-add about half of that. Any other module
    is called as it is.

    Args:
        model: maps images to ``{"boxes_norm_xyxy": [B, 4], "logits": [B]}``.
        canvas: ``(W, H)`` the boxes are scaled to.
    """

    scale: Tensor

    def __init__(self, model: nn.Module, canvas: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        w, h = (int(v) for v in canvas)
        self.register_buffer("scale", torch.tensor([w, h, w, h], dtype=torch.float32))
        self.fused = all(hasattr(model, k) for k in ("mean", "std", "backbone", "head"))
        if self.fused:
            std = model.std.detach().float()
            self.register_buffer("mul_u8", 1.0 / (255.0 * std))
            self.register_buffer("mul_f", 1.0 / std)
            self.register_buffer("add", -model.mean.detach().float() / std)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if self.fused:
            mul = self.mul_u8 if images.dtype == torch.uint8 else self.mul_f
            x = images.float() * mul + self.add
            out = self.model.head(self.model.backbone(x))
        else:
            out = self.model(images)
        return out["boxes_norm_xyxy"].float() * self.scale, torch.sigmoid(out["logits"].float())


@dataclass
class ExportReport:
    """What :func:`export_checkpoint` wrote and how well it agrees with PyTorch.

    ``images`` canvases went through both runtimes (real photos when ``real_images``,
    else random ones); the differences are the largest ``|torch - onnxruntime|`` box
    coordinate in canvas pixels, in original-photo pixels (real photos only, else
    None) and the largest score difference. ``tolerance_px`` is the box tolerance
    applied; ``metadata`` the ``metadata_props`` written; ``size_mb`` the file size.

    A detector's report also has ``plates`` (kept by torch over all parity images: the
    box differences are over those) and the largest corner difference
    (``max_corner_diff_px``, ``max_corner_diff_orig_px``); ``postprocess`` holds the
    settings baked into the graph. They are None for a localiser.

    A recogniser's (``task=read``): ``max_box_diff_px`` is the largest difference of the
    ``positions`` output in crop pixels, ``max_score_diff`` of any class probability,
    ``max_logit_diff`` of any logit, and ``texts_equal`` how many of the ``images``
    crops decode to the same text in both runtimes.
    """

    path: Path
    checkpoint: Path
    model: str
    canvas: tuple[int, int]
    input_dtype: str
    images: int
    real_images: bool
    max_box_diff_px: float
    max_box_diff_orig_px: float | None
    max_score_diff: float
    tolerance_px: float
    size_mb: float
    metadata: dict[str, str]
    task: str = "localize"
    plates: int | None = None
    max_corner_diff_px: float | None = None
    max_corner_diff_orig_px: float | None = None
    postprocess: dict[str, float] | None = None
    max_logit_diff: float | None = None
    texts_equal: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings."""
        d = asdict(self)
        d["path"], d["checkpoint"] = str(self.path), str(self.checkpoint)
        d["canvas"] = list(self.canvas)
        return d


def _require_onnx() -> Any:
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as e:
        raise PlatelabError(
            f"ONNX export needs onnx and onnxscript ({e.name} is missing): "
            "pip install onnx onnxscript"
        ) from None
    return onnx


def _require_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise PlatelabError(
            "running ONNX models needs onnxruntime: pip install onnxruntime"
        ) from None
    return onnxruntime


def _check_dtype(input_dtype: str) -> None:
    if input_dtype not in INPUT_DTYPES:
        raise PlatelabError(
            f"input_dtype must be one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}"
        )


def model_metadata(model: nn.Module, canvas: tuple[int, int], input_dtype: str) -> dict[str, str]:
    """The metadata every export carries, read from the model's attributes."""
    from platelab.models.weights import model_task

    meta = {
        "platelab_version": __version__,
        "task": model_task(model),
        "model": str(getattr(model, "name", type(model).__name__)),
        "model_kwargs": json.dumps(dict(getattr(model, "config", {})), sort_keys=True),
        "canvas": f"{int(canvas[0])}x{int(canvas[1])}",
        "input_dtype": input_dtype,
        "pad_value": str(PAD_VALUE),
    }
    for key in ("mean", "std"):
        buf = getattr(model, key, None)
        if isinstance(buf, Tensor):
            meta[key] = json.dumps([round(float(v), 6) for v in buf.flatten()])
    if hasattr(model, "meta_extra"):  # a recogniser: charset, crop_size, decoder, max_len
        for key, value in model.meta_extra().items():
            meta[key] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return meta


def export_onnx(
    model: nn.Module,
    out: Path | str,
    canvas: tuple[int, int],
    *,
    input_dtype: str = "uint8",
    metadata: dict[str, str] | None = None,
    opset: int | None = None,
    postprocess: PostprocessConfig | None = None,
) -> Path:
    """Export ``model`` to ONNX with the contract in this module's docstring.

    Args:
        model: a Localizer or a Detector (its ``task`` attribute says which; any module
            with a localiser's output dict is a localiser); exported on the CPU in eval
            mode, its own mode and device are restored afterwards.
        out: the ``.onnx`` file; written atomically, its folder created.
        canvas: ``(W, H)`` of the letterboxed input.
        input_dtype: ``"uint8"`` (pixels 0..255) or ``"float32"`` (0..1).
        metadata: extra ``metadata_props``; they override the defaults of the same key.
        opset: ONNX opset; None takes the exporter's default.
        postprocess: a detector's post-processing settings (default
            :data:`platelab.tasks.detect.DEPLOY`); refused for a localiser.

    Returns:
        ``out`` as a Path.

    Raises:
        PlatelabError: onnx/onnxscript missing, a bad ``input_dtype``, canvas or
            ``postprocess``, or ``out`` not writable.
    """
    from platelab.models.weights import model_task
    from platelab.tasks import get_task

    _require_onnx()
    _check_dtype(input_dtype)
    task = get_task(model_task(model))
    wrap = _Wrap(task.name, postprocess)
    w, h = (int(v) for v in canvas)
    if w <= 0 or h <= 0:
        raise PlatelabError(f"canvas must be positive, got {w}x{h}")
    out = Path(out)
    _check_writable(out)  # before the export, which takes seconds to a minute
    meta = model_metadata(model, (w, h), input_dtype) | wrap.metadata | dict(metadata or {})

    # batch 2 as the example: torch.export specialises a size-1 dimension to a constant
    example = torch.zeros(2, 3, h, w, dtype=torch.uint8)
    if input_dtype == "float32":
        example = example.float()
    proto = dynamo_export(wrap(model, (w, h)), example, task.output_names, opset, owner=model)
    what = {"detect": "detector", "read": "recogniser"}.get(task.name, "localiser")
    write_onnx(proto, out, meta, f"platelab {meta['model']} {what}, canvas {meta['canvas']}")
    log.debug("exported %s to %s (%.1f MB)", meta["model"], out, out.stat().st_size / 1e6)
    return out


def dynamo_export(
    module: nn.Module,
    example: Tensor,
    output_names: Sequence[str],
    opset: int | None = None,
    owner: nn.Module | None = None,
) -> Any:
    """``module`` as an ONNX ``ModelProto`` (the dynamo exporter) whose one input,
    ``images``, has a dynamic batch: exported on the CPU in eval mode, after which
    ``owner``'s (default: ``module``'s) mode and device are restored.

    ``example`` needs a batch of at least 2: torch.export specialises a size-1
    dimension to a constant.
    """
    _require_onnx()
    owner = module if owner is None else owner
    was_training = owner.training
    device = next(owner.parameters(), torch.empty(0)).device
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                module.to("cpu").eval(),
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}},
                verbose=False,
            )
    finally:
        owner.to(device).train(was_training)
    return program.model_proto


def write_onnx(proto: Any, out: Path, meta: dict[str, str], doc: str) -> Path:
    """Set ``proto``'s metadata and doc string and write it to ``out`` atomically.

    Raises:
        PlatelabError: ``out`` cannot be written.
    """
    onnx = _require_onnx()
    onnx.helper.set_model_props(proto, {k: str(v) for k, v in meta.items()})
    proto.doc_string = doc
    try:
        atomic_write_bytes(out, proto.SerializeToString())
    except OSError as e:
        raise PlatelabError(f"cannot write {out}: {reason(e)}") from None
    return out


class _Wrap:
    """Builds the module that is exported for a task, and the metadata it adds."""

    def __init__(self, task: str, postprocess: PostprocessConfig | None) -> None:
        self.task, self.metadata = task, {}
        self.postprocess: PostprocessConfig | None = None
        if task == "detect":
            from platelab.infer.detect_export import check_postprocess, postprocess_metadata
            from platelab.tasks.detect import DEPLOY

            self.postprocess = check_postprocess(postprocess or DEPLOY)
            self.metadata = postprocess_metadata(self.postprocess)
        elif postprocess is not None:
            raise PlatelabError(
                f"post-processing settings (conf, iou, max_det) are for detectors; "
                f"this is a {task} model"
            )

    def __call__(self, model: nn.Module, canvas: tuple[int, int]) -> nn.Module:
        if self.task == "detect":
            from platelab.infer.detect_export import ExportedDetector

            return ExportedDetector(model, self.postprocess)
        if self.task == "read":
            from platelab.infer.read_export import ExportedRecognizer

            return ExportedRecognizer(model)
        return ExportedModel(model, canvas)


def _check_writable(out: Path, source: Path | None = None) -> None:
    """Refuse an ``out`` that is not a new or existing ``.onnx`` file.

    The rule: ``out`` must end in ``.onnx``; it must not be ``source`` (the checkpoint
    exported); and an existing ``out`` is replaced only when it is not a torch archive
    (a zip file, which every checkpoint is), so an export never replaces a checkpoint,
    even one renamed to ``.onnx``.
    """
    if out.suffix.lower() != ".onnx" and not out.is_dir():
        raise PlatelabError(
            f"--out {out} must name an .onnx file (e.g. {out.stem or 'model'}.onnx)"
        )
    if out.is_file():
        if source is not None and source.is_file() and out.samefile(source):
            raise PlatelabError(f"--out {out} is the checkpoint being exported: choose another")
        if zipfile.is_zipfile(out):
            raise PlatelabError(
                f"--out {out} exists and is a torch archive (a checkpoint?), not an ONNX "
                "model: choose another file"
            )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PlatelabError(f"cannot write {out}: {reason(e)}") from None
    if out.is_dir() or not os.access(out.parent, os.W_OK):
        raise PlatelabError(f"cannot write {out}: not a writable file path")


def read_metadata(path: Path | str) -> dict[str, str]:
    """The ``metadata_props`` of an ``.onnx`` file as a dict of strings.

    Raises:
        PlatelabError: the file is missing or not an ONNX model.
    """
    onnx = _require_onnx()
    path = Path(path)
    if not path.is_file():
        raise PlatelabError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends: "not an ONNX model"
        raise PlatelabError(f"cannot read ONNX model {path}: {reason(e)}") from None
    return {p.key: p.value for p in proto.metadata_props}


def onnx_session(path: Path | str, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session with every graph optimisation on.

    Measured at 640x480, 2 threads: spinning worker threads (onnxruntime's default)
    are 15-25% faster than ``session.intra_op.allow_spinning=0`` (mobilenet_v3_small
    5.9 against 7.4 ms); ``ORT_PARALLEL``, denormals as zero, ``dynamic_block_base``
    and opsets 18/20/22 make no difference beyond noise.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads; None lets onnxruntime use every core.

    Raises:
        PlatelabError: onnxruntime missing, the file missing or not loadable.
    """
    ort = _require_ort()
    path = Path(path)
    if not path.is_file():
        raise PlatelabError(f"ONNX file not found: {path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(threads or 0)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: no per-node placement chatter
    try:
        return ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # InvalidProtobuf, Fail, ...: all mean "not a usable model"
        raise PlatelabError(f"cannot load ONNX model {path}: {reason(e)}") from None


def letterbox_canvases(
    images: Sequence[np.ndarray | Path | str], canvas: tuple[int, int], seed: int = 0
) -> tuple[np.ndarray, list[Letterbox] | None]:
    """``images`` (RGB uint8 ``HxWx3`` arrays or files) letterboxed to ``canvas`` ``(W, H)``.

    Returns ``([N, H, W, 3] uint8 canvases, one Letterbox per photo)``; no images give
    4 random canvases drawn with ``seed`` and None for the letterboxes.
    """
    w, h = canvas
    if not images:
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (4, h, w, 3), dtype=np.uint8), None
    from platelab.data.imageio import read_image

    canvases, letterboxes = [], []
    for item in images:
        if isinstance(item, np.ndarray):
            img = item
        else:
            try:
                img = read_image(Path(item))
            except (OSError, ValueError) as e:
                raise PlatelabError(f"cannot read parity image {item}: {reason(e)}") from None
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise PlatelabError(
                f"parity images must be HxWx3 uint8 RGB, got {img.shape} {img.dtype}"
            )
        lb = Letterbox.fit(img.shape[1], img.shape[0], w, h)
        canvases.append(lb.apply(img))
        letterboxes.append(lb)
    return np.stack(canvases), letterboxes


def parity(
    model: nn.Module,
    session: onnxruntime.InferenceSession,
    canvases: np.ndarray,
    letterboxes: Sequence[Letterbox] | None = None,
    *,
    input_dtype: str = "uint8",
    batch: int = 8,
) -> dict[str, float | None]:
    """Compare PyTorch and onnxruntime on ``canvases`` ``[N, H, W, 3]`` uint8.

    The reference is ``model`` itself (its normalised boxes times ``W, H`` and the sigmoid
    of its logits), not :class:`ExportedModel`, so a wrapper bug shows up here. Runs
    batches of up to ``batch`` (so a dynamic batch axis is exercised) and returns
    ``max_box_diff_px`` (canvas pixels), ``max_box_diff_orig_px`` (original pixels, when
    ``letterboxes`` maps each canvas back to its photo, else None) and ``max_score_diff``.
    """
    h, w = canvases.shape[1:3]
    scale = np.array([w, h, w, h], dtype=np.float32)
    box_px, box_orig, score = 0.0, 0.0, 0.0
    for start in range(0, len(canvases), batch):
        chunk = np.ascontiguousarray(canvases[start : start + batch].transpose(0, 3, 1, 2))
        feed = chunk if input_dtype == "uint8" else chunk.astype(np.float32) / 255
        boxes_ort, scores_ort = session.run(None, {INPUT_NAME: feed})
        # the reference is the model itself, not ExportedModel: independent of the wrapper
        with torch.inference_mode():
            out = model(torch.from_numpy(feed))
        boxes_pt = out["boxes_norm_xyxy"].float().numpy() * scale
        scores_pt = torch.sigmoid(out["logits"].float()).numpy()
        box_px = max(box_px, float(np.abs(boxes_ort - boxes_pt).max()))
        score = max(score, float(np.abs(scores_ort - scores_pt).max()))
        for i, lb in enumerate(letterboxes[start : start + batch] if letterboxes else []):
            diff = lb.boxes_to_original(boxes_ort[i]) - lb.boxes_to_original(boxes_pt[i])
            box_orig = max(box_orig, float(np.abs(diff).max()))
    return {
        "max_box_diff_px": box_px,
        "max_box_diff_orig_px": box_orig if letterboxes else None,
        "max_score_diff": score,
    }


def export_checkpoint(
    checkpoint: Path | str,
    out: Path | str,
    *,
    input_dtype: str = "uint8",
    parity_images: Sequence[np.ndarray | Path | str] = (),
    canvas: tuple[int, int] | None = None,
    tolerance_px: float = TOLERANCE_PX,
    opset: int | None = None,
    threads: int | None = None,
    postprocess: PostprocessConfig | None = None,
) -> ExportReport:
    """Export a checkpoint (or a run folder's best epoch) to ONNX and check it.

    After the export, ``onnx.checker.check_model`` (full check, with shape inference)
    runs, then a parity check: the parity images (photos, letterboxed to the canvas
    with :class:`~platelab.geometry.Letterbox`) or, when none are given, 4
    deterministic random canvases go through PyTorch and onnxruntime. The largest box
    difference must stay within ``tolerance_px`` canvas pixels and the largest score
    difference within ``TOLERANCE_SCORE`` (1e-3). Measured: at most 0.097 px (resnet50;
    see ``TOLERANCE_PX``), 0.025 px for the mobile models, so the default 0.5 px has a
    5x margin.

    A detector (the checkpoint's ``task``) is exported with its post-processing and
    checked image by image with :func:`~platelab.infer.detect_export.parity_detect`:
    both runtimes must keep the same plates (those within ``TOLERANCE_SCORE`` of the
    threshold aside), their boxes and corners within ``tolerance_px`` canvas pixels.

    Args:
        checkpoint: a ``.pth`` written by ``platelab train``, or a run folder.
        out: the ``.onnx`` file to write (an existing checkpoint, or any torch archive,
            is never replaced; see :func:`_check_writable`).
        input_dtype: ``"uint8"`` or ``"float32"``.
        parity_images: RGB uint8 ``HxWx3`` arrays or image files, original photos.
        canvas: ``(W, H)``; default the canvas the checkpoint was trained on.
        tolerance_px: box (and corner) tolerance in canvas pixels.
        opset: ONNX opset; None takes the exporter's default.
        threads: onnxruntime threads for the parity run.
        postprocess: a detector's post-processing settings (default
            :data:`platelab.tasks.detect.DEPLOY`); refused for a localiser.

    Raises:
        PlatelabError: a missing or foreign checkpoint, onnx/onnxruntime missing, an
            unwritable ``out``, an unreadable parity image, ``postprocess`` for a
            localiser, a model the checker rejects, or parity outside the tolerance
            (the file stays, for inspection).
    """
    from platelab.models.weights import load_model_from_checkpoint

    onnx = _require_onnx()
    _require_ort()
    _check_dtype(input_dtype)
    _check_writable(Path(out), Path(checkpoint))  # before loading: never replace a checkpoint
    model, info = load_model_from_checkpoint(checkpoint)
    task = str(info.get("task") or "localize")
    wrap = _Wrap(task, postprocess)  # bad or misplaced settings fail before the export
    canvas = tuple(int(v) for v in (canvas or info["input_size"] or (640, 480)))
    canvases, letterboxes = letterbox_canvases(parity_images, canvas)  # bad images fail early
    extra = {"checkpoint": Path(info["path"]).name}
    if info.get("epoch") is not None:
        extra["epoch"] = str(info["epoch"])
    path = export_onnx(
        model,
        out,
        canvas,
        input_dtype=input_dtype,
        metadata=extra,
        opset=opset,
        postprocess=wrap.postprocess,
    )
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise PlatelabError(f"onnx.checker rejects {path}: {reason(e)}") from None

    session = onnx_session(path, threads)
    if task == "read":
        from platelab.infer.read_export import parity_read

        diffs = parity_read(model, session, canvases, input_dtype=input_dtype)
        diffs |= {"max_box_diff_px": diffs["max_position_diff_px"], "max_box_diff_orig_px": None}
    elif task == "detect":
        from platelab.infer.detect_export import parity_detect

        diffs = parity_detect(
            wrap(model, canvas).eval(),
            session,
            canvases,
            letterboxes,
            input_dtype=input_dtype,
            score_tolerance=TOLERANCE_SCORE,
        )
    else:
        diffs = parity(model, session, canvases, letterboxes, input_dtype=input_dtype)
    report = ExportReport(
        path=path,
        checkpoint=Path(info["path"]),
        model=info["model"],
        canvas=canvas,
        input_dtype=input_dtype,
        images=len(canvases),
        real_images=letterboxes is not None,
        max_box_diff_px=diffs["max_box_diff_px"],
        max_box_diff_orig_px=diffs["max_box_diff_orig_px"],
        max_score_diff=diffs["max_score_diff"],
        tolerance_px=tolerance_px,
        size_mb=path.stat().st_size / 1e6,
        metadata=read_metadata(path),
        task=task,
    )
    if task == "read":
        report.max_logit_diff, report.texts_equal = diffs["max_logit_diff"], diffs["texts_equal"]
    if task == "detect":
        report.plates = diffs["plates"]
        report.max_corner_diff_px = diffs["max_corner_diff_px"]
        report.max_corner_diff_orig_px = diffs["max_corner_diff_orig_px"]
        report.postprocess = asdict(wrap.postprocess)
        if diffs["mismatches"]:
            image, n_torch, n_ort = diffs["mismatches"][0]
            raise PlatelabError(
                f"ONNX parity failed for {path}: parity image {image} keeps {n_ort} plate(s) "
                f"in onnxruntime and {n_torch} in PyTorch "
                f"({len(diffs['mismatches'])} image(s) differ)"
            )
    worst_px = max(report.max_box_diff_px, report.max_corner_diff_px or 0.0)
    if worst_px > tolerance_px or report.max_score_diff > TOLERANCE_SCORE:
        what = {"detect": "box/corner", "read": "position"}.get(task, "box")
        raise PlatelabError(
            f"ONNX parity failed for {path}: {what} diff {worst_px:.4f} px "
            f"(tolerance {tolerance_px} px), score diff {report.max_score_diff:.2e} "
            f"(tolerance {TOLERANCE_SCORE:g})"
        )
    return report


def dataset_photos(checkpoint: Path | str, n: int = 8) -> list[Path]:
    """Up to ``n`` original photos of the test split the checkpoint's run was trained beside.

    The parity check's default real images; empty when the dataset (recorded in the
    checkpoint) or its photos are no longer where they were.
    """
    from platelab.data.manifest import load_split
    from platelab.engine.checkpoint import find_checkpoint, load_checkpoint

    dataset = (load_checkpoint(find_checkpoint(checkpoint, "best")).get("meta") or {}).get(
        "dataset"
    )
    if not dataset or not (Path(dataset) / "test.csv").is_file():
        return []
    from platelab.data.crop_manifest import is_crop_dataset, load_crop_split

    if is_crop_dataset(Path(dataset)):  # a recogniser's: its test crops
        try:
            crops = [Path(dataset) / it.image for it in load_crop_split(Path(dataset), "test")]
        except PlatelabError:
            return []
        return [c for c in crops if c.is_file()][:n]
    try:
        images = load_split(Path(dataset), "test")
    except PlatelabError:
        return []
    photos = [Path(m.orig_image) for m in images if Path(m.orig_image).is_file()]
    return photos[:n]
