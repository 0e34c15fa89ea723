"""Throw-away Voila and marimo servers, and what every front-end test checks on an Explorer.

Same rules as conftest.py's Jupyter servers (see ../shared/browser-testing.md): a free localhost port,
every config / runtime / home directory in a temp dir (nothing of the user's set-up leaks in), a
random token, no update checks, and only the process we started is stopped (terminate, wait, kill).

:func:`check_explorer` is the one check of a rendered Explorer in any host page: canvases drawn
(non-blank pixels), a cat class among the predictions of the default model on the offline cat, and a
click on a feature-map tile that reaches the kernel (the saliency caption, computed in the kernel
for the clicked unit, names the new channel).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import ARTIFACTS, KNOWN_CONSOLE_NOISE, end_process, free_port, keep_log

SERVER_START_TIMEOUT = 120.0
FIRST_RENDER_TIMEOUT_MS = 240_000
UPDATE_TIMEOUT_MS = 120_000
ROOT = "div.cnnw-explorer"
#: ImageNet classes that are cats (the default model on the cat photo puts one of these first)
CAT_WORDS = ("cat", "tabby", "lynx")


class ServedApp:
    """A server process on a free localhost port with its own temp directories."""

    name = "app"

    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix=f"cnnw-browser-{self.name}-"))
        self.root = self.base / "root"
        self.home = self.base / "home"
        for folder in (self.root, self.home):
            folder.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.log_path = self.base / "server.log"
        self.process: subprocess.Popen | None = None
        self._log_file = None

    def env(self) -> dict:
        return {
            **os.environ,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_STATE_HOME": str(self.home / ".state"),
            "XDG_DATA_HOME": str(self.home / ".local"),
            "JUPYTER_CONFIG_DIR": str(self.base / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(self.base / "jupyter-runtime"),
            "JUPYTER_DATA_DIR": str(self.base / "jupyter-data"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "MARIMO_SKIP_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_path(self) -> str:
        return "/"

    def start(self) -> "ServedApp":
        self._log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.command(), cwd=self.root, env=self.env(), stdout=self._log_file,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}{self.ready_path()}", timeout=2):
                    return self
            except urllib.error.HTTPError:
                return self  # it answers (e.g. 403 without the token): it is up
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer in {SERVER_START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            end_process(process)
        keep_log(self._log_file, self.log_path, self.name)
        self._log_file = None
        shutil.rmtree(self.base, ignore_errors=True)


class VoilaServer(ServedApp):
    """``voila <notebook>`` (0.5) serving one notebook, with a random token; ``theme`` "light" | "dark"."""

    name = "voila"

    def __init__(self, notebook_cells: list[str], theme: str = "light"):
        super().__init__()
        import nbformat

        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in notebook_cells]
        self.notebook = self.root / "explorer.ipynb"
        nbformat.write(notebook, self.notebook)
        self.theme = theme
        self.name = f"voila-{theme}"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "voila", str(self.notebook), "--no-browser", f"--port={self.port}",
                   "--Voila.ip=127.0.0.1", f"--token={self.token}", f"--theme={self.theme}",
                   "--show_tracebacks=True", f"--Voila.root_dir={self.root}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--ServerApp.allow_root=True")
        return command

    def page_url(self) -> str:
        return f"{self.url}/?token={self.token}"


def marimo_explorer_app(width: str | None = None) -> str:
    """A marimo app file with one cell showing ``cw.Explorer()``; ``width`` is ``marimo.App``'s (None: its default)."""
    app = "marimo.App()" if width is None else f"marimo.App(width={width!r})"
    return f'''
import marimo

app = {app}


@app.cell
def _():
    import cnn_widgets as cw

    explorer = cw.Explorer()
    explorer
    return (explorer,)


if __name__ == "__main__":
    app.run()
'''


class MarimoServer(ServedApp):
    """``marimo run`` or ``marimo edit`` (mode) serving one app file, with a random token."""

    def __init__(self, mode: str, source: str, theme: str = "light"):
        if mode not in ("run", "edit"):
            raise ValueError(f"mode must be 'run' or 'edit', got {mode!r}")
        self.name = f"marimo-{mode}"
        super().__init__()
        self.mode = mode
        self.app = self.root / "explorer_app.py"
        self.app.write_text(textwrap.dedent(source))
        # marimo reads the nearest .marimo.toml above the app: run every cell on open in edit mode too
        (self.root / ".marimo.toml").write_text(
            f'[runtime]\nauto_instantiate = true\n\n[display]\ntheme = "{theme}"\n')

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "marimo", self.mode, str(self.app), "--headless", "--host", "127.0.0.1",
                   "--port", str(self.port), "--token-password", self.token, "--no-sandbox"]
        return command + (["--skip-update-check"] if self.mode == "edit" else [])  # run never checks (MARIMO_SKIP_UPDATE_CHECK too)

    def ready_path(self) -> str:
        return "/health"

    def page_url(self) -> str:
        return f"{self.url}/?access_token={self.token}"


# ---------------------------------------------------------------------------------------------- pages
def open_page(browser, url: str, viewport=(1400, 1600), color_scheme: str = "light"):
    """A fresh browser context and page with console and page errors collected in ``page.cnnw_console``."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1,
                                  color_scheme=color_scheme)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}\n{getattr(e, 'stack', '')}"))
    page.cnnw_console = console
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    return page


def our_errors(page) -> list[str]:
    """Console errors and uncaught page errors that come from our code: the widget's bundle runs from a
    blob: URL (anywidget imports it so), and our messages and classes say cnnw / cnn_widgets."""
    ours = ("cnnw", "cnn_widgets", "explorer.js", "blob:")
    return [
        line for line in page.cnnw_console
        if line.startswith(("error:", "pageerror:")) and not any(n in line for n in KNOWN_CONSOLE_NOISE)
        and any(word in line for word in ours)
    ]


def screenshot(page, stem: str, element: str | None = ROOT) -> list[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    saved = [ARTIFACTS / f"{stem}.png"]
    page.screenshot(path=str(saved[0]), full_page=False)
    if element is not None and page.query_selector(element) is not None:
        saved.append(ARTIFACTS / f"{stem}-element.png")
        page.locator(element).first.screenshot(path=str(saved[1]))
    if hasattr(page, "cnnw_console"):  # pages opened by open_page (conftest's NotebookPage keeps its own log)
        (ARTIFACTS / f"console-{stem}.txt").write_text("\n".join(page.cnnw_console) + "\n")
    return saved


# marimo renders an anywidget inside a shadow root: page-side queries search every open shadow root.
DEEP_QUERY = """
const deepQuery = (selector, root = document) => {
  const found = root.querySelector(selector);
  if (found) return found;
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) { const inner = deepQuery(selector, el.shadowRoot); if (inner) return inner; }
  }
  return null;
};
"""


def page_js(body: str) -> str:
    """A page function (one argument) whose body may call deepQuery(selector)."""
    return f"(arg) => {{ {DEEP_QUERY} {body} }}"


# The fraction of a canvas's intrinsic pixels that are not one flat colour (0: blank).
CANVAS_DRAWN_JS = page_js("""
  const c = deepQuery(arg);
  if (!c || !c.width || !c.height) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let differ = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] !== 0 && (Math.abs(d[i] - d[0]) + Math.abs(d[i + 1] - d[1]) + Math.abs(d[i + 2] - d[2]) > 24)) differ++;
  }
  return differ / (d.length / 4);
""")

# Click channel c's tile of the feature-map canvas (real mouse events at its centre).
TILE_CENTER_JS = page_js("""
  const c = arg;
  const cv = deepQuery('canvas.cnnw-fmap');
  const d = cv.dataset, cols = +d.cols, tile = +d.tile, gap = +d.gap;
  const x = gap + (c % cols) * (tile + gap) + tile / 2, y = gap + Math.floor(c / cols) * (tile + gap) + tile / 2;
  cv.scrollIntoView({ block: 'center' });
  const r = cv.getBoundingClientRect();
  return { x: r.left + x * r.width / cv.width, y: r.top + y * r.height / cv.height };
""")


def wait_drawn(page, selectors=("canvas.cnnw-image", "canvas.cnnw-saliency", "canvas.cnnw-occlusion", "canvas.cnnw-fmap"),
               timeout_ms: int = FIRST_RENDER_TIMEOUT_MS) -> dict[str, float]:
    """Wait until each canvas has data-version >= 1 and is not blank; returns the drawn fraction of each."""
    page.wait_for_selector(ROOT, state="attached", timeout=timeout_ms)
    page.wait_for_function(
        page_js("return arg.every((s) => { const c = deepQuery(s); return c && Number(c.dataset.version) >= 1 && c.width > 1; });"),
        arg=list(selectors), timeout=timeout_ms)
    page.wait_for_function(
        page_js("const r = deepQuery('div.cnnw-explorer'); return r && r.dataset.status !== 'busy';"), arg=None,
        timeout=timeout_ms)
    return {selector: page.evaluate(CANVAS_DRAWN_JS, selector) for selector in selectors}


def check_explorer(page, show_section=None) -> dict:
    """Drawn canvases, a cat on top, and a tile click the kernel answers. ``show_section(name)`` makes a
    compact layout's section visible before its canvas is read or clicked. Returns what it measured."""
    drawn = wait_drawn(page)
    for selector, fraction in drawn.items():
        assert fraction > 0.05, f"{selector} looks blank ({fraction:.1%} of its pixels differ from the first)"
    top1 = page.locator("div.cnnw-top1").first.text_content() or ""
    labels = [t.lower() for t in page.locator("button.cnnw-pred .cnnw-pred-label").all_text_contents()]
    assert any(word in top1.lower() for word in CAT_WORDS), f"top-1 is {top1!r}, not a cat (all: {labels})"

    # a click on a tile: the front end selects the unit and the kernel recomputes saliency for it
    if show_section is not None:
        show_section("feature_maps")
    channels = int(page.locator("canvas.cnnw-fmap").first.get_attribute("data-channels"))
    current = int(page.locator("input.cnnw-channel").first.input_value())
    clicked = (current + 3) % channels
    point = page.evaluate(TILE_CENTER_JS, clicked)
    page.mouse.click(point["x"], point["y"])
    assert int(page.locator("input.cnnw-channel").first.input_value()) == clicked
    layer = page.locator("button.cnnw-layer.selected").first.get_attribute("data-layer")
    unit = f"{layer}[{clicked}]"
    # the saliency caption is the kernel's saliency_info: it names the unit only once the kernel computed it
    page.wait_for_function(
        page_js("const c = deepQuery('canvas.cnnw-saliency'); const cap = c && c.closest('.cnnw-panel').querySelector('.cnnw-caption');"
                " return !!cap && cap.textContent.includes(arg);"),
        arg=unit, timeout=UPDATE_TIMEOUT_MS)
    return {"drawn": drawn, "top1": top1, "labels": labels, "clicked_unit": unit}


def show_section(page, name: str) -> None:
    """In a compact or presentation layout, click the section's tab (no-op in the full layout)."""
    button = page.locator(f"button.cnnw-tab[data-tab='{name}']")
    if button.count() and button.first.is_visible():
        button.first.click()
        page.wait_for_function(page_js("const b = deepQuery(`button.cnnw-tab[data-tab='${arg}']`); return b && b.classList.contains('selected');"),
                               arg=name, timeout=10_000)


# Every visible control of the Explorer that does not look like one: no border, or a border the
# colour of its background and no background of its own (what a CSS reset leaves).
UNSTYLED_CONTROLS_JS = page_js("""
  const root = deepQuery('div.cnnw-explorer');
  const bad = [];
  const looks = (style) => {
    const width = parseFloat(style.borderTopWidth) + parseFloat(style.borderBottomWidth) + parseFloat(style.borderLeftWidth);
    const visible = style.borderTopStyle !== 'none' || style.borderLeftStyle !== 'none';
    return width >= 1 && visible && parseFloat(style.paddingLeft) + parseFloat(style.paddingRight) >= 2;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ').join('.') : '') + (el.type ? `[${el.type}]` : '');
  for (const el of root.querySelectorAll('select, button, input')) {
    if (!el.offsetParent) continue; // hidden (another section)
    if (el.classList.contains('cnnw-pred')) continue; // the prediction rows are list items that happen to be buttons
    if (el.type === 'range' || el.type === 'checkbox' || el.type === 'radio') continue; // drawn natively
    if (el.type === 'file') {
      if (!looks(getComputedStyle(el, '::file-selector-button'))) bad.push(name(el) + '::file-selector-button');
      continue;
    }
    if (!looks(getComputedStyle(el))) bad.push(name(el));
  }
  return bad;
""")


def unstyled_controls(page) -> list[str]:
    return page.evaluate(UNSTYLED_CONTROLS_JS, None)


# The layout the renderer picked, and whether the Explorer and every section fit the height cap.
COMPACT_FIT_JS = page_js("""
  const root = deepQuery('div.cnnw-explorer');
  let cap = null;
  for (let n = root.parentElement || root.getRootNode().host; n; n = n.parentElement || (n.getRootNode() && n.getRootNode().host)) {
    const s = getComputedStyle(n);
    if (s.maxHeight.endsWith('px') && s.overflowY !== 'visible') { cap = n; break; }
  }
  const r = root.getBoundingClientRect();
  const out = { layout: root.dataset.layout, host: root.dataset.host, rootHeight: r.height, cap: null, sections: [] };
  if (!cap) return out;
  cap.scrollTop = 0;
  const c = cap.getBoundingClientRect();
  out.cap = { maxHeight: parseFloat(getComputedStyle(cap).maxHeight), top: c.top, bottom: c.bottom, scrollable: cap.scrollHeight > cap.clientHeight + 1 };
  return out;
""")

SECTION_BOX_JS = page_js("""
  const root = deepQuery('div.cnnw-explorer');
  const b = root.querySelector(`button.cnnw-tab[data-tab='${arg}']`);
  let shown = null;
  for (const el of root.querySelectorAll('.cnnw-tabbed > .cnnw-panel, .cnnw-tab-page')) if (!el.hidden && el.offsetParent) shown = el;
  if (!shown) return null;
  const r = shown.getBoundingClientRect(), rr = root.getBoundingClientRect();
  return { top: r.top, bottom: r.bottom, height: r.height, rootBottom: rr.bottom, scrolls: shown.scrollHeight > shown.clientHeight + 1 };
""")


def compact_fit(page) -> dict:
    """The layout, the height cap around the Explorer and, for each section tab, the shown section's box."""
    fit = page.evaluate(COMPACT_FIT_JS, None)
    names = page.locator("button.cnnw-tab").evaluate_all("(bs) => bs.filter((b) => !b.hidden).map((b) => b.dataset.tab)")
    for name in names:
        show_section(page, name)
        page.wait_for_timeout(150)
        fit["sections"].append({"name": name, **(page.evaluate(SECTION_BOX_JS, name) or {})})
    fit["after"] = page.evaluate(COMPACT_FIT_JS, None)
    return fit
