"""What every panel of the Explorer shares: the ``Panel`` interface and a few display helpers."""

from __future__ import annotations

import hashlib
import operator

from typing import Any, ClassVar

import numpy as np
import torch

from ...engine import Unit
from ...engine.scan.model import scan_stand_in
from ...engine.targets import Direction
from ...engine.structure import state_key


class Panel:
    """One panel: computes its result traits from the Explorer's settings.

    ``compute(explorer)`` reads the explorer's traits (``net``, ``image``, ``layer``, ...) and
    returns ``{trait name: value}``; the explorer sets them all at once, or shows the error raised.
    Which trait changes recompute a panel is not written here but in the table of
    ``panels/__init__.py``. A panel may keep caches; ``forget`` drops them (new network or image).

    A slow panel (a ``lane`` in the table) runs in a worker thread in a kernel; between two
    pieces of its work it calls ``explorer.report_progress(done, total, partial, unit=...)``
    (``progress.py``), which moves the progress bar, shows ``partial()``'s traits, lets other
    computations use the model, and raises ``Cancelled`` when the user cancels or a newer request
    comes in. A panel that never calls it is cancelled at its end (its result is then dropped).
    """

    name: ClassVar[str]  # the key of the panel in the table, ``timings`` and ``working``
    label: ClassVar[str]  # what the status line says while it is computed ("computing <label>…")
    pushes_per_s: ClassVar[float | None] = None  # partial results shown a second at most; None: progress.PUSHES_PER_S

    @staticmethod
    def options() -> dict[str, list[list[str]]]:
        """Menus built when an Explorer is made (``{trait: [[value, label], ...]}``), beside the traits' own."""
        return {}

    def compute(self, explorer) -> dict[str, Any]:
        raise NotImplementedError

    def forget(self) -> None:
        """Drop cached results (the network or the image changed)."""

    def applied(self, explorer) -> None:
        """Called on the widget's thread once ``compute``'s result traits are set (a panel that hands
        more than traits to its tab does it here, never from the worker)."""


#: What occlusion and the tree show while the target is a direction (an atlas cell): a note, not an
#: error -- clicking a cell is a normal action, and these two methods take a class or a unit.
DIRECTION_NOTE = "explains a class or a unit, not an atlas cell's direction (saliency shows the cell)"


def target_text(net, target) -> str:
    """How captions name a resolved target: ``unit layer[channel]``, ``class <label>`` or a direction's
    own words (``atlas cell (r, c) of <layer>``)."""
    if isinstance(target, Direction):
        return str(target)
    if isinstance(target, Unit):
        return f"unit {target}"
    label = net.label(target)
    # a model without labels names its classes "class 3" already (structure.class_names)
    return label if label == f"class {operator.index(target)}" else f"class {label}"


def signed_bytes(values: torch.Tensor, extent: float) -> np.ndarray:
    """Signed values as uint8 for a diverging colormap: ``128 + 127 * v / extent``, so 128 is exactly zero."""
    return (values / extent * 127.0 + 128.0).round().clamp(0, 255).to(torch.uint8).contiguous().numpy()


def scan_problem(explorer, layer: str) -> str | None:
    """Why the attached scan cannot describe ``layer`` (the scan panels show it), or None."""
    scan, net = explorer.scan, explorer.net
    scanned_net = getattr(scan, "net", None)
    if scanned_net is not None and scanned_net is not net and getattr(scanned_net, "model", None) is not net.model:
        return "the attached scan was made on another network; scan again with net.scan(images)"
    if layer not in scan.layers:
        stand_in = scan_stand_in(net, layer, scanned=scan.layers)
        if stand_in is not None:  # a layer a default scan leaves out: its top images are in the scan
            return (f"layer {layer} is not in this scan: its top images are {stand_in.layer}'s ({stand_in.reason}); "
                    f"pick {stand_in.layer}, or scan it with net.scan(images, layers=[{layer!r}])")
        shown = ", ".join(scan.layers[:6]) + (" …" if len(scan.layers) > 6 else "")
        return (f"layer {layer} is not in this scan (it covers {shown}); scan it with "
                f"net.scan(images, layers=[{layer!r}]) or pick a scanned layer")
    if scan.count == 0:
        return "the scan covers no image yet"
    return None


def model_tag(net) -> str:
    """A short name of what ``net``'s model computes now (``structure.state_key``): a sanity verdict
    and a saliency map belong together only when their tags are equal."""
    return hashlib.sha1(repr(state_key(net)).encode()).hexdigest()[:12]
