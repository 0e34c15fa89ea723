"""The Explorer's Trust and Compare tabs in JupyterLab: Run checks streams the sanity check from the
runner's worker onto the strip, whose pixels are the kernel's maps through the inferno table; the
curves' AUC legend and the saliency caption's verdict are the kernel's; "compare…" opens the methods
side by side and the second network."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from cnn_widgets.widgets.colormaps import lut
from test_atlas_browser import PIXELS_JS  # (canvas pixels as base64)

pytestmark = pytest.mark.browser

CELLS = ["""\
import cnn_widgets as cw
from cnn_widgets.engine.digits_dataset import digits_split
from cnn_widgets.engine.sanity import randomized_copy
net = cw.digits_cnn()
other = cw.Network(randomized_copy(net.model, ["fc", "conv2"]), preprocess=net.preprocess, name="randomised")
explorer = cw.Explorer(net, digits_split("test")[3][0], tab="trust")
explorer.compare_net = other""",
         "explorer"]



def pixels(page, selector):
    got = page.evaluate(PIXELS_JS, selector)
    return np.frombuffer(base64.b64decode(got["b64"]), np.uint8).reshape(got["h"], got["w"], 4)


def test_run_checks_draws_the_kernels_maps_curves_and_verdicts(open_notebook):
    nb = open_notebook("lab", "trust_tab.ipynb", CELLS)
    nb.screenshot_selector = "div.cnnw-explorer"
    nb.run_all(timeout_s=180)
    page = nb.page
    page.wait_for_selector("button.cnnw-trust-run", timeout=120_000)
    page.locator("button.cnnw-trust-run").scroll_into_view_if_needed()
    page.click("button.cnnw-trust-run")
    page.wait_for_function(
        "() => { const b = document.querySelector('button.cnnw-trust-run');"
        " return b.dataset.running === 'false' && document.querySelectorAll('.cnnw-trust-verdict').length === 3"
        " && document.querySelectorAll('.cnnw-trust-legend[data-metric=deletion] [data-auc]').length === 3; }",
        timeout=120_000)
    info = nb.kernel_json("explorer.trust_info")
    maps = np.array(nb.kernel_json("explorer.trust_maps.tolist()"), np.uint8)
    assert nb.kernel_json("explorer.progress['trust']['state']") == "done"
    stages = info["stages"]
    assert maps.shape[:2] == (3, len(stages)) == (3, len(info["planned"]))
    table = lut("inferno")
    for r, method in enumerate(info["methods"]):
        for c, stage in enumerate(stages):
            drawn = pixels(page, f'canvas.cnnw-trust-map[data-method="{method}"][data-stage="{stage}"]')
            np.testing.assert_array_equal(drawn[..., :3], table[maps[r, c]])
    for metric in ("deletion", "insertion"):
        shown = page.evaluate(f"() => Array.from(document.querySelectorAll('.cnnw-trust-legend[data-metric={metric}] [data-auc]'),"
                              " (e) => [e.dataset.method, Number(e.dataset.auc)])")
        assert dict(shown) == pytest.approx(info["curves"][metric]["auc"], abs=1e-12)
    # the saliency caption now carries guided backprop's verdict on this model
    verdict = nb.kernel_json("explorer.trust_verdicts['guided_backprop']")
    caption = page.locator(".cnnw-sanity").first
    assert caption.get_attribute("data-fails") == str(verdict["fails"]).lower()
    assert f"{verdict['similarity']:.2f}" in caption.text_content()
    nb.screenshot("trust_done", "div.cnnw-explorer")
    # the saliency panel's "compare…" opens the Compare tab: the methods and both networks
    page.click("button.cnnw-compare-open")
    page.wait_for_function("() => document.querySelectorAll('canvas.cnnw-compare-map').length === 3"
                           " && document.querySelectorAll('canvas.cnnw-compare-saliency').length === 2"
                           " && document.querySelectorAll('canvas.cnnw-compare-probe').length === 5", timeout=120_000)
    assert nb.kernel_json("explorer.tab") == "compare"
    assert nb.kernel_json("explorer.compare_info['other']['name']") == "randomised"
    probes = nb.kernel_json("[p['probability'] for p in explorer.compare_info['probes']]")
    shown = page.evaluate("() => Array.from(document.querySelectorAll('[data-probability]'), (e) => Number(e.dataset.probability))")
    assert shown == pytest.approx(probes, abs=1e-12)
    nb.screenshot("compare", "div.cnnw-explorer")
    assert not nb.console_errors()
