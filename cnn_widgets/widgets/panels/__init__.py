"""The Explorer's panels, one file each, and THE table of which trait change recomputes which panel.

Adding a panel: write ``panels/<name>.py`` with a :class:`~.base.Panel` subclass (its ``compute``
returns the result traits, declared on the Explorer), add its row below, and add its view to
``js/src/panels/`` and to the ``VIEWS`` list of ``js/src/index.js``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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

__all__ = ["PANELS", "Panel", "Row", "background_panels", "panels_recomputed_by", "triggers"]


def unit_targeted(explorer) -> bool:
    """The target is the selected unit, so the selection is part of what is explained."""
    return explorer.target == "unit"


def scan_attached(explorer) -> bool:
    """A scan is attached (without one the scan panels stay empty)."""
    return explorer.scan is not None


@dataclass(frozen=True)
class Row:
    panel: type[Panel]
    on: tuple[str, ...]  # a change of any of these traits recomputes the panel
    when: tuple[tuple[Callable[[object], bool], tuple[str, ...]], ...] = ()  # (condition, traits): only while it holds
    background: bool = False  # slow: computed off the kernel's message thread after the first paint (scheduler.py)


SELECTION = ("layer", "channel")  # what target "unit" is made of

#: The panels in the order they are computed (cheap first, occlusion last), each with the trait
#: changes that recompute it. The Explorer observes exactly the traits named here. The first
#: paint (image, predictions, feature maps) does not wait for the ``background`` ones.
PANELS: tuple[Row, ...] = (
    Row(ImagePanel, on=("net", "image")),
    Row(PredictionsPanel, on=("net", "image")),
    Row(FeatureMapsPanel, on=("net", "image", "layer", "scaling")),
    Row(ScanLayerPanel, on=("net", "scan"), when=((scan_attached, ("layer",)),)),
    Row(FiltersPanel, on=("net", "layer", "channel")),
    Row(TopImagesPanel, on=("net", "scan", "reconstruction"), when=((scan_attached, SELECTION),)),
    Row(SaliencyPanel, on=("net", "image", "target", "method"), when=((unit_targeted, SELECTION),), background=True),
    Row(TreePanel, on=("net", "image", "target", "k", "depth", "rule", "reduce", "tree_path"),
        when=((unit_targeted, SELECTION),), background=True),
    Row(OcclusionPanel, on=("net", "image", "target", "window", "stride", "fill", "occlusion_mode"),
        when=((unit_targeted, SELECTION),),
        background=True),
)


def background_panels() -> list[str]:
    """The slow panels: after the first paint and on front-end requests they run in a worker thread."""
    return [row.panel.name for row in PANELS if row.background]


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
