"""``layout_mode`` and ``theme``: display-only choices sent through ``choices`` like every menu.

The renderer (js/src/frontend_layout.js, arrange.js) picks the layout from these; its choice logic is
tested in js/tests/frontend_layout.test.js and in the browsers (tests/browser/test_marimo_browser.py,
test_theme_browser.py). Here: the menus and thresholds come from layout_mode.py, a bad value is refused
with the allowed ones named and changes nothing, and switching needs no computation in the kernel.
"""

from pathlib import Path

import pytest
import traitlets

import cnn_widgets as cw
from cnn_widgets.widgets import layout_mode
from cnn_widgets.widgets.panels import triggers

JS_SOURCE = Path(__file__).resolve().parents[2] / "js" / "src"


@pytest.fixture(scope="module")
def explorer(tiny):
    return cw.Explorer(tiny, window=112, stride=112)


def test_menus_and_thresholds_come_from_layout_mode(explorer):
    options = explorer.choices["options"]
    assert [value for value, _ in options["layout_mode"]] == ["auto", "full", "compact", "presentation"]
    assert dict(options["layout_mode"]) == layout_mode.LAYOUTS
    assert dict(options["theme"]) == layout_mode.THEMES
    layout = explorer.choices["layout"]
    assert layout["compact_width"] == layout_mode.COMPACT_WIDTH and layout["compact_height"] == layout_mode.COMPACT_HEIGHT
    assert layout["sections"] == layout_mode.SECTIONS
    assert explorer.layout_mode == "auto" and explorer.theme == "auto"
    # the renderer holds no copy of the numbers or the labels
    source = "\n".join(p.read_text() for p in JS_SOURCE.rglob("*.js"))
    for copied in ("layout: compact", "layout: presentation", "theme of the page"):
        assert copied not in source, copied
    deciding = (JS_SOURCE / "frontend_layout.js").read_text() + (JS_SOURCE / "arrange.js").read_text()
    for number in (layout_mode.COMPACT_WIDTH, layout_mode.COMPACT_HEIGHT):
        assert str(number) not in deciding, number


def test_a_bad_value_is_refused_and_changes_nothing(explorer):
    explorer.layout_mode = "compact"
    with pytest.raises(traitlets.TraitError, match="layout_mode must be one of 'auto', 'full', 'compact', 'presentation', got 'huge'"):
        explorer.layout_mode = "huge"
    assert explorer.layout_mode == "compact"
    with pytest.raises(traitlets.TraitError, match="theme must be one of 'auto', 'light', 'dark'"):
        explorer.theme = "solarized"
    assert explorer.theme == "auto"
    # from the front end: refused, the error shown in the widget, the value kept
    explorer.set_state({"layout_mode": "huge"})
    assert explorer.layout_mode == "compact" and "layout_mode must be one of" in explorer.error
    explorer.set_state({"layout_mode": "presentation"})
    assert explorer.layout_mode == "presentation" and explorer.error == ""
    explorer.layout_mode = "auto"


def test_switching_layout_or_theme_computes_nothing(explorer):
    assert "layout_mode" not in triggers() and "theme" not in triggers()
    explorer.compute()
    timings = dict(explorer.timings)
    seq = explorer.result_seq
    explorer.layout_mode = "presentation"
    explorer.theme = "dark"
    assert not explorer.runner.dirty
    assert explorer.timings == timings and explorer.result_seq == seq
    explorer.layout_mode, explorer.theme = "auto", "auto"
