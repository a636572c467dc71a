"""Tasks: what differs between localising one plate, detecting every plate and reading one.

One engine trains every task; a :class:`~platelab.tasks.base.Task` owns the rest:
building the model from a backbone name, turning samples into targets (collate), the
loss, the evaluation (decode + metric, gathered over DDP ranks), the monitored metric
and the names an exported graph gives its outputs. ``get_task(name)`` returns the one
instance of each; the ``task`` key of a config, a checkpoint or an ONNX file names it,
and a file without one is a localiser (every run before tasks existed).

    from platelab.tasks import get_task
    task = get_task("detect")
    model = task.build_model("dwsep_small")
"""

from __future__ import annotations

from platelab.errors import PlatelabError
from platelab.tasks.base import DEFAULT_TASK, Task

TASK_NAMES = ("localize", "detect", "read")


def get_task(name: str | None) -> Task:
    """The task called ``name`` (None: the default, ``localize``).

    Raises:
        PlatelabError: an unknown name.
    """
    name = name or DEFAULT_TASK
    if name == "localize":
        from platelab.tasks.localize import LOCALIZE

        return LOCALIZE
    if name == "detect":
        from platelab.tasks.detect import DETECT

        return DETECT
    if name == "read":
        from platelab.tasks.read import READ

        return READ
    raise PlatelabError(f"unknown task '{name}'; choose from {', '.join(TASK_NAMES)}")


__all__ = ["DEFAULT_TASK", "TASK_NAMES", "Task", "get_task"]
