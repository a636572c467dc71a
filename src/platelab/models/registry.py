"""The model registry: names -> constructors that return a :class:`~platelab.models.heads.Localizer`.

Like torchvision's ``models/_api.py``: a decorator registers a constructor under a
name and refuses duplicates; :func:`create_model` builds by name and, like timm's
``_factory.py``, drops ``None`` keyword arguments so a CLI default of ``None`` never
overrides a model's own default. ``MODEL_MAP`` (the seed's name) is a read-only view.

timm backbones are creatable as ``timm/<name>`` when timm is installed; they are not
listed by :func:`list_models` unless asked (timm has over a thousand).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

from platelab.errors import PlatelabError

if TYPE_CHECKING:
    from platelab.models.heads import Localizer

TIMM_PREFIX = "timm/"

_Fn = TypeVar("_Fn", bound=Callable[..., Any])
_MODELS: dict[str, Callable[..., Localizer]] = {}
MODEL_MAP: Mapping[str, Callable[..., Localizer]] = MappingProxyType(_MODELS)


def register_model(name: str) -> Callable[[_Fn], _Fn]:
    """Decorator: register a constructor ``fn(**kwargs) -> Localizer`` under ``name``.

    Raises:
        ValueError: ``name`` is taken, or starts with the reserved ``timm/``.
    """

    def decorator(fn: _Fn) -> _Fn:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        if name.startswith(TIMM_PREFIX):
            raise ValueError(f"model names starting with {TIMM_PREFIX!r} are reserved for timm")
        _MODELS[name] = fn
        return fn

    return decorator


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise PlatelabError(
            f"'{TIMM_PREFIX}...' models need timm, which is not installed: pip install timm"
        ) from None
    return timm


def list_models(pattern: str | None = None, include_timm: bool = False) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell ``pattern`` (``"resnet*"``).

    With ``include_timm`` the ``timm/<name>`` models are listed too (timm must be installed).
    """
    names = list(_MODELS)
    if include_timm:
        names += [TIMM_PREFIX + n for n in _timm().list_models()]
    if pattern:
        names = fnmatch.filter(names, pattern)
    return sorted(names)


def _unknown(name: str, choices: Iterable[str], what: str = "model") -> PlatelabError:
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    if close:
        return PlatelabError(f"unknown {what} '{name}'; did you mean: {', '.join(close)}")
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return PlatelabError(f"unknown {what} '{name}'; choose from: {shown}")


def _check_kwargs(name: str, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    named = [k for k, p in params.items() if p.kind is p.KEYWORD_ONLY]
    bad = [k for k in kwargs if k not in named]
    if bad:
        raise PlatelabError(
            f"model '{name}' has no argument {', '.join(map(repr, bad))}; "
            f"it takes: {', '.join(named)}"
        )


def create_model(name: str, **kwargs: Any) -> Localizer:
    """Build the registered model ``name``; ``None``-valued ``kwargs`` are dropped.

    Common keyword arguments: ``pretrained`` (the library's weights), ``weights`` (a
    local state-dict file), ``head_width``; the custom CNNs also take ``width_mult``.

    Raises:
        PlatelabError: an unknown name (close matches suggested), an argument the model
            does not take, or weights that cannot be had.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name.startswith(TIMM_PREFIX):
        timm = _timm()
        arch = name[len(TIMM_PREFIX) :]
        if not timm.is_model(arch):
            raise _unknown(arch, timm.list_models(), what="timm model")
        from platelab.models.backbones import timm_model

        _check_kwargs(name, timm_model, kwargs)
        return timm_model(arch, **kwargs)
    fn = _MODELS.get(name)
    if fn is None:
        raise _unknown(name, _MODELS)
    _check_kwargs(name, fn, kwargs)
    return fn(**kwargs)


def count_flops(model: torch.nn.Module, size: tuple[int, int], batch: int = 1) -> int:
    """FLOPs of one forward pass at ``size`` ``(W, H)``, counted by torch's ``FlopCounterMode``.

    Two FLOPs per multiply-add; convolutions and matmuls only (elementwise ops are not
    counted), as ptflops' ``aten`` backend. The input is uint8 on the model's device
    (which may be ``meta``: nothing is computed then).
    """
    w, h = size
    device = next(model.parameters()).device
    images = torch.zeros(batch, 3, h, w, dtype=torch.uint8, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images)
    return int(counter.get_total_flops())


def describe_models(
    size: tuple[int, int] = (640, 480), names: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """One row per model for ``platelab models``: name, params, input size, GFLOPs.

    Models are built on the ``meta`` device, so nothing is allocated or computed: the
    counts are exact and a resnet50 costs milliseconds. Nothing is cached.

    Args:
        size: input ``(W, H)`` for the FLOP count; a model with its own ``input_size``
            (a recogniser's crop size) is counted at that instead.
        names: registry names (``timm/<name>`` too); default every registered model.

    Returns:
        ``[{"name", "params", "input_size": (W, H), "gflops"}]`` in the order asked.
    """
    rows = []
    for name in list(names) if names else list_models():
        with torch.device("meta"):
            model = create_model(name).eval()
        own = getattr(model, "input_size", None) or size  # a recogniser reads its crop size
        rows.append(
            {
                "name": name,
                "params": sum(p.numel() for p in model.parameters()),
                "input_size": (int(own[0]), int(own[1])),
                "gflops": count_flops(model, own) / 1e9,
            }
        )
    return rows
