"""``cw.Explorer`` in marimo 0.25, headless chromium: ``marimo run`` of an app that returns the widget,
and ``marimo edit`` of an app that wraps it in ``mo.ui.anywidget`` with a cell that reads its value.

Checked in each: the canvases are drawn, the default model puts a cat first on the offline cat, a click
on a feature-map tile reaches the kernel (the kernel's saliency caption names the clicked unit; in edit,
the dependent cell re-runs and prints it), every control looks like a control (marimo's CSS reset
strips borders and padding), no error from our code. In edit (outputs capped at ~610 px) the Explorer
takes its compact layout and every section fits the cap. Screenshots: test-artifacts/browser/marimo-*.png.
"""

from __future__ import annotations

import pytest

from frontends import (MarimoServer, marimo_explorer_app, check_explorer, compact_fit, open_page, our_errors, screenshot, show_section,
                       unstyled_controls)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUN_APP = marimo_explorer_app("medium")

EDIT_APP = '''
import marimo

app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo
    import cnn_widgets as cw
    return cw, mo


@app.cell
def _(cw, mo):
    explorer = mo.ui.anywidget(cw.Explorer())
    explorer
    return (explorer,)


@app.cell
def _(explorer, mo):
    # re-runs whenever the widget's state changes in the front end
    mo.md(f"selected unit: {explorer.value.get('layer', '')}[{explorer.value.get('channel', '')}] (cnnw-reactive)")
    return


if __name__ == "__main__":
    app.run()
'''


def served_page(browser, mode: str, app: str):
    """A page on ``marimo <mode>`` serving ``app``; the page and the server end with the module."""
    server = MarimoServer(mode, app).start()
    page = open_page(browser, server.page_url())
    try:
        yield page
    finally:
        page.context.close()
        server.stop()


@pytest.fixture(scope="module")
def marimo_run(browser):
    yield from served_page(browser, "run", RUN_APP)


@pytest.fixture(scope="module")
def marimo_edit(browser):
    yield from served_page(browser, "edit", EDIT_APP)


def test_marimo_run_returned_widget_draws_and_clicks(marimo_run):
    page = marimo_run
    try:
        measured = check_explorer(page)
        root = page.locator("div.cnnw-explorer").first
        assert root.get_attribute("data-host") == "marimo-run"
        assert root.get_attribute("data-layout") == "full", "marimo run does not cap the output: the full layout"
        assert unstyled_controls(page) == []
        assert our_errors(page) == [], our_errors(page)
        print(measured)
    finally:
        screenshot(page, "marimo-run")


def test_marimo_edit_compact_fits_the_cell_and_reacts(marimo_edit):
    page = marimo_edit
    try:
        measured = check_explorer(page, show_section=lambda name: show_section(page, name))
        unit = measured["clicked_unit"]
        # mo.ui.anywidget: the click changed the value, so the cell that reads it ran again in the kernel
        page.get_by_text(f"selected unit: {unit} (cnnw-reactive)").wait_for(timeout=60_000)

        root = page.locator("div.cnnw-explorer").first
        assert root.get_attribute("data-host") == "marimo-edit"
        fit = compact_fit(page)
        print(fit)
        assert fit["layout"] == "compact", fit
        assert fit["cap"] is not None and fit["cap"]["maxHeight"] <= 700, f"marimo edit caps outputs: {fit['cap']}"
        # the whole Explorer fits in the capped output (no scrolling of the cell to reach a section)
        assert not fit["after"]["cap"]["scrollable"] and fit["after"]["rootHeight"] <= fit["cap"]["maxHeight"], fit
        names = [s["name"] for s in fit["sections"]]
        assert names[:4] == ["predictions", "saliency", "occlusion", "feature_maps"], names
        assert "tree" in names
        for section in fit["sections"]:
            assert section.get("height", 0) > 30, f"section {section['name']} is not shown: {section}"
            assert section["bottom"] <= fit["cap"]["bottom"] + 1, f"section {section['name']} goes below the cell: {section}"
        show_section(page, "feature_maps")
        screenshot(page, "marimo-edit-feature-maps")
        show_section(page, "predictions")
        assert unstyled_controls(page) == []
        assert our_errors(page) == [], our_errors(page)
    finally:
        screenshot(page, "marimo-edit")
