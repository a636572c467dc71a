"""The recogniser's ONNX graph (``task=read``) and its parity check.

Contract of a ``task=read`` export (decoding happens outside the graph, in numpy, with
:func:`platelab.tasks.read.decode`: a few lines, and the charset travels as metadata):

* input ``images`` ``[batch, 3, H, W]``: the plate crop at the model's crop size
  (``canvas`` metadata, ``WxH``), uint8 ``0..255`` (or float32 ``0..1`` with
  ``input_dtype=float32``), RGB, straightened by :func:`platelab.geometry.warp_quad`;
* output ``logits`` ``[batch, T, C]`` float32: raw class scores per position over
  ``C = len(charset)`` classes, class 0 the CTC blank (``decoder=ctc``: argmax per step,
  merge repeats, drop blanks) or "no character" (``decoder=slots``: argmax per slot,
  drop class 0); a softmax over ``C`` gives the per-character confidences;
* output ``positions`` ``[batch, T]`` float32: where each position looks, as a share
  of the crop width (``(t + 0.5) / T`` for CTC; a slot's attention centre): the row a
  character came from on a two-line crop laid side by side is ``floor(x * rows)``.

``metadata_props`` add to the common ones (``task=read``, ``model``, ``model_kwargs``,
``canvas`` = the crop size, ``input_dtype``, ``mean``, ``std``): ``charset`` (JSON
``{"name", "symbols"}``; class ``k`` is ``symbols[k - 1]``), ``crop_size`` (JSON
``[W, H]``), ``decoder`` (``ctc`` or ``slots``) and ``max_len``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from platelab.tasks.read import model_outputs
from platelab.text import Charset

if TYPE_CHECKING:
    import onnxruntime


class ExportedRecognizer(nn.Module):
    """A recogniser with the ONNX contract's outputs: ``(logits [B, T, C], positions [B, T])``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return model_outputs(self.model(images))


def charset_from_metadata(meta: dict[str, str]) -> Charset:
    """The :class:`Charset` an export recorded (``charset`` metadata)."""
    data = json.loads(meta["charset"])
    return Charset(str(data.get("name", "custom")), tuple(data["symbols"]))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def parity_read(
    model: nn.Module,
    session: onnxruntime.InferenceSession,
    crops: np.ndarray,
    *,
    input_dtype: str = "uint8",
    batch: int = 8,
) -> dict[str, Any]:
    """Compare PyTorch and onnxruntime on ``crops`` ``[N, H, W, 3]`` uint8 (crop size).

    Returns ``max_logit_diff``, ``max_score_diff`` (largest class-probability
    difference), ``max_position_diff_px`` (crop pixels), ``texts_equal`` (crops whose
    decoded texts agree) and ``texts`` (how many were compared).
    """
    from platelab.tasks.read import decode

    w = crops.shape[2]
    logit, prob, pos, same = 0.0, 0.0, 0.0, 0
    for start in range(0, len(crops), batch):
        chunk = np.ascontiguousarray(crops[start : start + batch].transpose(0, 3, 1, 2))
        feed = chunk if input_dtype == "uint8" else chunk.astype(np.float32) / 255
        logits_ort, pos_ort = session.run(None, {"images": feed})
        with torch.inference_mode():
            logits_pt, pos_pt = (t.numpy() for t in model_outputs(model(torch.from_numpy(feed))))
        logit = max(logit, float(np.abs(logits_ort - logits_pt).max()))
        prob = max(prob, float(np.abs(_softmax(logits_ort) - _softmax(logits_pt)).max()))
        pos = max(pos, float(np.abs(pos_ort - pos_pt).max()) * w)
        a = decode(logits_ort, pos_ort, model.decoder, model.charset)
        b = decode(logits_pt, pos_pt, model.decoder, model.charset)
        same += sum(x.text == y.text for x, y in zip(a, b, strict=True))
    return {
        "max_logit_diff": logit,
        "max_score_diff": prob,
        "max_position_diff_px": pos,
        "texts_equal": same,
        "texts": len(crops),
    }
