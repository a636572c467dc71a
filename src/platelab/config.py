"""Typed training config: YAML file, then dotted ``key=value`` overrides, then validation.

``TrainConfig`` is the engine's :class:`~platelab.engine.trainer.EngineConfig` plus the
plate task's keys; nested sections (``augment``, ``loss``) are owned by the component
they configure, which sets their defaults. Unknown keys are refused with a close match
suggested (ultralytics' ``check_dict_alignment``), values are parsed with
``yaml.safe_load`` (never ``eval``), and every problem is one line of
:class:`~platelab.errors.PlatelabError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from platelab.data.augment import AugmentConfig
from platelab.engine.config import EngineConfig
from platelab.errors import PlatelabError, reason
from platelab.geometry import parse_size
from platelab.tasks import TASK_NAMES, get_task


def loss_keys(task: str | None = None) -> tuple[str, ...]:
    """The ``loss.*`` keys: the task's loss arguments (it owns their names and defaults);
    without a task, those of every task."""
    names = [task] if task else TASK_NAMES
    return tuple(dict.fromkeys(k for n in names for k in get_task(n).loss_keys()))


class TrainConfig(EngineConfig):
    """Everything ``platelab train`` reads (the engine's keys are inherited)."""

    task: Literal["localize", "detect", "read"] = Field(
        "localize", description="what the model learns (platelab.tasks); sets monitor's default"
    )
    model: str = Field("mobilenet_v3_small", description="registry name (platelab models)")
    data: Path = Field(description="a prepared dataset folder")
    size: str | None = Field(None, description="canvas WxH; None = the dataset's")
    batch_size: int = Field(16, ge=1)
    workers: int = Field(2, ge=0, description="loader worker processes per rank")
    pretrained: bool = Field(False, description="start from the library's weights")
    weights: Path | None = Field(None, description="start from a local weights file")
    exist_ok: bool = Field(False, description="start afresh in a run folder that holds a run")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    loss: dict[str, Any] = Field(
        default_factory=dict, description="the task's loss arguments (its defaults otherwise)"
    )

    @model_validator(mode="before")
    @classmethod
    def _task_monitor(cls, data: Any) -> Any:
        # Each task ranks checkpoints by its own metric unless monitor is given.
        if isinstance(data, dict) and data.get("monitor") is None:
            task = data.get("task") or "localize"
            if task in TASK_NAMES:
                data = {**data, "monitor": get_task(task).monitor}
        return data

    @field_validator("size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is None:
            return None
        w, h = parse_size(str(v))
        return f"{w}x{h}"

    @model_validator(mode="after")
    def _loss(self) -> TrainConfig:
        keys = loss_keys(self.task)
        for key in self.loss:
            if key not in keys:
                raise ValueError(_suggest(key, keys, "loss."))
        return self


def closest_key(name: str, choices: Sequence[str]) -> str | None:
    """The key a mistyped ``name`` most likely meant, or None.

    A near spelling wins (``epoch`` -> ``epochs``); otherwise a key that is one of the
    name's ``_``-separated words (``lr_rate`` -> ``lr``); otherwise a looser spelling.
    """
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.8)
    words = [c for c in choices if c in name.split("_")]
    loose = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return (close or words or loose or [None])[0]


def _suggest(name: str, choices: Sequence[str], prefix: str) -> str:
    best = closest_key(name, choices)
    hint = f"; did you mean '{prefix}{best}'?" if best else ""
    return f"unknown key '{prefix}{name}'{hint}"


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (also inside ``X | None``), else None."""
    for a in (annotation, *get_args(annotation)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _is_mapping(annotation: Any) -> bool:
    return annotation is dict or getattr(annotation, "__origin__", None) is dict


def load_run_config(run_dir: Path | str, overrides: Sequence[str] = ()) -> TrainConfig:
    """A run's resolved config (``RUN/hparams.yaml``) with ``overrides`` applied: for ``--resume``."""
    hparams = Path(run_dir) / "hparams.yaml"
    if not hparams.is_file():
        raise PlatelabError(f"{run_dir} is not a run folder (no hparams.yaml)")
    return load_config(hparams, overrides)


def check_key(key: str, cls: type[BaseModel] = TrainConfig) -> None:
    """Raise PlatelabError unless the dotted ``key`` names a field of ``cls``.

    Raises:
        PlatelabError: ``"unknown key 'lr_rate'; did you mean 'lr'?"``, or a key below a
            plain value (``lr.x``).
    """
    parts = key.split(".")
    prefix = ""
    for i, part in enumerate(parts):
        fields = cls.model_fields
        if part not in fields:
            raise PlatelabError(_suggest(part, fields, prefix))
        annotation = fields[part].annotation
        rest = parts[i + 1 :]
        sub = _model_class(annotation)
        if not rest:
            return
        if sub is None:
            if _is_mapping(annotation):  # a section of free-form keys, like ``loss``
                if part == "loss" and rest[0] not in loss_keys():
                    raise PlatelabError(_suggest(rest[0], loss_keys(), "loss."))
                if len(rest) == 1:
                    return
                part, rest = f"{part}.{rest[0]}", rest[1:]
            raise PlatelabError(f"'{prefix}{part}' is a value, not a section: cannot set {key!r}")
        cls, prefix = sub, f"{prefix}{part}."


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise PlatelabError(f"override {item!r} must look like key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # e.g. a path with a colon: take the text as it is
    return key, value


def check_override(item: str) -> str:
    """The key of a ``key=value`` override; PlatelabError unless the key exists (see check_key)."""
    key, _ = _parse_override(item)
    check_key(key)
    return key


def _set_dotted(data: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = data
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value


def _error_line(err: dict) -> str:
    loc = ".".join(str(x) for x in err["loc"])
    if err["type"] == "extra_forbidden":
        *parents, name = loc.split(".")
        cls: type[BaseModel] = TrainConfig
        for p in parents:
            cls = _model_class(cls.model_fields[p].annotation) or cls
        prefix = "".join(f"{p}." for p in parents)
        return _suggest(name, cls.model_fields, prefix)
    if err["type"] == "missing":
        return f"{loc} is required"
    got = repr(err.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    msg = err["msg"].split("\n")[0]
    return f"{loc}: {msg} (got {got})"


def validate_config(data: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from plain data; all validation errors become one line."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise PlatelabError("invalid config: " + "; ".join(map(_error_line, e.errors()))) from None


def load_config(path: Path | str | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read ``path`` (YAML, optional), apply ``key=value`` overrides in order, validate.

    Args:
        path: a YAML mapping of config keys, e.g. ``configs/*.yaml`` or a run's
            ``hparams.yaml`` (which is how ``--resume RUN`` re-reads a run).
        overrides: ``"lr=3e-4"``, ``"augment.hflip=0.5"``, ``"size=null"``; each value is
            parsed with ``yaml.safe_load`` (so ``1e-3``, ``true``, ``[1, 2]`` work).

    Raises:
        PlatelabError: a missing or malformed file, an override without ``=``, an unknown
            key (with a close match), or an invalid value.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise PlatelabError(f"config file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise PlatelabError(
                f"{path} is not a YAML config: it is not UTF-8 text (a checkpoint or an image?)"
            ) from None
        except OSError as e:
            raise PlatelabError(f"cannot read config {path}: {reason(e)}") from None
        if "\x00" in text:
            raise PlatelabError(f"{path} is not a YAML config: it holds binary data")
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise PlatelabError(f"{path} is not valid YAML: {reason(e)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise PlatelabError(f"{path} must hold a mapping of config keys")
        data = loaded or {}
    for item in overrides:
        key, value = _parse_override(item)
        check_key(key)
        _set_dotted(data, key, value)
    return validate_config(data)


def dump_config(cfg: BaseModel) -> str:
    """The config as YAML that :func:`load_config` reads back to an equal config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
