"""The Explorer fits the screen it is shown on (issue 22, "UI faults a lecturer meets"), in headless chromium.

* ``layout_mode="presentation"`` in JupyterLab with the file browser open (its default), at 1280x800 and
  1920x1080: with the Explorer's top at the top of the notebook's view, the image with its predictions and
  the saliency and occlusion pictures show whole, the tab bar is one row (the tabs that do not fit are in
  its "more…" menu) and the text is the size the README states (17 px, headings 19 px, captions 15 px).
  Before: at 1280x800 the tabs took 3 rows, the strip 3, and the saliency picture ended 150 px below the view.
* ``marimo run`` of the default ``marimo.App()`` (width "compact": a 740 px column on any page): the full
  layout, two pictures across, not the one-section-at-a-time compact one; on a narrow page, compact.

Screenshots: test-artifacts/browser/presentation-fit-*.png.
"""

from __future__ import annotations

import pytest

from frontends import MarimoServer, marimo_explorer_app, open_page, our_errors, page_js, screenshot, wait_drawn

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENS = [(1280, 800), (1920, 1080)]

# With the Explorer's top scrolled to the top of its scroller (the notebook panel), where everything is.
MEASURE_JS = """async () => {
  const root = document.querySelector('div.cnnw-explorer');
  let scroller = root.parentElement;
  while (scroller && !(/(auto|scroll)/.test(getComputedStyle(scroller).overflowY) && scroller.scrollHeight > scroller.clientHeight)) scroller = scroller.parentElement;
  scroller.scrollTop += root.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const view = scroller.getBoundingClientRect();
  const box = (el) => { const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, width: r.width}; };
  const shown = [...root.querySelectorAll('.cnnw-tabs > *')].filter((e) => e.offsetParent);
  const strip = root.querySelector('.cnnw-layers'), stripBox = strip.getBoundingClientRect();
  const inStrip = [...strip.children].map((b) => b.getBoundingClientRect()).filter((r) => r.bottom > stripBox.top + 1 && r.top < stripBox.bottom - 1);
  const menu = root.querySelector('select.cnnw-tab-more');
  const size = (sel) => parseFloat(getComputedStyle(root.querySelector(sel)).fontSize);
  return {
    fileBrowser: !window.jupyterapp.shell.leftCollapsed && !!document.querySelector('#filebrowser') && document.querySelector('#filebrowser').offsetParent !== null,
    viewTop: view.top, viewBottom: Math.min(view.bottom, innerHeight), explorerTop: root.getBoundingClientRect().top,
    tabRows: new Set(shown.map((e) => Math.round(e.getBoundingClientRect().top))).size,
    tabs: shown.map((e) => e.dataset.tab || 'more'), menu: menu && menu.offsetParent ? [...menu.options].map((o) => o.value).filter(Boolean) : [],
    stripRows: new Set(inStrip.map((r) => Math.round(r.top))).size,
    selectedLayerShown: (() => { const r = strip.querySelector('.cnnw-layer.selected').getBoundingClientRect();
      return r.top >= stripBox.top - 0.5 && r.bottom <= stripBox.bottom + 0.5; })(),
    imagePanel: box(root.querySelector('.cnnw-stage > .cnnw-panel')), image: box(root.querySelector('canvas.cnnw-image')),
    saliency: root.querySelector('canvas.cnnw-saliency').offsetParent ? box(root.querySelector('canvas.cnnw-saliency')) : null,
    occlusion: root.querySelector('canvas.cnnw-occlusion').offsetParent ? box(root.querySelector('canvas.cnnw-occlusion')) : null,
    fonts: {text: size('.cnnw-bar'), heading: size('.cnnw-panel h3'), caption: size('.cnnw-caption'), tab: size('button.cnnw-tab'), strip: size('.cnnw-layer')},
    fit: root.dataset.fit,
  };
}"""


def show(page, section: str) -> None:
    page.locator(f"button.cnnw-tab[data-tab='{section}']").click()
    page.wait_for_function(f"() => document.querySelector(\"button.cnnw-tab[data-tab='{section}']\").classList.contains('selected')")
    page.wait_for_function(f"() => +document.querySelector('canvas.cnnw-{section}').dataset.version >= 1", timeout=240_000)


def test_presentation_fits_the_screen_in_jupyterlab_with_the_file_browser_open(request, new_notebook_page):
    nb = new_notebook_page("lab", "presentation_fit.ipynb",
                           ["import cnn_widgets as cw\nexplorer = cw.Explorer(layout_mode='presentation')", "explorer"],
                           viewport=SCREENS[0])
    request.node._cnnw_pages = [nb]  # conftest screenshots it, passed or failed
    nb.screenshot_selector = "div.cnnw-explorer"
    nb.open()
    page = nb.page
    try:
        nb.run_all()
        wait_drawn(page, selectors=("canvas.cnnw-image", "canvas.cnnw-saliency"))
        measured = {}
        for width, height in SCREENS:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(600)  # JupyterLab lays out again, then the Explorer fits itself
            screen = f"{width}x{height}"
            show(page, "saliency")
            first = page.evaluate(MEASURE_JS)
            screenshot(page, f"presentation-fit-{screen}-saliency", element=None)
            show(page, "occlusion")
            second = page.evaluate(MEASURE_JS)
            screenshot(page, f"presentation-fit-{screen}-occlusion", element=None)
            show(page, "saliency")
            measured[screen] = {**first, "occlusion": second["occlusion"]}
            print(screen, measured[screen])

            m = measured[screen]
            assert m["fileBrowser"], f"{screen}: the file browser is not open"
            assert abs(m["explorerTop"] - m["viewTop"]) <= 1, m
            bottom = m["viewBottom"]
            assert m["tabRows"] == 1, f"{screen}: the tab bar takes {m['tabRows']} rows: {m['tabs']}"
            assert {"saliency", "occlusion"} <= set(m["tabs"]), m["tabs"]
            assert m["stripRows"] >= 1 and m["selectedLayerShown"], m
            assert m["imagePanel"]["bottom"] <= bottom, f"{screen}: the image and its predictions end {m['imagePanel']['bottom'] - bottom:.0f} px below the view"
            for name in ("saliency", "occlusion"):
                assert m[name]["bottom"] <= bottom, f"{screen}: the {name} picture ends {m[name]['bottom'] - bottom:.0f} px below the view"
                assert m[name]["width"] >= 300, f"{screen}: the {name} picture is only {m[name]['width']:.0f} px wide"
            # the text sizes the README states for presentation
            assert m["fonts"] == {"text": 17, "heading": 19, "caption": 15, "tab": 17, "strip": 17}, m["fonts"]
        # the larger screen has the room: nothing shrinks there
        large = measured["1920x1080"]
        assert large["stripRows"] == 3 and large["saliency"]["width"] >= 440 and large["image"]["width"] >= 440, large
        assert nb.console_errors() == [], nb.console_errors()
    finally:
        nb.close()


MARIMO_DEFAULT_APP = marimo_explorer_app()  # marimo's default width: a compact column

LAYOUT_JS = page_js("""
  const root = deepQuery('div.cnnw-explorer');
  const box = (sel) => { const e = root.querySelector(sel); if (!e || !e.offsetParent) return null; const r = e.getBoundingClientRect(); return {left: r.left, top: r.top, width: r.width}; };
  return {layout: root.dataset.layout, host: root.dataset.host, width: root.getBoundingClientRect().width,
          image: box('canvas.cnnw-image'), saliency: box('canvas.cnnw-saliency'), occlusion: box('canvas.cnnw-occlusion')};
""")


def test_marimo_run_default_app_width_gets_the_full_layout(browser):
    server = MarimoServer("run", MARIMO_DEFAULT_APP).start()
    page = open_page(browser, server.page_url(), viewport=SCREENS[0])
    try:
        wait_drawn(page, selectors=("canvas.cnnw-image",))
        for width, height in SCREENS:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(500)  # the Explorer follows its container's width on the next frame
            shown = page.evaluate(LAYOUT_JS, None)
            print(width, height, shown)
            screenshot(page, f"presentation-fit-marimo-run-compact-app-{width}x{height}")
            assert shown["host"] == "marimo-run" and shown["width"] < 720, shown  # marimo's compact column
            assert shown["layout"] == "full", f"marimo run's compact column on a {width} px page gets the {shown['layout']} layout"
            wait_drawn(page, selectors=("canvas.cnnw-image", "canvas.cnnw-saliency", "canvas.cnnw-occlusion"))
            shown = page.evaluate(LAYOUT_JS, None)
            # the full layout: image and saliency side by side, occlusion shown too (no tab to click)
            assert shown["image"] and shown["saliency"] and shown["occlusion"], shown
            assert shown["saliency"]["left"] > shown["image"]["left"] + shown["image"]["width"] and abs(shown["saliency"]["top"] - shown["image"]["top"]) < 60, shown
        # a narrow page is a narrow screen: compact
        page.set_viewport_size({"width": 560, "height": 900})
        page.wait_for_timeout(500)
        screenshot(page, "presentation-fit-marimo-run-compact-app-560x900")
        assert page.evaluate(LAYOUT_JS, None)["layout"] == "compact"
        assert our_errors(page) == [], our_errors(page)
    finally:
        page.context.close()
        server.stop()
