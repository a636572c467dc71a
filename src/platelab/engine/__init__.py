"""The training engine: generic over models, losses and data (nothing here is about plates).

* :mod:`~platelab.engine.trainer`: ``Trainer``, ``EngineConfig`` (the loop, AMP, EMA, DDP).
* :mod:`~platelab.engine.checkpoint`: atomic saves, safe loads, the top-k ``CheckpointSaver``.
* :mod:`~platelab.engine.logging`: ``MetricsCSV`` and TensorBoard.
* :mod:`~platelab.engine.distributed`: ``torchrun`` process-group helpers.
"""

from platelab.engine.checkpoint import (
    CheckpointSaver,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from platelab.engine.config import EngineConfig
from platelab.engine.logging import MetricsCSV
from platelab.engine.trainer import FitResult, Trainer

__all__ = [
    "CheckpointSaver",
    "EngineConfig",
    "FitResult",
    "MetricsCSV",
    "Trainer",
    "find_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "seed_everything",
]
