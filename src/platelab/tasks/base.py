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
from collections.abc import Iterable, Sequence
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
