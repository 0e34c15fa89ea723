"""cnn_widgets: a live CNN explorer inside Jupyter, over a pure-PyTorch explanation engine."""

from .engine import *  # noqa: F401,F403
from .engine import __all__ as _engine_all

__version__ = "0.1.0"


def __getattr__(name):
    # Widgets import anywidget/ipywidgets; load them only when asked for.
    if name in ("Explorer",):
        from . import widgets

        return getattr(widgets, name)
    if name in ("export_html",):  # static export (cnn_widgets/export/): also loads the widgets
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module 'cnn_widgets' has no attribute {name!r}")


__all__ = [*_engine_all, "Explorer", "export_html"]


def __dir__():
    return sorted({*globals(), *__all__})  # the lazily loaded names (Explorer, export_html) too
