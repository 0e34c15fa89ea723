"""``cw.Explorer`` in Voila 0.5 (a notebook served as an app, no code cells shown), headless chromium.

Checked: the canvases are drawn, a cat first on the offline cat, a click on a feature-map tile reaches
the kernel (the kernel's saliency caption names the clicked unit), the controls look like controls, no
error from our code; with ``--theme=dark`` the Explorer follows the JupyterLab dark theme Voila uses
(text contrast >= 4.5 against the widget's background). Screenshots: test-artifacts/browser/voila-*.png.
"""

from __future__ import annotations

import pytest

from frontends import VoilaServer, check_explorer, open_page, our_errors, screenshot, unstyled_controls
from test_theme_browser import text_contrasts

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = ["import cnn_widgets as cw\n\nexplorer = cw.Explorer()\nexplorer"]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_voila_serves_a_working_explorer(browser, theme):
    server = VoilaServer(CELLS, theme=theme).start()
    page = None
    try:
        page = open_page(browser, server.page_url())
        measured = check_explorer(page)
        root = page.locator("div.cnnw-explorer").first
        assert root.get_attribute("data-layout") == "full"
        assert root.get_attribute("data-theme") == theme
        assert unstyled_controls(page) == []
        worst = min(text_contrasts(page), key=lambda item: item["ratio"])
        assert worst["ratio"] >= 4.5, f"least readable text under Voila's {theme} theme: {worst}"
        assert our_errors(page) == [], our_errors(page)
        print(measured, worst)
    finally:
        if page is not None:
            screenshot(page, f"voila-{theme}")
            page.context.close()
        server.stop()
