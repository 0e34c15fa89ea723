"""A static page that renders the real bundle on a real Explorer's state, without Jupyter.

For quick looks and screenshots: ``python tests/widgets/harness.py out.html`` (or
``write_harness(explorer, path)``). The page holds a minimal anywidget-like model (get / set / on /
off / save_changes / send); buffers are handed over as DataViews with a non-zero byteOffset, like
the real widget manager may do. Nothing here is shipped.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from ipywidgets.widgets.widget import _remove_buffers

BUNDLE = Path(__file__).resolve().parents[2] / "cnn_widgets" / "static" / "explorer.js"

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>cnn_widgets harness</title>
<style>body{margin:0;padding:16px;background:#fff} #cell{width:__WIDTH__px}</style></head>
<body><div id="cell"></div>
<script type="module">
const state = __STATE__;
const paths = __PATHS__;
const buffers = __BUFFERS__.map((b64) => {
  const raw = atob(b64); const bytes = new Uint8Array(raw.length + 8);
  for (let i = 0; i < raw.length; i++) bytes[i + 8] = raw.charCodeAt(i);
  return new DataView(bytes.buffer, 8, raw.length);  // non-zero byteOffset on purpose
});
paths.forEach((path, i) => { let o = state; for (const k of path.slice(0, -1)) o = o[k]; o[path[path.length - 1]] = buffers[i]; });
const listeners = {};
const model = {
  get: (k) => state[k],
  set: (k, v) => { state[k] = v; (listeners["change:" + k] || []).forEach((f) => f()); },
  on: (e, f) => { (listeners[e] = listeners[e] || []).push(f); },
  off: (e, f) => { listeners[e] = (listeners[e] || []).filter((g) => g !== f); },
  save_changes: () => { window.__saved.push(JSON.parse(JSON.stringify(Object.fromEntries(Object.entries(state).filter(([k]) => !paths.some((p) => p[0] === k)))))); },
  send: (content, callbacks, bufs) => { window.__sent.push({ content, bytes: (bufs || []).map((b) => b.byteLength) }); },
};
window.__saved = []; window.__sent = []; window.__model = model;
const widget = (await import("__BUNDLE__")).default;
window.__cleanup = widget.render({ model, el: document.getElementById("cell") });
window.__rendered = true;
</script></body></html>"""


def write_harness(explorer, path: str | Path, width: int = 900) -> Path:
    state = explorer.get_state()
    state, paths, buffers = _remove_buffers(state)
    page = (
        PAGE.replace("__STATE__", json.dumps(state))
        .replace("__PATHS__", json.dumps(paths))
        .replace("__BUFFERS__", json.dumps([base64.b64encode(bytes(b)).decode() for b in buffers]))
        .replace("__BUNDLE__", BUNDLE.as_uri())
        .replace("__WIDTH__", str(width))
    )
    path = Path(path)
    path.write_text(page)
    return path


def screenshot(html: Path, png: Path, width: int = 960, actions=None) -> None:
    import shutil

    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--allow-file-access-from-files"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=args)
        page = browser.new_page(viewport={"width": width, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri())
        page.wait_for_function("window.__rendered === true", timeout=20000)
        if actions:
            actions(page)
        page.screenshot(path=str(png), full_page=True)
        browser.close()
        if errors:
            print("browser errors:", *errors, sep="\n  ")


if __name__ == "__main__":
    import cnn_widgets as cw

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "test-artifacts/harness.html").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    explorer = cw.Explorer()
    write_harness(explorer, out)
    screenshot(out, out.with_suffix(".png"))
    print(out.with_suffix(".png"))
