"""``cw.Explorer()`` in a real browser: JupyterLab 4 and Notebook 7, headless chromium.

One notebook per server kind is opened for the whole module (the default model's first load and the
Explorer's first full computation take ~15 s on 2 cores); the tests below share it, each waiting for
the state it needs. What Python sent is read back from the kernel by running extra cells; what the
browser drew is read with ``getImageData`` from the canvases' intrinsic pixels.

DOM contract (the renderer in js/ sets it): root ``div.cnnw-explorer[data-status]``, ``.cnnw-error``,
``.cnnw-top1``, ``button.cnnw-layer[data-layer]``, ``canvas.cnnw-fmap`` with ``data-version``,
``data-channels``, ``data-cols``, ``data-tile``, ``data-gap``, ``data-colormap``, ``.cnnw-hover``,
``select[data-trait=method]``, ``canvas.cnnw-saliency``, ``input[data-trait=opacity]``,
``canvas.cnnw-occlusion``, ``input[data-trait=window]``, ``.cnnw-tree-node[data-layer][data-channel]``,
``.cnnw-tree-children``, ``button.cnnw-tree-up``.
"""

from __future__ import annotations

import base64
import statistics
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

ROOT = "div.cnnw-explorer"
FMAP = "canvas.cnnw-fmap"
FIRST_RENDER_TIMEOUT_MS = 180_000
UPDATE_TIMEOUT_MS = 120_000

SETUP_CELL = """\
import numpy as np
import cnn_widgets as cw

explorer = cw.Explorer()
net = explorer.net
cat = cw.sample_image("cat")"""

DISPLAY_CELL = "explorer"

# test-only helpers: what Python sent, as JSON-able values
HELPERS_CELL = """\
import base64 as _b64

def _cnnw_fmap(channels):
    fmap = np.ascontiguousarray(explorer.fmap)
    picked = np.ascontiguousarray(fmap[list(channels)])
    return {"shape": list(fmap.shape), "colormap": explorer.colormap, "layer": explorer.layer,
            "dead": [int(c) for c in np.flatnonzero(np.asarray(explorer.fmap_dead).astype(bool))]
                    if explorer.fmap_dead is not None else [],
            "data": _b64.b64encode(picked.tobytes()).decode()}"""

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"  # as in conftest.py
LATENCY_FILE = ARTIFACTS / "latency.txt"

# -------------------------------------------------------------------------------------------- page-side JS
CANVAS_STATE_JS = """
(selector) => {
  const c = document.querySelector(selector);
  if (!c) return null;
  return { ...c.dataset, width: c.width, height: c.height };
}
"""

# RGBA of a canvas rectangle, base64 (intrinsic pixels, not CSS pixels)
CANVAS_PIXELS_JS = """
([selector, x, y, w, h]) => {
  const c = document.querySelector(selector);
  if (!c) throw new Error('no ' + selector);
  const ctx = c.getContext('2d');
  if (!ctx) throw new Error(selector + ' has no 2d context');
  if (w === null) { w = c.width; h = c.height; }
  const data = ctx.getImageData(x, y, w, h).data;
  let s = '';
  for (let i = 0; i < data.length; i += 8192) s += String.fromCharCode.apply(null, data.subarray(i, i + 8192));
  return { w, h, b64: btoa(s) };
}
"""

# CSS (client) coordinates of the centre of channel c's tile in the feature-map canvas
TILE_CENTER_JS = """
(c) => {
  const cv = document.querySelector('canvas.cnnw-fmap');
  const d = cv.dataset, cols = +d.cols, tile = +d.tile, gap = +d.gap;
  const x = gap + (c % cols) * (tile + gap) + tile / 2, y = gap + Math.floor(c / cols) * (tile + gap) + tile / 2;
  const r = cv.getBoundingClientRect();
  return { x: r.left + x * r.width / cv.width, y: r.top + y * r.height / cv.height };
}
"""

# Time (performance.now) from an action to the next data-version change of a canvas; null if none.
# Actions: ["layer", name] clicks a layer button; ["select", [css, value]] changes a <select>;
# ["range", [css, value]] moves a range input (input event).
TIME_REDRAW_JS = """
async ([canvasSelector, what, arg, timeoutMs]) => {
  const root = document.querySelector('div.cnnw-explorer');
  const canvas = () => root.querySelector(canvasSelector);
  const before = canvas().dataset.version;
  let t0 = 0;
  const done = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      const c = canvas();
      if (c && c.dataset.version !== before) { observer.disconnect(); resolve(performance.now() - t0); }
    });
    observer.observe(root, { attributes: true, attributeFilter: ['data-version'], subtree: true, childList: true });
    setTimeout(() => { observer.disconnect(); resolve(null); }, timeoutMs);
  });
  t0 = performance.now();
  if (what === 'layer') {
    root.querySelector(`button.cnnw-layer[data-layer="${CSS.escape(arg)}"]`).click();
  } else {
    const [selector, value] = arg;
    const input = root.querySelector(selector);
    input.value = String(value);
    input.dispatchEvent(new Event('input', { bubbles: true }));
    if (what === 'select') input.dispatchEvent(new Event('change', { bubbles: true }));
  }
  return await done;
}
"""

# Click channel c's tile (synthetic events at its centre); time until the handler has run and the
# next frame is due (the selection outline is drawn on an overlay canvas, no data-version).
# Returns [ms to handler done, ms to next animation frame, overlay pixels changed].
TIME_TILE_CLICK_JS = """
async (c) => {
  const cv = document.querySelector('canvas.cnnw-fmap');
  const overlay = document.querySelector('canvas.cnnw-fmap-overlay');
  const snap = () => overlay ? overlay.getContext('2d').getImageData(0, 0, overlay.width, overlay.height).data : null;
  const before = snap();
  const d = cv.dataset, cols = +d.cols, tile = +d.tile, gap = +d.gap;
  const x = gap + (c % cols) * (tile + gap) + tile / 2, y = gap + Math.floor(c / cols) * (tile + gap) + tile / 2;
  const r = cv.getBoundingClientRect();
  const opts = { bubbles: true, cancelable: true, clientX: r.left + x * r.width / cv.width,
                 clientY: r.top + y * r.height / cv.height, button: 0 };
  const t0 = performance.now();
  cv.dispatchEvent(new MouseEvent('mousemove', opts));
  cv.dispatchEvent(new MouseEvent('mousedown', opts));
  cv.dispatchEvent(new MouseEvent('mouseup', opts));
  cv.dispatchEvent(new MouseEvent('click', opts));
  const handled = performance.now() - t0;
  const frame = await new Promise((resolve) => requestAnimationFrame(() => resolve(performance.now() - t0)));
  const after = snap();
  let changed = 0;
  if (before && after) for (let i = 0; i < after.length; i += 4) if (after[i + 3] !== before[i + 3]) changed++;
  return [handled, frame, changed];
}
"""


# -------------------------------------------------------------------------------------------- helpers
def canvas_state(page, selector: str) -> dict:
    state = page.evaluate(CANVAS_STATE_JS, selector)
    assert state is not None, f"{selector} is not on the page"
    return state


def canvas_rgba(page, selector: str, x: int = 0, y: int = 0, w: int | None = None, h: int | None = None) -> np.ndarray:
    got = page.evaluate(CANVAS_PIXELS_JS, [selector, x, y, w, h])
    return np.frombuffer(base64.b64decode(got["b64"]), dtype=np.uint8).reshape(got["h"], got["w"], 4)


def version(page, selector: str) -> int:
    value = canvas_state(page, selector).get("version")
    assert value is not None, f"{selector} has no data-version (the renderer sets it after each draw)"
    return int(value)


def wait_version_above(page, selector: str, old: int, timeout_ms: int = UPDATE_TIMEOUT_MS) -> int:
    page.wait_for_function(
        "([s, v]) => { const c = document.querySelector(s); return c && Number(c.dataset.version) > v; }",
        arg=[selector, old],
        timeout=timeout_ms,
    )
    return version(page, selector)


def wait_idle(page, timeout_ms: int = UPDATE_TIMEOUT_MS) -> str:
    """Wait until the widget is not busy; returns its data-status ("idle" or "error")."""
    page.wait_for_function(
        "(s) => { const r = document.querySelector(s); return r && r.dataset.status && r.dataset.status !== 'busy'; }",
        arg=ROOT,
        timeout=timeout_ms,
    )
    return page.get_attribute(ROOT, "data-status")


def kernel_wait(nb, expression: str, expected, attempts: int = 20):
    """Poll a kernel value until it equals ``expected`` (browser->kernel messages are asynchronous)."""
    value = None
    for _ in range(attempts):
        value = nb.kernel_json(expression)
        if value == expected:
            return value
        nb.page.wait_for_timeout(250)
    return value


def text_of(page, selector: str) -> str:
    return " ".join((page.text_content(selector) or "").split())


def record_latency(lines: list[str]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with LATENCY_FILE.open("a") as out:
        out.write("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


# -------------------------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module", autouse=True)
def _fresh_latency_file():
    LATENCY_FILE.unlink(missing_ok=True)


@pytest.fixture(scope="module", params=["lab", "notebook"])
def explorer_page(request, new_notebook_page):
    """The Explorer notebook, run, in one page of a ``lab`` or ``notebook`` server (shared by the module)."""
    kind = request.param
    # tall enough for the whole widget: its element screenshot is then not covered by the app's bars
    nb = new_notebook_page(kind, f"explorer_{kind}.ipynb", [SETUP_CELL, DISPLAY_CELL, HELPERS_CELL], viewport=(1400, 2600))
    nb.screenshot_selector = ROOT
    try:
        nb.open()
        nb.run_all(timeout_s=FIRST_RENDER_TIMEOUT_MS / 1000)
        nb.page.wait_for_selector(f"{FMAP}[data-version]", timeout=FIRST_RENDER_TIMEOUT_MS)
        wait_idle(nb.page, FIRST_RENDER_TIMEOUT_MS)
    except Exception:
        nb.screenshot("explorer_setup-failed")
        nb.close()
        raise
    yield nb
    nb.close()


# -------------------------------------------------------------------------------------------- tests
def assert_tiles_match_python(nb, page) -> str:
    """Canvas tiles of a few channels == LUT[fmap] as the kernel holds it (within 1 level)."""
    page.mouse.move(1, 1)  # no hover highlight over the tiles
    state = canvas_state(page, FMAP)
    channels = int(state["channels"])
    probe = sorted({0, 1, 2, channels // 3, channels // 2, channels - 1})
    sent = nb.kernel_json(f"_cnnw_fmap({probe})")
    c_total, h, w = sent["shape"]
    assert channels == c_total, f"canvas says {channels} channels, Python sent {c_total}"
    assert state.get("colormap") == sent["colormap"], (state.get("colormap"), sent["colormap"])
    fmap = np.frombuffer(base64.b64decode(sent["data"]), dtype=np.uint8).reshape(len(probe), h, w)

    from cnn_widgets.widgets.colormaps import lut

    table = lut(sent["colormap"])
    cols, tile, gap = int(state["cols"]), int(state["tile"]), int(state["gap"])
    rows = -(-channels // cols)
    assert int(state["width"]) >= gap + cols * (tile + gap) and int(state["height"]) >= gap + rows * (tile + gap)
    ty = (np.arange(tile) * h) // tile
    tx = (np.arange(tile) * w) // tile
    report = []
    for i, c in enumerate(probe):
        x0, y0 = gap + (c % cols) * (tile + gap), gap + (c // cols) * (tile + gap)
        drawn = canvas_rgba(page, FMAP, x0, y0, tile, tile)[..., :3].astype(int)
        expected = table[fmap[i][ty[:, None], tx[None, :]]].astype(int)
        diff = np.abs(drawn - expected)
        report.append((c, int(diff.max()), float((diff == 0).all(axis=-1).mean())))
        if c in sent["dead"]:
            continue  # dead channels may carry a visible mark on top of the tile
        assert diff.max() <= 1, (
            f"{sent['colormap']}: channel {c} tile at ({x0},{y0}) differs from LUT[fmap] by up to {diff.max()} "
            f"levels ({(diff.max(axis=-1) > 1).sum()} of {tile * tile} pixels)"
        )
    return (f"[{nb.server.kind}] fmap {sent['layer']} {c_total}x{h}x{w}, {sent['colormap']}, tile {tile}px, cols {cols}: "
            + ", ".join(f"c{c}: max diff {d}, exact {e:.0%}" for c, d, e in report))


def test_feature_map_pixels_match_python_tiles(explorer_page):
    nb, page = explorer_page, explorer_page.page
    assert wait_idle(page) == "idle", text_of(page, ".cnnw-error")
    lines = [assert_tiles_match_python(nb, page)]
    # another colormap, recoloured in the browser: still LUT[fmap] with that colormap's table
    select = page.locator('select[data-trait="colormap"]')
    home = select.input_value()
    other = next(name for name in ("magma", "coolwarm", "gray", "inferno") if name != home)
    v0 = version(page, FMAP)
    select.select_option(other)
    wait_version_above(page, FMAP, v0, 10_000)
    lines.append(assert_tiles_match_python(nb, page))
    v1 = version(page, FMAP)
    select.select_option(home)
    wait_version_above(page, FMAP, v1, 10_000)
    print("\n" + "\n".join(lines))


def test_top1_label_is_the_engine_prediction(explorer_page):
    nb, page = explorer_page, explorer_page.page
    wait_idle(page)
    label = nb.kernel_json("net.predict(cat)[0].label")
    page.wait_for_selector(".cnnw-predictions", timeout=UPDATE_TIMEOUT_MS)
    shown = text_of(page, ".cnnw-top1")
    assert shown == label, f".cnnw-top1 shows {shown!r}, net.predict(cat)[0].label is {label!r}"
    assert label in text_of(page, ".cnnw-predictions")
    assert page.get_by_text(label, exact=True).first.is_visible()


def test_click_to_redraw_latency(explorer_page):
    """Printed and written to test-artifacts/browser/latency.txt; never asserted (noisy shared cores)."""
    nb, page = explorer_page, explorer_page.page
    wait_idle(page)
    page.locator(FMAP).scroll_into_view_if_needed()

    def timed(canvas, what, arg, idle=True):
        value = page.evaluate(TIME_REDRAW_JS, [canvas, what, arg, 15_000])
        if idle:
            wait_idle(page)
        return value

    # 1. colormap: the whole grid recoloured in the browser from the maps it has
    colormaps = page.eval_on_selector_all('select[data-trait="colormap"] option', "(os) => os.map((o) => o.value)")
    home_colormap = page.input_value('select[data-trait="colormap"]')
    colormap_ms = []
    for name in [c for c in colormaps if c != home_colormap] + [home_colormap]:
        colormap_ms.append(timed(FMAP, "select", ['select[data-trait="colormap"]', name], idle=False))
    # 2. opacity: the saliency overlay re-blended in the browser
    opacity = page.input_value('input[type=range][data-trait="opacity"]')
    opacity_ms = [timed("canvas.cnnw-saliency", "range", ['input[type=range][data-trait="opacity"]', v], idle=False)
                  for v in ("0.2", "0.4", "0.8", opacity)]
    # 3. layers (while the target is the top class, so only the maps are recomputed): every layer click needs the kernel (the browser keeps only the shown layer's maps)
    layers = page.eval_on_selector_all("button.cnnw-layer", "(bs) => bs.map((b) => b.dataset.layer)")
    home = page.get_attribute("button.cnnw-layer.selected", "data-layer")
    assert home in layers
    other = layers[layers.index(home) - 2]
    layer_ms = []
    for _ in range(3):
        layer_ms.append(timed(FMAP, "layer", other))
        layer_ms.append(timed(FMAP, "layer", home))

    # 4. clicking tiles: the selection is drawn from data already in the browser (the kernel then
    #    recomputes the unit's saliency / tree / occlusion, which does not block the view)
    tile_clicks = [page.evaluate(TIME_TILE_CLICK_JS, c) for c in (3, 7, 11, 15, 19, 23, 27)]
    wait_idle(page)  # one coalesced kernel computation for the last clicked unit
    def summary(values):
        got = [v for v in values if v is not None]
        if not got:
            return "no redraw (data-version did not change within 15 s)"
        return f"median {statistics.median(got):.1f} ms, min {min(got):.1f}, max {max(got):.1f} (n={len(got)}" + (
            f", {len(values) - len(got)} without redraw)" if len(got) < len(values) else ")"
        )

    lines = [
        f"[{nb.server.kind}] click-to-redraw latency (performance.now in the page; action -> canvas data-version change)",
        f"  data in the browser, tile click -> handler done (selection outline on the overlay): "
        f"{summary([t[0] for t in tile_clicks])}",
        f"  data in the browser, tile click -> next animation frame: {summary([t[1] for t in tile_clicks])}"
        f"; overlay changed on {sum(t[2] > 0 for t in tile_clicks)}/{len(tile_clicks)} clicks",
        f"  data in the browser, colormap change -> canvas.cnnw-fmap redrawn: {summary(colormap_ms)}",
        f"  data in the browser, opacity slider -> canvas.cnnw-saliency redrawn: {summary(opacity_ms)}",
        f"  needs the kernel, layer click ({home} <-> {other}) -> canvas.cnnw-fmap redrawn: {summary(layer_ms)}",
    ]
    record_latency(lines)
    assert page.get_attribute("button.cnnw-layer.selected", "data-layer") == home
    assert all(t[2] > 0 for t in tile_clicks), "a tile click did not draw the selection outline"
    assert all(v is not None for v in colormap_ms + opacity_ms + layer_ms), lines


def test_clicking_a_tile_selects_the_channel_in_the_kernel(explorer_page):
    nb, page = explorer_page, explorer_page.page
    wait_idle(page)
    channels = int(canvas_state(page, FMAP)["channels"])
    current = nb.kernel_json("explorer.channel")
    wanted = 5 if current != 5 else 6
    assert wanted < channels
    page.locator(FMAP).scroll_into_view_if_needed()
    point = page.evaluate(TILE_CENTER_JS, wanted)
    page.mouse.move(point["x"], point["y"])
    hover = page.locator(".cnnw-hover")
    page.wait_for_function(
        "(c) => { const h = document.querySelector('.cnnw-hover'); return h && new RegExp('\\\\b' + c + '\\\\b').test(h.textContent); }",
        arg=wanted,
        timeout=10_000,
    )
    hover_text = " ".join(hover.text_content().split())
    page.mouse.click(point["x"], point["y"])
    assert kernel_wait(nb, "explorer.channel", wanted) == wanted, f"clicking tile {wanted} did not set explorer.channel"
    print(f"\n[{nb.server.kind}] hover over tile {wanted}: {hover_text!r}")


def test_method_and_opacity_change_the_saliency_canvas(explorer_page):
    nb, page = explorer_page, explorer_page.page
    selector = "canvas.cnnw-saliency"
    wait_idle(page)
    page.wait_for_selector(f"{selector}[data-version]", timeout=UPDATE_TIMEOUT_MS)
    page.locator(selector).scroll_into_view_if_needed()

    # opacity: redrawn in the browser from data already there
    v0, before = version(page, selector), canvas_rgba(page, selector)
    opacity = page.locator('input[type=range][data-trait="opacity"]')
    current = float(opacity.input_value())
    opacity.fill("0.1" if current > 0.5 else "0.9")
    v1 = wait_version_above(page, selector, v0, 10_000)
    after_opacity = canvas_rgba(page, selector)
    assert (after_opacity != before).any(axis=-1).mean() > 0.01, "opacity change left the saliency canvas unchanged"

    # method: a new backward pass in the kernel
    method = page.locator('select[data-trait="method"]')
    old_method = method.input_value()
    new_method = "gradient" if old_method != "gradient" else "guided_backprop"
    method.select_option(new_method)
    wait_version_above(page, selector, v1)
    wait_idle(page)
    after_method = canvas_rgba(page, selector)
    changed = (after_method != after_opacity).any(axis=-1).mean()
    assert changed > 0.01, f"method {old_method} -> {new_method} changed only {changed:.2%} of the saliency pixels"
    assert kernel_wait(nb, "explorer.method", new_method) == new_method


def test_window_slider_changes_the_occlusion_canvas(explorer_page):
    nb, page = explorer_page, explorer_page.page
    selector = "canvas.cnnw-occlusion"
    wait_idle(page)
    page.wait_for_selector(f"{selector}[data-version]", timeout=UPDATE_TIMEOUT_MS)
    page.locator(selector).scroll_into_view_if_needed()
    v0, before = version(page, selector), canvas_rgba(page, selector)
    window = page.locator('input[type=range][data-trait="window"]')
    old = int(float(window.input_value()))
    new = 64 if old != 64 else 48
    window.fill(str(new))
    wait_version_above(page, selector, v0)
    wait_idle(page)
    after = canvas_rgba(page, selector)
    changed = (after != before).any(axis=-1).mean()
    assert changed > 0.01, f"window {old} -> {new} changed only {changed:.2%} of the occlusion pixels"
    assert kernel_wait(nb, "explorer.window", new) == new


def test_tree_expands_on_click_and_goes_back_up(explorer_page):
    nb, page = explorer_page, explorer_page.page
    wait_idle(page)
    page.wait_for_selector(".cnnw-tree .cnnw-tree-node", timeout=UPDATE_TIMEOUT_MS)
    nodes = page.locator(".cnnw-tree .cnnw-tree-node")
    before = nodes.count()
    # a leaf of the current tree (a node without expanded children)
    leaf_index = page.evaluate(
        """() => {
          const nodes = [...document.querySelectorAll('.cnnw-tree .cnnw-tree-node')];
          return nodes.findIndex((n) => n.dataset.channel !== undefined && n.dataset.layer !== undefined
                                        && !n.querySelector('.cnnw-tree-children .cnnw-tree-node'));
        }"""
    )
    assert leaf_index >= 0, "no clickable leaf node in the tree"
    leaf = nodes.nth(leaf_index)
    layer, channel = leaf.get_attribute("data-layer"), leaf.get_attribute("data-channel")
    leaf.scroll_into_view_if_needed()
    leaf.click(position={"x": 10, "y": 10})
    clicked = f'.cnnw-tree-node[data-layer="{layer}"][data-channel="{channel}"]'
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll('.cnnw-tree .cnnw-tree-node').length > n",
        arg=[".cnnw-tree .cnnw-tree-node", before],
        timeout=UPDATE_TIMEOUT_MS,
    )
    wait_idle(page)
    after = nodes.count()
    children = page.locator(f"{clicked} .cnnw-tree-children .cnnw-tree-node").count()
    assert after > before and children > 0, f"tree: {before} -> {after} nodes, {children} children under {layer}[{channel}]"
    path = nb.kernel_json("explorer.tree_path")
    assert path and path[-1] == [layer, int(channel)]
    print(f"\n[{nb.server.kind}] tree: {before} nodes -> {after} after expanding {layer}[{channel}] ({children} children)")
    nb.screenshot("test_tree_expanded", selector=ROOT)
    # hovering a (cropped) thumbnail shows the whole picture with the crop box
    page.locator(f"{clicked} .cnnw-tree-children .cnnw-tree-picture").first.hover()
    page.wait_for_selector(".cnnw-tree-preview:not([hidden])", timeout=5_000)
    nb.screenshot("test_tree_preview", selector=".cnnw-tree-panel")
    page.mouse.move(1, 1)

    up = page.locator("button.cnnw-tree-up")
    up.click()
    page.wait_for_function(
        "(n) => document.querySelectorAll('.cnnw-tree .cnnw-tree-node').length < n", arg=after, timeout=UPDATE_TIMEOUT_MS
    )
    assert kernel_wait(nb, "len(explorer.tree_path)", len(path) - 1) == len(path) - 1


def test_bad_image_shows_an_error_and_the_widget_keeps_working(explorer_page):
    nb, page = explorer_page, explorer_page.page
    wait_idle(page)
    out = nb.run_cell(
        "try:\n    explorer.image = np.zeros((5, 5, 5))\nexcept Exception as exc:\n    print('refused:', type(exc).__name__)"
    )
    page.wait_for_function(
        "() => { const e = document.querySelector('.cnnw-error'); return e && e.textContent.trim().length > 0; }",
        timeout=UPDATE_TIMEOUT_MS,
    )
    message = text_of(page, ".cnnw-error")
    assert page.locator(".cnnw-error").is_visible()
    assert page.get_attribute(ROOT, "data-status") == "error"
    print(f"\n[{nb.server.kind}] bad image: cell printed {out.strip()!r}; widget shows {message!r}")
    nb.screenshot("test_bad_image_error_state", selector=ROOT)

    # a valid image works again, picked as a file in the widget: the error goes, the predictions
    # follow the new image
    v0 = version(page, FMAP)
    label = nb.kernel_json('net.predict(cw.sample_image("coffee"))[0].label',
                           setup='cw.sample_image("coffee").save("coffee_upload.png")')
    page.set_input_files("input[type=file].cnnw-file", str(nb.server.root / "coffee_upload.png"))
    page.wait_for_function(
        "(label) => { const t = document.querySelector('.cnnw-top1'); return t && t.textContent.trim() === label; }",
        arg=label,
        timeout=UPDATE_TIMEOUT_MS,
    )
    wait_version_above(page, FMAP, v0)
    assert wait_idle(page) == "idle"
    assert text_of(page, ".cnnw-error") == "" or not page.locator(".cnnw-error").is_visible()
    assert nb.kernel_json("explorer.image_name") == "custom"
    nb.screenshot("test_uploaded_file_shown", selector=ROOT)
    # and the cat again, through the sample picker in the widget
    v1 = version(page, FMAP)
    page.locator('select[data-trait="image_name"]').select_option("cat")
    wait_version_above(page, FMAP, v1)
    assert wait_idle(page) == "idle"
    assert text_of(page, ".cnnw-top1") == nb.kernel_json("net.predict(cat)[0].label")


def test_scan_top_patches_follow_the_selected_unit(explorer_page):
    """With a scan attached, selecting a unit shows its top patches.

    DOM contract: a panel ``.cnnw-top-images`` whose ``data-unit`` is ``"<layer>[<channel>]"`` (as ``str(cw.Unit)``) once it shows that unit, holding
    one ``.cnnw-top-patch`` per top image, best first, each with ``data-index`` (the image's index
    in the scanned source) and ``data-value`` (the unit's maximum on it).
    """
    nb, page = explorer_page, explorer_page.page
    wait_idle(page)
    nb.run_cell(
        "scan = net.scan([cw.sample_image(n) for n in cw.SAMPLE_IMAGES], layers=[explorer.layer], k=4, progress=False)\n"
        "explorer.scan = scan",
        timeout_s=300,
    )
    page.wait_for_selector(".cnnw-top-images", timeout=UPDATE_TIMEOUT_MS)
    layer = nb.kernel_json("explorer.layer")
    channel = 9 if nb.kernel_json("explorer.channel") != 9 else 10
    page.locator(FMAP).scroll_into_view_if_needed()
    point = page.evaluate(TILE_CENTER_JS, channel)
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function(
        "(unit) => { const p = document.querySelector('.cnnw-top-images'); return p && p.dataset.unit === unit; }",
        arg=f"{layer}[{channel}]",
        timeout=UPDATE_TIMEOUT_MS,
    )
    wait_idle(page)
    expected = nb.kernel_json(
        f"[[int(t.index), float(t.value)] for t in scan.top_images(cw.Unit({layer!r}, {channel}), method=None)]"
    )
    patches = page.eval_on_selector_all(
        ".cnnw-top-images .cnnw-top-patch", "(ps) => ps.map((p) => [Number(p.dataset.index), Number(p.dataset.value)])"
    )
    assert [i for i, _ in patches] == [i for i, _ in expected], f"shown {patches}, scan says {expected}"
    assert np.allclose([v for _, v in patches], [v for _, v in expected], rtol=1e-3, atol=1e-3)
    page.locator(".cnnw-top-images").scroll_into_view_if_needed()
    nb.screenshot("test_scan_top_patches", selector=".cnnw-top-images")

    # the scatter of the scanned images at this layer: hover one, click it, it becomes the image
    embedding = "canvas.cnnw-embedding"
    page.locator('button.cnnw-tab[data-tab="embedding"]').click()
    assert kernel_wait(nb, "explorer.tab", "embedding") == "embedding"
    page.wait_for_selector(f"{embedding}[data-count]", timeout=UPDATE_TIMEOUT_MS)
    assert int(canvas_state(page, embedding)["count"]) == nb.kernel_json("scan.count")
    hover = ".cnnw-embedding-panel .cnnw-embedding-hover"

    def hover_an_image():
        page.locator(embedding).scroll_into_view_if_needed()
        box = page.locator(embedding).bounding_box()
        for fy in np.linspace(0.05, 0.95, 19):
            for fx in np.linspace(0.03, 0.97, 33):
                x, y = box["x"] + fx * box["width"], box["y"] + fy * box["height"]
                page.mouse.move(x, y)
                if text_of(page, hover):
                    return x, y
        return None

    assert hover_an_image(), "no scanned image under the mouse anywhere on the embedding canvas"
    nb.screenshot("test_scan_embedding_hover", selector=".cnnw-embedding-panel")
    found = hover_an_image()  # again: the element screenshot may have scrolled the page
    shown = text_of(page, hover)
    index = int(shown.split()[1])
    page.mouse.click(*found)
    assert kernel_wait(nb, "explorer.scan_index", index, attempts=40) == index, f"clicked {shown!r}"
    wait_idle(page)
    nb.screenshot("test_scan_image_opened", selector=ROOT)


def test_no_errors_in_the_browser_console(explorer_page):
    errors = explorer_page.console_errors()
    assert errors == [], "\n".join(errors)
