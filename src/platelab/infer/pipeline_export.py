"""``platelab export DETECTOR --reader READER --out DIR``: the reader as three ONNX files.

Writes ``DIR/detector.onnx`` (post-processing in the graph), ``DIR/reader.onnx``
(logits and positions; decoded in numpy with the charset in its metadata),
``DIR/corners.onnx`` (the corner stage, :mod:`platelab.models.corner_refiner`; left out
with ``corner_model=False``) and ``DIR/pipeline.json``, the manifest
:meth:`platelab.infer.reader.PlateReader.from_pipeline` and ``platelab read --pipeline
DIR`` read::

    {"format": "platelab-pipeline", "version": 1,
     "detector": "detector.onnx", "reader": "reader.onnx", "corners": "corners.onnx",
     "detector_model": "dwsep_small", "reader_model": "crnn",
     "canvas": [320, 240], "crop_size": [128, 32], "conf": 0.25}

Each file passes the single-model export's checks (``onnx.checker`` and parity with
PyTorch); the manifest is written last and atomically, so a folder with a manifest
holds both files whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from platelab.atomic import atomic_write_bytes
from platelab.errors import PlatelabError
from platelab.infer.reader import PIPELINE

FORMAT = "platelab-pipeline"
CORNERS = "corners.onnx"


def export_pipeline(
    detector: Path | str,
    reader: Path | str,
    out: Path | str,
    *,
    parity_images: Any = (),
    postprocess: Any = None,
    corner_model: Path | str | bool | None = None,
    **export_kwargs: Any,
) -> dict[str, Any]:
    """Export a ``task=detect`` and a ``task=read`` checkpoint into the folder ``out``.

    ``parity_images`` (photos) and ``postprocess`` go to the detector's export; the
    other keyword arguments (``input_dtype``, ``opset``, ...) to both. ``corner_model``:
    the corner stage's checkpoint (None: the shipped one; False: none).

    Returns:
        ``{"manifest": path, "detector": ExportReport, "reader": ExportReport,
        "corners": path or None}``.

    Raises:
        PlatelabError: a checkpoint of the wrong task, ``out`` an existing file, or
            what :func:`~platelab.infer.export.export_checkpoint` refuses.
    """
    from platelab.engine.checkpoint import find_checkpoint
    from platelab.infer.export import export_checkpoint
    from platelab.models.weights import read_model_checkpoint

    out = Path(out)
    if out.suffix.lower() == ".onnx" or out.is_file():
        raise PlatelabError(f"--out {out} must be a folder for a detector + reader pipeline")
    for path, task in ((detector, "detect"), (reader, "read")):
        _, meta = read_model_checkpoint(find_checkpoint(path, "best"))
        if meta.get("task") != task:
            role = "DETECTOR" if task == "detect" else "--reader"
            raise PlatelabError(f"{role} {path} is a {meta.get('task')} model, not task={task}")
    refiner = None
    if corner_model is not False:  # loaded first: a bad file fails before the long exports
        from platelab.infer.defaults import default_weights
        from platelab.models.corner_refiner import load_refiner

        spec = default_weights("corners") if corner_model in (None, True) else corner_model
        refiner = load_refiner(spec)
    out.mkdir(parents=True, exist_ok=True)
    det = export_checkpoint(detector, out / "detector.onnx", parity_images=parity_images,
                            postprocess=postprocess, **export_kwargs)  # fmt: skip
    rec = export_checkpoint(reader, out / "reader.onnx", **export_kwargs)
    corners = None
    if refiner is not None:
        from platelab.models.corner_refiner import export_corner_model

        corners = export_corner_model(refiner, out / CORNERS, opset=export_kwargs.get("opset"))
    else:
        (out / CORNERS).unlink(missing_ok=True)  # not one from an earlier export
    manifest = {
        "format": FORMAT,
        "version": 1,
        "detector": "detector.onnx",
        "reader": "reader.onnx",
        **({"corners": CORNERS} if corners is not None else {}),
        "detector_model": det.model,
        "reader_model": rec.model,
        "canvas": list(det.canvas),
        "crop_size": list(rec.canvas),
        "conf": (det.postprocess or {}).get("conf"),
    }
    atomic_write_bytes(out / PIPELINE, (json.dumps(manifest, indent=2) + "\n").encode())
    return {"manifest": out / PIPELINE, "detector": det, "reader": rec, "corners": corners}
