"""Deployment: ONNX export (:mod:`.export`), the :class:`Predictor` and ``platelab predict``."""

from platelab.infer.predictor import Prediction, Predictor

__all__ = ["Prediction", "Predictor"]
