"""The Compare tab of the Explorer (``panels/compare.py``): the methods of ``trust_methods`` side by
side on the image, the image's probes (``net.probe``), and a second network on the same image:
``cw.Explorer(net, image, compare=other_net)`` or ``explorer.compare_net = other_net``.
"""

from __future__ import annotations

import torch
import traitlets
from traitlets import Dict, validate

from ..engine import Network
from . import validation
from .serialization import Array


class CompareTab(traitlets.HasTraits):
    """Mixed into the Explorer: ``compare_net`` (kernel-only) and the ``compare_*`` result traits."""

    #: What this part uses of the Explorer's other parts (read, called or set); tests/widgets/test_parts.py checks it
    USES: tuple[str, ...] = ()

    compare_net = traitlets.Union([traitlets.Instance(Network), traitlets.Instance(torch.nn.Module)], allow_none=True)
    compare_info = Dict().tag(sync=True)  # panels/compare.py: CompareInfo
    compare_maps = Array()
    compare_probes = Array()
    compare_fmaps = Array()
    compare_other_fmaps = Array()
    compare_other_image = Array()
    compare_other_saliency = Array()

    @validate("compare_net")
    def _valid_compare_net(self, proposal):
        return None if proposal["value"] is None else validation.check_net(proposal["value"])
