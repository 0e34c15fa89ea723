"""The Trust tab of the Explorer: which pictures to believe. For the current image and target, the
sanity check's strip (each chosen method's map as the model is randomised top-down, the paper's
Figure 2, live) with the similarity curve beneath, then deletion and insertion curves with each
method's AUC. The run is a job of the Explorer's runner (``panels/trust.py``): Run is
``recompute("trust")``, Stop is ``cancel("trust")``, its progress is ``progress["trust"]``.

Each method's verdict stays in ``trust_verdicts`` for the model it was computed on, and the saliency
caption shows it beside the map ("changes little when the top half of the network is randomised:
0.92"), so that picture never appears without its warning once the check has run.
"""

from __future__ import annotations

import traitlets
from traitlets import Dict, Int, List, TraitError, Unicode, observe, validate

from .options import Choice
from .panels.trust import MODES
from .serialization import Array

#: The methods the tab checks until the user picks others: one backward pass each, the default
#: method (guided backprop) between the plain gradient and Grad-CAM, which pass the test.
DEFAULT_METHODS = ("gradient", "guided_backprop", "grad_cam")


class TrustTab(traitlets.HasTraits):
    """Mixed into the Explorer: the ``trust_*`` traits; ``trust_subject`` counts what was explained."""

    #: What this part uses of the Explorer's other parts (read, called or set); tests/widgets/test_parts.py checks it
    USES: tuple[str, ...] = ('runner', 'choices', 'target', 'recompute', 'cancel', 'method')

    trust_methods = List(Unicode(), default_value=list(DEFAULT_METHODS)).tag(sync=True)  # names from the saliency registry
    trust_mode = Choice(MODES, "cascade").tag(sync=True)
    trust_maps = Array()  # panels/trust.py: uint8 [methods, stages done, THUMB, THUMB]; TrustInfo
    trust_info = Dict().tag(sync=True)
    trust_verdicts = Dict().tag(sync=True)  # {method: {"similarity", "stage", "fails", "text", "model", "image"}}
    trust_subject = Int(0).tag(sync=True)  # bumped when the image, target or network changes: a result with another is stale

    def run_trust_checks(self, wait: bool = False) -> None:
        """Run the sanity check and the deletion / insertion curves of ``trust_methods`` on the current
        image and target. In a kernel it streams from the runner's worker; ``wait`` blocks until it ends."""
        self.recompute("trust")
        if wait:
            self.runner.wait()

    def stop_trust_checks(self) -> None:
        """Stop at the next stage; what was computed stays shown."""
        self.cancel("trust")

    @validate("trust_methods")
    def _valid_trust_methods(self, proposal):
        methods = [str(m) for m in proposal["value"]]
        known = [name for name, _ in self.choices["options"]["method"]]
        unknown = [m for m in methods if m not in known]
        if unknown or not methods or len(set(methods)) != len(methods):
            raise TraitError(f"trust_methods must name saliency methods, each once, at least one (of {', '.join(known)}); "
                             f"got {methods}")
        return methods

    @observe("choices")
    def _fit_methods(self, change):
        """A new network narrows the saliency methods offered (attention rollout: transformers only): a
        chosen method it lacks goes back to the default, and the Trust tab keeps the ones it offers."""
        known = [name for name, _ in change["new"]["options"]["method"]]
        if self.method not in known:
            self.method = self.traits()["method"].default_value
        kept = [m for m in self.trust_methods if m in known]
        if kept != self.trust_methods:
            self.trust_methods = kept or [m for m in DEFAULT_METHODS if m in known]

    @observe("image", "target", "net")
    def _trust_subject_changed(self, change):
        self.trust_subject += 1
        if change["name"] == "net":
            self.trust_verdicts = {}

    @observe("layer", "channel")
    def _trust_unit_changed(self, change):
        if self.target == "unit":
            self.trust_subject += 1
