"""platelab: license-plate detection and reading, from synthetic data to a plate reader.

``from platelab import PlateReader`` gives the reader (detect, straighten, read) with
the default weights shipped in the package; ``from platelab import Predictor`` one
model of any task. Both are imported on first use, so ``import platelab`` stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["PlateReader", "Predictor", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "PlateReader":
        from platelab.infer.reader import PlateReader

        return PlateReader
    if name == "Predictor":
        from platelab.infer.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'platelab' has no attribute {name!r}")
