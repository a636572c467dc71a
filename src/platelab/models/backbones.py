"""torchvision (and optional timm) backbones as feature extractors, plus weight loading.

A backbone maps normalised ``[B, 3, H, W]`` images to one feature map
``[B, out_channels, H / stride, W / stride]`` and declares ``out_channels`` and
``stride`` (timm's ``feature_info``). The torchvision wrappers keep the library's
module names, so their state-dict keys are the full model's minus the classifier:
a torchvision ``.pth`` loads as it is.

Weights, in order of preference for the user:

* ``pretrained=True``: the library's weights enum (``ResNet18_Weights.DEFAULT``),
  from the torch hub cache, downloading when the machine can;
* ``weights=PATH``: a local state dict (a full torchvision model, a backbone, or a
  platelab model/checkpoint), matched strictly;
* neither: random initialisation (the default).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision.models as tvm
from torch import Tensor, nn

from platelab.errors import PlatelabError, reason
from platelab.models.heads import Localizer
from platelab.models.registry import register_model

PathLike = str | Path


class ResNetFeatures(nn.Module):
    """A torchvision ResNet up to ``layer4`` (no pooling, no ``fc``); stride 32."""

    classifier_prefixes = ("fc.",)

    def __init__(self, net: tvm.ResNet) -> None:
        super().__init__()
        # Same attribute names as torchvision's ResNet, so state-dict keys match it.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4,
        )  # fmt: skip
        self.out_channels = net.fc.in_features
        self.stride = 32

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ConvFeatures(nn.Module):
    """The ``features`` of a torchvision MobileNetV3 or EfficientNet (classifier dropped)."""

    classifier_prefixes = ("classifier.",)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.features = net.features  # keys "features.*", as in the full model
        self.out_channels = net.features[-1].out_channels
        self.stride = 32

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class TimmBackbone(nn.Module):
    """A timm model with ``features_only=True, out_indices=(-1,)``: its last feature map."""

    classifier_prefixes: tuple[str, ...] = ()

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.out_channels = int(body.feature_info.channels()[-1])
        self.stride = int(body.feature_info.reduction()[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)[-1]


# -- weight files ----------------------------------------------------------------------------
def load_state_file(path: PathLike) -> dict[str, Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``.

    Accepts a bare state dict, or a dict holding one under ``"model"`` (a platelab or
    torchvision-references checkpoint) or ``"state_dict"``; a DDP ``module.`` prefix is
    stripped.

    Raises:
        PlatelabError: missing, unreadable, or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise PlatelabError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and format errors alike: the file is unusable
        raise PlatelabError(f"cannot read weights {path}: {reason(e)}") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise PlatelabError(f"{path} does not hold a state dict (name -> tensor)")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_strict(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """``module.load_state_dict(state)`` with every key and shape matched, or one clear line.

    Raises:
        PlatelabError: ``"<source> does not fit: missing keys a, b, c, ... (12 in all);
            unexpected keys d; wrong shapes e [64, 3] vs [32, 3]"``.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    found = {"missing keys": missing, "unexpected keys": unexpected, "wrong shapes": shapes}
    problems = [f"{label} {_few(keys)}" for label, keys in found.items() if keys]
    if problems:
        raise PlatelabError(f"{source} does not fit: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)


def load_weights(model: Localizer, path: PathLike) -> None:
    """Load a local weights file into ``model``.

    A file whose keys start with ``backbone.`` is a platelab model (or checkpoint) and
    must fit the whole model; anything else is a backbone: every backbone key must be
    present with its shape, and only the backbone's own classifier keys (``fc.*``,
    ``classifier.*``) may be left over.
    """
    state = load_state_file(path)
    if any(k.startswith("backbone.") for k in state):
        load_strict(model, state, f"weights {path} for {model.name}")
        return
    drop = tuple(getattr(model.backbone, "classifier_prefixes", ()))
    state = {k: v for k, v in state.items() if not (drop and k.startswith(drop))}
    load_strict(model.backbone, state, f"weights {path} for {model.name}'s backbone")


def _hub_state(arch: str, weights_enum: Any) -> dict[str, Tensor]:
    """The library's default weights for ``arch``: from the hub cache, else downloaded."""
    w = weights_enum.DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(w.url).path).name
    try:
        return w.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as e:  # no network, a proxy, a bad hash, a truncated file
        raise PlatelabError(
            f"pretrained weights for {arch} are not in the torch hub cache ({cached}) and could "
            f"not be downloaded ({reason(e)}); fetch {w.url} elsewhere and pass weights=PATH"
        ) from None


# -- constructors --------------------------------------------------------------------------
def make_localizer(
    name: str,
    backbone: nn.Module,
    *,
    weights: PathLike | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    **config: Any,
) -> Localizer:
    """Wrap ``backbone`` with the shared head; ``config`` is what rebuilds it by name."""
    norm = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
    model = Localizer(backbone, name=name, config=config, head_width=config["head_width"], **norm)
    if weights is not None:
        load_weights(model, weights)
    return model


_TORCHVISION: dict[str, tuple[Callable[..., nn.Module], Any]] = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights),
    "mobilenet_v3_small": (tvm.mobilenet_v3_small, tvm.MobileNet_V3_Small_Weights),
    "mobilenet_v3_large": (tvm.mobilenet_v3_large, tvm.MobileNet_V3_Large_Weights),
    "efficientnet_b0": (tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights),
}


def torchvision_model(
    arch: str,
    *,
    pretrained: bool = False,
    weights: PathLike | None = None,
    head_width: int = 128,
) -> Localizer:
    """A torchvision backbone ``arch`` (a key of ``_TORCHVISION``) with the shared head."""
    if pretrained and weights is not None:
        raise PlatelabError("give pretrained=true or weights=PATH, not both")
    builder, weights_enum = _TORCHVISION[arch]
    net = builder(weights=None)
    if pretrained:
        net.load_state_dict(_hub_state(arch, weights_enum))
    backbone = ResNetFeatures(net) if isinstance(net, tvm.ResNet) else ConvFeatures(net)
    return make_localizer(arch, backbone, weights=weights, head_width=head_width)


# The registry entries: torchvision_model with its arch bound; the keyword arguments
# (pretrained, weights, head_width) are what create_model checks and passes on.
for _arch in _TORCHVISION:
    register_model(_arch)(functools.partial(torchvision_model, _arch))


def timm_model(
    name: str,
    *,
    pretrained: bool = False,
    weights: PathLike | None = None,
    head_width: int = 128,
) -> Localizer:
    """``timm/<name>``: a timm feature extractor with the shared head (timm must be installed).

    ``pretrained=True`` uses timm's own weights (its cache, or a download). ``weights=PATH``
    takes a platelab model or ``model.backbone.state_dict()`` (keys ``body.*``); a timm
    model's own state dict does not fit (features_only renames some modules).
    """
    import timm

    if pretrained and weights is not None:
        raise PlatelabError("give pretrained=true or weights=PATH, not both")
    try:
        body = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=(-1,))
    except Exception as e:  # hub and network errors from huggingface_hub, requests, urllib
        if not pretrained:
            raise
        raise PlatelabError(
            f"pretrained weights for timm/{name} are not cached and could not be downloaded "
            f"({reason(e)}); pass weights=PATH"
        ) from None
    cfg = getattr(body, "pretrained_cfg", None) or {}
    return make_localizer(
        f"timm/{name}",
        TimmBackbone(body),
        weights=weights,
        mean=tuple(cfg.get("mean", ())) or None,
        std=tuple(cfg.get("std", ())) or None,
        head_width=head_width,
    )
