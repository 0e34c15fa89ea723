"""The Visualise tab of the Explorer: what the selected unit or class looks for, with no image
(feature visualisation, Olah et al. 2017), or DeepDream on the current image and layer. The run is
a job of the Explorer's runner (``panels/visualize.py``): Start is ``recompute("visualize")``,
Stop is ``cancel("visualize")``, and its progress is ``progress["visualize"]``.
"""

from __future__ import annotations

import traitlets
from traitlets import Dict, observe

from ..engine.visualize import PARAMS
from .options import Choice, FloatRange, IntRange
from .panels.visualize import visualization_request
from .serialization import Array

MODES = {"visualize": "feature visualisation", "dream": "DeepDream on this image"}
PARAM_LABELS = {"fourier": "Fourier + decorrelated colour", "pixel": "pixels (naive ascent)"}
STARTS = {"noise": "noise", "image": "this image"}
SETTINGS = ("viz_mode", "viz_steps", "viz_lr", "viz_size", "viz_jitter", "viz_param", "viz_start")


class VisualizeTab(traitlets.HasTraits):
    """Mixed into the Explorer: the ``viz_*`` traits and ``viz_direction`` (the Atlas tab sets it too);
    what the run reads of the Explorer is ``panels/visualize.py``'s ``visualization_request``."""

    #: What this part uses of the Explorer's other parts (read, called or set); tests/widgets/test_parts.py checks it
    USES: tuple[str, ...] = ('runner', 'panels', 'model_turns', 'tab', 'recompute', 'cancel')

    viz_mode = Choice(MODES, "visualize").tag(sync=True)
    viz_steps = IntRange(128, min=8, max=512, step=8).tag(sync=True)
    viz_lr = FloatRange(0.05, min=0.005, max=0.2, step=0.005).tag(sync=True)
    viz_size = IntRange(128, min=8, max=1024, step=8).tag(sync=True)  # range and default follow the input size
    viz_jitter = IntRange(32, min=0, max=256).tag(sync=True)  # DeepDream's shift; 0: no robustness transforms
    viz_param = Choice({p: PARAM_LABELS.get(p, p) for p in PARAMS}, "fourier").tag(sync=True)
    viz_start = Choice(STARTS, "noise").tag(sync=True)
    viz_frame = Array()
    viz_curve = Array()
    viz_info = Dict().tag(sync=True)  # panels/visualize.py: VisualizeInfo

    def _init_visualize(self) -> None:
        self.viz_image_serial = 0  # which image a DeepDream (or a start from the image) belongs to
        #: (Direction, words) set by a click on an atlas cell: the target instead of the selection, until it changes
        self.viz_direction = None

    # ------------------------------------------------------------ starting and stopping
    def start_visualization(self, wait: bool = False) -> None:
        """Start optimising for the current target and settings (a cached run is shown at once).

        In a kernel the run streams from the runner's worker; ``wait`` blocks until it ends.
        """
        self.recompute("visualize")
        if wait:
            self.runner.wait()

    def stop_visualization(self) -> None:
        """Stop the running optimisation at its next step; what was reached stays shown."""
        self.cancel("visualize")

    # ------------------------------------------------------------ going back to a cached result
    @observe("image")
    def _viz_image_changed(self, change):
        self.viz_image_serial += 1

    @observe(*SETTINGS, "layer", "channel", "target", "image", "tab", "net")
    def _viz_show_cached(self, change):
        if change["name"] in ("layer", "channel", "target", "net"):
            self.viz_direction = None  # the explain target is what is visualised again
        if not getattr(self, "_ready", False) or self.tab != "visualize" or self.runner.running("visualize"):
            return
        try:
            with self.model_turns.kernel():
                key = visualization_request(self).key  # the top class runs the model
        except Exception:
            return
        if self.panels["visualize"].cached(key) is not None:
            self.recompute("visualize")  # served from the cache at once
