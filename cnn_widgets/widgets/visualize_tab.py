"""The Visualise tab of the Explorer: what the selected unit or class looks for, with no image
(feature visualisation, Olah et al. 2017), or DeepDream on the current image and layer; streamed
live from a worker thread (``visualize_run.py``) while the rest of the Explorer stays usable.
"""

from __future__ import annotations

import threading
from typing import TypedDict

import numpy as np
import traitlets
from traitlets import Dict, Int, observe

from ..engine.visualize import PARAMS
from .options import Choice, FloatRange, IntRange
from .serialization import Array
from .visualize_run import Request, VisualizeRunner

MODES = {"visualize": "feature visualisation", "dream": "DeepDream on this image"}
PARAM_LABELS = {"fourier": "Fourier + decorrelated colour", "pixel": "pixels (naive ascent)"}
STARTS = {"noise": "noise", "image": "this image"}
OCTAVES = 4  # DeepDream: the steps slider is split over this many octaves
SETTINGS = ("viz_mode", "viz_steps", "viz_lr", "viz_size", "viz_jitter", "viz_param", "viz_start")


class VisualizeInfo(TypedDict, total=False):
    """The ``viz_info`` trait, beside ``viz_frame`` (uint8 [H, W, 3]) and ``viz_curve`` (float32 [steps so far])."""

    request: int  # the request the frame belongs to (the front end draws only the current one)
    running: bool
    step: int  # steps done (DeepDream: octaves done while running)
    steps: int
    cached: bool  # shown from the cache (no computation)
    interrupted: bool  # stopped before the last step
    error: str
    target: str  # what is visualised, in words


class VisualizeTab(traitlets.HasTraits):
    """Mixed into the Explorer (which provides ``net``, ``image``, ``resolved_target`` and ``model_turns``)."""

    viz_mode = Choice(MODES, "visualize").tag(sync=True)
    viz_steps = IntRange(128, min=8, max=512, step=8).tag(sync=True)
    viz_lr = FloatRange(0.05, min=0.005, max=0.2, step=0.005).tag(sync=True)
    viz_size = IntRange(128, min=8, max=1024, step=8).tag(sync=True)  # range and default follow the input size
    viz_jitter = IntRange(32, min=0, max=256).tag(sync=True)  # DeepDream's shift; 0: no robustness transforms
    viz_param = Choice({p: PARAM_LABELS.get(p, p) for p in PARAMS}, "fourier").tag(sync=True)
    viz_start = Choice(STARTS, "noise").tag(sync=True)
    viz_request = Int(0).tag(sync=True)  # the request whose frames are shown
    viz_frame = Array()
    viz_curve = Array()
    viz_info = Dict().tag(sync=True)  # VisualizeInfo

    def _init_visualize(self, turns) -> None:
        self._viz_image_serial = 0
        self._viz_push_lock = threading.Lock()
        self.visualizer = VisualizeRunner(turns, self._push_visualization, self.pipeline.main)
        #: (Direction, words) set by a click on an atlas cell: the target instead of the selection, until it changes
        self.viz_direction = None

    # ------------------------------------------------------------ starting and stopping
    def start_visualization(self, wait: bool = False) -> None:
        """Start optimising for the current target and settings (cached: shown at once)."""
        request = self._visualization_request(self.viz_request + 1)
        self.viz_request = request.id
        self.visualizer.start(request)
        if wait:
            self.visualizer.wait()

    def stop_visualization(self) -> None:
        """Stop the running optimisation at its next step; what was reached stays shown."""
        self.visualizer.stop()

    def _visualization_request(self, request_id: int) -> Request:
        net, image = self.net, self.image
        steps, lr, size, jitter, param = self.viz_steps, self.viz_lr, self.viz_size, self.viz_jitter, self.viz_param
        if self.viz_mode == "dream":
            layer, per_octave = self.layer, max(1, steps // OCTAVES)
            key = ("dream", layer, per_octave, lr, jitter, self._viz_image_serial)
            return Request(request_id, key, lambda cb: net.dream(image, layer, octaves=OCTAVES, steps=per_octave, lr=lr,
                                                               jitter=jitter, progress=False, callback=cb),
                           OCTAVES, f"DeepDream of layer {layer}")
        if self.viz_direction is not None:
            target, text = self.viz_direction
            target_key = (text, target.vector.numpy().tobytes())
        else:
            with self.model_turns.kernel():
                target = self.resolved_target()  # the top class runs the model
            text = f"unit {target}" if not isinstance(target, int) else f"class {net.label(target)}"
            target_key = str(target)
        start = image if self.viz_start == "image" else None
        key = ("visualize", target_key, steps, lr, size, jitter, param, start is not None and self._viz_image_serial)
        return Request(request_id, key, lambda cb: net.visualize(
            target, steps=steps, size=size, lr=lr, param=param, transforms="standard" if jitter else "none",
            start=start, every=1, progress=False, callback=cb), steps, text)

    def _push_visualization(self, request: Request, frame, curve, info) -> None:
        with self._viz_push_lock:
            if request.id != self.viz_request:
                return  # a newer request took over: nothing stale is shown
            with self.hold_sync():
                if frame is not None or not info.get("running"):
                    self.viz_frame = frame
                self.viz_curve = np.asarray(curve, np.float32)
                self.viz_info = {**info, "request": request.id, "target": request.text}

    # ------------------------------------------------------------ going back to a cached result
    @observe("image")
    def _viz_image_changed(self, change):
        self._viz_image_serial += 1

    @observe(*SETTINGS, "layer", "channel", "target", "image", "tab", "net")
    def _viz_show_cached(self, change):
        if change["name"] in ("layer", "channel", "target", "net"):
            self.viz_direction = None  # the explain target is what is visualised again
        if getattr(self, "_ready", False) and self.tab == "visualize" and not self.viz_info.get("running"):
            try:
                request = self._visualization_request(self.viz_request + 1)
            except Exception:
                return
            if self.visualizer.cached(request.key) is not None:
                self.viz_request = request.id
                self.visualizer.start(request)
