"""The "Inside a unit" tab in headless chromium on the real bundle (harness pages, tests/widgets/harness.py).

A double-click on a feature-map position of the digits CNN goes to a real Explorer (what the page saved is
applied with ``set_state``, as the kernel would), its answer comes back into the page (the traits with
their binary buffers, set on the page's model), and the total the view adds up itself (``data-total``)
must equal ``net.activations`` at that position to 1e-5 relative. "Animate" must run (its frame rate
is printed, never asserted). The depthwise unit of the default model checks the view's own batch
norm and ReLU6; the max-pool and softmax units their own arithmetic. Screenshots of each, at a
laptop's and a projector's size, land in test-artifacts/browser/unit_*.png.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch.nn.functional as F
from ipywidgets.widgets.widget import _remove_buffers

import cnn_widgets as cw
from cnn_widgets.engine.digits_dataset import digits_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "widgets"))
from conftest import ARTIFACTS
from harness import write_harness

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")]

SCREENS = [(1280, 800), (1920, 1080)]
REL = 1e-5
UNIT = ".cnnw-unit"

# What the page's model needs to take traits from the kernel: base64 buffers put back at their paths
PUSH_JS = """([state, paths, buffers]) => {
  const views = buffers.map((b64) => { const raw = atob(b64); const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i); return new DataView(bytes.buffer); });
  paths.forEach((path, i) => { let o = state; for (const k of path.slice(0, -1)) o = o[k]; o[path[path.length - 1]] = views[i]; });
  const t0 = performance.now();
  for (const [name, value] of Object.entries(state)) window.__model.set(name, value);
  return t0;
}"""


@pytest.fixture(scope="module")
def digits():
    return cw.digits_cnn()


@pytest.fixture(scope="module")
def digit():
    return digits_split("test")[0][0]


def open_page(browser, path: Path, screen) -> object:
    page = browser.new_page(viewport={"width": screen[0], "height": screen[1]})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    page.wait_for_function("window.__rendered === true", timeout=20000)
    page.wait_for_timeout(300)  # views that measure their width draw on the next frame
    return page


def push(page, explorer, names) -> float:
    """Send traits of the Explorer into the page as the kernel would (binary buffers included); returns when (page clock)."""
    state, paths, buffers = _remove_buffers(explorer.get_state(list(names)))
    return page.evaluate(PUSH_JS, [json.loads(json.dumps(state)), [list(p) for p in paths],
                                   [base64.b64encode(bytes(b)).decode() for b in buffers]])


def shown_total(page) -> dict:
    return page.evaluate(f"""() => {{ const el = document.querySelector('{UNIT}');
        return {{total: Number(el.dataset.total), value: Number(el.dataset.value), layer: el.dataset.layer, channel: Number(el.dataset.channel),
                 position: el.dataset.position, kind: el.dataset.kind, check: el.querySelector('.cnnw-unit-check').dataset.ok,
                 window: (el.querySelector('canvas.cnnw-unit-input') || {{dataset: {{}}}}).dataset.window}}; }}""")


def screenshot(page, name: str, anchor: str = UNIT) -> None:
    """The view alone (<name>_element.png) and the screen with `anchor` at its top (<name>.png)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(UNIT).screenshot(path=str(ARTIFACTS / f"{name}_element.png"))
    page.evaluate("(s) => document.querySelector(s).scrollIntoView({block: 'start'})", anchor)
    page.wait_for_timeout(100)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def click_position(page, channel: int, y: int, x: int, size: tuple[int, int], double: bool = True) -> None:
    """A real mouse click (double: a double-click, which also opens the tab) on the feature-map grid at channel
    `channel`'s map position (y, x) of a map of `size`."""
    point = page.evaluate("""([c, y, x, hh, ww]) => {
        const cv = document.querySelector('canvas.cnnw-fmap'), d = cv.dataset;
        const cols = +d.cols, tile = +d.tile, gap = +d.gap;
        const px = gap + (c % cols) * (tile + gap) + (x + 0.5) * tile / ww, py = gap + Math.floor(c / cols) * (tile + gap) + (y + 0.5) * tile / hh;
        const r = cv.getBoundingClientRect();
        return {x: r.left + px * r.width / cv.width, y: r.top + py * r.height / cv.height};
    }""", [channel, y, x, *size])
    (page.mouse.dblclick if double else page.mouse.click)(point["x"], point["y"])


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_clicked_position_shows_the_models_number_and_animates(browser, digits, digit, tmp_path, screen):
    explorer = cw.Explorer(digits, image=digit, layer="conv1", window=8, stride=8)
    page = open_page(browser, write_harness(explorer, tmp_path / "digits.html", width=screen[0] - 32), screen)
    channel, y, x = 3, 5, 7
    page.locator("canvas.cnnw-fmap").scroll_into_view_if_needed()
    click_position(page, channel, y, x, (16, 16), double=False)  # a click selects the unit, the tab stays
    sent = page.evaluate("() => window.__saved.at(-1)")
    assert (sent["channel"], sent["unit_position"], sent["tab"]) == (channel, [y, x], "tree")
    click_position(page, channel, y, x, (16, 16))  # a double-click also opens the tab
    sent = page.evaluate("() => window.__saved.at(-1)")
    assert (sent["channel"], sent["unit_position"], sent["tab"]) == (channel, [y, x], "unit")

    # the kernel's side: the same update, then its answer into the page
    started = time.perf_counter()
    explorer.set_state({k: sent[k] for k in ("channel", "unit_position", "tab", "target", "request_seq")})
    kernel_s = time.perf_counter() - started
    assert explorer.error == "" and explorer.unit_info["position"] == [y, x]
    t0 = push(page, explorer, ["channel", "unit_position", "tab", "target", "unit_info", "unit_patch", "unit_kernel",
                               "unit_products", "unit_input", "unit_output"])
    page.wait_for_function(f"() => document.querySelector('{UNIT}').dataset.position === '{y},{x}'")
    draw_ms = page.evaluate("(t0) => performance.now() - t0", t0)
    print(f"\n[{screen[0]}x{screen[1]}] open: kernel {kernel_s * 1000:.0f} ms (engine + traits), first draw {draw_ms:.0f} ms (upper bound)")

    shown = shown_total(page)
    expected = float(digits.activations(digit, ["conv1"])["conv1"][channel, y, x])
    assert (shown["layer"], shown["channel"], shown["kind"]) == ("conv1", channel, "conv")
    assert abs(shown["total"] - expected) <= REL * max(abs(expected), 1e-6), (shown, expected)
    assert shown["check"] == "true"
    assert shown["window"] == f"{y - 1},{x - 1},3,3"  # padding 1: the 3x3 window starts one row and column before
    assert page.locator(f"{UNIT} .cnnw-unit-tab, {UNIT}").first.is_visible()
    cells = page.locator(f"{UNIT} .cnnw-unit-row[data-channel] .cnnw-unit-grid.printed").count()
    assert cells == 9  # 3 input channels x (patch, kernel, products), every number printed
    screenshot(page, f"unit_conv_digits_{screen[0]}")

    # animate: the window slides over the whole 16 x 16 map in the browser, each row's numbers following it
    sums_before = page.evaluate(f"() => [...document.querySelectorAll('{UNIT} .cnnw-unit-row[data-channel] .cnnw-unit-num')].map((e) => e.textContent)")
    page.select_option(f"{UNIT} select.cnnw-unit-speed", "fast")
    page.click(f"{UNIT} button.cnnw-unit-animate")
    assert page.get_attribute(UNIT, "data-animating") == "true"
    page.wait_for_function(f"() => Number(document.querySelector('{UNIT}').dataset.animPosition) >= 20")
    during = page.evaluate(f"""() => ({{p: Number(document.querySelector('{UNIT}').dataset.animPosition),
        sums: [...document.querySelectorAll('{UNIT} .cnnw-unit-row[data-channel] .cnnw-unit-num')].map((e) => Number(e.textContent))}})""")
    conv = digits.model.conv1
    pre = F.conv2d(digits.prepare(digit).double(), conv.weight.detach().double(), None, padding=1)[0, channel].flatten()
    assert sum(during["sums"]) == pytest.approx(float(pre[during["p"]]), rel=5e-3, abs=5e-3), during  # 4 digits each
    page.wait_for_function(f"() => document.querySelector('{UNIT}').dataset.animating === 'false'", timeout=60_000)
    fps, frames = float(page.get_attribute(UNIT, "data-fps")), int(page.get_attribute(UNIT, "data-frames"))
    print(f"[{screen[0]}x{screen[1]}] animation: {frames} frames at {fps:.1f} frames/s (goal >= 30)")
    assert frames > 10 and int(page.get_attribute(UNIT, "data-anim-position")) == 16 * 16 - 1
    sums_after = page.evaluate(f"() => [...document.querySelectorAll('{UNIT} .cnnw-unit-row[data-channel] .cnnw-unit-num')].map((e) => e.textContent)")
    assert sums_after == sums_before and shown_total(page)["total"] == shown["total"]  # the unit's own numbers again
    # a click on the output map asks for the unit there
    box = page.locator(f"{UNIT} canvas.cnnw-unit-output").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 2.5 / 16, box["y"] + box["height"] * 9.5 / 16)
    assert page.evaluate("() => window.__saved.at(-1).unit_position") == [9, 2]
    assert not page.errors, page.errors
    page.close()


def test_a_click_on_the_image_asks_for_the_unit_over_that_pixel(browser, digits, digit, tmp_path):
    explorer = cw.Explorer(digits, image=digit, layer="conv1", channel=2, window=8, stride=8)
    page = open_page(browser, write_harness(explorer, tmp_path / "image_click.html", width=1248), SCREENS[0])
    point = page.evaluate("""() => { const c = document.querySelector('canvas.cnnw-image'), r = c.getBoundingClientRect();
        return {x: r.left + (3.5 * r.width) / c.width, y: r.top + (8.5 * r.height) / c.height}; }""")  # pixel (y 8, x 3)
    page.mouse.click(point["x"], point["y"])
    sent = page.evaluate("() => window.__sent.at(-1).content")
    assert sent == {"type": "unit", "y": 8, "x": 3}
    explorer._on_custom_message(explorer, sent, [])  # what the kernel does with it
    assert explorer.error == "" and explorer.unit_position == [8, 3] and explorer.tab == "unit"  # conv1: 3x3, padding 1
    push(page, explorer, ["tab", "unit_position", "unit_info", "unit_patch", "unit_kernel", "unit_products", "unit_input", "unit_output"])
    page.wait_for_function(f"() => document.querySelector('{UNIT}').dataset.position === '8,3'")
    expected = float(digits.activations(digit, ["conv1"])["conv1"][2, 8, 3])
    assert abs(shown_total(page)["total"] - expected) <= REL * max(abs(expected), 1e-6)
    assert not page.errors, page.errors
    page.close()


CASES = {  # name: (network, layer, channel, position or None)
    "depthwise_default": ("default", "blocks.1.0.bn2.act", 5, (20, 30)),
    "maxpool_digits": ("digits", "pool1", 6, None),
    "softmax_digits": ("digits", "fc", 3, None),
}


@pytest.fixture(scope="module")
def default_net():
    return cw.load_default()


@pytest.fixture(scope="module")
def unsure_digit(digits):
    """Of the first 60 test digits, the one the CNN is least sure of (a softmax worth reading)."""
    images = [digits_split("test")[i][0] for i in range(60)]
    return min(images, key=lambda image: digits.predict(image, k=1)[0].probability)


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("layout", ["full", "presentation"])
def test_the_view_adds_up_to_the_models_number(browser, digits, digit, unsure_digit, default_net, tmp_path, case, screen, layout):
    which, layer, channel, position = CASES[case]
    net, image = (default_net, cw.sample_image("cat")) if which == "default" else (digits, unsure_digit if case == "softmax_digits" else digit)
    explorer = cw.Explorer(net, image=image, window=net.input_size[0] // 2, stride=net.input_size[0] // 2, layout_mode=layout)
    explorer.select_unit(layer, channel, position)
    page = open_page(browser, write_harness(explorer, tmp_path / f"{case}.html", width=screen[0] - 32), screen)
    page.wait_for_function(f"() => document.querySelector('{UNIT}').dataset.layer === '{layer}'")
    # presentation opens on its first section: the tab's button (maybe in the "more…" menu) shows the view
    page.evaluate("() => document.querySelector(\"button.cnnw-tab[data-tab='unit']\").click()")
    page.locator(UNIT).wait_for(state="visible")
    shown = shown_total(page)
    activation = net.activations(image, [layer])[layer][channel]
    at = tuple(explorer.unit_info["position"]) if activation.dim() == 2 else ()
    expected = float(activation[at]) if at else float(activation)
    assert abs(shown["total"] - expected) <= REL * max(abs(expected), 1e-6), (case, shown, expected)
    if case == "softmax_digits":
        # the softmax rows the view computes (exp, then ÷ Σ) against torch.softmax
        logits = net.model(net.prepare(image)).detach().double()[0]
        import torch

        probabilities = torch.softmax(logits, 0)
        rows = page.evaluate(f"""() => [...document.querySelectorAll('{UNIT} .cnnw-unit-softmax tr')].slice(1)
            .map((r) => r.querySelector('[data-col="4"]').textContent)""")
        top = int(logits.argmax())
        assert rows[0].endswith(f"({100 * float(probabilities[top]):.1f}%)")
        page.click(f"{UNIT} button.cnnw-unit-animate")  # the softmax step by step: exp, then the division
        page.wait_for_function(f"() => document.querySelector('{UNIT} .cnnw-unit-softmax').dataset.stage === '2'", timeout=10_000)
        page.wait_for_function(f"() => document.querySelector('{UNIT}').dataset.animating === 'false'", timeout=20_000)
    if case == "depthwise_default":
        assert page.locator(f"{UNIT} .cnnw-unit-step").count() == 2  # batch norm, then ReLU6 (hardtanh 0..6)
    assert not page.errors, page.errors
    screenshot(page, f"unit_{case}_{layout}_{screen[0]}", f"{UNIT} .cnnw-unit-title" if case == "softmax_digits" else UNIT)
    page.close()


def test_the_exported_page_draws_the_unit_and_animates_it(browser, digits, digit, tmp_path):
    """cw.export_html: the selected unit's view is in the saved state, adds up in the page, and animates there (JS only)."""
    explorer = cw.Explorer(digits, image=digit, window=8, stride=8)
    explorer.select_unit("relu2", 9, (3, 4))
    path = tmp_path / "unit_export.html"
    cw.export_html(explorer, path)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_function("window.cnnwStaticReady === true", timeout=30000)
    page.wait_for_function(f"() => document.querySelector('{UNIT}') && document.querySelector('{UNIT}').dataset.layer === 'relu2'")
    shown = shown_total(page)
    expected = float(digits.activations(digit, ["relu2"])["relu2"][9, 3, 4])
    assert shown["position"] == "3,4" and abs(shown["total"] - expected) <= REL * max(abs(expected), 1e-6), (shown, expected)
    assert page.locator(f"{UNIT} button.cnnw-unit-animate").is_enabled()  # a client-side control: live in a static page
    page.select_option(f"{UNIT} select.cnnw-unit-speed", "fast")
    page.click(f"{UNIT} button.cnnw-unit-animate")
    page.wait_for_function(f"() => document.querySelector('{UNIT}').dataset.animating === 'false'", timeout=60_000)
    assert int(page.get_attribute(UNIT, "data-anim-position")) == 8 * 8 - 1
    print(f"\nexported page: animation {page.get_attribute(UNIT, 'data-frames')} frames at {page.get_attribute(UNIT, 'data-fps')} frames/s")
    assert not errors, errors
    page.close()


LAB_CELLS = ["""\
import cnn_widgets as cw
from cnn_widgets.engine.digits_dataset import digits_split
net = cw.digits_cnn()
image = digits_split("test")[0][0]
explorer = cw.Explorer(net, image, layer="conv2", window=8, stride=8)""",
             "explorer"]


@pytest.mark.parametrize("kind", ["lab", "notebook"])
def test_in_jupyter_a_click_opens_the_unit_the_kernel_computed(open_notebook, kind):
    """The real round trip: a click in JupyterLab or Notebook 7, the kernel's explain_unit, the view's total = the model's number."""
    nb = open_notebook(kind, f"unit_view_{kind}.ipynb", LAB_CELLS)
    nb.screenshot_selector = "div.cnnw-explorer"
    nb.run_all(timeout_s=180)
    page = nb.page
    page.wait_for_selector("canvas.cnnw-fmap[data-channels='32']", timeout=120_000)
    page.locator("canvas.cnnw-fmap").scroll_into_view_if_needed()
    click_position(page, 6, 2, 5, (8, 8))
    page.wait_for_function(f"() => {{ const el = document.querySelector('{UNIT}'); return el && el.dataset.position === '2,5'"
                           f" && el.dataset.layer === 'conv2' && el.dataset.channel === '6'; }}", timeout=120_000)
    assert nb.kernel_json("[explorer.tab, explorer.channel, explorer.unit_position]") == ["unit", 6, [2, 5]]
    expected = nb.kernel_json("float(net.activations(image, ['conv2'])['conv2'][6, 2, 5])")
    shown = shown_total(page)
    assert abs(shown["total"] - expected) <= REL * max(abs(expected), 1e-6), (shown, expected)
    page.locator(UNIT).scroll_into_view_if_needed()
    page.click(f"{UNIT} button.cnnw-unit-animate")
    page.wait_for_function(f"() => document.querySelector('{UNIT}').dataset.animating === 'false'", timeout=60_000)
    print(f"\n{kind}: animation {page.get_attribute(UNIT, 'data-frames')} frames at {page.get_attribute(UNIT, 'data-fps')} frames/s")
    assert not nb.console_errors()


@pytest.mark.slow
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_in_voila_a_click_opens_the_unit(browser, digits, digit, theme):
    """Voila (a notebook as an app): the click reaches the kernel and the view adds up to the model's number."""
    from frontends import VoilaServer, our_errors
    from frontends import open_page as open_app
    from frontends import screenshot as app_screenshot

    server = VoilaServer([LAB_CELLS[0] + "\nexplorer"], theme=theme).start()
    page = None
    try:
        page = open_app(browser, server.page_url())
        page.wait_for_selector("canvas.cnnw-fmap[data-channels='32']", timeout=180_000)
        page.locator("canvas.cnnw-fmap").scroll_into_view_if_needed()
        click_position(page, 11, 4, 1, (8, 8))
        page.wait_for_function(f"() => {{ const el = document.querySelector('{UNIT}'); return el && el.dataset.position === '4,1'"
                               f" && el.dataset.channel === '11'; }}", timeout=120_000)
        expected = float(digits.activations(digit, ["conv2"])["conv2"][11, 4, 1])  # the same trained CNN and digit as the app's
        shown = shown_total(page)
        assert abs(shown["total"] - expected) <= REL * max(abs(expected), 1e-6), (shown, expected)
        assert page.locator("div.cnnw-explorer").first.get_attribute("data-theme") == theme
        assert our_errors(page) == [], our_errors(page)
    finally:
        if page is not None:
            page.locator(UNIT).scroll_into_view_if_needed()
            app_screenshot(page, f"unit_voila_{theme}")
            page.context.close()
        server.stop()
