"""The task protocol: the one object the engine, eval, export and predict ask.

A task is a small stateless object (one instance per task). The engine stays
generic: it is handed ``task.build_model(...)``, ``task.build_loss(...)``, loaders
that use ``task.collate`` and ``task.evaluate`` (ultralytics maps a task name to its
model, trainer, validator and predictor; here one object carries the functions).
The data hooks (``data_size``, ``split_length``, ``build_loaders``) read scene datasets;
``task=read`` overrides them for crop datasets.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

DEFAULT_TASK = "localize"


class Task:
    """Base class; subclasses fill the class attributes and the methods.

    Attributes:
        name: the ``task`` key's value.
        monitor: the metric that ranks checkpoints by default (higher is better).
        loss_class: the loss module; its constructor arguments are the ``loss.*`` keys.
        output_names: the exported graph's outputs, in order.
    """

    name: ClassVar[str]
    monitor: ClassVar[str]
    loss_class: ClassVar[type[nn.Module]]
    output_names: ClassVar[tuple[str, ...]]

    def loss_keys(self) -> tuple[str, ...]:
        """The ``loss.*`` config keys: the loss constructor's own arguments."""
        return tuple(inspect.signature(self.loss_class).parameters)

    def build_loss(self, kwargs: dict[str, Any] | None = None) -> nn.Module:
        return self.loss_class(**(kwargs or {}))

    def build_model(self, name: str, **kwargs: Any) -> nn.Module:
        """The registry backbone ``name`` with this task's head (``None`` kwargs dropped).

        Raises:
            PlatelabError: ``name`` builds a model of another task (a recogniser here).
        """
        from platelab.errors import PlatelabError
        from platelab.models import create_model

        model = create_model(name, **self.model_kwargs(), **kwargs)
        own = getattr(model, "task", DEFAULT_TASK)
        if own != self.name:
            raise PlatelabError(f"model '{name}' is a task={own} model, not task={self.name}")
        return model

    def model_kwargs(self) -> dict[str, Any]:
        """What :meth:`build_model` adds to ``create_model``'s arguments."""
        return {}

    def collate(
        self, samples: Sequence[Any], canvas: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def collate_for(self, model: nn.Module) -> Any:
        """The collate function for batches fed to ``model`` (default :meth:`collate`)."""
        return self.collate

    # -- data: scene datasets here; a task reading other data overrides these ----------
    def data_size(self, dataset: Path) -> tuple[int, int]:
        """The ``(W, H)`` of a prepared dataset's images (its canvas)."""
        from platelab.data.manifest import dataset_canvas

        return dataset_canvas(Path(dataset))

    def split_length(self, dataset: Path, split: str) -> int:
        """How many items a split of a prepared dataset holds."""
        from platelab.data.manifest import load_split

        return len(load_split(Path(dataset), split))

    def build_loaders(
        self, cfg: Any, canvas: tuple[int, int], size: tuple[int, int], model: nn.Module
    ) -> tuple[Any, Any]:
        """The augmented, sharded training stream and the sharded, ordered validation stream
        of ``cfg.data`` for ``model``, batches letterboxed from ``canvas`` to ``size``."""
        from platelab.data.resize import ResizedLoader
        from platelab.data.stream import build_loader
        from platelab.engine import distributed as dist

        common = dict(workers=cfg.workers, seed=cfg.seed, collate_fn=self.collate_for(model))
        train_kw = dict(augment=cfg.augment, shuffle=True, even=dist.world_size() > 1, **common)
        train: Any = build_loader(cfg.data, "train", cfg.batch_size, drop_last=True, **train_kw)
        if len(train) == 0:  # fewer images per worker than a batch: keep the remainder
            train = build_loader(cfg.data, "train", cfg.batch_size, **train_kw)
        # Sharded like training (not PlateDataset): evaluate gathers the ranks' shards by index.
        val: Any = build_loader(cfg.data, "val", cfg.batch_size, shuffle=False, **common)
        if size != canvas:
            train, val = ResizedLoader(train, canvas, size), ResizedLoader(val, canvas, size)
        return train, val

    def evaluate(
        self,
        model: nn.Module,
        loader: Iterable,
        device: str | torch.device = "cpu",
        amp_dtype: torch.dtype | None = None,
        loss_fn: Any = None,
        collect: bool = False,
    ) -> Any:
        """``dict[str, float]`` of metrics (and per-image records with ``collect``)."""
        raise NotImplementedError

    def metric_names(self, loss_fn: nn.Module) -> set[str]:
        """Every key an epoch's metrics row can hold, for checking ``monitor`` up front."""
        raise NotImplementedError


class EvalTally:
    """The forward passes of one evaluation: images seen, forward seconds, loss sums.

    :meth:`batches` runs the model over a loader in eval mode under ``inference_mode``
    (autocast when ``amp_dtype`` is given), times the forward pass alone, adds the
    loss terms (weighted by batch size) and yields ``(outputs, targets)`` for the
    task's decode; :meth:`finish` adds ``val_fps`` and ``val_<term>`` (summed over DDP
    ranks) to the task's metrics. The detector and the recogniser share it.
    """

    def __init__(self, device: str | torch.device = "cpu", amp_dtype=None, loss_fn=None) -> None:
        self.device = torch.device(device)
        self.amp_dtype, self.loss_fn = amp_dtype, loss_fn
        self.n, self.forward_s = 0, 0.0
        self.loss_sums: dict[str, float] = {}

    def batches(self, model: nn.Module, loader: Iterable) -> Iterator[tuple[Any, Any]]:
        import time

        from platelab.engine.trainer import to_device

        device, amp = self.device, self.amp_dtype
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for images, targets in loader:
                    images = images.to(device, non_blocking=True)
                    start = time.perf_counter()
                    with torch.autocast(device.type, amp, enabled=amp is not None):
                        outputs = model(images)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    self.forward_s += time.perf_counter() - start
                    b = images.shape[0]
                    if self.loss_fn is not None:
                        for k, v in self.loss_fn(outputs, to_device(targets, device)).items():
                            self.loss_sums[k] = self.loss_sums.get(k, 0.0) + float(v) * b
                    self.n += b
                    yield outputs, targets
        finally:
            model.train(was_training)

    def finish(self, metrics: dict[str, float]) -> dict[str, float]:
        """``metrics`` plus ``val_fps`` (this process) and the mean loss terms (all ranks)."""
        from platelab.engine import distributed

        metrics["val_fps"] = self.n / self.forward_s if self.forward_s > 0 else 0.0
        if self.loss_fn is not None:
            totals = distributed.all_gather_object((self.loss_sums, self.n))
            n_all = max(sum(t[1] for t in totals), 1)
            for k in self.loss_sums:
                metrics[f"val_{k}"] = sum(t[0].get(k, 0.0) for t in totals) / n_all
            metrics.setdefault("val_loss", float("nan"))
        return metrics


def gather_records(records: list[dict]) -> list[dict]:
    """Every rank's per-image records, by ``index``, each index once (a no-op in one process)."""
    from platelab.engine import distributed

    if not distributed.is_distributed():
        return records
    merged = [r for part in distributed.all_gather_object(records) for r in part]
    return list({r["index"]: r for r in sorted(merged, key=lambda r: r["index"])}.values())
