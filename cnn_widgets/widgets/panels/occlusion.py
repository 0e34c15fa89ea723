"""How much the target's score drops when a square of the image is hidden (Zeiler & Fergus 2014)."""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch

from .base import Panel, signed_bytes, target_text


class OcclusionInfo(TypedDict):
    """The ``occlusion_info`` trait, beside ``occlusion`` (uint8 [H, W], 128 = no change, 255 = the largest drop)."""

    window: int  # side of the hidden square, input pixels
    stride: int  # step between squares
    fill: str  # what the square is filled with (a key of cnn_widgets.engine.occlusion.FILLS)
    extent: float  # the largest |drop|, shown as 0 or 255
    target: str  # what is explained, in words


def occlusion_display(heat: torch.Tensor) -> tuple[np.ndarray, float]:
    """A signed occlusion map ``[H, W]`` as uint8 with 128 meaning zero (diverging colormap)."""
    h = heat.detach().float().cpu()
    if h.dim() == 3:
        h = h.mean(dim=0)
    extent = float(h.abs().max()) if h.numel() else 0.0
    if not extent > 0:
        return np.full(h.shape, 128, np.uint8), 0.0
    return signed_bytes(h, extent), extent


class OcclusionPanel(Panel):
    name = "occlusion"
    label = "occlusion"

    def compute(self, explorer) -> dict:
        target = explorer.resolved_target()
        w = explorer
        heat = w.net.occlusion(w.image, target, window=w.window, stride=w.stride, fill=w.fill, progress=False)
        shown, extent = occlusion_display(torch.as_tensor(heat))
        info: OcclusionInfo = {"window": w.window, "stride": w.stride, "fill": w.fill, "extent": extent,
                               "target": target_text(w.net, target)}
        return {"occlusion": shown, "occlusion_info": info}
