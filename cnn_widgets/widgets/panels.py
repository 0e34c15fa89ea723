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
THUMBNAIL = 128  # contribution-tree node pictures (the energy crop) are sent at this size (square)
FULL_THUMBNAIL = 112  # ... and the whole picture at this size, for the enlarged view with the crop box


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
    return _signed(h, extent), extent


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
def energy_box(picture: torch.Tensor | np.ndarray, mass: float = 0.9, pad: float = 0.06, min_fraction: float = 0.25,
               grey: float = 0.5) -> tuple[int, int, int, int]:
    """Where a node picture's energy is: a square box ``(top, left, bottom, right)`` (exclusive ends).

    A contribution-tree picture is mostly grey (no gradient) with the feeding region a small part
    of it; shown whole as a thumbnail the region is a few pixels wide. The energy of pixel ``(y, x)``
    is ``e = sum_c |p_c - grey|``. The box trims ``(1 - mass) / 4`` of the total energy from each of
    its four sides (through the row and column marginals), so it holds at least ``mass`` of it; it is
    then padded by ``pad`` of its side on every side, made square around its centre, at least
    ``min_fraction`` of the picture's shorter side, and shifted to lie inside the picture. A flat
    (all grey) picture gives the largest centred square.

    Parameters
    ----------
    picture
        ``[3, H, W]`` or ``[H, W]`` in ``[0, 1]`` (grey = 0.5), or ``[H, W, 3]`` uint8 (grey = 128).
    mass, pad, min_fraction, grey
        As above (``grey`` on the 0..1 scale).
    """
    if isinstance(picture, torch.Tensor):
        p = picture.detach().double().cpu().numpy()
    else:
        p = np.asarray(picture)
        if p.dtype == np.uint8:
            if p.ndim == 3 and p.shape[-1] in (1, 3, 4) and p.shape[0] not in (1, 3):
                p = np.moveaxis(p[..., :3], -1, 0)
            p, grey = p.astype(np.float64) / 255.0, (round(grey * 255.0)) / 255.0  # uint8 grey is 128
        p = p.astype(np.float64)
    energy = np.abs(p - grey).sum(axis=0) if p.ndim == 3 else np.abs(p - grey)
    energy = np.nan_to_num(energy)
    height, width = energy.shape
    short = min(height, width)
    total = float(energy.sum())
    if not total > 0:
        top, left = (height - short) // 2, (width - short) // 2
        return top, left, top + short, left + short
    tail = (1.0 - mass) / 4.0 * total

    def span(marginal: np.ndarray) -> tuple[int, int]:
        cumulative = np.cumsum(marginal)
        lo = int(np.searchsorted(cumulative, tail, side="right"))
        hi = int(np.searchsorted(cumulative, total - tail, side="left")) + 1
        return lo, max(hi, lo + 1)

    y0, y1 = span(energy.sum(axis=1))
    x0, x1 = span(energy.sum(axis=0))
    side = max(y1 - y0, x1 - x0)
    side = math.ceil(side * (1.0 + 2.0 * pad))
    side = min(short, max(side, math.ceil(min_fraction * short)))
    top = int(round((y0 + y1) / 2.0 - side / 2.0))
    left = int(round((x0 + x1) / 2.0 - side / 2.0))
    top = min(max(top, 0), height - side)
    left = min(max(left, 0), width - side)
    return top, left, top + side, left + side


def thumbnail(picture: torch.Tensor, size: int = THUMBNAIL, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A node picture ``[3, H, W]`` in [0, 1] (or its ``box`` crop) as a uint8 ``[size, size, 3]`` thumbnail."""
    p = picture.detach().float().cpu()
    if p.dim() == 2:
        p = p[None].expand(3, -1, -1)
    if box is not None:
        top, left, bottom, right = box
        p = p[:, top:bottom, left:right]
    p = F.interpolate(p[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return (p.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def node_json(node, picture: int, box: tuple[int, int, int, int] | None = None, size: tuple[int, int] | None = None) -> dict:
    unit = node.unit
    entry = {
        "layer": unit.layer,
        "channel": int(unit.channel),
        "label": str(getattr(node, "label", "") or f"{unit.layer}[{unit.channel}]"),
        "score": float(node.score),
        "picture": picture,
    }
    if box is not None:
        entry["box"] = [int(v) for v in box]  # the crop shown, in picture pixels (top, left, bottom, right)
        entry["size"] = [int(v) for v in size]  # the picture's (height, width)
    return entry


# ---------------------------------------------------------------------------------- dataset scans
@dataclass
class TopPatches:
    crops: np.ndarray | None  # uint8 [k, h, w, 3]: crop i in [i, :heights[i], :widths[i]], zero padded
    reconstructions: np.ndarray | None  # uint8 [k, h, w, 3] likewise (grey = 0); None without them
    items: list[dict]  # index, value, position, box, height, width, label per top image, best first


def top_patches(top_images) -> TopPatches:
    """A scan's ``top_images(unit)`` (``TopImage`` items) as two padded uint8 stacks plus JSON entries.

    Receptive-field crops are clipped at the image border, so they differ in size; they travel
    unresized (exactly what the scan gives) in one zero-padded array, with each one's size beside it.
    """
    items = list(top_images)
    if not items:
        return TopPatches(None, None, [])
    height = max(int(t.crop.shape[0]) for t in items)
    width = max(int(t.crop.shape[1]) for t in items)
    crops = np.zeros((len(items), height, width, 3), np.uint8)
    with_reconstructions = all(t.reconstruction is not None for t in items)
    recs = np.zeros_like(crops) if with_reconstructions else None
    entries = []
    for i, t in enumerate(items):
        h, w = int(t.crop.shape[0]), int(t.crop.shape[1])
        crops[i, :h, :w] = np.asarray(t.crop, np.uint8)[..., :3]
        if recs is not None:
            recs[i, :h, :w] = np.asarray(t.reconstruction, np.uint8)[..., :3]
        entries.append({
            "index": int(t.index),
            "value": float(t.value),
            "position": None if t.position is None else [int(v) for v in t.position],
            "box": [int(v) for v in t.box],
            "height": h,
            "width": w,
            "label": None if t.label is None else _label_text(t.label),
        })
    return TopPatches(crops, recs, entries)


def _label_text(label) -> str:
    if isinstance(label, (np.generic,)):
        label = label.item()
    return str(label)


def label_codes(labels, class_names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Labels of N images as float32 codes ``0..L-1`` (``-1``: none) and the L names, in sorted order.

    Integer labels name themselves through ``class_names`` when those are given (``dataset.classes``).
    """
    if labels is None:
        return np.zeros(0, np.float32), []
    values = [v.item() if isinstance(v, np.generic) else v for v in list(labels)]
    present = [v for v in values if v is not None]
    try:
        distinct = sorted(set(present))
    except TypeError:  # mixed kinds: order of first appearance
        distinct = list(dict.fromkeys(present))
    code_of = {v: i for i, v in enumerate(distinct)}
    codes = np.array([code_of[v] if v is not None else -1 for v in values], np.float32)

    def name(v) -> str:
        if class_names is not None and isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < len(class_names):
            return str(class_names[v])
        return str(v)

    return codes, [name(v) for v in distinct]


def square_thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """An ``H x W x 3`` uint8 image letter-boxed (white) into ``size x size`` (aspect kept)."""
    from PIL import Image

    rgb = np.asarray(image, np.uint8)[..., :3]
    h, w = rgb.shape[:2]
    scale = size / max(h, w, 1)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((nw, nh), Image.BILINEAR, reducing_gap=None))
    out = np.full((size, size, 3), 255, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = small
    return out


def embedding_thumb_size(count: int, budget_bytes: int = 4_000_000, largest: int = 48, smallest: int = 16) -> int:
    """Side of the scatter thumbnails: as large as ``largest`` while ``count`` of them fit the budget."""
    if count <= 0:
        return largest
    side = int(math.sqrt(budget_bytes / (3 * count)))
    return max(smallest, min(largest, side))
