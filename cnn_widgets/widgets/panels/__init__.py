"""The Explorer's panels and jobs, one file each, and THE table of which trait change recomputes which.

Adding a panel: write ``panels/<name>.py`` with a :class:`~.base.Panel` subclass (its ``compute``
returns the result traits, declared on the Explorer), add its row below, and add its view to
``js/src/panels/`` and to the ``VIEWS`` list of ``js/src/index.js``. A job the user starts (the
Visualise run, the Atlas build) is a panel whose row names no trait: only ``recompute(name)`` (the
front end's ``{"type": "recompute", "panel": name}``) starts it, and ``cancel(name)`` stops it.
The panel's name is its one name in Python, JS, ``recompute``, ``cancel``, ``progress`` and ``timings``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..runner import LONG_LANE, PANEL_LANE
from .atlas import AtlasPanel
from .compare import ComparePanel
from .base import Panel
from .feature_maps import FeatureMapsPanel
from .filters import FiltersPanel
from .image import ImagePanel
from .occlusion import OcclusionPanel
from .predictions import PredictionsPanel
from .saliency import SaliencyPanel
from .scan_layer import ScanLayerPanel
from .top_images import TopImagesPanel
from .tree import TreePanel
from .trust import TrustPanel
from .unit import UnitPanel
from .visualize import VisualizePanel

__all__ = ["PANELS", "Panel", "Row", "initial", "lanes", "on_demand", "panels_recomputed_by", "triggers"]


def unit_targeted(explorer) -> bool:
    """The target is the selected unit, so the selection is part of what is explained."""
    return explorer.target == "unit"


def compare_shown(explorer) -> bool:
    """The Compare tab is shown (it computes nothing while hidden)."""
    return explorer.tab == "compare"


def unit_shown(explorer) -> bool:
    """The "Inside a unit" tab is shown (it computes nothing while hidden)."""
    return explorer.tab == "unit"


def scan_attached(explorer) -> bool:
    """A scan is attached (without one the scan panels stay empty)."""
    return explorer.scan is not None


@dataclass(frozen=True)
class Row:
    panel: type[Panel]
    on: tuple[str, ...]  # a change of any of these traits recomputes the panel
    when: tuple[tuple[Callable[[object], bool], tuple[str, ...]], ...] = ()  # (condition, traits): only while it holds
    lane: str | None = None  # slow: computed by this lane's worker in a kernel, after the first paint (runner.py)


SELECTION = ("layer", "channel")  # what target "unit" is made of

#: The panels in the order they are computed (cheap first, occlusion last), each with the trait
#: changes that recompute it, then the jobs the user starts. The Explorer observes exactly the
#: traits named here. The first paint (image, predictions, feature maps) does not wait for the slow ones.
PANELS: tuple[Row, ...] = (
    Row(ImagePanel, on=("net", "image")),
    Row(PredictionsPanel, on=("net", "image")),
    Row(FeatureMapsPanel, on=("net", "image", "layer", "scaling")),
    Row(ScanLayerPanel, on=("net", "scan"), when=((scan_attached, ("layer",)),)),
    Row(FiltersPanel, on=("net", "layer", "channel")),
    Row(TopImagesPanel, on=("net", "scan", "reconstruction", "top_by"), when=((scan_attached, SELECTION),)),
    Row(SaliencyPanel, on=("net", "image", "target", "method", "composite"), when=((unit_targeted, SELECTION),),
        lane=PANEL_LANE),
    Row(TreePanel, on=("net", "image", "target", "k", "depth", "rule", "reduce", "composite", "tree_path"),
        when=((unit_targeted, SELECTION),), lane=PANEL_LANE),
    Row(OcclusionPanel, on=("net", "image", "target", "window", "stride", "fill", "occlusion_mode"),
        when=((unit_targeted, SELECTION),), lane=PANEL_LANE),
    Row(ComparePanel, on=(), when=((compare_shown, ("net", "image", "target", "method", "trust_methods", "layer", "channel",
                                                   "compare_net", "tab")),), lane=PANEL_LANE),
    Row(UnitPanel, on=(), when=((unit_shown, ("net", "image", "layer", "channel", "unit_position", "tab")),), lane=PANEL_LANE),
    Row(VisualizePanel, on=(), lane=LONG_LANE),
    Row(AtlasPanel, on=(), lane=LONG_LANE),
    Row(TrustPanel, on=(), lane=LONG_LANE),
)


def lanes() -> dict[str, str]:
    """The slow panels and the jobs, with their lane: in a kernel they run in that lane's worker thread."""
    return {row.panel.name: row.lane for row in PANELS if row.lane is not None}


def on_demand() -> list[str]:
    """The jobs only the user starts (no trait change recomputes them)."""
    return [row.panel.name for row in PANELS if not row.on and not row.when]


def initial(explorer) -> list[str]:
    """The panels a new Explorer computes: every one recomputed by a trait, or shown now (the Compare
    tab only while it is the tab shown); not the jobs only the user starts."""
    return [row.panel.name for row in PANELS if row.on or any(condition(explorer) for condition, _ in row.when)]


def triggers() -> list[str]:
    """Every trait named in the table (the ones the Explorer observes)."""
    names = [name for row in PANELS for name in (*row.on, *(n for _, traits in row.when for n in traits))]
    return list(dict.fromkeys(names))


def panels_recomputed_by(trait: str, explorer) -> list[str]:
    """The panels a change of ``trait`` recomputes, given the explorer's state now."""
    return [
        row.panel.name for row in PANELS
        if trait in row.on or any(trait in traits and condition(explorer) for condition, traits in row.when)
    ]
