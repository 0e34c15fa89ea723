"""How much the target's score drops when a square of the image is hidden (Zeiler & Fergus 2014).

Computed batch by batch: after each batch of windows the partial map (the windows done so far,
``occlusion_pending`` marking the pixels no window has reached yet) is shown and the progress bar
moves; Cancel stops it between two batches.
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np
import torch

from ...engine.occlusion import window_positions
from ...engine.targets import Direction
from .base import DIRECTION_NOTE, Panel, signed_bytes, target_text


class OcclusionInfo(TypedDict):
    """The ``occlusion_info`` trait, beside ``occlusion`` (uint8 [H, W], 128 = no change, 255 = the largest drop)."""

    window: int  # side of the hidden square, input pixels
    stride: int  # step between squares
    fill: str  # what the square is filled with (a key of cnn_widgets.engine.occlusion.FILLS)
    extent: float  # the largest |drop|, shown as 0 or 255
    target: str  # what is explained, in words
    done: int  # windows computed (== total once the map is whole)
    total: int  # windows in all
    method: str  # "incremental" (only what the window changes is recomputed) | "full"
    mode: str  # a key of OCCLUSION_MODES: "exact", or "fast" (approximate: not every window is run)
    note: str  # instead of all the above: why there is no map for this target (not an error)


#: The occlusion panel's modes (menu labels). "fast" is Krypton's adaptive drill-down with
#: FAST_DRILL_DOWN: a first pass at twice the stride, then the tenth of the windows whose first-pass
#: neighbours disagree most. What it saves and costs is measured by benchmarks/bench_speed.py and
#: stated once, in the README's paragraph on occlusion.
OCCLUSION_MODES = {"exact": "exact", "fast": "fast (approximate)"}
FAST_DRILL_DOWN = 0.1

MIN_BATCHES = 4  # a small map still shows this many steps (progress, partial maps)
MAX_BATCH = 32  # the engine's default batch: a large map runs at full speed, one step per 32 windows
MIN_BATCH = 8
# Smaller batches cost time: on the default model, 81 windows took 1.9x as long in batches of 11 and
# 2.9x in batches of 7 as in batches of 32 (medians of 4 interleaved runs, one process, busy machine).


def batch_size(windows: int) -> int:
    """Windows per batch: at least ``MIN_BATCHES`` steps for a small map, ``MAX_BATCH`` windows for a large one."""
    return max(MIN_BATCH, min(MAX_BATCH, math.ceil(windows / MIN_BATCHES)))


def occlusion_display(heat: torch.Tensor) -> tuple[np.ndarray, float]:
    """A signed occlusion map ``[H, W]`` as uint8 with 128 meaning zero (diverging colormap).

    NaN (no window computed there yet, in a partial map) shows as 128 and does not count in the extent.
    """
    h = heat.detach().float().cpu()
    if h.dim() == 3:
        h = h.mean(dim=0)
    h = torch.nan_to_num(h, nan=0.0)
    extent = float(h.abs().max()) if h.numel() else 0.0
    if not extent > 0:
        return np.full(h.shape, 128, np.uint8), 0.0
    return signed_bytes(h, extent), extent


class OcclusionPanel(Panel):
    name = "occlusion"
    label = "occlusion"

    def compute(self, explorer) -> dict:
        target = explorer.resolved_target()
        if isinstance(target, Direction):
            return {"occlusion": None, "occlusion_pending": None, "occlusion_info": {"note": f"Occlusion {DIRECTION_NOTE}"}}
        w = explorer
        size = tuple(w.net.prepare(w.image).shape[-2:])
        tops, lefts = window_positions(size, w.window, w.stride)
        batch = batch_size(len(tops) * len(lefts))

        def info(extent: float, done: int, total: int, method: str) -> OcclusionInfo:
            return {"window": w.window, "stride": w.stride, "fill": w.fill, "extent": extent,
                    "target": target_text(w.net, target), "done": done, "total": total, "method": method,
                    "mode": w.occlusion_mode}

        def partial(done: int, total: int, heat: torch.Tensor):
            def traits() -> dict:
                shown, extent = occlusion_display(heat)
                pending = torch.isnan(heat).to(torch.uint8).contiguous().numpy()
                return {"occlusion": shown, "occlusion_pending": pending, "occlusion_info": info(extent, done, total, "")}
            return traits

        def callback(done: int, total: int, heat: torch.Tensor) -> None:
            explorer.report_progress(done, total, partial(done, total, heat), unit="windows")

        drill_down = FAST_DRILL_DOWN if w.occlusion_mode == "fast" else None
        result = w.net.occlusion(w.image, target, window=w.window, stride=w.stride, fill=w.fill, batch_size=batch,
                                 progress=False, callback=callback, result=True, drill_down=drill_down)
        self.heat = result.heat  # the float map shown (tests compare it with net.occlusion)
        shown, extent = occlusion_display(result.heat)
        return {"occlusion": shown, "occlusion_pending": None,
                "occlusion_info": info(extent, result.windows, result.windows, result.method)}
