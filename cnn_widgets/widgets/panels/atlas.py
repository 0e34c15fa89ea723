"""The Atlas tab's job: an activation atlas of the selected layer over the attached scan's images
(Carter et al., Distill 2019), built on the Explorer's runner with progress and Cancel.

Started by ``recompute("atlas")`` (the tab's Build button), stopped by ``cancel("atlas")``. Built
atlases are kept per (model state, scan, layer, grid, icons), so going back to one is instant and a
changed model or scan never shows an old one. What the tab shows of an atlas (the class filter,
hovered patches, a clicked cell) is ``atlas_tab.py``'s.
"""

from __future__ import annotations

from collections import OrderedDict

from ...engine import CnnWidgetsError
from ...engine.structure import state_key
from .base import Panel

ICON_SIZE = 32  # pixels per cell in the atlas picture
KEPT_ATLASES = 6


class AtlasPanel(Panel):
    name = "atlas"
    label = "atlas"

    def __init__(self):
        self.atlases: OrderedDict[tuple, object] = OrderedDict()
        self.built = None  # the atlas of the last computation (handed to the tab by ``applied``)
        self.view: tuple | None = None  # (the atlas shown, its traits)

    def compute(self, explorer) -> dict:
        w = explorer
        if w.scan is None:
            raise CnnWidgetsError("the atlas needs a scan: set explorer.scan = net.scan(images) first")
        key = (state_key(w.net), id(w.scan), w.scan.count, w.layer, w.atlas_grid, w.atlas_icons)
        atlas = self.atlases.get(key)
        if atlas is None:
            def callback(stage: str, done: int, total: int) -> None:
                explorer.report_progress(done, total, unit=stage)

            atlas = w.net.atlas(w.scan, w.layer, grid=w.atlas_grid, size=ICON_SIZE, visualize=w.atlas_icons == "visualize",
                                steps=64, progress=False, callback=callback)
            self.atlases[key] = atlas
            while len(self.atlases) > KEPT_ATLASES:
                self.atlases.popitem(last=False)
        self.atlases.move_to_end(key)
        self.built = atlas
        shown, traits = explorer.atlas_view(atlas)
        self.view = (shown, traits)
        return traits

    def applied(self, explorer) -> None:
        explorer.atlas_shown(self.built, self.view[0])

    def forget(self) -> None:
        pass  # keyed on the model's state and the scan: a new image cannot make an atlas stale
