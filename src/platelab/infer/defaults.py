"""The default weights shipped inside the package, and where their ONNX exports are cached.

``src/platelab/assets/weights/`` holds one small checkpoint per task (model weights
only, no optimiser state), each with a model card (``<name>.md``: the command, seed and
data that made it, its figures on real photos, its speed and what it is not good at),
and ``weights.json``, the index :func:`list_weights` and ``platelab weights`` read::

    {"defaults": {"detect": "plate_detector", "read": "plate_reader"},
     "weights": {"plate_detector": {"file": "plate_detector.pth", "task": "detect",
                                    "model": "dwsep_small", "card": "plate_detector.md",
                                    "figures": {...}}, ...}}

They load through the same ``torch.load(weights_only=True)`` path as every checkpoint
(:func:`platelab.models.weights.load_model_from_checkpoint`). With ``runtime="onnx"``
they are exported once into ``$PLATELAB_CACHE`` (default ``~/.cache/platelab``) under
a name that carries the checkpoint's content hash, so new weights get new files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from platelab.errors import PlatelabError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "assets" / "weights"
INDEX = "weights.json"


def _index() -> dict[str, Any]:
    path = WEIGHTS_DIR / INDEX
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PlatelabError(
            f"the default weights index {path} is missing or damaged ({e})"
        ) from None


def list_weights() -> list[dict[str, Any]]:
    """Every shipped weights file: ``name``, ``task``, ``model``, ``path``, ``mb``,
    ``default`` (whether it is its task's default), ``card`` and ``figures``."""
    index = _index()
    defaults = set(index.get("defaults", {}).values())
    rows = []
    for name, entry in index.get("weights", {}).items():
        path = WEIGHTS_DIR / entry["file"]
        rows.append(
            {
                "name": name,
                "task": entry["task"],
                "model": entry.get("model", ""),
                "path": path,
                "mb": path.stat().st_size / 2**20 if path.is_file() else float("nan"),
                "default": name in defaults,
                "card": WEIGHTS_DIR / entry["card"] if entry.get("card") else None,
                "figures": entry.get("figures", {}),
            }
        )
    return rows


def default_weights(task: str) -> Path:
    """The shipped checkpoint for ``task`` (``detect``, ``read`` or ``corners``)."""
    index = _index()
    name = index.get("defaults", {}).get(task)
    if name is None:
        raise PlatelabError(f"no default weights for task={task}; give a model")
    path = WEIGHTS_DIR / index["weights"][name]["file"]
    if not path.is_file():
        raise PlatelabError(f"the default {task} weights {path} are missing: reinstall platelab")
    return path


def cache_dir() -> Path:
    """``$PLATELAB_CACHE``, else ``~/.cache/platelab``."""
    root = os.environ.get("PLATELAB_CACHE") or Path.home() / ".cache" / "platelab"
    return Path(root)


def default_onnx(task: str) -> Path:
    """The default ``task`` weights as ONNX, exported into :func:`cache_dir` on first use."""
    from platelab.infer.export import export_checkpoint

    pth = default_weights(task)
    digest = hashlib.sha256(pth.read_bytes()).hexdigest()[:12]
    out = cache_dir() / "onnx" / f"{pth.stem}-{digest}.onnx"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.onnx")
        try:
            if task == "corners":  # the corner stage has its own, smaller export
                from platelab.models.corner_refiner import export_corner_model, load_refiner

                export_corner_model(load_refiner(pth), tmp)
            else:
                export_checkpoint(pth, tmp)
            os.replace(tmp, out)  # atomic: a concurrent first use sees one whole file
        finally:
            tmp.unlink(missing_ok=True)
    return out


def default_model(task: str, runtime: str = "auto") -> Path:
    """The default ``task`` model for ``runtime``: the checkpoint, or its ONNX export."""
    return default_onnx(task) if runtime == "onnx" else default_weights(task)
