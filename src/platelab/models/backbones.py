"""torchvision (and optional timm) backbones as feature extractors, plus weight loading.

A backbone maps normalised ``[B, 3, H, W]`` images to one feature map
``[B, out_channels, H / stride, W / stride]`` and declares ``out_channels`` and
``stride``. It also gives the multi-level features a detector's neck reads:
``forward_features(x)`` returns the maps at strides 8, 16 and 32 and
``feature_info`` their ``(channels, stride)`` (timm's ``feature_info``). The torchvision wrappers keep the library's
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
LEVELS = (8, 16, 32)  # the strides forward_features returns, finest first


def stage_ends(layers: nn.Sequential, strides: tuple[int, ...] = LEVELS) -> list[tuple[int, int]]:
    """``(index, channels)`` of the last layer of ``layers`` at each output stride.

    Found by one 64x64 forward pass on the layers' own device (``meta`` costs nothing)
    in eval mode, so BatchNorm statistics are untouched; works for any sequential
    feature stack (torchvision's MobileNet/EfficientNet ``features``, the dwsep nets).
    """
    device = next(layers.parameters()).device
    was_training = layers.training
    layers.eval()
    found: dict[int, tuple[int, int]] = {}
    x = torch.zeros(1, 3, 64, 64, device=device)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            x = layer(x)
            stride = 64 // x.shape[-1]
            if stride in strides:
                found[stride] = (i, int(x.shape[1]))
    layers.train(was_training)
    missing = [s for s in strides if s not in found]
    if missing:
        raise ValueError(f"no layer outputs stride {missing}")
    return [found[s] for s in strides]


class SequentialFeatures(nn.Module):
    """``forward``/``forward_features`` for a backbone that is one ``self.features`` stack.

    Subclasses set ``self.features`` and call :meth:`_init_levels`.
    """

    features: nn.Sequential

    def _init_levels(self) -> None:
        ends = stage_ends(self.features)
        self._ends = [i for i, _ in ends]
        self.feature_info = [(c, s) for (_, c), s in zip(ends, LEVELS, strict=True)]

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """The maps at strides 8, 16, 32: ``[B, C_i, H / s_i, W / s_i]``."""
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._ends:
                out.append(x)
            if i == self._ends[-1]:
                break
        return out


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
        channels = [_last_conv_channels(m) for m in (self.layer2, self.layer3, self.layer4)]
        self.feature_info = list(zip(channels, LEVELS, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[-1]

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """``layer2``, ``layer3``, ``layer4``: strides 8, 16, 32."""
        c2 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


def _last_conv_channels(layer: nn.Sequential) -> int:
    """Output channels of a ResNet layer: its last block's last conv (conv3 or conv2)."""
    block = layer[-1]
    return int((block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels)


class ConvFeatures(SequentialFeatures):
    """The ``features`` of a torchvision MobileNetV3 or EfficientNet (classifier dropped)."""

    classifier_prefixes = ("classifier.",)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.features = net.features  # keys "features.*", as in the full model
        self.out_channels = net.features[-1].out_channels
        self.stride = 32
        self._init_levels()


class TimmBackbone(nn.Module):
    """A timm model with ``features_only=True``: its last three levels (strides 8-32)."""

    classifier_prefixes: tuple[str, ...] = ()

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        info = body.feature_info
        self.out_channels = int(info.channels()[-1])
        self.stride = int(info.reduction()[-1])
        self.feature_info = list(zip(info.channels(), info.reduction(), strict=True))[-3:]

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)[-1]

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))[-3:]


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


def load_weights(model: nn.Module, path: PathLike) -> None:
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
TASKS = ("localize", "detect")


def make_model(
    name: str,
    backbone: nn.Module,
    *,
    task: str = "localize",
    weights: PathLike | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    head_width: int = 128,
    neck_width: int = 64,
    **config: Any,
) -> nn.Module:
    """Put ``task``'s head on ``backbone``: a :class:`Localizer` or a :class:`Detector`.

    ``config`` (the backbone's own arguments, e.g. ``width_mult``) plus the head's are
    stored on the model as ``model.config``: ``create_model(name, **model.config)``
    rebuilds it. A localiser's config is what it always was (``head_width``), so old
    checkpoints keep loading; a detector's adds ``task`` and ``neck_width``.
    """
    from platelab.models.detector import Detector

    norm = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
    if task == "localize":
        config["head_width"] = head_width
        model: nn.Module = Localizer(
            backbone, name=name, config=config, head_width=head_width, **norm
        )
    elif task == "detect":
        config.update(task=task, neck_width=neck_width)
        model = Detector(backbone, name=name, config=config, neck_width=neck_width, **norm)
    else:
        raise PlatelabError(f"unknown task '{task}' for a backbone model; choose from {TASKS}")
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
    task: str = "localize",
    head_width: int = 128,
    neck_width: int = 64,
) -> nn.Module:
    """A torchvision backbone ``arch`` (a key of ``_TORCHVISION``) with ``task``'s head."""
    if pretrained and weights is not None:
        raise PlatelabError("give pretrained=true or weights=PATH, not both")
    builder, weights_enum = _TORCHVISION[arch]
    net = builder(weights=None)
    if pretrained:
        net.load_state_dict(_hub_state(arch, weights_enum))
    backbone = ResNetFeatures(net) if isinstance(net, tvm.ResNet) else ConvFeatures(net)
    return make_model(
        arch, backbone, task=task, weights=weights, head_width=head_width, neck_width=neck_width
    )


# The registry entries: torchvision_model with its arch bound; the keyword arguments
# (pretrained, weights, task, head_width, neck_width) are what create_model checks and passes on.
for _arch in _TORCHVISION:
    register_model(_arch)(functools.partial(torchvision_model, _arch))


def timm_model(
    name: str,
    *,
    pretrained: bool = False,
    weights: PathLike | None = None,
    task: str = "localize",
    head_width: int = 128,
    neck_width: int = 64,
) -> nn.Module:
    """``timm/<name>``: a timm feature extractor with the shared head (timm must be installed).

    ``pretrained=True`` uses timm's own weights (its cache, or a download). ``weights=PATH``
    takes a platelab model or ``model.backbone.state_dict()`` (keys ``body.*``); a timm
    model's own state dict does not fit (features_only renames some modules).
    """
    import timm

    if pretrained and weights is not None:
        raise PlatelabError("give pretrained=true or weights=PATH, not both")
    try:
        body = timm.create_model(
            name, pretrained=pretrained, features_only=True, out_indices=(-3, -2, -1)
        )
    except Exception as e:  # hub and network errors from huggingface_hub, requests, urllib
        if not pretrained:
            raise
        raise PlatelabError(
            f"pretrained weights for timm/{name} are not cached and could not be downloaded "
            f"({reason(e)}); pass weights=PATH"
        ) from None
    cfg = getattr(body, "pretrained_cfg", None) or {}
    return make_model(
        f"timm/{name}",
        TimmBackbone(body),
        task=task,
        weights=weights,
        mean=tuple(cfg.get("mean", ())) or None,
        std=tuple(cfg.get("std", ())) or None,
        head_width=head_width,
        neck_width=neck_width,
    )
