"""cw.export_html: what the page holds (state, buffers, renderer), notebooks with saved state, errors."""

from __future__ import annotations

import base64
import json
import re

import nbformat
import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.engine.errors import OptionError
from cnn_widgets.export.notebook import _complete
from cnn_widgets.export.state import WIDGET_STATE, widget_state


def _states(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="cnnw-states">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def _array(entry: dict, name: str) -> np.ndarray:
    state = entry["state"][name]
    data = next(b["data"] for b in entry["buffers"] if b["path"] == [name, "data"])
    return np.frombuffer(base64.b64decode(data), dtype=state["dtype"]).reshape(state["shape"])


def test_page_holds_every_array_and_the_renderer_and_no_url(explorer, tmp_path):
    info = cw.export_html(explorer, tmp_path / "e.html")
    page = (tmp_path / "e.html").read_text()
    entry = _states(page)["explorer"]
    for name in ("image_data", "saliency", "occlusion", "fmap", "tree_pictures"):
        np.testing.assert_array_equal(_array(entry, name), getattr(explorer, name))
    assert entry["state"]["predictions"] == json.loads(json.dumps(explorer.predictions))
    assert "_esm" not in entry["state"]  # the renderer is in the page once, not in the state
    assert "const cnnwWidget = " in page and "export{" not in page.replace(" ", "")
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert info["bytes"] == (tmp_path / "e.html").stat().st_size and info["explorers"] == 1


def test_script_text_in_a_trait_cannot_end_the_script(explorer, tmp_path):
    explorer.error = "</script><script>window.owned = 1</script><!--"
    try:
        cw.export_html(explorer, tmp_path / "e.html")
    finally:
        explorer.error = ""
    page = (tmp_path / "e.html").read_text()
    assert page.count("</script>") == 2  # the states and the module, nothing else closes a script
    assert _states(page)["explorer"]["state"]["error"] == "</script><script>window.owned = 1</script><!--"


def test_bad_arguments_are_refused(explorer, tmp_path):
    with pytest.raises(OptionError, match=r"\.html"):
        cw.export_html(explorer, tmp_path / "e.png")
    with pytest.raises(OptionError, match="cw.Explorer or the path of a .ipynb"):
        cw.export_html(42, tmp_path / "e.html")
    with pytest.raises(FileNotFoundError, match="no notebook"):
        cw.export_html(tmp_path / "missing.ipynb", tmp_path / "e.html")
    nb = nbformat.v4.new_notebook()
    nbformat.write(nb, tmp_path / "n.ipynb")
    with pytest.raises(OptionError, match="'auto', 'always', 'never'"):
        cw.export_html(tmp_path / "n.ipynb", tmp_path / "e.html", execute="sometimes")
    assert not (tmp_path / "e.html").exists()


def _saved_notebook(explorer, with_buffers: bool = True):
    entry = widget_state(explorer)
    if not with_buffers:
        entry = {**entry, "buffers": []}
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Why is this a cat?\n\nThe *Explorer* below."),
                nbformat.v4.new_code_cell("ex = cw.Explorer()\nex", outputs=[nbformat.v4.new_output(
                    "display_data", data={"text/plain": "Explorer(...)", "application/vnd.jupyter.widget-view+json":
                                          {"model_id": "abc123", "version_major": 2, "version_minor": 0}})])]
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": {"abc123": entry}, "version_major": 2, "version_minor": 0}}
    return nb


def test_notebook_with_saved_state_exports_without_running(explorer, tmp_path):
    nbformat.write(_saved_notebook(explorer), tmp_path / "n.ipynb")
    info = cw.export_html(tmp_path / "n.ipynb", tmp_path / "n.html", execute="never")
    page = (tmp_path / "n.html").read_text()
    assert info["executed"] is False and info["explorers"] == 1
    assert re.search(r"<h1[^>]*>Why is this a cat\?", page) and "<em>Explorer</em>" in page
    assert 'data-cnnw-explorer="abc123"' in page
    np.testing.assert_array_equal(_array(_states(page)["abc123"], "saliency"), explorer.saliency)
    for cdn in ("require.js", "mathjax", "unpkg.com", "cdn.jsdelivr", "embed-amd"):
        assert cdn not in page.lower(), cdn
    assert "application/vnd.jupyter.widget-state+json" not in page  # no widget manager script left


def test_auto_runs_a_notebook_only_when_an_explorer_lacks_its_arrays(explorer):
    assert _complete(_saved_notebook(explorer, with_buffers=True))
    assert not _complete(_saved_notebook(explorer, with_buffers=False))
    bare = _saved_notebook(explorer)
    bare.metadata.pop("widgets")
    assert not _complete(bare)


def test_a_state_saved_mid_computation_is_marked_not_finished_never_half_done(explorer, tmp_path):
    """Issue 22, fault 5: a notebook saved while occlusion ran (26%) exported with execute="never"."""
    entry = widget_state(explorer)
    running = {"state": "running", "done": 26, "total": 100, "message": "", "unit": "windows"}
    entry["state"] = {**entry["state"], "status": "busy", "working": "occlusion",
                      "progress": {**entry["state"].get("progress", {}), "occlusion": running,
                                   "saliency": {"state": "done", "done": 1, "total": 1, "message": "", "unit": ""}}}
    nb = _saved_notebook(explorer)
    nb.metadata["widgets"][WIDGET_STATE]["state"]["abc123"] = entry
    nbformat.write(nb, tmp_path / "n.ipynb")
    cw.export_html(tmp_path / "n.ipynb", tmp_path / "n.html", execute="never")
    state = _states((tmp_path / "n.html").read_text())["abc123"]["state"]
    assert state["status"] == "idle" and state["working"] == ""
    occlusion = state["progress"]["occlusion"]
    assert occlusion["state"] == "cancelled" and occlusion["done"] == 26
    assert occlusion["message"] == ("not finished when the notebook was saved (26 of 100 windows); "
                                    "run the notebook again to compute it")
    assert state["progress"]["saliency"]["state"] == "done"  # what had finished stays as it was
    assert not any(info.get("state") == "running" for info in state["progress"].values())


@pytest.mark.parametrize("path_of, kwargs, match", [
    (lambda d: None, {}, r"export_html needs a file path \(a str or pathlib\.Path such as 'explorer\.html'\), not NoneType"),
    (lambda d: 123, {}, r"needs a file path.*not int 123"),
    (lambda d: str(d / "e.html").encode(), {}, r"needs a file path.*not bytes"),
    (lambda d: d / "missing" / "e.html", {}, r"cannot write 'e\.html': the folder '.*missing' does not exist; create it first"),
    (lambda d: d / "dir.html", {}, r"'.*dir\.html' is a folder; give export_html a file in it"),
    (lambda d: d / "e.html", {"title": 123}, r"title must be a str \(the page title\) or None, not int 123"),
    (lambda d: d / "e.html", {"title": ["x"]}, r"title must be a str.*not list"),
    (lambda d: d / "e.html", {"timeout": -1}, r"timeout must be a positive integer, got -1"),
    (lambda d: d / "e.html", {"execute": None}, r"execute must be one of 'auto', 'always', 'never', got None"),
])
def test_bad_paths_and_options_are_refused_before_anything_is_written(explorer, tmp_path, path_of, kwargs, match):
    (tmp_path / "dir.html").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    traits = {k: explorer.trait_values()[k] for k in ("layer", "channel", "target", "error")}
    with pytest.raises(OptionError, match=match):
        cw.export_html(explorer, path_of(tmp_path), **kwargs)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no folder made, no file written
    assert {k: explorer.trait_values()[k] for k in traits} == traits


@pytest.mark.parametrize("text, reason", [("{not json", "NotJSONError"), ("[1, 2]", "AttributeError"), ('{"cells": 5}', "")])
def test_a_file_that_is_not_a_notebook_is_refused(tmp_path, text, reason):
    (tmp_path / "n.ipynb").write_text(text)
    with pytest.raises(OptionError, match=rf"'.*n\.ipynb' is not a readable Jupyter notebook \({reason}"):
        cw.export_html(tmp_path / "n.ipynb", tmp_path / "e.html")
    assert not (tmp_path / "e.html").exists()
