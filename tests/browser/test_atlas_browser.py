"""The Explorer's Atlas tab in JupyterLab: Build draws the kernel's atlas on the canvas, hovering a
cell shows its count and top patches, a click makes the cell's direction the explained target
(saliency recomputed, the target menu names the cell), the wheel zooms about the cursor (the same
cell stays under it, the drawn scale follows the view), drag pans, double-click fits again."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CELLS = ["""\
import torch
import cnn_widgets as cw
from cnn_widgets.engine.datasets import digits_split
net = cw.digits_cnn()
scan = net.scan(torch.utils.data.Subset(digits_split("test"), range(40)), layers=["relu2"], k=3, progress=False)
explorer = cw.Explorer(net, scan=scan, layer="relu2", atlas_grid=6, tab="atlas")""",
         "explorer"]
CANVAS = "canvas.cnnw-atlas"
PIXELS_JS = """
(selector) => {
  const c = document.querySelector(selector);
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = '';
  for (let i = 0; i < data.length; i += 8192) s += String.fromCharCode.apply(null, data.subarray(i, i + 8192));
  const r = c.getBoundingClientRect();
  return { w: c.width, h: c.height, b64: btoa(s), version: Number(c.dataset.version), view: c.dataset.view,
           zoom: Number(c.dataset.zoom), rect: [r.left, r.top, r.width, r.height] };
}"""


def drawn(page):
    """Canvas pixels, view and box, after scrolling the canvas into sight (a kernel cell scrolls the notebook)."""
    page.locator(CANVAS).scroll_into_view_if_needed()
    got = page.evaluate(PIXELS_JS, CANVAS)
    pixels = np.frombuffer(base64.b64decode(got["b64"]), np.uint8).reshape(got["h"], got["w"], 4)
    return pixels, json.loads(got["view"]), got


def client_point(got, cx: float, cy: float) -> tuple[float, float]:
    """Page coordinates of canvas pixel (cx, cy) (the canvas may be drawn at another css size)."""
    left, top, width, height = got["rect"]
    return left + cx * width / got["w"], top + cy * height / got["h"]


def assert_drawn_through_view(pixels, view, atlas, avoid: set) -> int:
    """Every canvas pixel that shows the centre of an atlas pixel has that pixel's colour (cells in
    ``avoid`` carry an outline); returns how many were compared."""
    scale, tx, ty = view
    size = 32
    checked = 0
    for y in range(0, atlas.shape[0], 3):
        for x in range(0, atlas.shape[1], 3):
            if (y // size, x // size) in avoid or min(y % size, x % size) < 3 or max(y % size, x % size) > size - 4:
                continue
            cx, cy = int((x + 0.5) * scale + tx), int((y + 0.5) * scale + ty)
            if 0 <= cx < pixels.shape[1] and 0 <= cy < pixels.shape[0]:
                np.testing.assert_allclose(pixels[cy, cx, :3].astype(int), atlas[y, x].astype(int), atol=2,
                                           err_msg=f"atlas pixel {(y, x)} at canvas {(cy, cx)}")
                checked += 1
    return checked


def test_atlas_draws_hovers_explains_and_zooms(open_notebook):
    nb = open_notebook("lab", "atlas_tab.ipynb", CELLS)
    nb.screenshot_selector = "div.cnnw-explorer"
    nb.run_all(timeout_s=180)
    page = nb.page
    page.wait_for_selector("button.cnnw-tab[data-tab='atlas']", timeout=120_000)
    page.click("button.cnnw-tab[data-tab='atlas']")  # attaching the scan opened "Top images"
    page.wait_for_selector("button.cnnw-atlas-build", timeout=60_000)
    page.locator("button.cnnw-atlas-build").scroll_into_view_if_needed()
    page.click("button.cnnw-atlas-build")
    page.wait_for_function("(s) => { const c = document.querySelector(s); return c && c.style.display !== 'none' "
                           "&& c.dataset.view && Number(c.dataset.version) > 0; }", arg=CANVAS, timeout=120_000)
    page.locator(CANVAS).scroll_into_view_if_needed()

    # the canvas shows the kernel's atlas, scaled into the canvas (nearest pixels, no smoothing)
    atlas = np.array(nb.kernel_json("explorer.atlas_image.tolist()"), np.uint8)
    info = nb.kernel_json("explorer.atlas_info")
    assert atlas.shape == (6 * 32, 6 * 32, 3) and info["grid"] == 6
    pixels, view, got = drawn(page)
    assert view[0] == pytest.approx(got["w"] / atlas.shape[1]) and got["zoom"] == 1
    assert (pixels[..., :3] < 250).any(axis=2).mean() > 0.1, "the canvas is (nearly) blank"
    assert assert_drawn_through_view(pixels, view, atlas, avoid=set()) > 200

    # hover a cell: its count and top patches
    row, col, count, _ = max(info["cells"], key=lambda c: c[2])
    scale, tx, ty = view
    centre = ((col + 0.5) * 32 * scale + tx, (row + 0.5) * 32 * scale + ty)
    page.mouse.move(*client_point(got, *centre))
    page.wait_for_function(f"() => document.querySelector('.cnnw-atlas-hover').textContent"
                           f".includes('cell ({row}, {col}): {count} samples; top patches')", timeout=60_000)
    page.wait_for_function("() => document.querySelector('canvas.cnnw-atlas-patches').width > 1", timeout=60_000)
    assert nb.kernel_json("explorer.atlas_hover") == {"row": row, "col": col, "count": count}

    # click it: the cell's direction is what saliency explains, and the menu says so
    before = nb.kernel_json("explorer.saliency_info['target']")
    _, _, got = drawn(page)
    top_before = page.evaluate("(s) => document.querySelector(s).getBoundingClientRect().top", CANVAS)
    page.mouse.click(*client_point(got, *centre))
    label = f"atlas cell ({row}, {col}) of relu2"
    page.wait_for_function("(label) => { const s = document.querySelector('.cnnw-explain select');"
                           " return s && s.value === 'atlas' && s.selectedOptions[0].textContent === label; }",
                           arg=label, timeout=60_000)
    page.wait_for_function("() => document.querySelector('div.cnnw-explorer').dataset.status !== 'busy'", timeout=60_000)
    page.wait_for_timeout(300)  # the panels' results drawn
    top_after = page.evaluate("(s) => document.querySelector(s).getBoundingClientRect().top", CANVAS)
    assert abs(top_after - top_before) < 4, f"the atlas moved {top_after - top_before:.0f} px under the pointer"
    state = nb.kernel_json("[explorer.target, explorer.atlas_target, explorer.saliency_info['target'], explorer.error]",
                           setup="explorer.compute()")
    assert state[0] == "atlas" and state[1]["row"] == row and state[1]["col"] == col
    assert state[2] == label != before
    assert state[3] == ""  # a click on a cell is a normal action: no error (occlusion and the tree say why in a note)
    assert "not an atlas cell's direction" in nb.kernel_json("explorer.occlusion_info['note']")

    # the wheel zooms about the cursor: the same cell stays under it, and the picture is drawn at the new scale
    _, _, got = drawn(page)
    page.mouse.move(*client_point(got, *centre))
    page.mouse.wheel(0, -400)  # exp(0.4) = 1.49 x
    page.wait_for_function("(s) => Number(document.querySelector(s).dataset.zoom) > 1.4", arg=CANVAS, timeout=30_000)
    pixels, zoomed, got = drawn(page)
    assert zoomed[0] == pytest.approx(view[0] * np.exp(0.4), rel=1e-3)
    image_under = [(c - t) / s for c, t, s in zip(centre, zoomed[1:], (zoomed[0], zoomed[0]))]
    assert (int(image_under[1] // 32), int(image_under[0] // 32)) == (row, col)
    assert assert_drawn_through_view(pixels, zoomed, atlas, avoid={(row, col)}) > 100
    nb.screenshot("atlas-zoomed", selector="div.cnnw-explorer")

    # drag pans (and is no click: the explained cell stays); double-click fits again
    _, _, got = drawn(page)  # the element screenshot scrolled the page
    start = client_point(got, *centre)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 60, start[1] + 40, steps=6)
    page.mouse.up()
    panned = json.loads(page.get_attribute(CANVAS, "data-view"))
    assert panned[0] == pytest.approx(zoomed[0]) and (panned[1], panned[2]) != (zoomed[1], zoomed[2])
    assert nb.kernel_json("explorer.atlas_target")["row"] == row
    _, panned_view, got = drawn(page)
    scale, tx, ty = panned_view
    points = [((c[1] + 0.5) * 32 * scale + tx, (c[0] + 0.5) * 32 * scale + ty) for c in info["cells"] if (c[0], c[1]) != (row, col)]
    # fit from another cell in sight: that cell is not explained
    other_point = next(p for p in points if 8 < p[0] < got["w"] - 8 and 8 < p[1] < got["h"] - 8)
    page.mouse.dblclick(*client_point(got, *other_point))
    page.wait_for_function("(s) => Number(document.querySelector(s).dataset.zoom) === 1", arg=CANVAS, timeout=30_000)
    pixels, view_again, _ = drawn(page)
    assert view_again == pytest.approx(view)
    page.wait_for_timeout(800)  # longer than a click's wait for a second click
    target = nb.kernel_json("explorer.atlas_target")
    assert (target["row"], target["col"]) == (row, col), "a double-click to fit changed the explained cell"
    assert not nb.console_errors()
