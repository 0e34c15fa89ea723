"""cw.export_html from file:// with the network blocked: drawn, labelled, a static snapshot, figure buttons.

Every request that is not file:// is aborted (and recorded: there must be none). Screenshots go to
test-artifacts/browser/static_export_*.png.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnn_widgets as cw
from cnn_widgets.widgets.colormaps import lut

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def net():
    return cw.load_default()


@pytest.fixture(scope="module")
def explorer(net):
    return cw.Explorer(net, window=112, stride=112)


@pytest.fixture(scope="module")
def exported(explorer, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "explorer.html"
    cw.export_html(explorer, path)
    return path


class OfflinePage:
    """A page opened from file:// in a fresh context with every other request aborted."""

    def __init__(self, browser, path: Path, viewport=(1000, 1400)):
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.goto(path.as_uri())
        self.page.wait_for_function("window.cnnwStaticReady === true", timeout=30000)

    def _route(self, route):
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def canvas_pixels(self, selector: str) -> np.ndarray:
        data = self.page.evaluate("""(sel) => { const c = document.querySelector(sel);
            return {w: c.width, h: c.height, d: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)}; }""", selector)
        return np.array(data["d"], np.uint8).reshape(data["h"], data["w"], 4)

    def screenshot(self, stem: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        out = ARTIFACTS / f"{stem}.png"
        self.page.screenshot(path=str(out), full_page=True)
        return out

    def close(self):
        self.context.close()


@pytest.fixture()
def offline(browser, exported):
    page = OfflinePage(browser, exported)
    yield page
    page.screenshot("static_export_last")
    page.close()


def _drawn(page, selector):
    page.page.wait_for_function(f"Number(document.querySelector({selector!r}).dataset.version) > 0", timeout=20000)


def test_explorer_page_draws_offline_as_a_static_snapshot(offline, explorer, net):
    for selector in (".cnnw-image", ".cnnw-saliency", ".cnnw-occlusion", ".cnnw-fmap"):
        _drawn(offline, selector)
    # the image canvas holds exactly the pixels the kernel sent
    image = offline.canvas_pixels(".cnnw-image")
    assert image.shape[:2] == explorer.image_data.shape[:2]
    np.testing.assert_array_equal(image[..., :3], explorer.image_data)
    # the saliency overlay: inferno at alpha sqrt(v / 255) * opacity over the image (numpy, float64)
    heat = explorer.saliency.astype(np.float64)
    alpha = np.clip(np.sqrt(heat / 255) * explorer.opacity, 0, 1)[..., None]
    base = explorer.image_data.astype(np.float64)
    expected = base + (lut("inferno")[explorer.saliency].astype(np.float64) - base) * alpha
    shown = offline.canvas_pixels(".cnnw-saliency")[..., :3].astype(np.float64)
    assert np.abs(shown - expected).max() <= 1.0
    assert shown.std() > 10  # not blank
    # the cat label: what the default model predicts on the offline cat
    top = net.predict(cw.sample_image("cat"), k=1)[0].label
    assert "cat" in top
    assert offline.page.inner_text(".cnnw-top1") == top
    # static snapshot: the note, kernel-backed controls disabled, client-side ones live
    assert offline.page.inner_text(".cnnw-static-note") == "static snapshot — run the notebook to change this"
    assert offline.page.inner_text(".cnnw-status") == "static snapshot"
    for selector in ("select[data-trait=method]", "input[data-trait=window]", "select[data-trait=fill]", ".cnnw-layer",
                     ".cnnw-pred", ".cnnw-channel", "select[data-trait=scaling]", "select[data-trait=target]"):
        assert offline.page.eval_on_selector(selector, "e => e.disabled"), selector
    for selector in ("select[data-trait=colormap]", "input[data-trait=opacity]", ".cnnw-tab", ".cnnw-figure-button"):
        assert not offline.page.eval_on_selector(selector, "e => e.disabled"), selector
    # the Visualise tab's settings and Start mean something only to a kernel: all disabled, also after a redraw
    offline.page.click(".cnnw-tab[data-tab=visualize]")
    for selector in ("select[data-trait=viz_mode]", "select[data-trait=viz_param]", "select[data-trait=viz_start]",
                     "input[data-trait=viz_steps]", "input[data-trait=viz_lr]", "button.cnnw-viz-start"):
        assert offline.page.eval_on_selector(selector, "e => e.disabled"), selector
    assert offline.blocked == [] and offline.errors == []
    offline.screenshot("static_export_explorer")


def test_client_side_controls_stay_live_and_kernel_changes_are_refused(offline, explorer):
    _drawn(offline, ".cnnw-fmap")
    before = int(offline.page.get_attribute(".cnnw-fmap", "data-version"))
    offline.page.select_option("select[data-trait=colormap]", "magma")
    offline.page.wait_for_function(f"Number(document.querySelector('.cnnw-fmap').dataset.version) > {before}")
    assert offline.page.get_attribute(".cnnw-fmap", "data-colormap") == "magma"
    # tile 0's top-left pixel is map 0's value (0, 0) through magma (layout: gap, then the tile)
    gap = int(offline.page.get_attribute(".cnnw-fmap", "data-gap"))
    fmap = offline.canvas_pixels(".cnnw-fmap")
    np.testing.assert_array_equal(fmap[gap, gap, :3], lut("magma")[explorer.fmap[0, 0, 0]])
    # a click on a tile asks the kernel for another channel: undone, the note flashes, never "computing"
    channel = offline.page.input_value(".cnnw-channel")
    box = offline.page.locator(".cnnw-fmap").bounding_box()
    offline.page.mouse.click(box["x"] + box["width"] - 20, box["y"] + 20)
    offline.page.wait_for_selector(".cnnw-static-note.cnnw-flash")
    assert offline.page.input_value(".cnnw-channel") == channel
    assert offline.page.inner_text(".cnnw-status") == "static snapshot"
    # hover (client-side) still describes tiles
    offline.page.mouse.move(box["x"] + gap + 2, box["y"] + gap + 2)
    assert offline.page.inner_text(".cnnw-hover").startswith("channel 0")
    assert offline.blocked == [] and offline.errors == []


def test_figure_button_downloads_the_panel_at_twice_its_size(offline, tmp_path):
    _drawn(offline, ".cnnw-saliency")
    panel = ".cnnw-panel:has(> .cnnw-figure-button[data-figure=saliency])"
    geometry = offline.page.evaluate("""(sel) => {
        const p = document.querySelector(sel).getBoundingClientRect();
        const c = document.querySelector(sel + ' .cnnw-controls'), cr = c.getBoundingClientRect();
        const s = document.querySelector('.cnnw-saliency').getBoundingClientRect();
        const band = cr.height + parseFloat(getComputedStyle(c).marginBottom);
        const bottom = Math.max(...[...document.querySelector(sel).children].filter((e) => e.getClientRects().length)
            .map((e) => e.getBoundingClientRect().bottom)) - p.top;  // the figure ends below the caption
        const h = Math.min(p.height, bottom + parseFloat(getComputedStyle(document.querySelector(sel)).paddingBottom) + 1);
        return {w: p.width, h, band, sx: s.left - p.left, sy: s.top - p.top - band, sw: s.width};
    }""", panel)
    with offline.page.expect_download() as download_info:
        offline.page.click(".cnnw-figure-button[data-figure=saliency]")
    download = download_info.value
    assert download.suggested_filename == "saliency.png"
    saved = tmp_path / "saliency.png"
    download.save_as(saved)
    png = np.asarray(Image.open(saved).convert("RGB"))
    assert png.shape[1] == round(geometry["w"] * 2)
    assert png.shape[0] == round((geometry["h"] - geometry["band"]) * 2)
    # the saliency canvas sits where it is on screen (below the left-out controls), each pixel a 2 x 2 block
    canvas = offline.canvas_pixels(".cnnw-saliency")[..., :3]
    assert abs(geometry["sw"] - canvas.shape[1]) < 1  # shown at its own size: the 2x figure is exact
    x0, y0 = round(geometry["sx"] * 2), round(geometry["sy"] * 2)
    region = png[y0:y0 + 2 * canvas.shape[0]:2, x0:x0 + 2 * canvas.shape[1]:2]
    assert np.abs(region.astype(int) - canvas).max() <= 2
    # the caption's words are drawn: some dark text pixels below the canvas
    below = png[y0 + 2 * canvas.shape[0]:]
    assert (below.min(axis=2) < 120).sum() > 100
    Image.open(saved).save(ARTIFACTS / "static_export_saliency_figure.png") if ARTIFACTS.exists() else None
    assert offline.errors == []


@pytest.mark.slow
def test_executed_notebook_page_draws_offline(browser, net, tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Static export\n\nThe Explorer on the cat, from a saved notebook."),
                nbformat.v4.new_code_cell("import cnn_widgets as cw\nex = cw.Explorer(window=112, stride=112)\nex")]
    nbformat.write(nb, tmp_path / "lesson.ipynb")  # saved without outputs: "auto" runs it with nbclient
    info = cw.export_html(tmp_path / "lesson.ipynb", tmp_path / "lesson.html")
    assert info["executed"] is True and info["explorers"] == 1
    page = OfflinePage(browser, tmp_path / "lesson.html", viewport=(1100, 1600))
    try:
        _drawn(page, ".cnnw-saliency")
        assert page.page.inner_text("h1").startswith("Static export")
        assert "import cnn_widgets as cw" in page.page.inner_text(".jp-CodeCell .jp-InputArea")
        assert page.page.inner_text(".cnnw-top1") == net.predict(cw.sample_image("cat"), k=1)[0].label
        assert page.page.eval_on_selector("select[data-trait=method]", "e => e.disabled")
        image = page.canvas_pixels(".cnnw-image")[..., :3].astype(int)
        assert image.std() > 10
        # the slow panels (drawn after the cell returned in the kernel) are in the snapshot too
        assert np.abs(page.canvas_pixels(".cnnw-saliency")[..., :3].astype(int) - image).max() > 50
        assert np.abs(page.canvas_pixels(".cnnw-occlusion")[..., :3].astype(int) - image).max() > 50
        assert page.page.locator(".cnnw-tree-node").count() >= 2
        assert page.blocked == [] and page.errors == []
        page.screenshot("static_export_notebook")
    finally:
        page.close()
