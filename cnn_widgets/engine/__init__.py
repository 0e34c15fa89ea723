"""The engine: pure PyTorch, no widget code. Everything here runs headless."""

from . import datasets
from .default_model import imagenet_labels, load_default
from .digits_model import digits_cnn
from .digits_vit import digits_vit
from .errors import (CnnWidgetsError, ImageError, LayerNotFoundError, ModelError, NonFiniteError, OptionError, TargetError,
                     UnsupportedLayerError)
from .lrp_rules import COMPOSITES, Composite
from .images import SAMPLE_IMAGES, sample_image, to_rgb_image
from .layers import LayerInfo, ReceptiveField
from .core import NetworkBase, Prediction
from .preprocess import imagenet_preprocess
from .network import Network
from .scan import ChannelStats, Scan, ScanError, ScanSaveWarning, TopImage
from .targets import Direction, Unit
from .tokens import TokenLayout
from .zoo import load_model

__all__ = [
    "COMPOSITES", "ChannelStats", "Composite", "UnsupportedLayerError", "NetworkBase", "Scan", "ScanError", "ScanSaveWarning", "TopImage", "datasets", "digits_cnn",
    "digits_vit", "TokenLayout",
    "CnnWidgetsError", "ImageError", "LayerInfo", "LayerNotFoundError", "ModelError", "Network",
    "NonFiniteError", "OptionError", "Prediction", "ReceptiveField", "SAMPLE_IMAGES", "TargetError", "Unit", "Direction",
    "imagenet_labels", "imagenet_preprocess", "load_default", "load_model", "sample_image", "to_rgb_image",
]
