"""The weights of the selected layer: colour tiles for a first layer, signed maps otherwise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import torch

from .base import Panel, signed_bytes


class FiltersInfo(TypedDict):
    """The ``filters_info`` trait, beside ``filters`` (uint8 [N, h, w] signed, 128 = 0, or [N, h, w, 3] colour; None)."""

    layer: str  # the layer whose weights are shown
    caption: str  # what the tiles are, in words


@dataclass
class Filters:
    tiles: np.ndarray | None  # uint8 [N, h, w] (signed, 128 = 0) or [N, h, w, 3] (colour)
    caption: str


def filters_display(weight: torch.Tensor | None, layer: str, kind: str, channel: int) -> Filters:
    """What the filters panel draws for a layer's weights.

    * first-layer style ``[out, 3, kh, kw]`` filters: colour tiles, each stretched on its own;
    * depthwise ``[C, 1, kh, kw]``: one signed tile per channel, shared scale;
    * other spatial filters: the selected output channel's kernels, one tile per input channel;
    * 1x1 convolutions and linear layers: the weight matrix (out x in) as one tile, or, when it is
      very large, the selected channel's row.
    """
    if weight is None:
        return Filters(None, f"{layer} ({kind}) has no weights; select a conv or linear layer to see filters")
    w = weight.detach().float().cpu()
    if w.dim() == 4 and w.shape[1] == 3 and w.shape[2] * w.shape[3] > 1:
        extent = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        rgb = (w / extent * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
        return Filters(rgb.permute(0, 2, 3, 1).contiguous().numpy(), f"{layer}: {w.shape[0]} colour filters {w.shape[2]}x{w.shape[3]}")
    if w.dim() == 4 and w.shape[2] * w.shape[3] > 1:
        if w.shape[1] == 1:
            tiles, what = w[:, 0], f"{w.shape[0]} depthwise filters {w.shape[2]}x{w.shape[3]}"
        else:
            tiles, what = w[channel], f"channel {channel}: its {w.shape[1]} input kernels {w.shape[2]}x{w.shape[3]}"
        extent = float(tiles.abs().max()) or 1.0
        return Filters(signed_bytes(tiles, extent), f"{layer}, {what} (blue < 0 < red)")
    matrix = w.reshape(w.shape[0], -1)
    extent = float(matrix.abs().max()) or 1.0
    outs, ins = matrix.shape
    if matrix.numel() <= 300_000:
        if outs > ins:  # lay the long side horizontally: fits a notebook column
            return Filters(signed_bytes(matrix.T[None], extent),
                           f"{layer}: weight matrix, one column per output channel ({outs}), one row per input ({ins}); blue < 0 < red")
        return Filters(signed_bytes(matrix[None], extent),
                       f"{layer}: weight matrix, one row per output channel ({outs}), one column per input ({ins}); blue < 0 < red")
    row = matrix[channel]
    width = 64
    padded = torch.zeros(math.ceil(row.numel() / width) * width)
    padded[: row.numel()] = row
    return Filters(signed_bytes(padded.reshape(1, -1, width), extent),
                   f"{layer}: weights of channel {channel} over its {row.numel()} inputs, {width} per row (blue < 0 < red)")


class FiltersPanel(Panel):
    name = "filters"
    label = "filters"

    def compute(self, explorer) -> dict:
        net, layer = explorer.net, explorer.layer
        kind = net.layer(layer).kind
        weight = net.filters(layer) if kind in ("conv", "linear") else None
        shown = filters_display(weight, layer, kind, explorer.channel)
        info: FiltersInfo = {"layer": layer, "caption": shown.caption}
        return {"filters": shown.tiles, "filters_info": info}
