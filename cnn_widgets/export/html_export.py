"""``cw.export_html(explorer_or_notebook, path)``: one self-contained HTML file that opens offline."""

from __future__ import annotations

import time
from pathlib import Path

from ..engine.checks import check_choice, check_int
from ..engine.errors import OptionError
from ..widgets.bundle import bundle_text as _bundle
from .paths import output_path


def export_html(source, path: str | Path, *, title: str | None = None, execute: str = "auto", timeout: int = 900) -> dict:
    """Write one HTML file that shows ``source`` from ``file://`` with no network.

    Parameters
    ----------
    source
        A ``cw.Explorer`` (its current state: every synced trait, arrays base64-encoded), or the
        path of a notebook (``.ipynb``): its cells as HTML with every Explorer drawn from its saved
        widget state.
    path
        The ``.html`` file to write.
    title
        The page title (default: the notebook's file name, or "cnn_widgets Explorer").
    execute
        Notebooks only: ``"auto"`` runs the notebook with nbclient when an Explorer's state (with
        its arrays) is not saved in it, ``"always"`` runs it first, ``"never"`` uses what it saved.
    timeout
        Seconds a notebook cell may run when it is executed.

    The page is a static snapshot: the view says so in one line, controls that need the kernel
    are disabled, client-side ones (colormap, opacity, tabs, hover, figure buttons) still work.

    Returns
    -------
    dict
        ``{"path", "bytes", "explorers", "executed", "seconds"}``.
    """
    from ..widgets.explorer import Explorer
    from .html_page import explorer_page
    from .notebook import notebook_page
    from .state import widget_state

    from .notebook import EXECUTE

    start = time.perf_counter()
    out = output_path(path, "export_html", "explorer.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise OptionError(f"export_html writes an .html file; got {str(out)!r} (name it e.g. {out.with_suffix('.html').name!r})")
    if title is not None and not isinstance(title, str):
        raise OptionError(f"title must be a str (the page title) or None, not {type(title).__name__} {title!r:.60}")
    check_choice("execute", execute, EXECUTE)
    timeout = check_int("timeout", timeout)
    if isinstance(source, Explorer):
        source.compute()  # finish pending panels: the snapshot shows settled results
        page = explorer_page(_bundle(), widget_state(source), title or "cnn_widgets Explorer")
        summary = {"explorers": 1, "executed": False}
    elif isinstance(source, (str, Path)) and Path(source).suffix == ".ipynb":
        page, summary = notebook_page(source, _bundle(), execute, timeout)
        summary = {"explorers": summary["explorers"], "executed": summary["executed"]}
    else:
        raise OptionError(f"export_html takes a cw.Explorer or the path of a .ipynb notebook, not {type(source).__name__} {source!r:.80}")
    out.write_text(page, encoding="utf-8")
    return {"path": str(out), "bytes": out.stat().st_size, **summary, "seconds": round(time.perf_counter() - start, 2)}
