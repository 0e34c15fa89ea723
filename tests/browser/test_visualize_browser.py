"""The Explorer's Visualise tab in JupyterLab: Start (a ``recompute`` of the ``visualize`` job) streams
the optimisation from the runner's worker thread onto the canvas, and the last frame drawn is
exactly the kernel's picture."""

from __future__ import annotations

import base64

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CELLS = ["""\
import cnn_widgets as cw
explorer = cw.Explorer(cw.digits_cnn(), target="unit", layer="relu2", channel=3, tab="visualize", viz_steps=256)""",
         "explorer"]
CANVAS = "canvas.cnnw-viz"
PIXELS_JS = """
(selector) => {
  const c = document.querySelector(selector);
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = '';
  for (let i = 0; i < data.length; i += 8192) s += String.fromCharCode.apply(null, data.subarray(i, i + 8192));
  return { w: c.width, h: c.height, b64: btoa(s), version: Number(c.dataset.version) };
}"""


def test_start_streams_frames_onto_the_canvas(open_notebook):
    nb = open_notebook("lab", "visualize_tab.ipynb", CELLS)
    nb.screenshot_selector = "div.cnnw-explorer"
    nb.run_all(timeout_s=180)
    page = nb.page
    page.wait_for_selector("button.cnnw-viz-start", timeout=120_000)
    page.locator("button.cnnw-viz-start").scroll_into_view_if_needed()
    page.click("button.cnnw-viz-start")
    page.wait_for_function(
        "(s) => { const c = document.querySelector(s); const b = document.querySelector('button.cnnw-viz-start');"
        " const body = document.querySelector('div.cnnw-explorer .cnnw-viz-body');"
        " return c && b.dataset.running === 'false' && Number(c.dataset.version) > 0"
        " && body && body.textContent.includes('step 256 of 256'); }",
        arg=CANVAS, timeout=120_000)
    got = page.evaluate(PIXELS_JS, CANVAS)
    drawn = np.frombuffer(base64.b64decode(got["b64"]), np.uint8).reshape(got["h"], got["w"], 4)
    sent = np.array(nb.kernel_json("explorer.viz_frame.tolist()"), np.uint8)
    assert drawn.shape[:2] == sent.shape[:2] == (16, 16)
    np.testing.assert_array_equal(drawn[..., :3], sent)
    assert (drawn[..., 3] == 255).all() and sent.std() > 0
    assert got["version"] >= 3, "frames were not streamed while the run went on (only the last one arrived)"
    info = nb.kernel_json("explorer.viz_info")
    assert info["step"] == info["steps"] == 256 and not info["interrupted"]
    assert nb.kernel_json("explorer.progress['visualize']['state']") == "done"
    assert "step 256 of 256" in page.text_content("div.cnnw-explorer .cnnw-viz-body")
