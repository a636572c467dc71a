"""Text recognisers (``task=read``): a plate crop in, class scores per character position out.

Two architectures, registered by name (``platelab models`` lists them):

* ``crnn`` (the baseline, CRNN-CTC): a small VGG-style conv stack that pools the height
  away but only a quarter of the width, so a ``128 x 32`` crop becomes a sequence of
  ``T = W / 4 = 32`` column features, left to right; a context layer (a BiLSTM with
  ``rnn=True``, else two 1-D convolutions, which run faster on a CPU and in ONNX); a
  linear layer to ``len(charset)`` classes. Output ``{"logits": [B, T, C]}``, decoded by
  CTC (blank 0; :meth:`platelab.text.Charset.ctc_greedy`).
* ``slot_ocr`` (fixed slots, in the spirit of fast-plate-ocr): the same kind of conv
  stack to a ``W/8 x H/8`` map with a learned position embedding; ``max_len`` slot
  queries (learned, shifted by the crop's pooled features) each attend over the map
  and classify what they pooled into ``len(charset)`` classes, class 0 (the CTC blank)
  meaning "no character" (padding). Output ``{"slot_logits": [B, L, C], "slot_x":
  [B, L]}``: ``slot_x`` is where each slot looked, the expected ``x`` of its attention
  as a share of the crop width (which row of a two-line crop a character came from).

Both take ``images`` ``[B, 3, H, W]`` at their ``crop_size`` (uint8, or float in
``[0, 1]``) and normalise inside, like every platelab model. Their ``config`` holds
the charset as its symbol list (so a checkpoint rebuilds the same classes even if a
named charset grows later), the crop size and the architecture keys:
``create_model(name, **model.config)`` rebuilds the network. ``meta_extra()`` is what
a checkpoint and an ONNX file record beside it (charset name and symbols, crop size,
decoder).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from platelab.errors import PlatelabError
from platelab.geometry import CROP_SIZE
from platelab.models.base import PlateModel
from platelab.models.registry import register_model
from platelab.text import CHARSETS, Charset, get_charset

READ = "read"
RECOGNIZERS = ("crnn", "slot_ocr")  # the registry names of this module


def resolve_charset(charset: str | Sequence[str] | Charset) -> Charset:
    """A :class:`Charset` from a registered name, a file, a symbol list or a Charset."""
    if isinstance(charset, Charset):
        return charset
    if isinstance(charset, str):
        return get_charset(charset)
    symbols = tuple(charset)
    for known in CHARSETS.values():  # a config's symbol list keeps its registered name
        if known.symbols == symbols:
            return known
    try:
        return Charset("custom", symbols)
    except ValueError as e:
        raise PlatelabError(f"bad charset: {e}") from None


def _conv(cin: int, cout: int, kernel: int | tuple[int, int] = 3, padding: Any = None) -> nn.Module:
    pad = (kernel // 2 if isinstance(kernel, int) else 0) if padding is None else padding
    return Conv2dNormActivation(cin, cout, kernel_size=kernel, padding=pad)


class Recognizer(PlateModel):
    """What the recognisers share: normalisation, charset, crop size, config, checkpoint meta.

    Attributes:
        task: ``"read"``. name: the registry name. config: the constructor's arguments.
        charset: the :class:`~platelab.text.Charset` (class 0 is the blank / padding).
        input_size: the crop ``(W, H)`` the model reads.
        decoder: ``"ctc"`` or ``"slots"``: how its output becomes text
            (:func:`platelab.tasks.read.decode`).
        max_len: the most characters it can emit.
    """

    task = READ
    decoder = "ctc"

    def __init__(self, name: str, config: dict[str, Any], charset: Any, crop_size: Any) -> None:
        charset = resolve_charset(charset)
        w, h = (int(v) for v in crop_size)
        if w < 16 or h < 16 or w % 8 or h % 8:
            raise PlatelabError(f"crop_size must be multiples of 8, at least 16, got {w}x{h}")
        config = {**config, "charset": list(charset.symbols), "crop_size": [w, h]}
        super().__init__(name=name, config=config)
        self.charset = charset
        self.input_size = (w, h)

    @property
    def num_classes(self) -> int:
        return len(self.charset)

    def meta_extra(self) -> dict[str, Any]:
        """What a checkpoint's ``meta`` (and an ONNX file's metadata) adds for a recogniser."""
        return {
            "charset": {"name": self.charset.name, "symbols": list(self.charset.symbols)},
            "crop_size": list(self.input_size),
            "decoder": self.decoder,
            "max_len": self.max_len,
        }

    def extra_repr(self) -> str:
        return f"name={self.name!r}, classes={self.num_classes}, crop={self.input_size}"


class CRNN(Recognizer):
    """Conv stack -> ``T = W/4`` column features -> context (BiLSTM or 1-D convs) -> classes.

    Args:
        charset: a registered name, a file, or the symbol list.
        crop_size: ``(W, H)``; multiples of 8.
        width: channels of the first conv; the stack widens to ``6 * width``.
        rnn: a bidirectional LSTM as the context layer (else two 1-D convolutions).
        hidden: the LSTM's hidden size per direction (or the 1-D convs' width).
    """

    def __init__(self, *, charset: Any = "plates", crop_size: Any = CROP_SIZE, width: int = 24,
                 rnn: bool = True, hidden: int = 96, name: str = "crnn") -> None:  # fmt: skip
        cfg = {"width": width, "rnn": rnn, "hidden": hidden}
        super().__init__(name, cfg, charset, crop_size)
        c = int(width)
        w, h = self.input_size
        self.features = nn.Sequential(
            _conv(3, c), nn.MaxPool2d(2),  # H/2, W/2
            _conv(c, 2 * c), nn.MaxPool2d(2),  # H/4, W/4: the sequence's steps
            _conv(2 * c, 4 * c), _conv(4 * c, 4 * c), nn.MaxPool2d((2, 1)),  # H/8
            _conv(4 * c, 6 * c), _conv(6 * c, 6 * c), nn.MaxPool2d((2, 1)),  # H/16
            _conv(6 * c, 6 * c, kernel=(h // 16, 1)),  # the rest of the height: 1 row
        )  # fmt: skip
        self.steps = w // 4
        self.rnn = bool(rnn)
        if self.rnn:
            self.context: nn.Module = nn.LSTM(6 * c, hidden, batch_first=True, bidirectional=True)
            out = 2 * hidden
        else:
            self.context = nn.Sequential(
                nn.Conv1d(6 * c, hidden * 2, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv1d(hidden * 2, hidden * 2, 3, padding=1), nn.ReLU(inplace=True),
            )  # fmt: skip
            out = 2 * hidden
        self.classifier = nn.Linear(out, self.num_classes)
        self.max_len = self.steps // 2  # CTC needs a blank between repeats: a safe bound

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``images`` ``[B, 3, H, W]`` -> ``{"logits": [B, T, C]}``, ``T = W / 4``."""
        x = self.features(self.normalize(images)).squeeze(2)  # [B, D, T]
        if self.rnn:
            x = self.context(x.transpose(1, 2).contiguous())[0]  # [B, T, 2h]
        else:
            x = self.context(x).transpose(1, 2)
        return {"logits": self.classifier(x)}


class SlotOCR(Recognizer):
    """Conv stack -> map with position embedding -> ``max_len`` slot queries attend -> classes.

    Args:
        charset: a registered name, a file, or the symbol list.
        crop_size: ``(W, H)``; multiples of 8.
        width: channels of the first conv; the map has ``dim`` channels.
        dim: the attention width.
        max_len: the number of slots (the longest text it can read).
    """

    decoder = "slots"

    def __init__(self, *, charset: Any = "plates", crop_size: Any = CROP_SIZE, width: int = 32,
                 dim: int = 128, max_len: int = 10, name: str = "slot_ocr") -> None:  # fmt: skip
        cfg = {"width": width, "dim": dim, "max_len": max_len}
        super().__init__(name, cfg, charset, crop_size)
        if max_len < 1:
            raise PlatelabError(f"max_len must be at least 1, got {max_len}")
        c, w, h = int(width), *self.input_size
        self.features = nn.Sequential(
            _conv(3, c), nn.MaxPool2d(2),
            _conv(c, 2 * c), nn.MaxPool2d(2),
            _conv(2 * c, 4 * c), _conv(4 * c, 4 * c), nn.MaxPool2d(2),  # H/8, W/8
            _conv(4 * c, 6 * c), _conv(6 * c, dim, kernel=1),
        )  # fmt: skip
        hf, wf = h // 8, w // 8
        self.pos = nn.Parameter(torch.randn(1, dim, hf, wf) * 0.02)
        self.queries = nn.Parameter(torch.randn(max_len, dim) * dim**-0.5)
        self.query_shift = nn.Linear(dim, dim)
        xs = (torch.arange(wf, dtype=torch.float32) + 0.5) / wf
        self.register_buffer("cell_x", xs.repeat(hf), persistent=False)  # [N], row-major
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU(inplace=True),
                                  nn.Linear(dim, self.num_classes))  # fmt: skip
        self.max_len = int(max_len)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``images`` ``[B, 3, H, W]`` -> ``{"slot_logits": [B, L, C], "slot_x": [B, L]}``."""
        x = self.features(self.normalize(images)) + self.pos  # [B, D, hf, wf]
        x = x.flatten(2)  # [B, D, N]
        q = self.queries.unsqueeze(0) + self.query_shift(x.mean(2)).unsqueeze(1)  # [B, L, D]
        attn = torch.softmax((q @ x) * self.scale, dim=-1)  # [B, L, N]
        slots = attn @ x.transpose(1, 2)  # [B, L, D]
        return {"slot_logits": self.head(slots), "slot_x": attn.float() @ self.cell_x}


def _build(cls: type[Recognizer], name: str, task: str, pretrained: bool, weights: Any,
           kwargs: dict) -> Recognizer:  # fmt: skip
    if task != READ:
        raise PlatelabError(f"'{name}' is a text recogniser (task=read), not a {task} model")
    if pretrained:
        raise PlatelabError(
            f"'{name}' has no library weights; train it, or start from weights=PATH"
        )
    model = cls(name=name, **kwargs)
    if weights is not None:
        from platelab.models.backbones import load_state_file, load_strict

        load_strict(model, load_state_file(weights), f"weights {weights} for {name}")
    return model


@register_model("crnn")
def crnn(*, charset: Any = "plates", crop_size: Any = CROP_SIZE, width: int = 24,
         rnn: bool = True, hidden: int = 96, task: str = READ, pretrained: bool = False,
         weights: Any = None) -> Recognizer:  # fmt: skip
    """CRNN-CTC, the default recogniser (see :class:`CRNN`)."""
    kw = {"charset": charset, "crop_size": crop_size, "width": width, "rnn": rnn, "hidden": hidden}
    return _build(CRNN, "crnn", task, pretrained, weights, kw)


@register_model("slot_ocr")
def slot_ocr(*, charset: Any = "plates", crop_size: Any = CROP_SIZE, width: int = 32,
             dim: int = 128, max_len: int = 10, task: str = READ, pretrained: bool = False,
             weights: Any = None) -> Recognizer:  # fmt: skip
    """A fixed-slot classifier with slot attention (see :class:`SlotOCR`)."""
    kw = {"charset": charset, "crop_size": crop_size, "width": width, "dim": dim,
          "max_len": max_len}  # fmt: skip
    return _build(SlotOCR, "slot_ocr", task, pretrained, weights, kw)
