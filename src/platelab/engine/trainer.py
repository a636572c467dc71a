"""A generic training loop: AdamW, per-step LR schedule, AMP, EMA, DDP, resume, checkpoints.

Nothing here is about plates (minGPT's trainer says the same of GPT). The trainer is
handed a model, a loss function, two loaders and an evaluate function:

* a batch is ``(inputs, targets)``; tensors anywhere inside are moved to the device;
* ``loss_fn(model(inputs), targets)`` returns a dict with a scalar ``"loss"``; every
  other scalar term is averaged over the epoch and logged as ``train_<term>``;
* ``evaluate_fn(model, val_loader, device=..., amp_dtype=..., loss_fn=...)`` returns
  ``dict[str, float]``; under DDP it must gather over ranks so every rank returns the
  same dict (the trainer only barrier-syncs).

Per epoch: train, evaluate, append a ``metrics.csv`` row, write ``last.pth``
atomically, rotate the top-k ``best_model_epoch_{N}.pth`` (primary rank only).
"""

from __future__ import annotations

import copy
import io
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from platelab.engine import distributed as dist
from platelab.engine.checkpoint import (
    CheckpointSaver,
    capture_rng_state,
    checkpoint_header,
    restore_rng_state,
)
from platelab.engine.config import EngineConfig, monitor_mode
from platelab.engine.logging import MetricsCSV, open_tensorboard
from platelab.engine.optim import build_optimizer, build_scheduler
from platelab.errors import PlatelabError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a device that exists here.

    ``auto`` is CUDA when available, else the CPU; a bare ``cuda`` is this process's
    ``LOCAL_RANK`` GPU (one per torchrun process). Training, eval and the Predictor all
    resolve devices here.

    Raises:
        PlatelabError: an unknown name, or CUDA asked for on a machine without a GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise PlatelabError(f"unknown device '{name}'; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PlatelabError(f"device={name} but no CUDA GPU is available; use device=cpu")
        return dev if dev.index is not None else torch.device("cuda", dist.local_rank())
    return dev


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, c, lambda: False)() for c in checks)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None = full precision).

    ``auto`` is fp16 on CUDA and full precision on CPU: measured on an AVX512-BF16 CPU
    (2 threads, 320x240), bf16 autocast *training* ran at 0.55-0.85x the fp32 speed for
    mobilenet_v3_small, dwsep_small and resnet18 alike, so it is opt-in (``amp=bf16``).
    The ``crnn`` recogniser (128x32 crops, batch 64) is the exception: 1.5x faster in bf16
    (6.4 against 4.3 steps/s, ``benchmarks/read_transfer.py --amp bf16``).
    """
    if amp == "off":
        return None
    if device.type == "cuda":
        if amp == "bf16" and not torch.cuda.is_bf16_supported():
            raise PlatelabError("amp=bf16: this GPU has no bfloat16; use amp=fp16")
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "fp16":
        raise PlatelabError("amp=fp16 needs a CUDA device; use amp=bf16 or amp=off on CPU")
    if amp == "bf16":
        if not cpu_supports_bf16():
            log.warning("amp=bf16: this CPU emulates bfloat16, expect a slow run")
        return torch.bfloat16
    return None


def to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move every tensor in nested dicts/lists/tuples to ``device``; 4-D tensors to
    channels_last when asked (the top level only: targets keep their layout)."""
    if isinstance(obj, torch.Tensor):
        if channels_last and obj.ndim == 4:
            return obj.to(device, memory_format=torch.channels_last, non_blocking=True)
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def _set_epoch(loader: Any, epoch: int) -> None:
    """Tell a loader's dataset/sampler the epoch, for a shuffle that agrees across ranks."""
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


class _Limited:
    """The first ``n`` batches of a loader, with a length."""

    def __init__(self, loader: Iterable, n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self):
        return islice(iter(self.loader), self.n)

    def __len__(self) -> int:
        try:
            return min(self.n, len(self.loader))
        except TypeError:
            return self.n


def ema_with_warmup(decay: float) -> Callable:
    """An EMA update for ``AveragedModel`` whose decay ramps up: ``min(decay, (1 + n) / (10 + n))``.

    With a fixed 0.999 an average after 450 steps still holds 64% of the random
    initial weights, so a short run's early evaluations (and best-epoch ranking) say
    nothing; the ramp (TensorFlow's and timm's classic warm-up) follows the weights
    closely at first and reaches ``decay`` after about ``10 / (1 - decay)`` steps.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        get_ema_multi_avg_fn(d)(averaged, current, n)

    return update


def weights_size_mb(model: nn.Module) -> float:
    """Size of ``model``'s state_dict as ``torch.save`` writes it, in MB (1e6 bytes)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 1e6


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` did."""

    run_dir: Path
    last_epoch: int  # the last epoch saved in last.pth (0: none)
    best_epoch: int | None
    best_value: float | None


class Trainer:
    """Trains ``model`` with ``loss_fn`` on ``train_loader``, evaluating on ``val_loader``.

    Args:
        cfg: the engine's keys (a ``TrainConfig`` is one).
        model: any module; moved to the device here.
        loss_fn: ``(outputs, targets) -> {"loss": scalar, ...}``.
        train_loader: yields ``(inputs, targets)``; needs ``len()`` unless
            ``max_train_batches`` is set. Under DDP each rank must get its own shard.
        val_loader: what ``evaluate_fn`` iterates.
        evaluate_fn: ``(model, loader, device=, amp_dtype=, loss_fn=) -> dict[str, float]``.
        meta: plain data stored as the checkpoint's ``meta`` (what rebuilds the model).
    """

    # What each metrics.csv row holds besides the evaluation's metrics and the loss terms.
    ROW_KEYS = ("lr", "train_img_per_s", "train_steady_img_per_s", "params", "model_size_mb")
    ROW_KEYS += ("epoch_time_s",)

    def __init__(
        self,
        cfg: EngineConfig,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], dict],
        train_loader: Iterable,
        val_loader: Iterable,
        evaluate_fn: Callable[..., dict[str, float]],
        meta: dict | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.device = resolve_device(cfg.device)
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.loss_fn, self.evaluate_fn, self.meta = loss_fn, evaluate_fn, meta or {}
        self.train_loader = train_loader
        self.val_loader = (
            _Limited(val_loader, cfg.max_val_batches) if cfg.max_val_batches else val_loader
        )

        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = None
        if cfg.ema:
            avg = ema_with_warmup(cfg.ema_decay)
            self.ema = AveragedModel(self.model, multi_avg_fn=avg, use_buffers=True)
        self.optimizer = build_optimizer(self.model, cfg)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)  # no-op unless fp16

        self.eval_net: nn.Module = torch.compile(self.model) if cfg.compile else self.model
        self.net: nn.Module = self.eval_net
        if dist.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.eval_net, device_ids=ids)

        self.start_epoch, self.step, self.saved_epoch = 1, 0, 0
        self._saver_state: dict | None = None
        self._rng_state: list | None = None

    def _steps_per_epoch(self) -> int:
        try:
            n = len(self.train_loader)  # type: ignore[arg-type]
        except TypeError:
            n = None
        if self.cfg.max_train_batches:
            n = min(n, self.cfg.max_train_batches) if n is not None else self.cfg.max_train_batches
        if n is None:
            raise PlatelabError("the training loader has no length; set max_train_batches")
        if n == 0:
            raise PlatelabError(
                "the training loader yields no batches (fewer samples than a batch?)"
            )
        return n

    # -- resume -----------------------------------------------------------------
    def restore(self, state: dict) -> None:
        """Continue from a checkpoint written by this trainer: weights, optimiser, scheduler,
        scaler, EMA, step count, best-k list and (at the start of :meth:`fit`) RNG states.

        Raises:
            PlatelabError: the run already reached ``cfg.epochs``.
        """
        done = int(state["epoch"])
        if done >= self.cfg.epochs:
            raise PlatelabError(
                f"{self.run_dir} already finished {done} epochs; pass epochs=N with N > {done}"
            )
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # EMA switched on at resume: start it from the current weights
                self.ema.module.load_state_dict(self.model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.step, self.saved_epoch = done + 1, int(state["step"]), done
        self._saver_state = state.get("saver")
        self._rng_state = state.get("rng")

    # -- one epoch --------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, self.amp_dtype, enabled=self.amp_dtype is not None)

    def _next_batch(self, it) -> Any | None:
        batch = next(it, None)
        if dist.is_distributed():  # every rank stops when the shortest shard ends
            have = torch.tensor(float(batch is not None), device=self.device)
            if dist.all_reduce_mean(have).item() < 1:
                return None
        return batch

    def train_one_epoch(self, epoch: int, tb: Any = None) -> dict[str, float]:
        """One pass over the training loader.

        Returns ``lr``, ``train_*`` (the loss terms), ``train_img_per_s`` (the whole
        epoch) and ``train_steady_img_per_s`` (after the first step, which pays for
        warm-up and the loader's start).
        """
        self.net.train()
        _set_epoch(self.train_loader, epoch)
        sums: dict[str, float] = {}
        images, lr = 0, self.optimizer.param_groups[0]["lr"]
        warm_images, warm_t = 0, 0.0
        clip = self.cfg.grad_clip
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}/{self.cfg.epochs}",
            disable=not dist.is_primary(),
            leave=False,
            dynamic_ncols=True,
        )
        start = time.perf_counter()
        it = iter(self.train_loader)
        try:
            for i in range(self.steps_per_epoch):
                batch = self._next_batch(it)
                if batch is None:
                    break
                inputs = to_device(batch[0], self.device, self.cfg.channels_last)
                targets = to_device(batch[1], self.device)
                with self._autocast():
                    terms = self.loss_fn(self.net(inputs), targets)
                loss = terms["loss"]
                value = dist.all_reduce_mean(loss.detach().float()).item()
                if not math.isfinite(value):
                    detail = ", ".join(f"{k}={float(v):.4g}" for k, v in _scalars(terms).items())
                    raise PlatelabError(
                        f"loss is {value} at epoch {epoch}, step {i + 1} ({detail}); try a lower "
                        f"lr (now {lr:.3g}), grad_clip=1.0 or amp=off"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if clip:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                self.step += 1
                n = inputs.shape[0] if isinstance(inputs, torch.Tensor) else len(inputs)
                images += n
                for k, v in _scalars(terms).items():
                    sums[k] = sums.get(k, 0.0) + v * n
                if i == 0:  # the first step pays for warm-up: the steady rate starts here
                    warm_images, warm_t = images, time.perf_counter()
                bar.update()
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", refresh=False)
                if tb is not None and self.step % self.cfg.log_every == 0:
                    tb.add_scalar("step/loss", value, self.step)
                    tb.add_scalar("step/lr", lr, self.step)
        finally:
            bar.close()
        elapsed = time.perf_counter() - start
        totals = dist.all_reduce_sum(torch.tensor([images, *sums.values()], dtype=torch.float64))
        count = max(totals[0].item(), 1.0)
        out = {"lr": lr}
        out.update(
            {f"train_{k}": s / count for k, s in zip(sums, totals[1:].tolist(), strict=True)}
        )
        out["train_img_per_s"] = totals[0].item() / elapsed if elapsed > 0 else 0.0
        # After the first step (warm-up, loader start); the whole epoch's rate if one step.
        steady_s, steady = start + elapsed - warm_t, images - warm_images
        out["train_steady_img_per_s"] = (
            steady * dist.world_size() / steady_s if steady > 0 and steady_s > 0
            else out["train_img_per_s"]
        )  # fmt: skip
        return out

    # -- the loop ---------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train from ``start_epoch`` to ``cfg.epochs``.

        Ctrl-C: ``last.pth`` keeps the last finished epoch; the interruption is logged
        with how to resume, then ``KeyboardInterrupt`` propagates to the caller.
        """
        primary = dist.is_primary()
        saver = csv = tb = None
        if primary:
            saver = CheckpointSaver(
                self.run_dir, self.cfg.keep_best, self.cfg.monitor, monitor_mode(self.cfg.monitor)
            )
            if self._saver_state:
                saver.load_state_dict(self._saver_state)
            saver.last_epoch = self.saved_epoch
            csv = MetricsCSV(self.run_dir / "metrics.csv", start_epoch=self.start_epoch)
            tb = open_tensorboard(self.run_dir) if self.cfg.tensorboard else None
        if self._rng_state:  # last, so nothing between here and the first batch draws
            mine = self._rng_state[dist.rank()] if dist.rank() < len(self._rng_state) else None
            restore_rng_state(mine or self._rng_state[0])
        params = sum(p.numel() for p in self.model.parameters())
        size_mb = weights_size_mb(self.model)
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.cfg.epochs + 1):
                t0 = time.perf_counter()
                row: dict[str, Any] = {"epoch": epoch}
                train = self.train_one_epoch(epoch, tb)
                row |= {k: train.pop(k, math.nan) for k in ("lr", "train_loss")}
                metrics = self._evaluate()
                if "val_loss" in metrics:  # beside train_loss: the two columns read together
                    row["val_loss"] = metrics.pop("val_loss")
                row |= metrics
                row |= train | {"params": params, "model_size_mb": size_mb}
                row["epoch_time_s"] = time.perf_counter() - t0
                rng = dist.all_gather_object(capture_rng_state())
                if primary:
                    csv.append(row)
                    saver.save(epoch, row, self._state(epoch, row, rng))
                    self._log_epoch(row, saver, tb)
                self.saved_epoch = epoch
                dist.barrier()
        except KeyboardInterrupt:  # logged here, where the epoch is known; the caller decides
            if primary:
                held = f"holds epoch {self.saved_epoch}" if self.saved_epoch else "was not written"
                log.warning(
                    "interrupted in epoch %d; %s %s; continue with: platelab train --resume %s",
                    epoch,
                    self.run_dir / "last.pth",
                    held,
                    self.run_dir,
                )
            raise
        finally:
            if tb is not None:
                tb.close()
        return FitResult(
            run_dir=self.run_dir,
            last_epoch=self.saved_epoch,
            best_epoch=saver.best_epoch if saver else None,
            best_value=saver.best_value if saver else None,
        )

    def _evaluate(self) -> dict[str, float]:
        model = self.ema.module if self.ema is not None else self.eval_net
        metrics = self.evaluate_fn(
            model,
            self.val_loader,
            device=self.device,
            amp_dtype=self.amp_dtype,
            loss_fn=self.loss_fn,
        )
        dist.barrier()
        return {k: float(v) for k, v in metrics.items()}

    def _state(self, epoch: int, row: dict, rng: list) -> dict:
        return checkpoint_header(
            epoch=epoch,
            step=self.step,
            model=dist.unwrap(self.net).state_dict(),
            ema=self.ema.state_dict() if self.ema is not None else None,
            meta=copy.deepcopy(self.meta),
            metrics=dict(row),
            hparams=self.cfg.model_dump(mode="json"),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng,
        )

    def _log_epoch(self, row: dict, saver: CheckpointSaver, tb: Any) -> None:
        m = self.cfg.monitor
        log.info(
            "epoch %d/%d  train_loss %.4f  val_loss %.4f  %s %.4f  (best %.4f @ %s)  %.1fs",
            row["epoch"],
            self.cfg.epochs,
            row.get("train_loss", math.nan),
            row.get("val_loss", math.nan),
            m,
            row.get(m, math.nan),
            saver.best_value if saver.best_value is not None else math.nan,
            saver.best_epoch,
            row["epoch_time_s"],
        )
        if tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, int | float):
                    tb.add_scalar(f"epoch/{k}", v, row["epoch"])
            tb.flush()


def _scalars(terms: dict) -> dict[str, float]:
    """The scalar entries of a loss dict, as floats."""
    out = {}
    for k, v in terms.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v.detach())
        elif isinstance(v, int | float):
            out[k] = float(v)
    return out
