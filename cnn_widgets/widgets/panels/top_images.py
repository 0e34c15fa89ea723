"""The selected unit's top images over an attached dataset scan: the receptive-field patch of its
maximum on each, beside a reconstruction of what in it drives the unit (Zeiler & Fergus 2014, fig. 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from ...engine import CnnWidgetsError, Unit
from ...engine.saliency import METHODS
from ...engine.scan import RECONSTRUCTIONS as SCAN_RECONSTRUCTIONS
from .base import Panel, model_tag, scan_problem

#: Reconstructions offered beside the top patches (``Scan.top_images(method=...)``), labelled as
#: the saliency method of the same rectifier rule.
# the engine decides which reconstructions exist; labels are the saliency methods' own
RECONSTRUCTIONS = {name: METHODS[name].label for name in SCAN_RECONSTRUCTIONS}
#: The top patches' reconstruction an Explorer starts with: one that differs from image to image.
#: On the default model the mean pairwise correlation of a unit's top-9 reconstructions (same-size
#: crops, top-9 over 120 augmented photos, 6 units per layer) is 1.00 / 0.79 / 0.92 for the deconvnet
#: at blocks.2.1 / blocks.4.2 / blocks.5.3, against 0.12 / 0.15 / 0.06 for guided backprop (and
#: 0.22 / 0.08 / 0.22 between the patches themselves): tests/widgets/test_scan_panels.py measures it.
DEFAULT_RECONSTRUCTION = "guided_backprop"
#: Said under the reconstructions of a method whose pictures need a warning (top_info["note"]).
RECONSTRUCTION_NOTES = {
    "deconvnet": "Deconvnet reconstructions look alike: the deconvnet ignores the forward pass's ReLU masks, so its "
                 "picture depends little on the image (nearly image-independent: Adebayo et al. 2018, Nie et al. 2018). "
                 "Guided backprop keeps the masks.",
}


class TopItem(TypedDict):
    """One top image of ``top_info["items"]``, best first."""

    index: int  # the image's index in the scan
    value: float  # the unit's maximum on it
    position: list[int] | None  # where that maximum is on the layer's map (y, x)
    box: list[int]  # its receptive field in the image: top, left, bottom, right
    height: int  # crop i is top_crops[i, :height, :width] (likewise top_reconstructions)
    width: int
    label: str | None  # the image's label, when the scan has labels


class TopInfo(TypedDict, total=False):
    """The ``top_info`` trait, beside ``top_crops`` and ``top_reconstructions`` (uint8 [k, h, w, 3]); ``{}`` without a scan."""

    unit: str  # "layer[channel]", as str(cw.Unit) writes it
    layer: str
    channel: int
    method: str  # the reconstruction (a key of RECONSTRUCTIONS)
    note: str  # what to keep in mind reading that reconstruction (RECONSTRUCTION_NOTES), or ""
    model: str  # base.model_tag: the method's Trust-tab verdict is shown when the tags match
    items: list[TopItem]
    message: str  # why pictures are missing, or ""
    by: str  # the ranking shown: "activation", or "relevance" (for scan_info["ranking"]'s class; engine RANKS)


@dataclass
class TopPatches:
    crops: np.ndarray | None  # uint8 [k, h, w, 3]: crop i in [i, :heights[i], :widths[i]], zero padded
    reconstructions: np.ndarray | None  # uint8 [k, h, w, 3] likewise (grey = 0); None without them
    items: list[dict]  # index, value, position, box, height, width, label per top image, best first


def top_patches(top_images) -> TopPatches:
    """A scan's ``top_images(unit)`` (``TopImage`` items) as two padded uint8 stacks plus JSON entries.

    Receptive-field crops are clipped at the image border, so they differ in size; they travel
    unresized (exactly what the scan gives) in one zero-padded array, with each one's size beside it.
    """
    items = list(top_images)
    if not items:
        return TopPatches(None, None, [])
    height = max(int(t.crop.shape[0]) for t in items)
    width = max(int(t.crop.shape[1]) for t in items)
    crops = np.zeros((len(items), height, width, 3), np.uint8)
    with_reconstructions = all(t.reconstruction is not None for t in items)
    recs = np.zeros_like(crops) if with_reconstructions else None
    entries = []
    for i, t in enumerate(items):
        h, w = int(t.crop.shape[0]), int(t.crop.shape[1])
        crops[i, :h, :w] = np.asarray(t.crop, np.uint8)[..., :3]
        if recs is not None:
            recs[i, :h, :w] = np.asarray(t.reconstruction, np.uint8)[..., :3]
        entries.append({
            "index": int(t.index),
            "value": float(t.value),
            "position": None if t.position is None else [int(v) for v in t.position],
            "box": [int(v) for v in t.box],
            "height": h,
            "width": w,
            "label": None if t.label is None else _label_text(t.label),
        })
    return TopPatches(crops, recs, entries)


def _label_text(label) -> str:
    if isinstance(label, (np.generic,)):
        label = label.item()
    return str(label)


class TopImagesPanel(Panel):
    name = "top_images"
    label = "top images"

    def compute(self, explorer) -> dict:
        none = {"top_crops": None, "top_reconstructions": None}
        scan = explorer.scan
        if scan is None:
            return {"top_info": {}, **none}
        unit = Unit(explorer.layer, explorer.channel)
        by = explorer.top_by if scan.ranking is not None else "activation"  # a scan ranked by activation only
        base: TopInfo = {"unit": str(unit), "layer": unit.layer, "channel": unit.channel, "method": explorer.reconstruction,
                         "note": RECONSTRUCTION_NOTES.get(explorer.reconstruction, ""), "model": model_tag(explorer.net),
                         "by": by}
        problem = scan_problem(explorer, unit.layer)
        if problem:
            return {"top_info": {**base, "items": [], "message": problem}, **none}
        try:
            top = scan.top_images(unit, method=explorer.reconstruction, by=by)
        except CnnWidgetsError as exc:
            # e.g. a loaded scan without its images: the values are known, the pictures are not
            table = scan.top(unit.layer, by)
            items = [{"index": int(i), "value": float(v)}
                     for i, v in zip(table["indices"][unit.channel], table["values"][unit.channel]) if i >= 0]
            return {"top_info": {**base, "items": items, "message": str(exc)}, **none}
        shown = top_patches(top)
        return {
            "top_info": {**base, "items": shown.items, "message": "" if shown.items else "no scanned image yet"},
            "top_crops": shown.crops,
            "top_reconstructions": shown.reconstructions,
        }
