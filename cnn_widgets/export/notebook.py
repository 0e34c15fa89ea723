"""An executed notebook as one offline HTML page, every Explorer in it drawn from its saved state.

nbconvert renders the cells (markdown, highlighted code, outputs, images inline) with its ``lab``
template, less the three things a ``file://`` page cannot load: require.js, the CDN widget manager
and MathJax (TeX stays as written). Each Explorer output becomes a ``<div data-cnnw-explorer>``
that the page's own renderer draws (html_page.py). Other widgets keep their plain-text output.

Where the state comes from: the notebook's ``application/vnd.jupyter.widget-state+json`` metadata
(JupyterLab "Save Widget State Automatically", or nbclient / ``nbconvert --execute``). A notebook
saved without it (the default in JupyterLab and Notebook 7), or with Explorer states that lack the
binary buffers, is executed once with nbclient (``execute="auto"``), which records the state with
its buffers.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ..engine.checks import check_choice
from ..engine.errors import OptionError
from .html_page import scripts
from .state import WIDGET_STATE, WIDGET_VIEW, has_pixels, is_explorer

EXECUTE = {"auto": "only when an Explorer's state (with its arrays) is not saved in the notebook",
           "always": "always run the notebook first", "never": "use what the notebook saved"}

TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""


def saved_states(nb) -> dict[str, dict]:
    """model id -> saved-state entry, from the notebook's metadata ({} when none was saved)."""
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {})
    return dict(widgets.get("state", {}))


def widget_views(nb) -> list[str]:
    """Model ids of every widget output, in page order."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view and "model_id" in view:
                found.append(view["model_id"])
    return found


def _complete(nb) -> bool:
    states = saved_states(nb)
    views = widget_views(nb)
    return all(m in states and (not is_explorer(states[m]) or has_pixels(states[m])) for m in views) and bool(views)


#: Run after the notebook's own cells: an Explorer draws its slow panels in the background once its
#: cell has returned, so each one finishes them and sends its whole state from this cell (nbclient
#: records the state only from messages of the cell it is running). The cell is removed afterwards.
SETTLE = "import cnn_widgets.export.notebook as _cnnw_export\n_cnnw_export.settle_explorers()"


def settle_explorers() -> int:
    """In a kernel: finish every live Explorer's computations and send its state; returns how many."""
    from ipywidgets.widgets.widget import _instances

    from ..widgets.explorer import Explorer

    explorers = [w for w in list(_instances.values()) if isinstance(w, Explorer)]
    for explorer in explorers:
        explorer.compute()
        explorer.send_state()
    return len(explorers)


def execute(nb, path: Path, timeout: int):
    """Run the notebook in its folder with nbclient, recording widget state with buffers."""
    import nbformat
    from nbclient import NotebookClient

    nb = copy.deepcopy(nb)
    nb.cells.append(nbformat.v4.new_code_cell(SETTLE))
    NotebookClient(nb, timeout=timeout, store_widget_state=True, resources={"metadata": {"path": str(path.parent)}}).execute()
    nb.cells.pop()
    return nb


def _with_explorer_divs(nb, states: dict[str, dict]):
    """A copy of nb whose Explorer outputs are placeholders; no widget metadata left for nbconvert."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            view = data.get(WIDGET_VIEW)
            if not view:
                continue
            model_id = view.get("model_id", "")
            if model_id in states and is_explorer(states[model_id]):
                output["data"] = {"text/html": f'<div data-cnnw-explorer="{model_id}"></div>'}
            else:
                data.pop(WIDGET_VIEW)  # another widget: its text/plain output, if any
    return nb


def notebook_page(path: str | Path, bundle: str, execute_mode: str = "auto", timeout: int = 900) -> tuple[str, dict]:
    """The page's HTML and a summary ``{"executed", "explorers", "cells"}``."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    check_choice("execute", execute_mode, EXECUTE)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # not JSON, JSON of another shape, an unknown format version: all "not a notebook"
        raise OptionError(f"{str(path)!r} is not a readable Jupyter notebook ({type(err).__name__}: {str(err)[:200]}); "
                          "pass a .ipynb file saved by Jupyter") from err
    executed = execute_mode == "always" or (execute_mode == "auto" and widget_views(nb) and not _complete(nb))
    if execute_mode == "auto" and not widget_views(nb) and any(c.cell_type == "code" and "Explorer" in c.source for c in nb.cells):
        executed = True  # saved without outputs: run it to get its Explorers
    if executed:
        nb = execute(nb, path, timeout)
    states = saved_states(nb)
    explorers = {m: states[m] for m in widget_views(nb) if m in states and is_explorer(states[m])}
    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"cnnw_static.html.j2": TEMPLATE})],
                            template_file="cnnw_static.html.j2")
    body, _ = exporter.from_notebook_node(_with_explorer_divs(nb, states))
    page = body.replace("</body>", scripts(bundle, explorers) + "</body>", 1) if explorers else body
    return page, {"executed": bool(executed), "explorers": len(explorers), "cells": len(nb.cells)}
