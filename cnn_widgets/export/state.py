"""A widget's state as Jupyter saves it: ``{state, buffers: [{path, encoding: "base64", data}]}``.

This is the per-model entry of a notebook's ``application/vnd.jupyter.widget-state+json`` metadata
(what JupyterLab's "save widget state" and nbclient's ``store_widget_state`` write), so one reader
in the page (js/src/static_model.js ``restoreState``) serves a live Explorer and a notebook's.
"""

from __future__ import annotations

import base64

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
EXPLORER_ID = "cnn_widgets.widgets.explorer.Explorer"  # anywidget's _anywidget_id of cw.Explorer
#: Synced traits a static page does not need: the renderer's source (the page embeds it once),
#: and ipywidgets' DOM-widget plumbing (a layout model the page does not have).
LEFT_OUT = ("_esm", "_css", "layout", "tabbable", "tooltip", "_dom_classes")


def _remove_buffers(state: dict) -> tuple[dict, list[list], list[bytes]]:
    from ipywidgets.widgets.widget import _remove_buffers as remove

    return remove(state)


def widget_state(widget) -> dict:
    """The saved-state entry of a live widget: every synced trait, binary arrays as base64 buffers."""
    state = {k: v for k, v in widget.get_state().items() if k not in LEFT_OUT}
    state, paths, buffers = _remove_buffers(state)
    return {
        "model_name": state.get("_model_name"),
        "model_module": state.get("_model_module"),
        "model_module_version": state.get("_model_module_version"),
        "state": state,
        "buffers": [{"path": list(path), "encoding": "base64", "data": base64.b64encode(bytes(buffer)).decode("ascii")}
                    for path, buffer in zip(paths, buffers)],
    }


def is_explorer(entry: dict) -> bool:
    """Whether a saved-state entry is a ``cw.Explorer``."""
    return entry.get("state", {}).get("_anywidget_id") == EXPLORER_ID


def has_pixels(entry: dict) -> bool:
    """Whether a saved Explorer state carries its arrays (some front ends save the state without buffers)."""
    return any(tuple(b.get("path", ())) == ("image_data", "data") for b in entry.get("buffers", []))


def for_page(entry: dict) -> dict:
    """The part of an entry the page reads (``state`` less the renderer's source, and ``buffers``)."""
    return {"state": {k: v for k, v in entry.get("state", {}).items() if k not in LEFT_OUT},
            "buffers": entry.get("buffers", [])}
