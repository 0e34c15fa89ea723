"""How much the target's score drops when a square of the image is hidden (Zeiler & Fergus 2014).

Coarse to fine: the engine runs an exact map's first pass first (a quarter of the windows, typically,
covering every pixel), so the first picture is a whole map, which then refines in place batch by
batch to the exact one (``occlusion_info["stage"]``: :data:`STAGES`); the progress bar moves and
Cancel stops it between two batches. Every exact run keeps the drops of every class (or every
channel of the unit's layer), so another class, another channel of the layer, or going back to an
earlier window, stride or fill on the same image and model is shown at once.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import torch

from ...engine import Unit
from ...engine.incremental.heat import heat_map
from ...engine.occlusion import first_pass, window_positions
from ...engine.structure import state_key
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
    stage: str  # a key of STAGES: what the map shown is
    cached: bool  # the map was computed before (same image, model, settings; another class or channel)
    note: str  # instead of all the above: why there is no map for this target (not an error)


#: What an occlusion map on screen is, as the caption names it: coarse to fine, never half covered
#: for long. "partial": some pixels have no window yet (grey); "first": the first pass is done and
#: every pixel has a value (the mean drop of the windows over it); "refining": more windows are in;
#: "exact": every window (equal to full recomputation); "approximate": the fast mode's final map.
STAGES = ("partial", "first", "refining", "exact", "approximate")

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

#: Exact maps kept for going back (numbers of every class or channel, float32): 32 MiB per panel.
KEPT_NUMBERS = 2**23


def batch_size(windows: int, first: int = 0) -> int:
    """Windows per batch: at least ``MIN_BATCHES`` steps for a small map, ``MAX_BATCH`` windows for a
    large one, and the ``first`` pass's windows in one batch where they fit in ``MAX_BATCH``."""
    return max(MIN_BATCH, min(MAX_BATCH, max(math.ceil(windows / MIN_BATCHES), first)))


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


@dataclass(frozen=True)
class Kept:
    """An exact run's drops for every class (or every channel of the unit's layer) at one setting."""

    x: torch.Tensor  # the model input they were computed on
    state: tuple  # structure.state_key of the network then
    table: torch.Tensor  # [nh, nw, C]
    method: str


class OcclusionPanel(Panel):
    name = "occlusion"
    label = "occlusion"

    def __init__(self):
        self._kept: collections.OrderedDict[tuple, Kept] = collections.OrderedDict()  # newest last
        self._lock = threading.Lock()  # computed on the panel worker, forgotten on the kernel's thread

    def forget(self) -> None:
        with self._lock:
            self._kept.clear()

    def _lookup(self, key: tuple, x: torch.Tensor, state: tuple) -> Kept | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            if kept.state != state or kept.x.shape != x.shape or not torch.equal(kept.x, x):
                del self._kept[key]  # another image or the model changed: never shown again
                return None
            self._kept.move_to_end(key)
            return kept

    def _keep(self, key: tuple, kept: Kept) -> None:
        with self._lock:
            self._kept[key] = kept
            while sum(k.table.numel() for k in self._kept.values()) > KEPT_NUMBERS and len(self._kept) > 1:
                self._kept.popitem(last=False)

    def compute(self, explorer) -> dict:
        target = explorer.resolved_target()
        if isinstance(target, Direction):
            return {"occlusion": None, "occlusion_pending": None, "occlusion_info": {"note": f"Occlusion {DIRECTION_NOTE}"}}
        w = explorer
        x = w.net.prepare(w.image)
        size = tuple(x.shape[-2:])
        tops, lefts = window_positions(size, w.window, w.stride)
        total = len(tops) * len(lefts)
        exact = w.occlusion_mode == "exact"

        def info(extent: float, done: int, runs: int, stage: str, method: str, cached: bool = False) -> OcclusionInfo:
            return {"window": w.window, "stride": w.stride, "fill": w.fill, "extent": extent,
                    "target": target_text(w.net, target), "done": done, "total": runs, "method": method,
                    "mode": w.occlusion_mode, "stage": stage, "cached": cached}

        # a class: every class's drops come from the same passes; a unit: every channel of its layer
        kind = ("unit", target.layer, target.position, target.reduce) if isinstance(target, Unit) else ("class",)
        key = (kind, w.window, w.stride, w.fill)
        column = target.channel if isinstance(target, Unit) else int(target)
        state = state_key(w.net)
        kept = self._lookup(key, x, state) if exact else None
        if kept is not None:  # computed before: shown at once
            self.heat = heat_map(kept.table[..., column], w.window, w.stride, size)
            shown, extent = occlusion_display(self.heat)
            return {"occlusion": shown, "occlusion_pending": None,
                    "occlusion_info": info(extent, total, total, "exact", kept.method, cached=True)}

        seen_complete = [False]  # a complete map was handed over already (the next ones refine it)

        def partial(done: int, runs: int, heat: torch.Tensor, stage: str):
            def traits() -> dict:
                shown, extent = occlusion_display(heat)
                pending = torch.isnan(heat).to(torch.uint8).contiguous().numpy() if stage == "partial" else None
                return {"occlusion": shown, "occlusion_pending": pending, "occlusion_info": info(extent, done, runs, stage, "")}
            return traits

        def callback(done: int, windows: int, heat: torch.Tensor) -> None:
            complete = not bool(torch.isnan(heat).any())
            stage = "partial" if not complete else "refining" if seen_complete[0] else "first"
            urgent = complete and not seen_complete[0]  # the first complete map is shown however soon it comes
            seen_complete[0] = seen_complete[0] or complete
            explorer.report_progress(done, windows, partial(done, windows, heat, stage), unit="windows", urgent=urgent)

        first = math.prod(len(side) for side in first_pass(size, w.window, w.stride)) if exact else 0
        drill_down = None if exact else FAST_DRILL_DOWN
        result = w.net.occlusion(x, target, window=w.window, stride=w.stride, fill=w.fill,
                                 batch_size=batch_size(total, first), progress=False, callback=callback, result=True,
                                 drill_down=drill_down, table=exact)
        if result.table is not None:
            self._keep(key, Kept(x, state, result.table, result.method))
        self.heat = result.heat  # the float map shown (tests compare it with net.occlusion)
        shown, extent = occlusion_display(result.heat)
        return {"occlusion": shown, "occlusion_pending": None,
                "occlusion_info": info(extent, result.windows, result.windows, "exact" if result.exact else "approximate",
                                                result.method)}
