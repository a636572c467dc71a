"""platelab.models: the registry, backbones, the shared head and the loss.

from platelab.models import create_model, list_models
model = create_model("dwsep_small")           # a Localizer
out = model(images_uint8)                      # {"boxes_norm_xyxy": [B, 4], "logits": [B]}
reader = create_model("crnn")                  # a text recogniser (task=read): {"logits": [B, T, C]}
"""

from platelab.models import backbones, custom, recognizer  # noqa: F401  (registers the models)
from platelab.models.backbones import load_weights
from platelab.models.heads import BoxHead, Localizer
from platelab.models.loss import LocalizationLoss
from platelab.models.registry import (
    MODEL_MAP,
    count_flops,
    create_model,
    describe_models,
    list_models,
    register_model,
)

__all__ = [
    "MODEL_MAP",
    "BoxHead",
    "LocalizationLoss",
    "Localizer",
    "count_flops",
    "create_model",
    "describe_models",
    "list_models",
    "load_weights",
    "register_model",
]
