"""Input-independent views: feature visualisation (activation maximisation) and DeepDream."""

from .objectives import Direction, LayerTarget
from .param import PARAMS, ImageParam, high_frequency_energy
from .run import Visualization, dream, visualize
from .transforms import TRANSFORM_SETS

__all__ = ["Direction", "ImageParam", "LayerTarget", "PARAMS", "TRANSFORM_SETS", "Visualization", "dream",
           "high_frequency_energy", "visualize"]
