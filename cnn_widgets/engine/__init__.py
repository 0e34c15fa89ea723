"""The engine: pure PyTorch, no widget code. Everything here runs headless."""

from .default_model import imagenet_labels, load_default
from .errors import CnnWidgetsError, ImageError, LayerNotFoundError, ModelError, NonFiniteError, OptionError, TargetError
from .images import SAMPLE_IMAGES, sample_image, to_rgb_image
from .layers import LayerInfo, ReceptiveField
from .network import Network, Prediction, imagenet_preprocess
from .targets import Unit

__all__ = [
    "CnnWidgetsError", "ImageError", "LayerInfo", "LayerNotFoundError", "ModelError", "Network",
    "NonFiniteError", "OptionError", "Prediction", "ReceptiveField", "SAMPLE_IMAGES", "TargetError", "Unit",
    "imagenet_labels", "imagenet_preprocess", "load_default", "sample_image", "to_rgb_image",
]
