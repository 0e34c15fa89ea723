"""The scan's own error, for what is not an option value."""

from __future__ import annotations

from ..errors import CnnWidgetsError

__all__ = ["ScanError"]


class ScanError(CnnWidgetsError):
    """A scan cannot be run, resumed, saved or loaded as asked.

    Files, image sources and resume mismatches raise it; a bad option value (``k=0``,
    ``method="umap"``) raises :class:`~cnn_widgets.engine.errors.OptionError` as everywhere else.
    """
