"""What each panel of the explorer shows, computed from the engine as plain numpy arrays.

Pure functions (no widget state), so each is testable and benchmarkable on its own. Scaling to
uint8 for display happens here; the renderer only maps bytes through a colormap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SALIENCY_METHODS = (
    "gradient", "deconvnet", "guided_backprop", "input_x_gradient", "smoothgrad", "integrated_gradients", "grad_cam",
)
THUMBNAIL = 96  # contribution-tree pictures are sent at this size (square)


def to_uint8(values: np.ndarray | torch.Tensor, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` linearly onto 0..255 (clipped); a flat range maps to 0."""
    values = values.detach().cpu().float().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float32)
    span = hi - lo
    if not span > 0:
        return np.zeros(values.shape, np.uint8)
    return np.clip(np.round((values - lo) * (255.0 / span)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------- feature maps
@dataclass
class FeatureMaps:
    fmap: np.ndarray  # uint8 [C, h, w]
    maxima: np.ndarray  # float32 [C], the raw per-channel max (hover text)
    dead: np.ndarray  # uint8 [C], 1 where the channel is all zero on this image
    lo: float
    hi: float


def feature_maps(activation: torch.Tensor, scaling: str = "shared") -> FeatureMaps:
    """One layer's activations ``[C, H, W]`` (or ``[C]``) as uint8 tiles.

    ``shared`` maps ``[min(0, global min), global max]`` onto 0..255 for every tile, so tiles are
    comparable; ``per_tile`` stretches each channel over its own ``[min(0, min_c), max_c]``.
    """
    a = activation.detach().float()
    if a.dim() == 1:
        a = a[:, None, None]
    flat = a.flatten(1)
    maxima = flat.amax(dim=1)
    minima = flat.amin(dim=1)
    dead = (flat.abs().amax(dim=1) == 0).numpy().astype(np.uint8)
    if scaling == "per_tile":
        lo = minima.clamp(max=0)[:, None, None]
        hi = maxima[:, None, None]
        span = (hi - lo)
        scaled = torch.where(span > 0, (a - lo) * (255.0 / torch.where(span > 0, span, torch.ones_like(span))), torch.zeros_like(a))
        fmap = scaled.round().clamp(0, 255).to(torch.uint8).numpy()
        lo_value, hi_value = float(minima.min().clamp(max=0)), float(maxima.max())
    else:
        lo_value, hi_value = float(min(0.0, float(minima.min()))), float(maxima.max())
        fmap = to_uint8(a, lo_value, hi_value)
    return FeatureMaps(np.ascontiguousarray(fmap), maxima.numpy().astype(np.float32), dead, lo_value, hi_value)


# ---------------------------------------------------------------------------------- saliency
def saliency_display(attribution: torch.Tensor, method: str) -> tuple[np.ndarray, float]:
    """A raw attribution ``[3, H, W]`` (or Grad-CAM ``[H, W]``) as a uint8 ``[H, W]`` heat map.

    Gradient-like maps show ``max_c |a_c|`` clipped at its 99.5th percentile (a few extreme pixels
    would otherwise wash the map out); Grad-CAM shows its positive part over its maximum.
    Returns the map and the value mapped to 255.
    """
    a = attribution.detach().float().cpu()
    if a.dim() == 3:
        magnitude = a.abs().amax(dim=0)
        top = float(torch.quantile(magnitude.flatten(), 0.995)) if magnitude.numel() else 0.0
    else:
        magnitude = a.clamp(min=0) if method == "grad_cam" else a.abs()
        top = float(magnitude.max())
    if not top > 0:
        top = float(magnitude.max())
    return to_uint8(magnitude, 0.0, top), top


# ---------------------------------------------------------------------------------- occlusion
def occlusion_display(heat: torch.Tensor) -> tuple[np.ndarray, float]:
    """A signed occlusion map ``[H, W]`` as uint8 with 128 meaning zero (diverging colormap)."""
    h = heat.detach().float().cpu()
    if h.dim() == 3:
        h = h.mean(dim=0)
    extent = float(h.abs().max()) if h.numel() else 0.0
    if not extent > 0:
        return np.full(h.shape, 128, np.uint8), 0.0
    return np.clip(np.round(128 + 127 * h.numpy() / extent), 0, 255).astype(np.uint8), extent


# ---------------------------------------------------------------------------------- filters
@dataclass
class Filters:
    tiles: np.ndarray | None  # uint8 [N, h, w] (signed, 128 = 0) or [N, h, w, 3] (colour)
    mode: str  # "signed" | "rgb" | "none"
    caption: str


def filters_display(weight: torch.Tensor | None, layer: str, kind: str, channel: int, groups: int = 1) -> Filters:
    """What the filters panel draws for a layer's weights.

    * first-layer style ``[out, 3, kh, kw]`` filters: colour tiles, each stretched on its own;
    * depthwise ``[C, 1, kh, kw]``: one signed tile per channel, shared scale;
    * other spatial filters: the selected output channel's kernels, one tile per input channel;
    * 1x1 convolutions and linear layers: the weight matrix (out x in) as one tile, or, when it is
      very large, the selected channel's row.
    """
    if weight is None:
        return Filters(None, "none", f"{layer} ({kind}) has no weights; select a conv or linear layer to see filters")
    w = weight.detach().float().cpu()
    if w.dim() == 4 and w.shape[1] == 3 and w.shape[2] * w.shape[3] > 1:
        extent = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        rgb = (w / extent * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
        return Filters(rgb.permute(0, 2, 3, 1).contiguous().numpy(), "rgb", f"{layer}: {w.shape[0]} colour filters {w.shape[2]}x{w.shape[3]}")
    if w.dim() == 4 and w.shape[2] * w.shape[3] > 1:
        if w.shape[1] == 1:
            tiles, what = w[:, 0], f"{w.shape[0]} depthwise filters {w.shape[2]}x{w.shape[3]}"
        else:
            tiles, what = w[channel], f"channel {channel}: its {w.shape[1]} input kernels {w.shape[2]}x{w.shape[3]}"
        extent = float(tiles.abs().max()) or 1.0
        return Filters(_signed(tiles, extent), "signed", f"{layer}, {what} (blue < 0 < red)")
    matrix = w.reshape(w.shape[0], -1)
    extent = float(matrix.abs().max()) or 1.0
    if matrix.numel() <= 300_000:
        if matrix.shape[0] > matrix.shape[1]:  # lay the long side horizontally: fits a notebook column
            return Filters(_signed(matrix.T[None], extent), "signed", f"{layer}: weight matrix, one column per output channel ({matrix.shape[0]}), one row per input ({matrix.shape[1]}); blue < 0 < red")
        return Filters(_signed(matrix[None], extent), "signed", f"{layer}: weight matrix, one row per output channel ({matrix.shape[0]}), one column per input ({matrix.shape[1]}); blue < 0 < red")
    row = matrix[channel]
    width = 64
    padded = torch.zeros(math.ceil(row.numel() / width) * width)
    padded[: row.numel()] = row
    return Filters(_signed(padded.reshape(1, -1, width), extent), "signed", f"{layer}: weights of channel {channel} over its {row.numel()} inputs, {width} per row (blue < 0 < red)")


def _signed(values: torch.Tensor, extent: float) -> np.ndarray:
    return (values / extent * 127.0 + 128.0).round().clamp(0, 255).to(torch.uint8).contiguous().numpy()


# ---------------------------------------------------------------------------------- contribution tree
def thumbnail(picture: torch.Tensor, size: int = THUMBNAIL) -> np.ndarray:
    """A node picture ``[3, H, W]`` in [0, 1] as a uint8 ``[size, size, 3]`` thumbnail."""
    p = picture.detach().float().cpu()
    if p.dim() == 2:
        p = p[None].expand(3, -1, -1)
    p = F.interpolate(p[None], size=(size, size), mode="area")[0]
    return (p.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def node_json(node, picture: int) -> dict:
    unit = node.unit
    return {
        "layer": unit.layer,
        "channel": int(unit.channel),
        "label": str(getattr(node, "label", "") or f"{unit.layer}[{unit.channel}]"),
        "score": float(node.score),
        "picture": picture,
    }
