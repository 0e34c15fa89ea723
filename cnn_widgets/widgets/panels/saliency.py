"""Saliency of the target over the image, with any method of the engine's registry.

The method menu is ``cnn_widgets.engine.saliency.METHODS`` as it is when an Explorer is made: a
method registered there (a function plus a ``SaliencyMethod`` entry) is offered with no other edit.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch

from ...engine.pictures import magnitude_map, to_uint8
from ...engine.saliency import METHODS
from .base import Panel, model_tag, target_text

#: ``rgb`` maps show ``max_c |a_c|`` clipped at this percentile: a few extreme pixels would
#: otherwise wash the map out (Simonyan et al. 2014, sec. 3.1, take the same channel maximum).
PERCENTILE = 99.5


class SaliencyInfo(TypedDict):
    """The ``saliency_info`` trait, beside ``saliency`` (uint8 [H, W], 0 = none, 255 = strongest)."""

    method: str  # a key of METHODS
    output: str  # that method's output kind: "rgb" ([3, H, W] attribution) or "map" ([H, W])
    target: str  # what is explained, in words ("class tabby", "unit layer[channel]", "atlas cell (r, c) of layer")
    composite: str | None  # the LRP composite of method "lrp" (engine.lrp_rules.COMPOSITES), else None
    model: str  # base.model_tag of the model: the caption shows trust_verdicts[method] when its model is the same


def method_options(net=None) -> list[list[str]]:
    """``[name, label]`` of every registered saliency method, in registry order; with ``net``, only
    those that apply to it (``SaliencyMethod.applies``: no attention rollout on a CNN)."""
    return [[name, method.label] for name, method in METHODS.items() if net is None or method.applies(net)]


def saliency_display(attribution: torch.Tensor, output: str = "rgb") -> np.ndarray:
    """A raw attribution as a uint8 ``[H, W]`` heat map.

    ``rgb`` (a ``[3, H, W]`` attribution): ``max_c |a_c|`` over its ``PERCENTILE``-th percentile;
    ``map`` (an ``[H, W]`` map such as Grad-CAM): its positive part over its maximum.
    """
    a = attribution.detach().float().cpu()
    if output == "map":
        picture = magnitude_map(a.clamp(min=0), percentile=100.0)
    else:
        picture = magnitude_map(a, percentile=PERCENTILE)
    return to_uint8(picture, 0.0, 1.0)


class SaliencyPanel(Panel):
    name = "saliency"
    label = "saliency"

    @staticmethod
    def options(net=None) -> dict[str, list[list[str]]]:
        return {"method": method_options(net)}

    def compute(self, explorer) -> dict:
        target = explorer.resolved_target()
        method = explorer.method
        options = {"composite": explorer.composite} if method == "lrp" else {}  # the one method with a composite
        attribution = explorer.net.saliency(explorer.image, target, method=method, **options)
        output = METHODS[method].output
        info: SaliencyInfo = {"method": method, "output": output, "target": target_text(explorer.net, target),
                              "model": model_tag(explorer.net), "composite": options.get("composite")}
        return {"saliency": saliency_display(attribution, output), "saliency_info": info}
