"""The one place that turns signed maps (gradients, attributions, reconstructions) into pictures.

The contribution tree, the scan's reconstructions, the plotting helpers and the Explorer's panels
all display through these functions, so a picture means the same thing everywhere: grey at zero,
clipped at a percentile of ``|values|`` so that one bright pixel cannot wash the rest out (the
original Caffe tree code scaled by the maximum and deep nodes came out as flat grey).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["channels_last_array", "magnitude_map", "normalise_picture", "pixels_to_uint8", "signed_to_rgb", "signed_to_uint8",
           "to_uint8"]

QUANTILE_LIMIT = 16_000_000  # torch.quantile refuses larger inputs; above it the maximum is the scale


def _scale(magnitude: torch.Tensor, percentile: float) -> torch.Tensor:
    flat = magnitude.flatten().float()
    scale = torch.quantile(flat, percentile / 100.0) if flat.numel() <= QUANTILE_LIMIT else flat.max()
    if not torch.isfinite(scale) or scale <= 0:
        scale = flat.max().clamp_min(1e-12)
    return scale


def normalise_picture(raw: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """A signed map in ``[0, 1]``: ``0.5 + 0.5 * clip(raw / s, -1, 1)``, ``s`` the percentile of ``|raw|``.

    A one-channel ``[1, H, W]`` map (a grayscale model's input gradient) comes out as grey RGB
    ``[3, H, W]``, so every picture has three channels wherever it is shown.
    """
    scale = _scale(raw.abs(), percentile)
    shown = (0.5 + 0.5 * (raw.float() / scale).clamp(-1, 1)).cpu()
    return shown.expand(3, -1, -1) if shown.dim() == 3 and shown.shape[0] == 1 else shown


def relevance_picture(raw: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """A relevance map ``[C, H, W]`` summed over channels as the LRP heatmap ``[3, H, W]`` in ``[0, 1]``:
    white at 0, red for positive and blue for negative relevance, clipped at the percentile of ``|r|``."""
    r = raw.float().sum(dim=0).cpu() if raw.dim() == 3 else raw.float().cpu()
    v = (r / _scale(r.abs(), percentile)).clamp(-1, 1)
    fade = 1 - v.abs()
    red, blue = torch.where(v > 0, 1.0, fade), torch.where(v < 0, 1.0, fade)
    return torch.stack([red, fade, blue])


def channels_last_array(picture: torch.Tensor | np.ndarray) -> np.ndarray:
    array = picture.detach().cpu().numpy() if isinstance(picture, torch.Tensor) else np.asarray(picture)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array.transpose(1, 2, 0)
    return array


def signed_to_rgb(attribution: torch.Tensor, percentile: float = 99.0) -> np.ndarray:
    """A signed ``[3, H, W]`` attribution as an ``HxWx3`` float image in ``[0, 1]``, grey at zero."""
    return channels_last_array(normalise_picture(attribution.detach().cpu(), percentile))


def signed_to_uint8(values: np.ndarray | torch.Tensor, channels_last: bool = True, percentile: float = 99.0) -> np.ndarray:
    """A signed ``HxWx3`` (or ``[3, H, W]`` with ``channels_last=False``) map as uint8, grey at zero."""
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.size == 0:
        return np.full(array.shape, 128, dtype=np.uint8)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if channels_last:
        tensor = tensor.permute(2, 0, 1)
    shown = normalise_picture(tensor, percentile)
    if channels_last:
        shown = shown.permute(1, 2, 0)
    return np.round(shown.numpy() * 255.0).astype(np.uint8)


def magnitude_map(attribution: torch.Tensor, percentile: float = 99.0) -> np.ndarray:
    """``max_c |a_c|`` per pixel in ``[0, 1]`` by a percentile (Simonyan et al.'s saliency map)."""
    a = attribution.detach().cpu().float()
    m = a.abs().amax(0) if a.dim() == 3 else a.abs()
    return (m / _scale(m, percentile)).clamp(0, 1).numpy()  # a sparse map falls back to its maximum


def pixels_to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """Pixels ``[..., C, H, W]`` in ``[0, 1]`` as uint8 ``[..., H, W, 3]`` (one channel shown as grey)."""
    x = pixels.detach().float().clamp(0, 1)
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return (x[..., :3, :, :].movedim(-3, -1).cpu().numpy() * 255).round().astype(np.uint8)


def to_uint8(values: np.ndarray | torch.Tensor, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` linearly onto 0..255 (clipped); a flat range maps to 0."""
    values = values.detach().cpu().float().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float32)
    span = hi - lo
    if not span > 0:
        return np.zeros(values.shape, np.uint8)
    return np.clip(np.round((values - lo) * (255.0 / span)), 0, 255).astype(np.uint8)
