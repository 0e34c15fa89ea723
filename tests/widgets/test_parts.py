"""The Explorer's parts say what they use of each other (issue 22): each mixin declares ``USES``, the
attributes of other parts it reads, calls or sets, and this test reads the mixin's source to check
that it touches nothing else, and that the Explorer provides everything each part declares. A
newcomer can tell from one file what a tab may touch."""

from __future__ import annotations

import ast
import inspect
import textwrap

import anywidget
import pytest

import cnn_widgets as cw
from cnn_widgets.export.figure_mixin import FigureMixin
from cnn_widgets.widgets.atlas_tab import AtlasTab
from cnn_widgets.widgets.image_messages import ImageMessages
from cnn_widgets.widgets.layout_mode import LayoutMode
from cnn_widgets.widgets.progress import PanelProgress
from cnn_widgets.widgets.unit_view import UnitView
from cnn_widgets.widgets.visualize_tab import VisualizeTab

PARTS = (PanelProgress, VisualizeTab, AtlasTab, ImageMessages, LayoutMode, FigureMixin, UnitView)
WIDGET = set(dir(anywidget.AnyWidget))  # what every widget has (hold_sync, send_state, observe, ...)


def own_and_touched(part) -> tuple[set[str], set[str]]:
    """(what the part defines: class-body names and attributes its ``_init_*`` creates, every ``self.x`` it touches)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(part)))
    cls = tree.body[0]
    own = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            own.add(node.name)
            if node.name.startswith("_init"):
                own |= {t.attr for t in ast.walk(node) if isinstance(t, ast.Attribute) and isinstance(t.ctx, ast.Store)
                        and isinstance(t.value, ast.Name) and t.value.id == "self"}
        elif isinstance(node, ast.Assign):
            own |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own.add(node.target.id)
    touched = {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
               and n.value.id == "self"}
    return own, touched


@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.__name__)
def test_a_part_touches_only_itself_and_what_it_declares(part):
    own, touched = own_and_touched(part)
    undeclared = touched - own - WIDGET - set(part.USES)
    assert not undeclared, f"{part.__name__} uses {sorted(undeclared)} of other parts without declaring them in USES"
    unused = set(part.USES) - touched
    assert not unused, f"{part.__name__}.USES lists {sorted(unused)}, which it never touches"


def test_the_explorer_provides_what_every_part_declares():
    explorer = cw.Explorer(cw.digits_cnn())
    for part in PARTS:
        missing = [name for name in part.USES if not hasattr(explorer, name)]
        assert not missing, f"{part.__name__} needs {missing}, which the Explorer does not have"
