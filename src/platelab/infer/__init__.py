"""Deployment: ONNX export (:mod:`.export`), the :class:`Predictor` and ``platelab predict``."""

from platelab.infer.predictor import DetectionResult, PlateBox, Prediction, Predictor

__all__ = ["DetectionResult", "PlateBox", "Prediction", "Predictor"]
