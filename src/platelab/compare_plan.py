"""What ``platelab compare`` will run: the model entries, the budget and its plan, the checks.

A model entry is ``NAME`` (a registry backbone trained as a localiser, ``task=localize``)
or ``TASK:NAME`` (``detect:dwsep_small``: a detector; ``read:crnn``: a recogniser, compared
only with other recognisers on a crop dataset). :func:`check_plan` reads and checks
them with the training overrides and the ranking metric before any work;
:func:`plan_budget` turns wall-clock minutes into epochs and steps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from platelab.errors import PlatelabError

VAL_OVERHEAD = 1.5  # evaluation wall time / forward time (loading, metrics), for planning
# The accuracy columns of results.csv (each model's eval split), per task, in table order.
METRICS = ("mean_iou", "median_iou", "acc_iou50", "acc_iou70", "precision", "recall", "f1")
METRICS += ("ap50", "ap70")
DETECT_METRICS = ("mean_iou", "acc_iou50", "acc_iou70", "precision", "recall", "f1", "ap50")
DETECT_METRICS += ("ap75", "ap50_95", "ar", "corner_error_px")
READ_METRICS = ("accuracy", "cer", "char_accuracy", "province_accuracy", "accuracy_at_90")
TASK_METRICS = {"localize": METRICS, "detect": DETECT_METRICS, "read": READ_METRICS}
# What --metric may name for a task (higher is better: it ranks epochs and the Pareto plot).
RANKABLE = {
    t: tuple(k for k in m if not k.endswith("_px") and k != "cer") for t, m in TASK_METRICS.items()
}
TASK_SEP = ":"
# Training keys compare sets for each model; an override may not change them.
OWN_KEYS = ("model", "data", "out", "epochs", "max_train_batches", "monitor", "exist_ok")
OWN_KEYS += ("batch_size", "workers", "seed", "task")


@dataclass(frozen=True)
class ModelSpec:
    """One ``--models`` entry: ``dwsep_small`` (a localiser) or ``detect:dwsep_small``.

    Attributes:
        spec: the entry as written, canonical (``localize:`` dropped): the report's name.
        task: ``localize`` or ``detect``.
        model: the registry name.
    """

    spec: str
    task: str
    model: str

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """Read ``[TASK:]NAME``.

        Raises:
            PlatelabError: an unknown task prefix or an empty name.
        """
        from platelab.tasks import DEFAULT_TASK, TASK_NAMES

        head, sep, tail = str(text).strip().partition(TASK_SEP)
        task, model = (head, tail) if sep else (DEFAULT_TASK, head)
        if task not in TASK_NAMES:
            raise PlatelabError(
                f"unknown task '{task}' in model '{text}'; write NAME or TASK:NAME with TASK "
                f"one of {', '.join(TASK_NAMES)}"
            )
        if not model:
            raise PlatelabError(f"model '{text}' names no backbone, e.g. {task}:dwsep_small")
        return cls(model if task == DEFAULT_TASK else f"{task}{TASK_SEP}{model}", task, model)

    @property
    def run_name(self) -> str:
        """The folder below ``OUT/runs`` and ``OUT/eval`` (no ``:``, which Windows refuses)."""
        return self.model if self.task == "localize" else f"{self.task}-{self.model}"


@dataclass(frozen=True)
class Budget:
    """The same training budget for every model: ``epochs`` or wall-clock ``minutes``."""

    epochs: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.minutes is None):
            raise PlatelabError("a budget is either epochs or minutes")
        if (self.epochs is not None and self.epochs < 1) or (
            self.minutes is not None and not self.minutes > 0
        ):
            raise PlatelabError(f"the budget must be positive, got {self.epochs or self.minutes}")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"8"``, ``"8ep"`` or ``"epochs=8"``; ``"2.5min"``, ``"2.5m"`` or ``"minutes=2.5"``."""
        t = str(text).strip().lower().replace(" ", "")
        m = re.fullmatch(r"(?:epochs=)?(\d+)(?:ep|epochs?)?", t)
        if m:
            return cls(epochs=int(m.group(1)))
        m = re.fullmatch(r"(?:minutes=)?(\d+(?:\.\d*)?|\.\d+)(?:m|min|mins|minutes?)?", t)
        if m and (t.startswith("minutes=") or not t[-1].isdigit()):
            return cls(minutes=float(m.group(1)))
        raise PlatelabError(f"cannot read the budget {text!r}: use e.g. 8 (epochs) or 3min")

    def __str__(self) -> str:
        if self.epochs is not None:
            return f"{self.epochs} epochs"
        return f"{self.minutes:g} min of training"


def check_plan(
    models: Sequence[str], overrides: Sequence[str] = (), metric: str | None = None
) -> list[ModelSpec]:
    """Check the models, training overrides and metric of a comparison before any work.

    ``platelab demo`` calls it before it synthesises a dataset, so a typo fails in a
    second, not after minutes of rendering.

    Args:
        models: ``[TASK:]NAME`` entries (:class:`ModelSpec`).
        overrides: ``key=value`` training keys for every model.
        metric: ``--metric`` (None: chosen by :func:`plot_metric`).

    Returns:
        The parsed entries, in order.

    Raises:
        PlatelabError: no model, a model named twice, an unknown task or model (close
            matches suggested), an unknown override key, a key compare sets itself, or a
            metric some compared task does not measure.
    """
    from platelab.config import check_override
    from platelab.train import check_model_name

    if not models:
        raise PlatelabError("--models names no model")
    specs = [ModelSpec.parse(m) for m in models]
    if len({s.spec for s in specs}) != len(specs):
        raise PlatelabError(f"--models names a model twice: {','.join(models)}")
    for s in specs:
        check_model_name(s.model)
    for kv in overrides:
        if (key := check_override(kv)) in OWN_KEYS:
            raise PlatelabError(f"compare sets '{key}' itself (see --models, --data, --budget)")
    tasks = dict.fromkeys(s.task for s in specs)
    if "read" in tasks and len(tasks) > 1:  # recognisers train on crops, the rest on photos
        raise PlatelabError(
            "read: models read crop datasets and the other tasks photos: compare recognisers "
            "(read:crnn,read:slot_ocr) on their own"
        )
    if metric is not None and any(metric not in RANKABLE[t] for t in tasks):
        shared = [k for k in RANKABLE[next(iter(tasks))] if all(k in RANKABLE[t] for t in tasks)]
        raise PlatelabError(
            f"--metric '{metric}' is not measured for every compared task "
            f"({', '.join(tasks)}); choose from {', '.join(shared)}"
        )
    return specs


def plot_metric(specs: Sequence[ModelSpec], metric: str | None) -> str:
    """The accuracy of the Pareto plot and the best-model note: ``metric``, or by default
    ``mean_iou`` for localisers alone, ``ap50`` (every plate counted) with a detector,
    ``accuracy`` (full plates read) for recognisers."""
    if metric is not None:
        return metric
    if all(s.task == "read" for s in specs):
        return "accuracy"
    return "ap50" if any(s.task != "localize" for s in specs) else "mean_iou"


def monitor_of(spec: ModelSpec, metric: str | None) -> str:
    """The validation metric that ranks ``spec``'s epochs: ``metric``, else its task's own."""
    from platelab.tasks import get_task

    return metric or get_task(spec.task).monitor


def plan_budget(
    budget: Budget,
    n_train: int,
    n_val: int,
    batch: int,
    s_train: float,
    s_val: float,
    fixed_s: float = 0.0,
) -> dict[str, int | None]:
    """Epochs, and a per-epoch step cap, that fill ``budget`` without exceeding it.

    With minutes, the plan trains the most steps that fit: the epoch count may be
    rounded up and each epoch shortened (``max_train_batches``) rather than the budget
    rounded down to whole epochs; the stream's per-epoch shuffle still shows each epoch
    different images.

    Args:
        n_train, n_val: training and validation images.
        batch: training batch size.
        s_train, s_val: measured seconds per training image and per evaluated image.
        fixed_s: measured seconds each epoch costs beyond its images.

    Returns:
        ``{"epochs": E, "max_train_batches": N or None}`` (None: whole epochs);
        at least one epoch of one step.
    """
    if budget.epochs is not None:
        return {"epochs": budget.epochs, "max_train_batches": None}
    seconds = budget.minutes * 60
    val_s = n_val * s_val * VAL_OVERHEAD + fixed_s
    step_s = s_train * batch
    full_steps = math.ceil(n_train / batch)
    best = (1, 1)  # (epochs, steps per epoch): at least one step, even over budget
    for epochs in range(1, math.ceil(seconds / (full_steps * step_s + val_s)) + 1):
        steps = min(full_steps, int((seconds / epochs - val_s) / step_s))
        if steps >= 1 and epochs * steps > best[0] * best[1]:  # most steps; ties: fewer epochs
            best = (epochs, steps)
    epochs, steps = best
    return {"epochs": epochs, "max_train_batches": None if steps >= full_steps else steps}


def accuracy_keys(specs: Sequence[ModelSpec]) -> list[str]:
    """The accuracy columns of a comparison: every compared task's, in a fixed order."""
    tasks = {s.task for s in specs}
    keys = [k for t in TASK_METRICS if t in tasks for k in TASK_METRICS[t]]
    return list(dict.fromkeys(keys))
