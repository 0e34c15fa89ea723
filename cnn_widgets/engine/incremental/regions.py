"""Region arithmetic for incremental occlusion: changed patches, their growth, windows and pastes.

Krypton (Nakandala, Kumar & Papakonstantinou, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations", SIGMOD 2019) keeps, for every layer, only the rectangle of
the feature map that an occluding patch can change; everything outside it equals the clean image's
activation, computed once. Here one batch row is one occluded copy: every row's rectangle has the
same size (so the rows stack into one tensor), at its own position.

Coordinates are map rows / columns of the layer's *unpadded* output; a rectangle never leaves the
map. A row-wise convention is used for both axes: ``top`` / ``left`` are ``int64`` tensors ``[B]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Patch", "grow", "materialize", "read_window", "span"]


@dataclass
class Patch:
    """Rows ``value[b]`` of a map that differ from the clean map, at ``(top[b], left[b])``.

    ``value`` is ``[B, C, h, w]``; outside the rectangle row ``b`` equals the clean map.
    """

    value: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.value.shape[-2:])


def span(lo: torch.Tensor, hi: torch.Tensor, limit: int, approx: float | None = None) -> tuple[torch.Tensor, int]:
    """One common extent for the per-row inclusive intervals ``[lo, hi]`` inside ``[0, limit)``.

    The size is the widest row's, and each start is moved back (never forward) so the interval
    stays inside the map: every row's interval is then covered. With ``approx = tau`` an extent
    larger than ``tau * limit`` is cut to that, centred on the row's interval -- Krypton's
    projective-field threshold (approximate: values outside are taken from the clean map).
    """
    size = int((hi - lo).max()) + 1
    if approx is not None and size > approx * limit:
        cut = max(1, math.ceil(approx * limit))
        lo = torch.div(lo + hi + 1 - cut, 2, rounding_mode="floor")  # centred on the true interval
        size = cut
    size = min(size, limit)
    start = torch.minimum(lo, torch.full_like(lo, limit - size)).clamp(min=0)
    return start, size


def grow(start: torch.Tensor, size: int, kernel: int, stride: int, pad: int, dilation: int, limit: int):
    """Output interval ``[lo, hi]`` (inclusive) whose receptive fields meet input rows ``[start, start+size)``.

    Output ``o`` reads input rows ``o*stride - pad + dilation*j`` for ``j < kernel`` (Dumoulin &
    Visin, "A guide to convolution arithmetic", 2016). Rows the stride skips change nothing, so an
    interval can be empty; it is then kept one row wide (recomputing a clean row is harmless).
    """
    reach = dilation * (kernel - 1)
    lo = torch.div(start + pad - reach + stride - 1, stride, rounding_mode="floor").clamp(0, limit - 1)
    hi = torch.div(start + size - 1 + pad, stride, rounding_mode="floor").clamp(max=limit - 1)
    return lo, torch.maximum(hi, lo)


def _flat_index(rows: torch.Tensor, cols: torch.Tensor, width: int, channels: int) -> torch.Tensor:
    """``[B, C, a*b]`` gather index of the ``a x b`` block ``rows x cols`` of a row-major map."""
    batch, a, b = rows.shape[0], rows.shape[1], cols.shape[1]
    flat = rows[:, :, None] * width + cols[:, None, :]
    return flat.reshape(batch, 1, a * b).expand(batch, channels, a * b)


# Windows are read with one gather over all rows, not one slice copy per row: on a busy machine a
# small multi-threaded copy costs a thread-pool round trip each, which dominated the profile.


def read_window(
    clean: torch.Tensor,
    patch: Patch | None,
    top: torch.Tensor,
    left: torch.Tensor,
    size: tuple[int, int],
    offset: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """The ``size`` window at ``(top, left)`` of every row's map (clean map with ``patch`` pasted).

    ``clean`` is ``[1, C, Hp, Wp]``, possibly padded by ``offset = (pad_top, pad_left)`` so that
    windows may start above / left of the map (``top`` is in unpadded coordinates). Returns
    ``[B, C, a, b]``.
    """
    a, b = size
    if patch is not None and patch.size == (a, b) and torch.equal(patch.top, top) and torch.equal(patch.left, left):
        return patch.value  # the window is the patch itself
    channels, height, width = clean.shape[1:]
    batch = top.shape[0]
    ar_a, ar_b = torch.arange(a), torch.arange(b)
    index = _flat_index(top[:, None] + offset[0] + ar_a, left[:, None] + offset[1] + ar_b, width, channels)
    source = clean.reshape(1, channels, height * width).expand(batch, channels, height * width)
    out = torch.gather(source, 2, index.to(clean.device))
    if patch is None:
        return out.view(batch, channels, a, b)
    h, w = patch.size
    dy, dx = patch.top - top, patch.left - left
    if bool((dy >= 0).all() and (dy + h <= a).all() and (dx >= 0).all() and (dx + w <= b).all()):
        # the patch lies inside every row's window (the usual case): scatter just its pixels
        index = _flat_index(dy[:, None] + torch.arange(h), dx[:, None] + torch.arange(w), b, channels)
        out.scatter_(2, index.to(clean.device), patch.value.reshape(batch, channels, h * w))
        return out.view(batch, channels, a, b)
    # a stride skipped the patch's last rows: take from it what each window holds
    ry, rx = top[:, None] + ar_a - patch.top[:, None], left[:, None] + ar_b - patch.left[:, None]
    inside = ((ry >= 0) & (ry < h))[:, :, None] & ((rx >= 0) & (rx < w))[:, None, :]
    index = _flat_index(ry.clamp(0, h - 1), rx.clamp(0, w - 1), w, channels).to(clean.device)
    pasted = torch.gather(patch.value.reshape(batch, channels, h * w), 2, index)
    out = torch.where(inside.reshape(batch, 1, a * b).to(clean.device), pasted, out)
    return out.view(batch, channels, a, b)


def materialize(clean: torch.Tensor, patch: Patch) -> torch.Tensor:
    """Full maps ``[B, C, H, W]``: the clean map ``[1, C, H, W]`` with each row's patch pasted in."""
    batch = patch.top.shape[0]
    channels, height, width = clean.shape[1:]
    h, w = patch.size
    # a fresh row-major copy (never the cache itself, even for one row)
    out = clean.expand(batch, channels, height, width).clone(memory_format=torch.contiguous_format)
    rows = patch.top[:, None] + torch.arange(h)
    cols = patch.left[:, None] + torch.arange(w)
    index = _flat_index(rows, cols, width, channels).to(clean.device)
    out.view(batch, channels, height * width).scatter_(2, index, patch.value.reshape(batch, channels, h * w))
    return out
