"""The scan's own error, for what is not an option value, and its warning for a file it could not write."""

from __future__ import annotations

from ..errors import CnnWidgetsError

__all__ = ["ScanError", "ScanSaveWarning"]


class ScanError(CnnWidgetsError):
    """A scan cannot be run, resumed, saved or loaded as asked.

    Files, image sources and resume mismatches raise it; a bad option value (``k=0``,
    ``method="umap"``) raises :class:`~cnn_widgets.engine.errors.OptionError` as everywhere else.

    Attributes
    ----------
    scan
        When a scan that had begun gives up (a batch that keeps killing Ray workers, an image that
        cannot be read), the partial :class:`~cnn_widgets.engine.scan.Scan` of the images done so
        far: ``net.scan(images, resume=error.scan)`` continues it. ``None`` otherwise.
    """

    scan = None  # the partial Scan, set by the scan that gave up


class ScanSaveWarning(UserWarning):
    """A finished (or interrupted) scan could not be written to ``save_to``; the scan is still returned."""
