"""The real bundle on a real Explorer's state (harness.py) in headless chromium, at a laptop's and a
projector's screen size: the target menu shows its whole label, the layer strip whole rows, the tree's
hover preview leaves the children a click opened uncovered, and the top images draw the kernel's note.

No Jupyter server: each page is a static file (``write_harness``), so these run in seconds.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

import cnn_widgets as cw
from cnn_widgets.widgets.panels.top_images import RECONSTRUCTION_NOTES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "widgets"))
from harness import write_harness  # noqa: E402  (tests/widgets/harness.py: the real bundle on an Explorer's state)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")]

SCREENS = [(1280, 800), (1920, 1080)]
UNIT = ("blocks.4.2", 5)


@pytest.fixture(scope="module")
def net():
    return cw.load_default()


@pytest.fixture(scope="module")
def pages(net, tmp_path_factory):
    """Harness pages {(name, layout, width): path} of one Explorer: the selected unit explained, a small scan attached."""
    root = tmp_path_factory.mktemp("harness")
    explorer = cw.Explorer(net, window=112, stride=112, layer=UNIT[0], channel=UNIT[1], target="unit")
    explorer.scan = net.scan([cw.sample_image(n) for n in ("cat", "coffee", "rocket", "astronaut")], layers=[UNIT[0]], k=3,
                             progress=False)
    out = {}

    def write(name, layout):  # one state, a page per screen width (the page's cell is as wide as the screen)
        explorer.layout_mode = layout
        first = write_harness(explorer, root / f"{name}_{layout}_{SCREENS[0][0]}.html", width=SCREENS[0][0] - 32)
        out[name, layout, SCREENS[0][0]] = first
        for width, _ in SCREENS[1:]:
            page = first.read_text().replace(f"#cell{{width:{SCREENS[0][0] - 32}px}}", f"#cell{{width:{width - 32}px}}")
            out[name, layout, width] = root / f"{name}_{layout}_{width}.html"
            out[name, layout, width].write_text(page)

    for layout in ("full", "presentation", "compact"):
        write("tree", layout)
    explorer.tab = "top_images"
    write("top_default", "full")
    explorer.reconstruction = "deconvnet"
    write("top_deconvnet", "full")
    explorer.tab = "tree"
    child = explorer.tree["levels"][0]["children"][0]
    explorer.tree_path = [[child["layer"], child["channel"]]]  # the tree the kernel sends after that child is clicked
    assert len(explorer.tree["levels"]) == 2 and explorer.tree["levels"][1]["children"]
    write("tree_expanded", "full")
    explorer.tree_path = []
    explorer.rule = "lrp"  # the same tree with relevance (CRP): its caption says what the children add up to
    assert explorer.tree["rule"] == "lrp"
    write("tree_relevance", "full")
    return out


def open_page(browser, path, screen):
    page = browser.new_page(viewport={"width": screen[0], "height": screen[1]})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_function("window.__rendered === true", timeout=20000)
    page.wait_for_timeout(300)  # views that measure their width draw on the next frame
    page.errors = errors
    return page


@pytest.mark.parametrize("layout", ["full", "presentation"])
@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_target_menu_shows_its_whole_label(browser, pages, screen, layout):
    page = open_page(browser, pages["tree", layout, screen[0]], screen)
    shown = page.evaluate("""() => {
        const select = document.querySelector('.cnnw-explain select');
        // the same menu holding only the selected entry, at its natural width: what the label needs
        const probe = select.cloneNode(false);
        probe.append(select.selectedOptions[0].cloneNode(true));
        probe.style.cssText = 'position: absolute; visibility: hidden; width: auto; max-width: none; min-width: 0; flex: none';
        select.parentElement.append(probe);
        const needed = probe.getBoundingClientRect().width;
        probe.remove();
        return {text: select.selectedOptions[0].textContent, width: select.getBoundingClientRect().width, needed};
    }""")
    assert shown["text"] == f"selected unit {UNIT[0]}[{UNIT[1]}]"
    assert shown["width"] >= shown["needed"] - 0.5, shown
    assert not page.errors
    page.close()


STRIP = """() => {
    const strip = document.querySelector('.cnnw-layers'), box = strip.getBoundingClientRect();
    const top = box.top + strip.clientTop, bottom = top + strip.clientHeight;
    const rows = [...new Set([...strip.children].map((b) => Math.round(b.offsetTop)))].length;
    const cut = [...strip.children].map((b) => [b.dataset.layer, b.getBoundingClientRect()])
      .filter(([, r]) => r.bottom > top + 0.5 && r.top < bottom - 0.5 && (r.top < top - 0.5 || r.bottom > bottom + 0.5))
      .map(([name]) => name);
    return {cut, rows, scrollTop: strip.scrollTop, scrollable: strip.scrollHeight > strip.clientHeight};
}"""


@pytest.mark.parametrize("layout", ["full", "presentation", "compact"])
@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_layer_strip_shows_whole_rows(browser, pages, screen, layout):
    page = open_page(browser, pages["tree", layout, screen[0]], screen)
    first = page.evaluate(STRIP)
    assert first["scrollable"] and first["rows"] > 3, first  # the default model's layers need scrolling
    assert first["cut"] == [], first
    assert page.locator(".cnnw-layer.selected").get_attribute("data-layer") == UNIT[0]
    page.locator(".cnnw-layers").hover()
    for wheel in (40, 25, -60):  # a mouse wheel's turns: each scroll ends on a row
        page.mouse.wheel(0, wheel)
        page.wait_for_timeout(700)
        after = page.evaluate(STRIP)
        assert after["cut"] == [], (wheel, after)
    assert not page.errors
    page.close()


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_tree_preview_leaves_the_children_a_click_opened_uncovered(browser, pages, screen):
    page = open_page(browser, pages["tree_expanded", "full", screen[0]], screen)
    # start from the tree before the click: only the root's level
    page.evaluate("""() => { const m = window.__model; window.__expanded = m.get('tree');
        m.set('tree', {...window.__expanded, path: [], levels: window.__expanded.levels.slice(0, 1)}); }""")
    child = page.locator('.cnnw-tree-node[data-depth="1"] canvas').first
    child.scroll_into_view_if_needed()
    child.hover()
    preview = page.locator(".cnnw-tree-preview")
    preview.wait_for(state="visible")  # hovering shows the whole picture
    child.click()
    assert page.evaluate("() => window.__saved.at(-1).tree_path.length") == 1
    page.evaluate("() => window.__model.set('tree', window.__expanded)")  # the kernel's answer
    page.wait_for_timeout(400)  # chromium re-targets the still pointer after the redraw (mouseenter on the new thumbnail)
    covered = page.evaluate("""() => {
        const preview = document.querySelector('.cnnw-tree-preview');
        const box = preview.getBoundingClientRect();
        const children = [...document.querySelectorAll('.cnnw-tree-node[data-depth="2"]')].map((n) => n.getBoundingClientRect());
        return {children: children.length, covered: preview.hidden ? 0 : children.filter((r) =>
            r.left < box.right && r.right > box.left && r.top < box.bottom && r.bottom > box.top).length};
    }""")
    assert covered["children"] > 0 and covered["covered"] == 0, covered
    # hovering another node still shows its preview, and so does coming back to the clicked one
    other = page.locator('.cnnw-tree-node[data-depth="2"] canvas').first
    other.hover()
    preview.wait_for(state="visible")
    page.locator('.cnnw-tree-node[data-depth="1"].expanded canvas').first.hover()
    preview.wait_for(state="visible")
    assert not page.errors
    page.close()


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_top_images_draw_the_kernels_note_on_the_deconvnet(browser, pages, screen):
    notes = {}
    for name in ("top_default", "top_deconvnet"):
        page = open_page(browser, pages[name, "full", screen[0]], screen)
        notes[name] = page.evaluate("() => [...document.querySelectorAll('.cnnw-top-images .cnnw-top-note')].map((n) => n.textContent)")
        assert not page.errors
        page.close()
    assert notes == {"top_default": [], "top_deconvnet": [RECONSTRUCTION_NOTES["deconvnet"]]}


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_relevance_tree_shows_its_composite_and_what_its_children_add_up_to(browser, pages, screen):
    page = open_page(browser, pages["tree_relevance", "full", screen[0]], screen)
    shown = page.evaluate("""() => {
        const tree = document.querySelector('.cnnw-tree-panel');
        const visible = (el) => !!el && !el.hidden && !!el.offsetParent;
        const saliencyComposite = document.querySelector('.cnnw-panel select[data-trait="composite"]');
        return {rule: tree.querySelector('select[data-trait="rule"]').value,
                composite: visible(tree.querySelector('select[data-trait="composite"]')),
                saliencyComposite: visible(saliencyComposite) && !tree.contains(saliencyComposite),
                sums: tree.querySelector('.cnnw-tree-sums').textContent,
                scores: [...tree.querySelectorAll('.cnnw-tree-node[data-depth="1"] .cnnw-tree-score')].map((e) => e.textContent)};
    }""")
    assert shown["rule"] == "lrp" and shown["composite"] and not shown["saliencyComposite"]  # the saliency method is guided
    assert shown["sums"].startswith("relevance adds up: all channels below ") and "leak" in shown["sums"]
    assert shown["scores"] and all(text.startswith("relevance ") for text in shown["scores"])
    page.evaluate("() => window.__model.set('rule', 'guided')")  # the menu follows the trait: no composite for a gradient rule
    assert page.evaluate("() => document.querySelector('.cnnw-tree-panel select[data-trait=\"composite\"]').hidden")
    assert not page.errors
    page.close()


TAB_BAR = """() => {
    const bar = document.querySelector('.cnnw-tabs');
    const shown = [...bar.children].filter((e) => e.offsetParent);
    const menu = bar.querySelector('select.cnnw-tab-more');
    return {rows: new Set(shown.map((e) => Math.round(e.getBoundingClientRect().top))).size,
            buttons: shown.filter((e) => e.tagName === 'BUTTON').map((e) => e.dataset.tab),
            menu: menu && menu.offsetParent ? [...menu.options].map((o) => o.value).filter(Boolean) : [],
            menuValue: menu ? menu.value : null, menuSelected: !!menu && menu.classList.contains('selected'),
            pages: [...document.querySelectorAll('.cnnw-tab-page')].filter((p) => !p.hidden).map((p) => p.dataset.tab)};
}"""


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_presentation_tab_bar_keeps_one_row_and_puts_the_rest_in_a_menu(browser, pages, screen):
    page = open_page(browser, pages["tree", "presentation", screen[0]], screen)
    bar = page.evaluate(TAB_BAR)
    every = ["saliency", "occlusion", "feature_maps", "tree", "top_images", "embedding", "filters", "visualize", "atlas", "trust", "compare", "unit"]
    assert bar["rows"] == 1, bar  # a scan is attached: 11 tabs, more than one row holds beside the image
    assert bar["buttons"][:2] == ["saliency", "occlusion"] and bar["buttons"] + bar["menu"] == every, bar
    last = bar["menu"][-1]
    page.select_option(".cnnw-tabs select.cnnw-tab-more", last)  # a tab in the menu opens like any tab
    page.wait_for_timeout(100)
    after = page.evaluate(TAB_BAR)
    assert after["pages"] == [last] and after["menuValue"] == last and after["menuSelected"], after
    assert after["rows"] == 1 and page.evaluate("() => window.__saved.at(-1).tab") == last
    page.locator(".cnnw-tab[data-tab='saliency']").click()  # back to a tab of the row: the menu shows its prompt again
    back = page.evaluate(TAB_BAR)
    assert back["menuValue"] == "" and not back["menuSelected"] and back["pages"] == [], back
    assert not page.errors
    page.close()
