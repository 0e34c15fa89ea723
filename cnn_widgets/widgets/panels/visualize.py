"""The Visualise tab's job: feature visualisation of the explain target (Olah et al. 2017), or
DeepDream of the image at the selected layer, run on the Explorer's runner and streamed.

Started by ``recompute("visualize")`` (the tab's Start button), stopped by ``cancel("visualize")``
(Stop: the frame reached stays shown). The starting picture is shown at once (step 0, before the
model runs), then each step reports progress with the frame reached as the partial result, up to
``VisualizePanel.pushes_per_s`` frames a second (an animation, unlike the other panels' partial
maps), so the run takes turns with the slow panels for the model and is never shown stale (a
newer request drops it). Finished runs are cached per (target, settings): going back to one is
instant (:meth:`VisualizePanel.cached`); the key holds the model's state, so a changed model never
shows an old run.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from ...engine.structure import state_key
from .base import Panel

CACHED_RUNS = 24
OCTAVES = 4  # DeepDream: the steps slider is split over this many octaves


class VisualizeInfo(TypedDict, total=False):
    """The ``viz_info`` trait, beside ``viz_frame`` (uint8 [H, W, 3]) and ``viz_curve`` (float32 [steps so far])."""

    step: int  # steps done (DeepDream: octaves done)
    steps: int
    cached: bool  # shown from the cache (no computation)
    interrupted: bool  # stopped before the last step
    target: str  # what is visualised, in words


@dataclass
class Request:
    """What one run computes: ``call(callback)`` runs the engine; ``key`` names it in the cache."""

    key: tuple
    call: Callable[[Callable], object]
    steps: int
    text: str  # what is visualised, in words


def visualization_request(explorer) -> Request:
    """The run the Explorer's current settings ask for (resolving the top class runs the model)."""
    w = explorer
    net, image = w.net, w.image
    steps, lr, size, jitter, param = w.viz_steps, w.viz_lr, w.viz_size, w.viz_jitter, w.viz_param
    if w.viz_mode == "dream":
        layer, per_octave = w.layer, max(1, steps // OCTAVES)
        key = ("dream", state_key(net), layer, per_octave, lr, jitter, w.viz_image_serial)
        return Request(key, lambda cb: net.dream(image, layer, octaves=OCTAVES, steps=per_octave, lr=lr, jitter=jitter,
                                                 progress=False, callback=cb, show_start=True),
                       OCTAVES, f"DeepDream of layer {layer}")
    if w.viz_direction is not None:
        target, text = w.viz_direction
        target_key = (text, target.vector.numpy().tobytes())
    else:
        target = w.resolved_target()
        text = f"unit {target}" if not isinstance(target, int) else f"class {net.label(target)}"
        target_key = str(target)
    start = image if w.viz_start == "image" else None
    key = ("visualize", state_key(net), target_key, steps, lr, size, jitter, param, start is not None and w.viz_image_serial)
    return Request(key, lambda cb: net.visualize(
        target, steps=steps, size=size, lr=lr, param=param, transforms="standard" if jitter else "none",
        start=start, every=1, progress=False, callback=cb, show_start=True), steps, text)


def _traits(frame, curve, info: VisualizeInfo) -> dict:
    return {"viz_frame": frame, "viz_curve": np.asarray(curve, np.float32), "viz_info": info}


class VisualizePanel(Panel):
    name = "visualize"
    label = "visualisation"
    #: Frames a second at most while a run goes on: an animation (the lecture goal is >= 10 shown a
    #: second), where the other panels' partial maps keep progress.PUSHES_PER_S. A 128-pixel frame is 48 KiB.
    pushes_per_s = 20.0

    def __init__(self):
        self.cache: OrderedDict[tuple, dict] = OrderedDict()  # key -> the finished run's traits

    def cached(self, key: tuple) -> dict | None:
        """The traits of a finished run of ``key`` (marked as from the cache), or None."""
        hit = self.cache.get(key)
        if hit is None:
            return None
        self.cache.move_to_end(key)
        return {**hit, "viz_info": {**hit["viz_info"], "cached": True}}

    def compute(self, explorer) -> dict:
        request = visualization_request(explorer)
        hit = self.cached(request.key)
        if hit is not None:
            return hit
        curve: list[float] = []
        reached = [0]

        def callback(step, frame, objective):
            if step:  # step 0 is the starting picture: nothing measured yet
                curve.append(float(objective))
            reached[0] = step
            shown = list(curve)  # the run goes on appending to its own list
            explorer.report_progress(step, request.steps, lambda: _traits(
                frame, shown, {"step": step, "steps": request.steps, "cached": False, "target": request.text}), unit="steps")
            return True

        result = request.call(callback)  # on every core but one, as every background job (cores.py)
        frame = np.ascontiguousarray(np.asarray(result.image.convert("RGB")), dtype=np.uint8)
        info: VisualizeInfo = {"step": reached[0], "steps": request.steps, "interrupted": bool(result.interrupted),
                               "cached": False, "target": request.text}
        traits = _traits(frame, [float(v) for v in result.objective], info)
        if not result.interrupted:
            self.cache[request.key] = traits
            while len(self.cache) > CACHED_RUNS:
                self.cache.popitem(last=False)
        return traits

    def forget(self) -> None:
        pass  # keyed on the target, settings and image serial: a new image cannot make an entry stale

    def forget_all(self) -> None:
        """A new network: every cached run belongs to the old one."""
        self.cache.clear()
