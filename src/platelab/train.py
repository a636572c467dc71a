"""``platelab train``: a task on the generic engine.

``train(cfg)`` asks the task (``cfg.task``, :mod:`platelab.tasks`) for the model, the
loss, the evaluation and the loaders (the augmented training stream and the validation
stream of a prepared dataset, batched by the task's collate), writes ``RUN/hparams.yaml`` and hands
all of it to :class:`~platelab.engine.trainer.Trainer`. Rebuilding a trained model from
its checkpoint is :func:`platelab.models.weights.load_model_from_checkpoint`.
"""

from __future__ import annotations

import gc
import logging
import os
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from platelab.atomic import atomic_write_bytes
from platelab.engine import distributed as dist
from platelab.engine.checkpoint import BEST_PATTERN, LAST, find_checkpoint, seed_everything
from platelab.engine.trainer import Trainer, resolve_device
from platelab.errors import PlatelabError
from platelab.geometry import parse_size
from platelab.locking import folder_lock
from platelab.models.weights import checkpoint_meta, read_model_checkpoint
from platelab.tasks import Task, get_task

if TYPE_CHECKING:
    from torch import nn

    from platelab.config import TrainConfig

log = logging.getLogger(__name__)


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


def _check_monitor(monitor: str, task: Task, loss_fn: nn.Module) -> None:
    """Fail before training, not after the first epoch, on a monitor no epoch will report."""
    from platelab.config import closest_key

    names = task.metric_names(loss_fn)
    if monitor not in names:
        hint = closest_key(monitor, sorted(names))
        hint = f"; did you mean '{hint}'?" if hint else f"; choose from {', '.join(sorted(names))}"
        raise PlatelabError(f"monitor '{monitor}' is not a metric{hint}")


def _monitor_without_val(cfg: TrainConfig, task: Task) -> TrainConfig:
    """With an empty validation split, rank the best epochs by ``train_loss`` and say so.

    Every validation metric of an empty split is 0 (or NaN), so the "best" epochs would
    be an accident of tie-breaking. A run still trains (a dataset may hold only a
    training split), but ``monitor`` becomes ``train_loss`` (lower is better), logged as a
    warning and recorded in ``hparams.yaml``. A ``train_*`` monitor is kept as it is.
    """
    if cfg.monitor.startswith("train_") or task.split_length(Path(cfg.data), "val"):
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
    state = None
    task = get_task(cfg.task)
    canvas = task.data_size(Path(cfg.data))  # also: "not a prepared dataset"
    size = parse_size(cfg.size) if cfg.size else canvas
    loss_fn = task.build_loss(cfg.loss)
    _check_monitor(cfg.monitor, task, loss_fn)
    check_model_name(cfg.model)  # before the lock creates the run folder
    if resume is not None:
        last = find_checkpoint(resume, "last")  # a run folder: checked before it is locked
        cfg = cfg.model_copy(update={"out": Path(resume)})
    with _lock_run(Path(cfg.out)):
        if resume is not None:
            state, meta = read_model_checkpoint(last, cfg.model)
            if (meta.get("task") or "localize") != task.name:
                raise PlatelabError(f"{last} holds a '{meta.get('task')}' model, not {task.name}")
            _check_resume_keys(cfg, state.get("hparams") or {})
        return _train_locked(cfg, state, canvas, size, task, loss_fn)


def _train_locked(
    cfg: TrainConfig,
    state: dict | None,
    canvas: tuple[int, int],
    size: tuple[int, int],
    task: Task,
    loss_fn: nn.Module,
) -> Path:
    """:func:`train`'s work, once the run folder is locked and ``state`` read."""
    from platelab.config import dump_config
    from platelab.models import create_model

    run_dir = Path(cfg.out)
    cfg = _monitor_without_val(cfg, task)
    interrupted = False
    joined = dist.init_distributed(resolve_device(cfg.device).type)
    try:
        if state is None:
            _prepare_run_dir(run_dir, cfg.exist_ok)
        seed_everything(cfg.seed)
        if state is None:
            model = task.build_model(cfg.model, pretrained=cfg.pretrained, weights=cfg.weights)
        else:  # the checkpoint's architecture; its weights replace any starting weights
            model = create_model(cfg.model, **state["meta"].get("model_kwargs", {}))
        train_loader, val_loader = task.build_loaders(cfg, canvas, size, model)
        meta = checkpoint_meta(model, size, cfg.data)
        if dist.is_primary():
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run_dir / "hparams.yaml", dump_config(cfg).encode("utf-8"))
        trainer = Trainer(cfg, model, loss_fn, train_loader, val_loader, task.evaluate, meta=meta)
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
