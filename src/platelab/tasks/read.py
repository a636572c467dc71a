"""``task=read``: the text of a plate crop, with a confidence per character.

The models are the recognisers of :mod:`platelab.models.recognizer` (``crnn``,
``slot_ocr``); the data a crop dataset (:mod:`platelab.data.crops`); the metrics
:mod:`platelab.eval.text`.

Batches (:func:`collate_read`, bound to the model's charset by :meth:`ReadTask.collate_for`):
``images`` uint8 ``[B, 3, H, W]`` crops (two-line crops laid side by side, top row
left) and targets

| key | shape | meaning |
|---|---|---|
| ``texts`` | ``list[str]`` | normalised truth |
| ``targets`` | int64 ``[sum(lengths)]`` | every text's class indices (``1..C-1``), concatenated (CTC) |
| ``lengths`` | int64 ``[B]`` | characters per text (0 for an empty text) |
| ``slots`` | int64 ``[B, L]`` | class per slot, 0 after the text's end (the slot model's ``max_len``; ``L = 0`` for CTC models) |
| ``rows``, ``index`` | int64 ``[B]`` | 1 or 2 rows; position in the requested splits |
| ``styles`` | ``list[str]`` | plate style (``cn_blue``, ...), "" when unknown |

Loss (:class:`ReadLoss`, chosen by the output's keys): ``logits`` ``[B, T, C]`` ->
CTC (``torch.nn.functional.ctc_loss``, blank 0, ``zero_infinity``, each text's loss
divided by its length (at least 1), mean over the batch); ``slot_logits`` ``[B, L, C]``
-> cross-entropy over every slot (padding slots must predict class 0).

Decoding (:func:`decode`): CTC greedy (:meth:`~platelab.text.Charset.ctc_greedy`) or
slot argmax (class 0 dropped). A character's confidence is its softmax probability
(for CTC the best over its run of steps); a text's ``score`` is the PRODUCT of its
characters' confidences (the chance that every character is right if they err
independently: one doubtful character makes a doubtful plate), 0 for an empty text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from platelab.engine import distributed
from platelab.engine.trainer import Trainer
from platelab.errors import PlatelabError
from platelab.tasks.base import EvalTally, Task, gather_records
from platelab.text import BLANK, Charset, cn_plate_syntax

log = logging.getLogger(__name__)


@dataclass
class TextPrediction:
    """One crop's reading.

    Attributes:
        text: the characters read, in reading order (top row first).
        score: product of ``char_scores``; 0 for an empty text.
        char_scores: each character's confidence in ``[0, 1]``.
        rows: the row (0 = top) each character came from.
        positions: where each character was read, a share of the crop width.
        width, height: the image read (set by the predictor), else 0.
    """

    text: str
    score: float
    char_scores: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    positions: list[float] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def to_dict(self) -> dict[str, Any]:
        """``{"text", "score", "char_scores", "rows"}``: plain JSON types."""
        return {"text": self.text, "score": self.score, "char_scores": self.char_scores,
                "rows": self.rows}  # fmt: skip


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def decode(
    logits: Any,
    positions: Any,
    decoder: str,
    charset: Charset,
    rows: Sequence[int] | None = None,
) -> list[TextPrediction]:
    """Class scores -> one :class:`TextPrediction` per crop.

    Args:
        logits: ``[B, T, C]`` raw scores (numpy or torch), ``C == len(charset)``.
        positions: ``[B, T]`` where each step / slot looks (share of the crop width), or
            None (``(t + 0.5) / T``).
        decoder: ``"ctc"`` (merge repeats, drop blanks) or ``"slots"`` (drop class 0).
            A Chinese reading then follows its syntax (:func:`platelab.text.cn_plate_syntax`:
            no ``I`` or ``O`` after the city letter).
        charset: the model's charset.
        rows: rows of each crop (1 or 2); None: 1.
    """
    if hasattr(logits, "detach"):
        logits = logits.detach().float().cpu().numpy()
    if hasattr(positions, "detach"):
        positions = positions.detach().float().cpu().numpy()
    logits = np.asarray(logits, np.float32)
    b, t = logits.shape[:2]
    if positions is None:
        positions = np.broadcast_to((np.arange(t, dtype=np.float32) + 0.5) / t, (b, t))
    if decoder == "ctc":
        texts, scores, steps = charset.ctc_greedy(logits, probs=False)
    elif decoder == "slots":
        probs = _softmax(logits)
        best = probs.argmax(-1)
        texts, scores, steps = [], [], []
        for i in range(b):
            keep = [s for s in range(t) if best[i, s] != BLANK]
            texts.append(charset.decode(best[i, keep]))
            scores.append([float(probs[i, s, best[i, s]]) for s in keep])
            steps.append(keep)
    else:
        raise PlatelabError(f"unknown decoder '{decoder}'; expected ctc or slots")
    out = []
    for i in range(b):
        n_rows = int(rows[i]) if rows is not None else 1
        xs = [float(positions[i, s]) for s in steps[i]]
        out.append(
            TextPrediction(
                text=cn_plate_syntax(texts[i]),
                score=float(np.prod(scores[i])) if scores[i] else 0.0,
                char_scores=[float(c) for c in scores[i]],
                rows=[min(n_rows - 1, max(0, int(x * n_rows))) for x in xs],
                positions=xs,
            )
        )
    return out


def model_outputs(out: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """A recogniser's output dict -> ``(logits [B, T, C], positions [B, T])`` float32.

    ``positions``: where each step / slot looks, a share of the crop width (``(t + 0.5)
    / T`` for CTC, the attention centre ``slot_x`` for slots). The exported graph's outputs.
    """
    if "slot_logits" in out:
        return out["slot_logits"].float(), out["slot_x"].float()
    logits = out["logits"].float()
    b, t = logits.shape[:2]
    steps = (torch.arange(t, device=logits.device, dtype=torch.float32) + 0.5) / t
    return logits, steps.unsqueeze(0).expand(b, t)


def decode_outputs(model: nn.Module, out: dict[str, Tensor], rows=None) -> list[TextPrediction]:
    """A recogniser's output dict -> predictions (its own decoder and charset)."""
    logits, positions = model_outputs(out)
    return decode(logits, positions, model.decoder, model.charset, rows)


def collate_read(
    samples: Sequence[Any],
    canvas: tuple[int, int] | None = None,
    *,
    charset: Charset,
    max_len: int = 0,
) -> tuple[Tensor, dict]:
    """Crop samples -> ``(images, targets)`` (the module docstring's table).

    Raises:
        PlatelabError: a text with a character outside ``charset`` (the dataset was
            prepared with another charset than the model's).
    """
    from platelab.data.crops import collate_crops

    images, targets = collate_crops(samples, canvas)
    encoded = []
    for text in targets["texts"]:
        try:
            encoded.append(charset.encode(text))
        except ValueError as e:
            raise PlatelabError(f"the model cannot read the data: {e}") from None
    lengths = torch.tensor([len(e) for e in encoded], dtype=torch.int64)
    slots = torch.zeros((len(encoded), max_len), dtype=torch.int64)
    for i, e in enumerate(encoded):
        e = e[:max_len]  # a longer text cannot be read in full by a max_len model
        slots[i, : len(e)] = torch.tensor(e, dtype=torch.int64)
    flat = [i for e in encoded for i in e]
    targets |= {
        "targets": torch.tensor(flat, dtype=torch.int64),
        "lengths": lengths,
        "slots": slots,
    }
    return images, targets


class ReadLoss(nn.Module):
    """CTC for ``logits``, cross-entropy over slots for ``slot_logits`` (module docstring).

    Args:
        label_smoothing: for the slot model's cross-entropy.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Any]) -> dict[str, Tensor]:
        if "slot_logits" in outputs:
            logits = outputs["slot_logits"].float()  # [B, L, C]
            slots = targets["slots"][:, : logits.shape[1]]
            if slots.shape[1] < logits.shape[1]:  # targets of a shorter max_len: pad with 0
                slots = F.pad(slots, (0, logits.shape[1] - slots.shape[1]))
            if logits.shape[0] == 0:
                return {"loss": logits.sum() * 0.0}
            loss = F.cross_entropy(logits.flatten(0, 1), slots.flatten(),
                                   label_smoothing=self.label_smoothing)  # fmt: skip
            return {"loss": loss}
        logits = outputs["logits"].float()  # [B, T, C]
        b, t = logits.shape[:2]
        if b == 0:
            return {"loss": logits.sum() * 0.0}
        log_probs = logits.log_softmax(-1).transpose(0, 1)  # [T, B, C]
        lengths = targets["lengths"]
        per_text = F.ctc_loss(
            log_probs,
            targets["targets"],
            torch.full((b,), t, dtype=torch.int64, device=logits.device),
            lengths,
            blank=BLANK,
            reduction="none",
            zero_infinity=True,
        )
        return {"loss": (per_text / lengths.clamp(min=1)).mean()}


def evaluate_reader(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, dict]],
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    loss_fn: Any = None,
    collect: bool = False,
) -> dict[str, float] | tuple[dict[str, float], list[dict]]:
    """Read every crop of ``loader`` and score the texts, under ``inference_mode``.

    Returns:
        :func:`platelab.eval.text.text_metrics` over every crop (every rank's, gathered
        under DDP), ``val_fps`` (forward pass only) and ``val_<term>`` of ``loss_fn``.
        With ``collect``, also one record per crop, manifest order: ``index``, ``text``
        (truth), ``rows``, ``style`` and the prediction's ``pred``, ``score``,
        ``char_scores``, ``pred_rows``.
    """
    from platelab.eval.text import text_metrics

    tally, records = EvalTally(device, amp_dtype, loss_fn), []
    for outputs, targets in tally.batches(model, loader):
        preds = decode_outputs(model, outputs, targets["rows"].tolist())
        for i, p in enumerate(preds):
            records.append({
                "index": int(targets["index"][i]), "text": targets["texts"][i],
                "rows": int(targets["rows"][i]), "style": targets["styles"][i],
                "pred": p.text, "score": p.score, "char_scores": p.char_scores,
                "pred_rows": p.rows,
            })  # fmt: skip
    records = gather_records(records)
    metrics = text_metrics([r["text"] for r in records], [r["pred"] for r in records],
                           [r["score"] for r in records])  # fmt: skip
    metrics = tally.finish(metrics)
    return (metrics, records) if collect else metrics


class ReadTask(Task):
    name = "read"
    monitor = "accuracy"
    loss_class = ReadLoss
    output_names = ("logits", "positions")

    def build_model(self, name: str, **kwargs: Any) -> nn.Module:
        from platelab.models import create_model
        from platelab.models.recognizer import RECOGNIZERS

        model = create_model(name, **kwargs)
        if getattr(model, "task", None) != self.name:
            raise PlatelabError(
                f"model '{name}' is not a text recogniser: task=read takes {', '.join(RECOGNIZERS)}"
            )
        return model

    def collate_for(self, model: nn.Module) -> Any:
        """:func:`collate_read` bound to ``model``'s charset, slot count and crop size."""
        max_len = model.max_len if getattr(model, "decoder", "ctc") == "slots" else 0
        return partial(collate_read, canvas=tuple(model.input_size), charset=model.charset,
                       max_len=max_len)  # fmt: skip

    def collate(self, samples, canvas=None):
        from platelab.text import get_charset

        return collate_read(samples, canvas, charset=get_charset())

    def data_size(self, dataset) -> tuple[int, int]:
        from platelab.data.crop_manifest import crop_size

        return crop_size(dataset)

    def split_length(self, dataset, split: str) -> int:
        from platelab.data.crop_manifest import load_crop_split

        return len(load_crop_split(dataset, split)) if (dataset / f"{split}.csv").is_file() else 0

    def build_loaders(self, cfg, canvas, size, model=None) -> tuple:
        """Crop loaders: the augmented, sharded training stream, and the ordered validation."""
        from platelab.data.crops import build_crop_loader

        if model is None:
            raise PlatelabError("task=read builds its loaders for a model (its charset)")
        if tuple(size) != tuple(canvas) or tuple(model.input_size) != tuple(canvas):
            raise PlatelabError(
                f"the crops are {canvas[0]}x{canvas[1]} but the model reads "
                f"{model.input_size[0]}x{model.input_size[1]}: prepare the crops at its size "
                "(size= does not resize crops)"
            )
        collate = self.collate_for(model)
        kw = dict(workers=cfg.workers, seed=cfg.seed, collate_fn=collate,
                  even=distributed.world_size() > 1)  # fmt: skip
        train = build_crop_loader(cfg.data, "train", cfg.batch_size, shuffle=True,
                                  drop_last=True, augment=_crop_augment(cfg), **kw)  # fmt: skip
        if len(train) == 0:  # fewer crops per worker than a batch: keep the remainder
            train = build_crop_loader(cfg.data, "train", cfg.batch_size, shuffle=True,
                                      augment=_crop_augment(cfg), **kw)  # fmt: skip
        val = build_crop_loader(cfg.data, "val", cfg.batch_size, shuffle=False, **kw)
        return train, val

    def evaluate(self, model, loader, device="cpu", amp_dtype=None, loss_fn=None, collect=False):
        return evaluate_reader(model, loader, device, amp_dtype, loss_fn, collect)

    def metric_names(self, loss_fn: nn.Module) -> set[str]:
        from platelab.eval.text import text_metrics

        names = {*text_metrics([], [], []), "val_fps", *Trainer.ROW_KEYS}
        return names | {"train_loss", "val_loss"}


def _crop_augment(cfg: Any) -> Any:
    """Text-safe crop augmentation (:class:`~platelab.data.crops.CropAugment`: never a flip).

    Only ``augment.strength`` carries over from the run's keys (0 switches it off): the
    scene augmentation's other keys (flips, affine, ...) do not apply to crops.
    """
    from platelab.data.crops import CropAugmentConfig

    strength = float(cfg.augment.strength)
    return CropAugmentConfig(strength=strength) if strength > 0 else None


READ = ReadTask()
