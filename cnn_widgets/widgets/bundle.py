"""The renderer bundle built from ``js/`` (``cd js && npm run build``): the one place that names it."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["PATH", "bundle_text", "widget_esm"]

PATH = Path(__file__).resolve().parent.parent / "static" / "explorer.js"


def bundle_text() -> str:
    """The bundle's JavaScript, or a :class:`FileNotFoundError` saying how to build it."""
    if not PATH.is_file():
        raise FileNotFoundError(f"the renderer bundle {PATH} is missing (build it: cd js && npm run build)")
    return PATH.read_text(encoding="utf-8")


def widget_esm() -> str:
    """The Explorer's ``_esm``: the bundle's text, or a module that shows how to build a missing one.

    Text, not the file's path: anywidget turns a path into a class-level file object whose change
    signal every widget connects to with a strong reference to itself, so no Explorer was ever
    freed (each kept its images, arrays and caches for the life of the kernel).
    """
    try:
        return bundle_text()
    except FileNotFoundError as exc:
        return "export default { render({ el }) { el.textContent = " + json.dumps(str(exc)) + "; } };"
