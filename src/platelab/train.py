"""The plate task on the generic engine: model, loaders, loss and evaluator for ``platelab train``.

``train(cfg)`` builds the registry model, the augmented training stream and the
validation stream of a prepared dataset, :class:`~platelab.models.LocalizationLoss`
and :func:`~platelab.eval.metrics.evaluate`, writes ``RUN/hparams.yaml`` and hands all
of it to :class:`~platelab.engine.trainer.Trainer`. ``load_model_from_checkpoint``
rebuilds a trained model from its checkpoint file alone.

Imports of the data and model packages are local to the functions: ``predict`` and
``export`` load checkpoints without paying for the augmentation stack.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from platelab.atomic import atomic_write_bytes
from platelab.engine import distributed as dist
from platelab.engine.checkpoint import (
    BEST_PATTERN,
    LAST,
    find_checkpoint,
    load_checkpoint,
    seed_everything,
)
from platelab.engine.trainer import Trainer, resolve_device
from platelab.errors import PlatelabError
from platelab.geometry import PAD_VALUE, Letterbox, parse_size, resized_size
from platelab.locking import folder_lock

if TYPE_CHECKING:
    from torch import nn

    from platelab.config import TrainConfig

log = logging.getLogger(__name__)


class ResizedLoader:
    """Letterboxes every ``(images, targets)`` batch of a loader into another canvas.

    For ``size=WxH`` runs on a dataset prepared at another canvas. Images are resized
    with antialiasing and padded with the dataset's pad value; ``boxes_xyxy``,
    ``all_boxes_xyxy`` and ``boxes_norm_xyxy`` are mapped with the same
    :class:`~platelab.geometry.Letterbox` (negatives keep all-zero boxes).
    ``set_epoch`` and ``len()`` pass through to the wrapped loader.
    """

    def __init__(self, loader: Iterable, src: tuple[int, int], dst: tuple[int, int]) -> None:
        self.loader, self.dst = loader, dst
        self.dataset = getattr(loader, "dataset", None)
        self.lb = Letterbox.fit(src[0], src[1], dst[0], dst[1])
        self.new_w, self.new_h = resized_size(src[0], src[1], self.lb.scale)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict]]:
        for images, targets in self.loader:
            yield self.resize(images, targets)

    def _boxes(self, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        mapped = self.lb.boxes_to_canvas(boxes_xyxy.numpy().reshape(-1, 4))
        return torch.from_numpy(mapped.astype(np.float32)).reshape(boxes_xyxy.shape)

    def resize(self, images: torch.Tensor, targets: dict) -> tuple[torch.Tensor, dict]:
        """``images`` uint8 ``[B, 3, H, W]`` of the source canvas -> ``[B, 3, h, w]`` of ``dst``."""
        lb, (w, h) = self.lb, self.dst
        small = F.interpolate(
            images.float(),
            size=(self.new_h, self.new_w),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        out = torch.full((images.shape[0], 3, h, w), PAD_VALUE, dtype=torch.uint8)
        out[:, :, lb.pad_y : lb.pad_y + self.new_h, lb.pad_x : lb.pad_x + self.new_w] = (
            small.round().clamp(0, 255).to(torch.uint8)
        )
        t = dict(targets)
        has = t["has_plate"].reshape(-1, 1)
        t["boxes_xyxy"] = self._boxes(t["boxes_xyxy"]) * has
        t["boxes_norm_xyxy"] = t["boxes_xyxy"] / torch.tensor([w, h, w, h], dtype=torch.float32)
        t["all_boxes_xyxy"] = [self._boxes(b) for b in t["all_boxes_xyxy"]]
        return out, t


def _prepare_run_dir(run_dir: Path, exist_ok: bool) -> None:
    """Refuse to mix two runs in one folder unless ``exist_ok`` (then the old run is removed)."""
    if not ((run_dir / LAST).exists() or (run_dir / "metrics.csv").exists()):
        return
    if not exist_ok:
        raise PlatelabError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
            "choose another out=, or pass exist_ok=true to start it afresh"
        )
    dist.barrier()  # every rank has looked before the primary deletes
    if dist.is_primary():
        old = [run_dir / LAST, run_dir / "metrics.csv", *run_dir.glob(BEST_PATTERN.format("*"))]
        old += run_dir.glob("events.out.tfevents.*")  # else TensorBoard overlays both runs
        for f in old:
            f.unlink(missing_ok=True)


def _check_monitor(monitor: str, loss_fn: nn.Module) -> None:
    """Fail before training, not after the first epoch, on a monitor no epoch will report."""
    from platelab.config import closest_key
    from platelab.eval.metrics import summarize

    box = torch.tensor([[0.2, 0.2, 0.6, 0.5]])
    terms = loss_fn(
        {"boxes_norm_xyxy": box, "logits": torch.zeros(1)},
        {"boxes_norm_xyxy": box, "has_plate": torch.ones(1)},
    )
    names = {*summarize([], np.zeros((0, 4)), []), "val_fps", *Trainer.ROW_KEYS}
    names |= {f"{split}_{t}" for t in terms for split in ("train", "val")}
    if monitor not in names:
        hint = closest_key(monitor, sorted(names))
        hint = f"; did you mean '{hint}'?" if hint else f"; choose from {', '.join(sorted(names))}"
        raise PlatelabError(f"monitor '{monitor}' is not a metric{hint}")


def _loaders(cfg: TrainConfig, canvas: tuple[int, int], size: tuple[int, int]) -> tuple:
    """The augmented, sharded training stream and the sharded, ordered validation stream."""
    from platelab.data.stream import build_loader

    common = dict(workers=cfg.workers, seed=cfg.seed)
    train_kw = dict(augment=cfg.augment, shuffle=True, even=dist.world_size() > 1, **common)
    train_loader: Any = build_loader(cfg.data, "train", cfg.batch_size, drop_last=True, **train_kw)
    if len(train_loader) == 0:  # fewer images per worker than a batch: keep the remainder
        train_loader = build_loader(cfg.data, "train", cfg.batch_size, **train_kw)
    # Sharded like training (not PlateDataset): evaluate gathers the ranks' shards by index.
    val_loader: Any = build_loader(cfg.data, "val", cfg.batch_size, shuffle=False, **common)
    if size != canvas:
        train_loader = ResizedLoader(train_loader, canvas, size)
        val_loader = ResizedLoader(val_loader, canvas, size)
    return train_loader, val_loader


def _monitor_without_val(cfg: TrainConfig) -> TrainConfig:
    """With an empty validation split, rank the best epochs by ``train_loss`` and say so.

    Every validation metric of an empty split is 0 (or NaN), so the "best" epochs would
    be an accident of tie-breaking. A run still trains (a dataset may hold only a
    training split), but ``monitor`` becomes ``train_loss`` (lower is better), logged as a
    warning and recorded in ``hparams.yaml``. A ``train_*`` monitor is kept as it is.
    """
    from platelab.data.manifest import load_split

    if cfg.monitor.startswith("train_") or load_split(Path(cfg.data), "val"):
        return cfg
    log.warning(
        "%s has an empty val split: monitoring train_loss instead of %s, so "
        "best_model_epoch_N.pth are the epochs of lowest training loss",
        cfg.data,
        cfg.monitor,
    )
    return cfg.model_copy(update={"monitor": "train_loss"})


def check_model_name(name: str) -> None:
    """The registry's one-line error (close matches suggested) for an unknown ``name``,
    without building the model; ``timm/`` names are checked when they are built."""
    from platelab.models import create_model, list_models

    if name not in list_models() and not name.startswith("timm/"):
        create_model(name)  # raises


def _lock_run(run_dir: Path) -> ExitStack:
    """Hold the run folder's lock (primary process only) until the stack closes.

    A second ``platelab train`` into the same folder fails at once with one line,
    instead of interleaving ``metrics.csv`` rows and checkpoints with the first. Under
    torchrun only global rank 0 locks (the other ranks write nothing).
    """
    stack = ExitStack()
    if int(os.environ.get("RANK", "0")) == 0:
        stack.enter_context(folder_lock(run_dir, "training run"))
    return stack


def train(cfg: TrainConfig, resume: Path | str | None = None) -> Path:
    """Train ``cfg.model`` on the prepared dataset ``cfg.data`` into the run folder.

    Args:
        cfg: the resolved config (``platelab.config.load_config``).
        resume: a run folder to continue from its ``last.pth`` (``cfg.out`` is set to
            it); ``cfg`` is then usually ``load_run_config(RUN, overrides)``.

    Returns:
        The run folder.

    An empty validation split makes the run monitor ``train_loss`` (with a warning; see
    :func:`_monitor_without_val`).

    Raises:
        PlatelabError: a missing dataset, an unknown model, a run folder that already
            holds a run or that another process is training into (the folder is locked
            for the whole run), a resume checkpoint of another model, a non-finite
            loss, a full disk (:class:`~platelab.errors.DiskFullError`), ...
        KeyboardInterrupt: Ctrl-C, re-raised once the trainer has logged how to resume;
            ``last.pth`` holds the last finished epoch (the interrupted one is lost).
    """
    from platelab.data.manifest import dataset_canvas
    from platelab.models import LocalizationLoss

    state = None
    canvas = dataset_canvas(Path(cfg.data))  # also: "not a prepared dataset"
    size = parse_size(cfg.size) if cfg.size else canvas
    loss_fn = LocalizationLoss(**cfg.loss)
    _check_monitor(cfg.monitor, loss_fn)
    check_model_name(cfg.model)  # before the lock creates the run folder
    if resume is not None:
        last = find_checkpoint(resume, "last")  # a run folder: checked before it is locked
        cfg = cfg.model_copy(update={"out": Path(resume)})
    with _lock_run(Path(cfg.out)):
        if resume is not None:
            state, _ = _read_model_checkpoint(last, cfg.model)
            _check_resume_keys(cfg, state.get("hparams") or {})
        return _train_locked(cfg, state, canvas, size, loss_fn)


def _train_locked(
    cfg: TrainConfig,
    state: dict | None,
    canvas: tuple[int, int],
    size: tuple[int, int],
    loss_fn: nn.Module,
) -> Path:
    """:func:`train`'s work, once the run folder is locked and ``state`` read."""
    from platelab.config import dump_config
    from platelab.eval.metrics import evaluate
    from platelab.models import create_model

    run_dir = Path(cfg.out)
    cfg = _monitor_without_val(cfg)
    interrupted = False
    joined = dist.init_distributed(resolve_device(cfg.device).type)
    try:
        if state is None:
            _prepare_run_dir(run_dir, cfg.exist_ok)
        seed_everything(cfg.seed)
        if state is None:
            model = create_model(cfg.model, pretrained=cfg.pretrained, weights=cfg.weights)
        else:  # the checkpoint's architecture; its weights replace any starting weights
            model = create_model(cfg.model, **state["meta"].get("model_kwargs", {}))
        train_loader, val_loader = _loaders(cfg, canvas, size)
        meta = checkpoint_meta(model, size, cfg.data)
        if dist.is_primary():
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run_dir / "hparams.yaml", dump_config(cfg).encode("utf-8"))
        trainer = Trainer(cfg, model, loss_fn, train_loader, val_loader, evaluate, meta=meta)
        if state is not None:
            trainer.restore(state)
            del state
        try:
            result = trainer.fit()
        except KeyboardInterrupt:  # raised again below, once DDP and the loaders are gone
            interrupted, result = True, None
        if result is not None and dist.is_primary() and result.best_epoch is not None:
            log.info(
                "run %s: best %s %.4f at epoch %d",
                run_dir,
                cfg.monitor,
                result.best_value,
                result.best_epoch,
            )
        del trainer, train_loader, val_loader  # loader workers and DDP go before the group
        gc.collect()
    finally:
        if joined:
            dist.cleanup()
    if interrupted:  # the caller (CLI: exit 130; compare: stop) must not take it as finished
        raise KeyboardInterrupt
    return run_dir


def _read_model_checkpoint(file: Path, expect_model: str | None) -> tuple[dict, dict]:
    """``(state, meta)`` of a platelab model checkpoint, refusing one of another model."""
    state = load_checkpoint(file)
    meta = state.get("meta") or {}
    name = meta.get("model")
    if not name or "model" not in state:
        raise PlatelabError(f"{file} holds no platelab model")
    if expect_model is not None and name != expect_model:
        raise PlatelabError(f"checkpoint {file} holds model '{name}', not '{expect_model}'")
    return state, meta


# The optimiser and its schedule come back from the checkpoint on resume, so these keys
# cannot change there; a new value would be written to hparams.yaml but not used.
FIXED_ON_RESUME = ("lr", "weight_decay")


def _check_resume_keys(cfg: TrainConfig, saved: dict) -> None:
    changed = [k for k in FIXED_ON_RESUME if k in saved and saved[k] != getattr(cfg, k)]
    if changed:
        was = ", ".join(f"{k}={saved[k]}" for k in changed)
        raise PlatelabError(
            f"a resumed run keeps its optimiser and schedule ({was}); start a new run "
            f"(out=...) with weights=RUN/last.pth to change {', '.join(changed)}"
        )


def checkpoint_meta(
    model: nn.Module, input_size: tuple[int, int], dataset: Path | str | None = None
) -> dict:
    """The ``meta`` a checkpoint carries so that :func:`load_model_from_checkpoint` (and
    eval, predict, export) can rebuild ``model`` from the file alone: its registry name and
    arguments, the canvas ``(W, H)`` it was trained on, its normalisation, its dataset."""
    meta = {
        "model": model.name,
        "model_kwargs": dict(model.config),
        "input_size": [int(input_size[0]), int(input_size[1])],
        "mean": model.mean.flatten().tolist(),
        "std": model.std.flatten().tolist(),
    }
    if dataset is not None:
        meta["dataset"] = str(dataset)
    return meta


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
        ``model_kwargs``, ``input_size`` ``(W, H)`` of the canvas it was trained on,
        ``mean``, ``std``, ``epoch``, ``metrics`` and ``path`` (the file read).

    Raises:
        PlatelabError: missing or corrupt file, not a platelab model checkpoint, a model
            other than ``expect_model``, or weights that do not fit the rebuilt model.
    """
    from platelab.models import create_model
    from platelab.models.backbones import load_strict

    file = find_checkpoint(path, "best")
    state, meta = _read_model_checkpoint(file, expect_model)
    name = meta["model"]
    model = create_model(name, **meta.get("model_kwargs", {}))
    weights = state["model"]
    if ema and state.get("ema"):
        prefix = "module."
        weights = {k[len(prefix) :]: v for k, v in state["ema"].items() if k.startswith(prefix)}
    load_strict(model, weights, f"checkpoint {file} of model '{name}'")
    info = {k: meta.get(k) for k in ("model", "model_kwargs", "input_size", "mean", "std")}
    info["input_size"] = tuple(info["input_size"]) if info["input_size"] else None
    info.update(epoch=state.get("epoch"), metrics=state.get("metrics", {}), path=file)
    return model.to(device).eval(), info
