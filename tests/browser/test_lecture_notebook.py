"""Lecture notebook 01 ("why is this a cat?") run top to bottom in JupyterLab: the Explorer and its tree render."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_explorer_browser import FMAP, ROOT, wait_idle

pytestmark = pytest.mark.browser

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01_why_is_this_a_cat.ipynb"


def test_notebook_01_runs_in_jupyterlab_and_the_explorer_tree_renders(new_notebook_page):
    nb = new_notebook_page("lab", NOTEBOOK.name, [], viewport=(1400, 2600))
    shutil.copy(NOTEBOOK, nb.server.root / nb.path)  # the real notebook, markdown and all
    nb.screenshot_selector = ROOT
    try:
        nb.open()
        outputs = nb.run_all(timeout_s=600)  # raises CellError if any cell fails
        assert any("tabby, tabby cat" in text for text in outputs), "the tree printout is missing"
        page = nb.page
        page.wait_for_selector(f"{FMAP}[data-version]", timeout=300_000)
        assert wait_idle(page, 300_000) == "idle", page.inner_text(".cnnw-error")
        assert page.inner_text(".cnnw-top1").strip() == "tabby, tabby cat"
        # the explorer was pointed at blocks.5.3 by the notebook
        assert "selected" in (page.get_attribute('button.cnnw-layer[data-layer="blocks.5.3"]', "class") or "")
        # the tree panel: the root and its children render with pictures, and a child expands on click
        page.locator('.cnnw-tab[data-tab="tree"]').click()  # a scan is attached: the tree is one tab
        page.wait_for_selector(".cnnw-tree .cnnw-tree-node", timeout=300_000)
        nodes = page.locator(".cnnw-tree .cnnw-tree-node")
        before = nodes.count()
        assert before >= 2
        child = page.locator(".cnnw-tree .cnnw-tree-children .cnnw-tree-node").first
        child.scroll_into_view_if_needed()
        child.click(position={"x": 10, "y": 10})
        page.wait_for_function(
            "(n) => document.querySelectorAll('.cnnw-tree .cnnw-tree-node').length > n", arg=before, timeout=300_000
        )
        wait_idle(page, 300_000)
        assert nodes.count() > before
        nb.screenshot("test_notebook_01_explorer", selector=ROOT)
        assert not nb.console_errors(), nb.console_errors()
    except Exception:
        nb.screenshot("test_notebook_01-failed", selector=ROOT)
        raise
    finally:
        nb.close()
