"""One self-contained HTML page: the bundled renderer, saved Explorer states and a boot script.

The page needs no network and no server: it opens from ``file://``. The renderer is the same
bundle the notebook loads (``cnn_widgets/static/explorer.js``), its module export rewritten to a
local name inside one inline ``<script type="module">`` (an inline module needs no fetch, which a
``file://`` page could not do); each ``<div data-cnnw-explorer=ID>`` is drawn by its ``render``
over the bundle's ``staticModel`` shim, which marks the view a static snapshot.
"""

from __future__ import annotations

import html
import json
import re

from .state import for_page

BOOT = """
const states = JSON.parse(document.getElementById("cnnw-states").textContent);
for (const el of document.querySelectorAll("[data-cnnw-explorer]")) {
  const entry = states[el.dataset.cnnwExplorer];
  if (!entry) { el.textContent = "(this Explorer's state was not saved: export the notebook with execute=True)"; continue; }
  el.classList.add("cnnw-static-host");
  cnnwWidget.render({ model: cnnwWidget.staticModel(entry), el });
}
window.cnnwStaticReady = true;
"""

_EXPORT = re.compile(r"export\s*\{\s*([\w$]+)\s+as\s+default\s*\}\s*;?\s*$")


def inline_bundle(bundle: str) -> str:
    """The ESM bundle as the body of an inline module: ``export {x as default}`` -> ``const cnnwWidget = x``."""
    match = _EXPORT.search(bundle)
    if not match:
        raise RuntimeError("cnn_widgets/static/explorer.js does not end with `export{<name> as default}` "
                           "(rebuild it: cd js && npm run build)")
    code = bundle[: match.start()] + f"const cnnwWidget = {match.group(1)};"
    return _script_safe(code)


def _script_safe(text: str) -> str:
    # inside <script>, "</script" ends the element ("<\\/" is the same text in a JS string or regex);
    # "<!--" would change how the rest is parsed and has no equally safe rewrite
    if "<!--" in text:
        raise RuntimeError("the renderer bundle contains '<!--', which cannot be inlined in a <script>")
    return text.replace("</script", "<\\/script")


def states_json(states: dict[str, dict]) -> str:
    """The states as JSON safe inside ``<script type="application/json">`` (no ``</`` in it)."""
    page = {key: _idle(for_page(entry)) for key, entry in states.items()}
    return json.dumps(page, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\u0021--")


#: What a page says of a job the saved state caught half way (a notebook saved while an Explorer
#: was still computing, exported with ``execute="never"``).
UNFINISHED = "not finished when the notebook was saved{reached}; run the notebook again to compute it"


def _idle(entry: dict) -> dict:
    """A state saved mid-computation, settled: a page with no kernel computes nothing, so it must
    neither show "computing…" forever nor a partial result as if it were whole. Each job the state
    caught running is marked as not finished (what it had drawn stays, greyed where it had not
    reached, with the reason in its progress line), and the status line is idle."""
    state = entry["state"]
    if state.get("status") == "busy" or state.get("result_seq", 0) < state.get("request_seq", 0):
        state = {**state, "status": "error" if state.get("error") else "idle", "working": "",
                 "result_seq": state.get("request_seq", 0)}
    progress = state.get("progress")
    if isinstance(progress, dict) and any(isinstance(i, dict) and i.get("state") == "running" for i in progress.values()):
        progress = dict(progress)
        for name, info in progress.items():
            if isinstance(info, dict) and info.get("state") == "running":
                reached = f" ({info.get('done', 0)} of {info['total']} {info.get('unit', '')})".replace(" )", ")") \
                    if info.get("total") else ""
                progress[name] = {**info, "state": "cancelled", "message": UNFINISHED.format(reached=reached)}
        state = {**state, "progress": progress}
    return {**entry, "state": state}


def scripts(bundle: str, states: dict[str, dict]) -> str:
    """The ``<script>`` elements that draw every ``[data-cnnw-explorer]`` of the page."""
    return (f'<script type="application/json" id="cnnw-states">{states_json(states)}</script>\n'
            f'<script type="module">\n{inline_bundle(bundle)}\n{BOOT}</script>\n')


def explorer_page(bundle: str, entry: dict, title: str) -> str:
    """A page holding one Explorer."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>body {{ margin: 0; padding: 16px; background: #fff; font-family: system-ui, sans-serif; }}
.cnnw-page-title {{ font-size: 15px; margin: 0 0 8px; color: #1d2330; }}</style></head>
<body><h1 class="cnnw-page-title">{html.escape(title)}</h1>
<div data-cnnw-explorer="explorer"></div>
{scripts(bundle, {"explorer": entry})}</body></html>
"""
