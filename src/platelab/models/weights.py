"""Trained models in and out of checkpoints: what a checkpoint says of its model, and rebuilding it.

A checkpoint is self-describing (``meta``): the registry name, the constructor
arguments (for a detector they include ``task``), the canvas it was trained on, the
normalisation and the task. :func:`load_model_from_checkpoint` rebuilds the model
from the file alone, through :func:`platelab.engine.checkpoint.load_checkpoint`
(``torch.load(weights_only=True)``: no pickled objects). eval, bench, export,
predict and the reader all load through here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from platelab.engine.checkpoint import find_checkpoint, load_checkpoint
from platelab.errors import PlatelabError
from platelab.tasks.base import DEFAULT_TASK


def model_task(model: nn.Module) -> str:
    """The task a model was built for (its ``task`` attribute; a localiser otherwise)."""
    return str(getattr(model, "task", DEFAULT_TASK))


def checkpoint_meta(
    model: nn.Module, input_size: tuple[int, int], dataset: Path | str | None = None
) -> dict:
    """The ``meta`` a checkpoint carries so that :func:`load_model_from_checkpoint` (and
    eval, predict, export) can rebuild ``model`` from the file alone: its registry name and
    arguments, its task, the canvas ``(W, H)`` it was trained on, its normalisation, its
    dataset, and whatever the model's own ``meta_extra()`` adds (a recogniser: its
    ``charset`` ``{"name", "symbols"}``, ``crop_size`` ``[W, H]``, ``decoder``, ``max_len``)."""
    meta = {
        "model": model.name,
        "model_kwargs": dict(model.config),
        "task": model_task(model),
        "input_size": [int(input_size[0]), int(input_size[1])],
        "mean": model.mean.flatten().tolist(),
        "std": model.std.flatten().tolist(),
    }
    if hasattr(model, "meta_extra"):  # what else describes the model (a recogniser: charset, ...)
        meta.update(model.meta_extra())
    if dataset is not None:
        meta["dataset"] = str(dataset)
    return meta


def read_model_checkpoint(file: Path, expect_model: str | None = None) -> tuple[dict, dict]:
    """``(state, meta)`` of a platelab model checkpoint, refusing one of another model."""
    state = load_checkpoint(file)
    meta = state.get("meta") or {}
    name = meta.get("model")
    if not name or "model" not in state:
        raise PlatelabError(f"{file} holds no platelab model")
    if expect_model is not None and name != expect_model:
        raise PlatelabError(f"checkpoint {file} holds model '{name}', not '{expect_model}'")
    return state, meta


def load_model_from_checkpoint(
    path: Path | str,
    expect_model: str | None = None,
    *,
    device: str | torch.device = "cpu",
    ema: bool = True,
) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from a checkpoint file (or a run folder's best epoch) alone.

    Args:
        path: a ``.pth`` written by ``platelab train``, or a run folder.
        expect_model: refuse a checkpoint of any other registry model.
        device: where the model goes.
        ema: use the EMA weights when the run kept them (they are what was evaluated).

    Returns:
        ``(model, info)``: the model in eval mode, and ``info`` with ``model`` (name),
        ``model_kwargs``, ``task``, ``input_size`` ``(W, H)`` of the canvas it was trained
        on, ``mean``, ``std``, ``epoch``, ``metrics`` and ``path`` (the file read).

    Raises:
        PlatelabError: missing or corrupt file, not a platelab model checkpoint, a model
            other than ``expect_model``, or weights that do not fit the rebuilt model.
    """
    from platelab.models import create_model
    from platelab.models.backbones import load_strict

    file = find_checkpoint(path, "best")
    state, meta = read_model_checkpoint(file, expect_model)
    name = meta["model"]
    model = create_model(name, **meta.get("model_kwargs", {}))
    weights = state["model"]
    if ema and state.get("ema"):
        prefix = "module."
        weights = {k[len(prefix) :]: v for k, v in state["ema"].items() if k.startswith(prefix)}
    load_strict(model, weights, f"checkpoint {file} of model '{name}'")
    info = {k: meta.get(k) for k in ("model", "model_kwargs", "input_size", "mean", "std")}
    info["task"] = meta.get("task") or model_task(model)
    info["input_size"] = tuple(info["input_size"]) if info["input_size"] else None
    info.update(epoch=state.get("epoch"), metrics=state.get("metrics", {}), path=file)
    return model.to(device).eval(), info


def pack_weights(
    src: Path | str, dst: Path | str, *, ema: bool = True, card: dict | None = None
) -> dict:
    """Write the weights of a trained checkpoint alone (no optimiser, no EMA copy, no RNG
    state) as a small checkpoint that :func:`load_model_from_checkpoint` reads, as
    ultralytics' ``strip_optimizer`` does. Atomic.

    Args:
        src: a checkpoint or a run folder (its best epoch).
        dst: the ``.pth`` to write.
        ema: keep the EMA weights when the run has them (else the raw weights).
        card: extra plain fields to record (``source``, ``command``, ...), under ``card``.

    Returns:
        ``{"path", "source", "ema", "mb"}``.
    """
    from platelab.engine.checkpoint import checkpoint_header, save_checkpoint

    file = find_checkpoint(src, "best")
    state, meta = read_model_checkpoint(file)
    weights, used_ema = state["model"], False
    if ema and state.get("ema"):
        prefix = "module."
        weights = {k[len(prefix) :]: v for k, v in state["ema"].items() if k.startswith(prefix)}
        used_ema = True
    packed = checkpoint_header(
        meta=meta,
        model={k: v.detach().clone() for k, v in weights.items()},
        epoch=state.get("epoch"),
        metrics=state.get("metrics", {}),
        card=dict(card or {}, source=str(file), ema=used_ema),
    )
    save_checkpoint(dst, packed)
    return {"path": str(dst), "source": str(file), "ema": used_ema,
            "mb": Path(dst).stat().st_size / 2**20}  # fmt: skip
