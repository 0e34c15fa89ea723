"""Errors that name the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnWidgetsError(ValueError):
    """Base class: bad input to cnn_widgets. The model and widgets are left unchanged."""


class ImageError(CnnWidgetsError):
    """The image cannot be read or has the wrong shape / type."""


class LayerNotFoundError(CnnWidgetsError, KeyError):
    """A layer name that the network does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TargetError(CnnWidgetsError):
    """A target (class index, label or unit) that does not exist."""


class ModelError(CnnWidgetsError):
    """The model cannot be explored (no conv layers, not a module, ...)."""


class UnsupportedLayerError(ModelError):
    """A method with per-layer rules (LRP) met an operation it has no rule for; the message names it."""


class OptionError(CnnWidgetsError):
    """An unknown method or a bad option value (the message names the valid choices)."""


class NonFiniteError(CnnWidgetsError):
    """The model produced NaN or infinite values."""


def closest_names(name: str, names: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` names most similar to ``name`` (for "did you mean" hints)."""
    names = list(names)
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.3)
    if len(close) < n:
        close += [c for c in names if name.lower() in c.lower() and c not in close][: n - len(close)]
    return close
