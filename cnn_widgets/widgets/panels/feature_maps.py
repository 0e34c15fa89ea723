"""Every channel of the selected layer on this image, as uint8 tiles the renderer colours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import torch

from ...engine.pictures import to_uint8
from .base import Panel

#: How tiles are scaled (the ``scaling`` trait): value -> menu label.
SCALINGS = {"shared": "shared scale", "per_tile": "per-tile scale"}


class FmapInfo(TypedDict):
    """The ``fmap_info`` trait, beside ``fmap`` (uint8 [C, h, w]), ``fmap_max`` and ``fmap_dead``."""

    layer: str  # the layer the maps belong to
    scaling: str  # one of SCALINGS
    lo: float | None  # raw value shown as 0 in every tile; None when each tile has its own (per_tile)
    hi: float | None  # raw value shown as 255 in every tile; None likewise
    dead: int  # how many channels are all zero on this image


@dataclass
class FeatureMaps:
    fmap: np.ndarray  # uint8 [C, h, w]
    maxima: np.ndarray  # float32 [C], the raw per-channel max (hover text)
    dead: np.ndarray  # uint8 [C], 1 where the channel is all zero on this image
    lo: float | None  # the one scale of every tile (shared); None per tile
    hi: float | None


def feature_maps(activation: torch.Tensor, scaling: str = "shared") -> FeatureMaps:
    """One layer's activations ``[C, H, W]`` (or ``[C]``) as uint8 tiles.

    ``shared`` maps ``[min(0, global min), global max]`` onto 0..255 for every tile, so tiles are
    comparable; ``per_tile`` stretches each channel over its own ``[min(0, min_c), max_c]``.
    """
    a = activation.detach().float().cpu()
    if a.dim() == 1:
        a = a[:, None, None]
    flat = a.flatten(1)
    maxima = flat.amax(dim=1)
    minima = flat.amin(dim=1)
    dead = (flat.abs().amax(dim=1) == 0).numpy().astype(np.uint8)
    if scaling == "per_tile":
        lo = minima.clamp(max=0)[:, None, None]
        hi = maxima[:, None, None]
        span = hi - lo
        scaled = torch.where(span > 0, (a - lo) * (255.0 / torch.where(span > 0, span, torch.ones_like(span))), torch.zeros_like(a))
        fmap = scaled.round().clamp(0, 255).to(torch.uint8).numpy()
        lo_value = hi_value = None
    else:
        lo_value, hi_value = float(min(0.0, float(minima.min()))), float(maxima.max())
        fmap = to_uint8(a, lo_value, hi_value)
    return FeatureMaps(np.ascontiguousarray(fmap), maxima.numpy().astype(np.float32), dead, lo_value, hi_value)


class FeatureMapsPanel(Panel):
    name = "feature_maps"
    label = "feature maps"

    def compute(self, explorer) -> dict:
        layer = explorer.layer
        activation = explorer.net.activations(explorer.image, [layer])[layer]
        maps = feature_maps(activation, explorer.scaling)
        info: FmapInfo = {"layer": layer, "scaling": explorer.scaling, "lo": maps.lo, "hi": maps.hi, "dead": int(maps.dead.sum())}
        return {"fmap": maps.fmap, "fmap_max": maps.maxima, "fmap_dead": maps.dead, "fmap_info": info}
