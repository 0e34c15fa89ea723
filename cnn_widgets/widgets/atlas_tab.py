"""The Atlas tab of the Explorer: an activation atlas of the selected layer over the attached scan's
images (Carter et al., Distill 2019), a class filter (the class activation atlas), the top patches of
a hovered cell; a click makes the cell's direction what the Explorer explains (target ``"atlas"``:
saliency of that direction on the image), and shift-click or "Visualise cell" visualises it in the
Visualise tab. The build is a job of the Explorer's runner (``panels/atlas.py``): Build is
``recompute("atlas")``, with progress and Cancel like every other job.
"""

from __future__ import annotations

import numpy as np
import torch
import traitlets
from PIL import Image
from traitlets import Dict, Int, TraitError, observe

from ..engine import CnnWidgetsError
from ..engine.targets import Direction, check_direction
from .panels import panels_recomputed_by
from .panels.atlas import ICON_SIZE
from .options import Choice, IntRange
from .serialization import Array

ICONS = {"patches": "mean patches (fast)", "visualize": "feature visualisation (slow)"}
PATCH_SIZE = 48  # pixels of each top patch shown on hover
ALL_CELLS = -1
ATLAS_TARGET = "atlas"  # the value of the Explorer's ``target`` while an atlas cell's direction is explained


class AtlasTab(traitlets.HasTraits):
    """Mixed into the Explorer: the ``atlas_*`` traits; a click sets ``target`` to ``"atlas"``."""

    #: What this part uses of the Explorer's other parts (read, called or set); tests/widgets/test_parts.py checks it
    USES: tuple[str, ...] = ('runner', 'model_turns', 'net', 'scan', 'predictions', 'tab', 'target', 'viz_mode', 'viz_direction', 'recompute', 'cancel', 'start_visualization', '_report', '_clear_error')

    atlas_grid = IntRange(8, min=4, max=24).tag(sync=True)
    atlas_icons = Choice(ICONS, "patches").tag(sync=True)
    atlas_class = Int(ALL_CELLS).tag(sync=True)  # a class index: keep the cells that most raise it; -1: all
    atlas_image = Array()  # uint8 [grid * ICON_SIZE, grid * ICON_SIZE, 3]
    atlas_info = Dict().tag(sync=True)  # {"layer", "grid", "cell": px, "cells": [[row, col, count, score]], "classes", "error"}
    atlas_patches = Array()  # uint8 [k, PATCH_SIZE, PATCH_SIZE, 3]: the hovered cell's top patches
    atlas_hover = Dict().tag(sync=True)  # {"row", "col", "count"} of the hovered cell
    atlas_target = Dict().tag(sync=True)  # {"layer", "row", "col", "label"} of the explained direction; {} none

    def _init_atlas(self) -> None:
        self._atlas = None  # the atlas built last for this layer (panels/atlas.py hands it over)
        self._shown_atlas = None  # what is drawn of it (class-filtered)
        self._atlas_direction: Direction | None = None

    def build_atlas(self, wait: bool = True) -> None:
        """Build (or take from the cache) the atlas of the selected layer over the scan's images.

        A job of the runner: in a kernel it runs in the background with progress and Cancel;
        ``wait`` blocks until it is drawn.
        """
        if self.scan is None:
            raise CnnWidgetsError("the atlas needs a scan: set explorer.scan = net.scan(images) first")
        self.recompute("atlas")
        if wait:
            self.runner.wait()

    def atlas_view(self, atlas) -> tuple[object, dict]:
        """What is drawn of ``atlas`` now: ``(the class-filtered atlas, its traits)`` (call with the model's turn held)."""
        classes = [[ALL_CELLS, "all cells"]] + [[p["index"], f"class {p['label']}"] for p in self.predictions]
        if self.atlas_class not in [value for value, _ in classes]:
            classes.append([self.atlas_class, f"class {self.net.label(self.atlas_class)}"])
        if atlas is None:
            return None, {"atlas_image": None, "atlas_info": {"classes": classes}}
        if self.atlas_class != ALL_CELLS:
            atlas = atlas.class_filter(self.atlas_class, k=max(4, len(atlas.cells) // 4), progress=False)
        return atlas, {"atlas_image": np.asarray(atlas.render()),
                       "atlas_info": {"layer": atlas.layer, "grid": atlas.grid, "cell": ICON_SIZE, "classes": classes,
                                      "cells": [[c.row, c.col, c.count, c.score] for c in atlas.cells]}}

    def atlas_shown(self, atlas, shown) -> None:
        """The atlas a build drew (on the widget's thread, with its traits)."""
        self._atlas, self._shown_atlas = atlas, shown

    def _show_atlas(self) -> None:
        with self.model_turns.kernel():
            shown, traits = self.atlas_view(self._atlas)
        self._shown_atlas = shown
        with self.hold_sync():
            for name, value in traits.items():
                setattr(self, name, value)

    def atlas_cell_patches(self, row: int, col: int) -> None:
        """Show the top dataset patches of cell ``(row, col)`` (what hovering it does)."""
        cell = self._atlas_cell(row, col)
        with self.model_turns.kernel():
            crops = self._shown_atlas.patches(cell)
        resized = [np.asarray(Image.fromarray(c).resize((PATCH_SIZE, PATCH_SIZE), Image.BILINEAR)) for c in crops]
        with self.hold_sync():
            self.atlas_patches = np.stack(resized) if resized else None
            self.atlas_hover = {"row": row, "col": col, "count": cell.count}

    def visualize_atlas_cell(self, row: int, col: int, wait: bool = False) -> None:
        """Make the cell's direction the Visualise tab's target, show that tab and start."""
        cell = self._atlas_cell(row, col)
        self.viz_mode = "visualize"
        self.viz_direction = (Direction(self._shown_atlas.layer, torch.from_numpy(np.asarray(cell.direction, np.float32))),
                              f"atlas cell ({row}, {col}) of {self._shown_atlas.layer}")
        self.tab = "visualize"
        self.start_visualization(wait=wait)

    def explain_atlas_cell(self, row: int, col: int) -> None:
        """Make the cell's direction what the Explorer explains (the target menu's "atlas cell (r, c) of <layer>")."""
        cell = self._atlas_cell(row, col)
        layer = self._shown_atlas.layer
        self.explain_direction(Direction(layer, torch.from_numpy(np.asarray(cell.direction, np.float32)),
                                         name=f"atlas cell ({cell.row}, {cell.col}) of {layer}"),
                               cell=(cell.row, cell.col))

    def explain_direction(self, direction: Direction, cell: tuple[int, int] | None = None) -> None:
        """Explain ``direction`` (a :class:`~cnn_widgets.engine.targets.Direction` of a layer of this
        network): saliency shows the gradient of its direction objective on the image.

        A direction of an unknown layer or of the wrong length is refused (``LayerNotFoundError``,
        ``TargetError``) before anything changes.
        """
        if not isinstance(direction, Direction):
            raise CnnWidgetsError(f"explain_direction takes a Direction(layer, vector), got {type(direction).__name__}")
        check_direction(direction, self.net.layer(direction.layer))
        row, col = cell if cell is not None else (None, None)
        with self.hold_sync(), self.runner.batch():
            self._atlas_direction = direction
            self.atlas_target = {"layer": direction.layer, "row": row, "col": col, "label": str(direction)}
            if self.target == ATLAS_TARGET:  # another cell: the target trait does not change, its panels must
                self.runner.request(panels_recomputed_by("target", self))
            else:
                self.target = ATLAS_TARGET
            self.viz_direction = (direction, str(direction))  # the Visualise tab shows it too (after the target change)

    def atlas_direction(self) -> Direction:
        """The engine target while ``target == "atlas"``."""
        if self._atlas_direction is None:
            raise CnnWidgetsError("no atlas cell is explained; click a cell in the Atlas tab")
        return self._atlas_direction

    def check_atlas_target(self) -> str:
        """The ``target`` value ``"atlas"``, allowed once a cell's direction is there (else a ``TraitError``)."""
        if self._atlas_direction is None:
            raise TraitError("target 'atlas' needs an atlas cell: click a cell in the Atlas tab "
                             "(or call explorer.explain_atlas_cell(row, col))")
        return ATLAS_TARGET

    def _atlas_cell(self, row: int, col: int):
        atlas = getattr(self, "_shown_atlas", None)
        cell = atlas.cell(int(row), int(col)) if atlas is not None and self._atlas is not None else None
        if cell is None:
            raise CnnWidgetsError(f"the atlas has no cell at ({row}, {col})")
        return cell

    def _on_atlas_message(self, content: dict) -> None:
        action = content.get("action")
        try:
            if action == "hover":
                self.atlas_cell_patches(content.get("row", -1), content.get("col", -1))
            elif action == "visualize":
                self.visualize_atlas_cell(content.get("row", -1), content.get("col", -1))
            elif action == "explain":
                self.explain_atlas_cell(content.get("row", -1), content.get("col", -1))
            self._clear_error("atlas")
        except (CnnWidgetsError, TraitError, ValueError) as exc:
            self._report("atlas", str(exc))

    @traitlets.validate("atlas_class")
    def _check_atlas_class(self, proposal):
        value = proposal["value"]
        net = getattr(self, "net", None)
        count = net.num_classes if net is not None else None
        if value != ALL_CELLS and (count is None or not 0 <= value < count):
            allowed = f"a class index 0..{count - 1}" if count else "only -1 (this network gives no class scores)"
            raise TraitError(f"atlas_class must be -1 (all cells) or {allowed}, got {value}")
        return value

    @observe("atlas_class")
    def _atlas_class_changed(self, change):
        if getattr(self, "_ready", False) and self._atlas is not None:
            self._show_atlas()

    @observe("net")
    def _atlas_target_gone(self, change):
        count = change["new"].num_classes if change["new"] is not None else None
        if self.atlas_class != ALL_CELLS and (count is None or self.atlas_class >= count):
            self.atlas_class = ALL_CELLS  # a class of the old network the new one does not have
        # a direction belongs to the network it was measured on
        if self._atlas_direction is not None:
            self._atlas_direction, self.atlas_target = None, {}
            if self.target == ATLAS_TARGET:
                self.target = "top"

    @observe("layer", "scan", "net", "predictions")
    def _atlas_stale(self, change):
        if getattr(self, "_ready", False) and change["name"] != "predictions":
            self._atlas = None  # another layer, scan or network: Build again (a built one comes from the cache)
            if self.runner.running("atlas"):
                self.cancel("atlas")  # a build for the old one is never drawn over the new
        if getattr(self, "_ready", False):
            self._show_atlas()
