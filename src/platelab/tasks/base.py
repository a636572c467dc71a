"""The task protocol: the one object the engine, eval, export and predict ask.

A task is a small stateless object (one instance per task). The engine stays
generic: it is handed ``task.build_model(...)``, ``task.build_loss(...)``, loaders
that use ``task.collate`` and ``task.evaluate`` (ultralytics maps a task name to its
model, trainer, validator and predictor; here one object carries the functions).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
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
        """The registry backbone ``name`` with this task's head (``None`` kwargs dropped)."""
        from platelab.models import create_model

        return create_model(name, **self.model_kwargs(), **kwargs)

    def model_kwargs(self) -> dict[str, Any]:
        """What :meth:`build_model` adds to ``create_model``'s arguments."""
        return {}

    def collate(
        self, samples: Sequence[Any], canvas: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

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
