"""Jupyter widgets over the engine: ``Explorer`` and the array serializer / colormaps it uses."""

from .colormaps import lut
from .explorer import Explorer
from .serialization import array_from_json, array_to_json

__all__ = ["Explorer", "array_from_json", "array_to_json", "lut"]
