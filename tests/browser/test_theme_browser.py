"""The Explorer under JupyterLab's dark theme, and its presentation (projector) layout, in headless chromium.

The theme is switched the way a user does (``apputils:change-theme`` to "JupyterLab Dark") after the
Explorer is drawn; the Explorer must follow: every piece of text has contrast >= 4.5 against the colour
actually behind it (computed styles, alpha blended), no panel is a white box, and the feature-map grid
is not one either. Then ``explorer.layout_mode = "presentation"``: larger text and pictures, the image
beside one section. The theme is put back to light at the end (the Lab server is shared by the session).
Screenshots: test-artifacts/browser/theme-*.png.
"""

from __future__ import annotations

import pytest

from frontends import check_explorer, page_js, screenshot, unstyled_controls, wait_drawn

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every visible element of the Explorer with text of its own: its colour, the colour behind it (the
# nearest ancestor with an opaque background) and their WCAG contrast.
TEXT_CONTRAST_JS = page_js("""
  const root = deepQuery('div.cnnw-explorer');
  const parse = (s) => { const m = s.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const behind = (el) => {
    for (let n = el; n; n = n.parentElement || (n.getRootNode() && n.getRootNode().host)) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c[3] > 0.5) return c;
    }
    return [255, 255, 255, 1];
  };
  const out = [];
  for (const el of [root, ...root.querySelectorAll('*')]) {
    if (!el.offsetParent && el !== root) continue;
    const own = [...el.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim()).map((n) => n.textContent.trim()).join(' ');
    const placeholder = el.dataset && el.dataset.placeholder && !el.textContent.trim() ? el.dataset.placeholder : '';
    if (!own && !placeholder && !(el.tagName === 'SELECT' || el.tagName === 'OPTION')) continue;
    if (el.tagName === 'OPTION') continue; // drawn by the browser's own menu
    if (el.closest('[disabled]') || parseFloat(getComputedStyle(el).opacity) < 0.9) continue;
    if (el.classList.contains('cnnw-pred-label')) continue; // over its probability bar: --cnnw-fg on --cnnw-bar-fill (node test)
    const fg = parse(getComputedStyle(el, placeholder ? '::before' : null).color), bg = behind(el);
    const a = fg[3], over = [0, 1, 2].map((i) => a * fg[i] + (1 - a) * bg[i]);
    const [l1, l2] = [lum(over), lum(bg)].sort((x, y) => y - x);
    out.push({ text: (own || placeholder || el.value || '').slice(0, 40), cls: String(el.className), ratio: (l1 + 0.05) / (l2 + 0.05),
      color: getComputedStyle(el).color, background: `rgb(${bg.slice(0, 3).join(',')})` });
  }
  return out;
""")

# Visible boxes of the Explorer whose background is near-white (luminance > 0.8), except the selected
# layer (light on purpose: it stands out), and the fraction of the feature-map canvas that is white.
WHITE_BOXES_JS = page_js("""
  const root = deepQuery('div.cnnw-explorer');
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const boxes = [];
  for (const el of [root, ...root.querySelectorAll('*')]) {
    if (!el.offsetParent && el !== root) continue;
    if (el.matches('.cnnw-layer.selected, .cnnw-layer.selected *')) continue;
    const m = getComputedStyle(el).backgroundColor.match(/rgba?\\(([^)]+)\\)/);
    if (!m) continue;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    if ((p.length < 4 || p[3] > 0.5) && lum(p) > 0.8) { const r = el.getBoundingClientRect(); if (r.width * r.height > 400) boxes.push(String(el.className) || el.tagName); }
  }
  const cv = root.querySelector('canvas.cnnw-fmap');
  let white = 0;
  if (cv && cv.width > 1) { const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 245 && d[i + 1] > 245 && d[i + 2] > 245) white++; white /= d.length / 4; }
  return { boxes, fmapWhite: white };
""")


def text_contrasts(page) -> list[dict]:
    return page.evaluate(TEXT_CONTRAST_JS, None)


def set_lab_theme(page, theme: str) -> None:
    page.evaluate("async (theme) => { await window.jupyterapp.commands.execute('apputils:change-theme', { theme }); }", theme)
    light = "true" if "Light" in theme else "false"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=60_000)


def test_dark_theme_and_presentation_in_jupyterlab(open_notebook):
    nb = open_notebook("lab", "theme_dark.ipynb", ["import cnn_widgets as cw\nexplorer = cw.Explorer()", "explorer"])
    nb.screenshot_selector = "div.cnnw-explorer"
    page = nb.page
    nb.run_all()
    try:
        check_explorer(page)
        assert page.get_attribute("div.cnnw-explorer", "data-theme") == "light"
        light = min(text_contrasts(page), key=lambda item: item["ratio"])
        assert light["ratio"] >= 4.5, f"least readable text, light theme: {light}"

        set_lab_theme(page, "JupyterLab Dark")
        page.wait_for_function("() => document.querySelector('div.cnnw-explorer').dataset.theme === 'dark'", timeout=10_000)
        page.wait_for_timeout(300)  # the theme's stylesheet applies
        contrasts = text_contrasts(page)
        worst = min(contrasts, key=lambda item: item["ratio"])
        assert len(contrasts) > 30 and worst["ratio"] >= 4.5, f"least readable text, dark theme: {worst}"
        background = page.evaluate("() => getComputedStyle(document.querySelector('div.cnnw-explorer')).backgroundColor")
        lab_background = page.evaluate("() => getComputedStyle(document.body).getPropertyValue('--jp-layout-color0').trim()")
        white = page.evaluate(WHITE_BOXES_JS, None)
        assert white["boxes"] == [], f"white boxes under the dark theme: {white['boxes']}"
        assert white["fmapWhite"] < 0.15, f"{white['fmapWhite']:.0%} of the feature-map grid is white"
        assert unstyled_controls(page) == []
        print({"worst_dark": worst, "background": background, "lab --jp-layout-color0": lab_background, **white})
        screenshot(page, "theme-dark-jupyterlab")

        # presentation: large text and pictures, the image and one section at a time
        nb.run_cell("explorer.layout_mode = 'presentation'")
        page.wait_for_function("() => document.querySelector('div.cnnw-explorer').dataset.layout === 'presentation'", timeout=30_000)
        wait_drawn(page)
        page.wait_for_timeout(300)
        sizes = page.evaluate("""() => {
          const root = document.querySelector('div.cnnw-explorer');
          const panels = [...root.querySelectorAll('.cnnw-panel')].filter((p) => p.offsetParent).map((p) => p.querySelector('h3') && p.querySelector('h3').textContent);
          return { font: parseFloat(getComputedStyle(root).fontSize), h3: parseFloat(getComputedStyle(root.querySelector('.cnnw-panel h3')).fontSize),
                   image: root.querySelector('canvas.cnnw-image').getBoundingClientRect().width, panels };
        }""")
        print(sizes)
        assert sizes["font"] >= 16 and sizes["h3"] >= 18, sizes
        assert sizes["image"] >= 1.5 * 224, f"the image is shown at {sizes['image']} px, not enlarged"
        assert len(sizes["panels"]) == 2, f"presentation shows the image and one section: {sizes['panels']}"
        worst = min(text_contrasts(page), key=lambda item: item["ratio"])
        assert worst["ratio"] >= 4.5, f"least readable text, presentation, dark: {worst}"
        screenshot(page, "theme-dark-presentation-jupyterlab")
        assert nb.console_errors() == [], nb.console_errors()
    finally:
        set_lab_theme(page, "JupyterLab Light")
