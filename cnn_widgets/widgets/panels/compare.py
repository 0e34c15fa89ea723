"""The Compare tab: the same image side by side three ways.

* **Methods**: the saliency map of every method of ``trust_methods`` (the Trust tab's choice) in one
  row, each with its sanity verdict once the Trust tab has computed it.
* **Probes** (``net.probe``): the image with its parts shuffled, as a silhouette, in grey, blurred,
  each with its top class and how the target's probability moved ("does it still say cat?").
* **Two networks** (``cw.Explorer(net, image, compare=other_net)``): predictions, saliency of the
  selected method and the selected layer's feature maps (eight channels from the selected one) of
  both networks, e.g. trained vs randomised, or two checkpoints.

Computed only while the tab is shown (its row in ``panels/__init__.py``), in the panel lane, with a
partial result after each piece.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from ...engine import CnnWidgetsError
from ...engine.saliency import METHODS
from ...engine.targets import Direction, Unit
from .base import Panel, model_tag, target_text
from .feature_maps import feature_maps
from .predictions import TOP_K
from .saliency import saliency_display

CHANNELS = 8  # feature maps of each network shown, from the selected channel on


class ProbeEntry(TypedDict):
    kind: str  # "original" or a key of engine.probe.PROBES
    top: str  # the top class's label
    top_probability: float
    probability: float  # the target's probability on this picture
    change: float  # ... minus on the original


class OtherInfo(TypedDict, total=False):
    name: str
    target: str  # what is explained on it, in words
    predictions: list[dict]  # [{label, probability, index}] best first
    method: str
    layer: str  # the selected layer, when the other network has it
    channels: list[int]  # the channels shown of both networks
    note: str  # why a part is missing (another layer set, a unit it does not have)


class CompareInfo(TypedDict, total=False):
    """``compare_info``, beside ``compare_maps`` (uint8 [methods, H, W]), ``compare_probes`` (uint8
    [kinds, H, W, 3]), ``compare_fmaps`` / ``compare_other_fmaps`` (uint8 [channels, h, w]),
    ``compare_other_image`` (uint8 [H', W', 3]) and ``compare_other_saliency`` (uint8 [H', W'])."""

    methods: list[str]  # done so far
    target: str
    model: str  # base.model_tag (pairs each map with the Trust tab's verdict)
    probes: list[ProbeEntry]
    probe_note: str  # why there are no probes (a unit or a direction has no probability)
    other: OtherInfo  # {} without a second network


def _other_target(net, other, target):
    """The target on the other network and a note: the same class index or unit when it has it, else
    None and why."""
    if isinstance(target, Unit):
        if target.layer in other.layer_names and target.channel < other.layer(target.layer).channels:
            return target, ""
        return None, f"the other network has no unit {target}"
    if isinstance(target, Direction):
        return None, "an atlas cell's direction belongs to this network only"
    if other.num_classes is not None and target < other.num_classes:
        return target, ""
    return None, f"the other network has {other.num_classes} classes, no class {target}"


def _channels(net, layer: str, channel: int) -> list[int]:
    """``CHANNELS`` channels of ``layer`` from ``channel`` on (ending at the last one near the end)."""
    count = net.layer(layer).channels
    start = max(0, min(channel, count - CHANNELS))
    return list(range(start, min(count, start + CHANNELS)))


class ComparePanel(Panel):
    name = "compare"
    label = "comparison"

    def compute(self, explorer) -> dict:
        net, image = explorer.net, explorer.image
        target = explorer.resolved_target()
        methods = list(explorer.trust_methods)
        other = explorer.compare_net
        total = len(methods) + 1 + (other is not None)
        info: CompareInfo = {"methods": [], "target": target_text(net, target), "model": model_tag(net),
                             "probes": [], "probe_note": "", "other": {}}
        traits: dict = {"compare_maps": None, "compare_probes": None, "compare_fmaps": None, "compare_other_fmaps": None,
                        "compare_other_image": None, "compare_other_saliency": None}
        maps = []
        for method in methods:
            maps.append(saliency_display(net.saliency(image, target, method=method), METHODS[method].output))
            info["methods"].append(method)
            traits = {**traits, "compare_maps": np.stack(maps), "compare_info": _copy(info)}
            explorer.report_progress(len(maps), total, lambda traits=traits: traits, unit="pictures", urgent=len(maps) == 1)
        traits.update(self._probes(net, image, target, info))
        traits["compare_info"] = _copy(info)
        explorer.report_progress(len(maps) + 1, total, lambda traits=traits: traits, unit="pictures")
        if other is not None:
            try:
                traits.update(self._other(explorer, other, target, info))
            except CnnWidgetsError as exc:  # the other network cannot take this image (or has no classes): say so here
                info["other"] = {"name": other.name, "note": f"the other network: {exc}", "predictions": []}
        traits["compare_info"] = _copy(info)
        return traits

    @staticmethod
    def _probes(net, image, target, info: CompareInfo) -> dict:
        if not isinstance(target, int):
            info["probe_note"] = "probes follow a class's probability: choose 'top' or a class as the target"
            return {"compare_probes": None}
        probed = net.probe(image, target)
        info["probes"] = [{"kind": kind, "top": probed.top[kind][0].label, "top_probability": probed.top[kind][0].probability,
                           "probability": probed.probability[kind], "change": probed.change(kind)} for kind in probed.kinds]
        return {"compare_probes": np.stack([probed.images[kind] for kind in probed.kinds])}

    @staticmethod
    def _other(explorer, other, target, info: CompareInfo) -> dict:
        net, image, layer, method = explorer.net, explorer.image, explorer.layer, explorer.method
        result: dict = {"compare_other_image": other.display_image(image)}
        on_other, note = _other_target(net, other, target)
        entry: OtherInfo = {"name": other.name, "method": method, "note": note,
                            "predictions": [{"label": p.label, "probability": p.probability, "index": p.index}
                                            for p in other.predict(image, k=TOP_K)]}
        if on_other is not None:
            entry["target"] = target_text(other, on_other)
            result["compare_other_saliency"] = saliency_display(other.saliency(image, on_other, method=method),
                                                                METHODS[method].output)
        if layer in other.layer_names:
            channels = [c for c in _channels(net, layer, explorer.channel) if c < other.layer(layer).channels]
            ours = net.activations(image, [layer])[layer][channels]
            theirs = other.activations(image, [layer])[layer][channels]
            entry.update(layer=layer, channels=channels)
            result["compare_fmaps"] = feature_maps(ours).fmap
            result["compare_other_fmaps"] = feature_maps(theirs).fmap
        else:
            entry["note"] = "; ".join(filter(None, [note, f"the other network has no layer {layer}"]))
        info["other"] = entry
        return result


def _copy(info: CompareInfo) -> CompareInfo:
    return {**info, "methods": list(info["methods"]), "probes": list(info["probes"])}
