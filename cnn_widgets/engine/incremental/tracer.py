"""The model's ``torch.fx`` graph, traced without disturbing any other thread (see :class:`_Tracer`)."""

from __future__ import annotations

import threading

import torch.fx as fx
from torch import nn

__all__ = ["trace"]


class _Tracer(fx.Tracer):
    """Symbolic tracer that also keeps ``leaves`` (a unit's layer) as single module calls, and that
    leaves every other thread alone.

    ``fx.Tracer.trace`` patches ``nn.Module.__call__`` and ``__getattr__`` for the whole process
    while it runs (and autowraps ``math`` functions in the globals of each module it meets). A
    module called on another thread meanwhile -- the user's own model in a notebook cell, a
    transform of the Explorer -- would be recorded into this graph and fail ("module is not
    installed as a submodule"). Here the patched entry points hand any call from another thread
    straight to the original ``Module.__call__`` / attribute, and autowrap nothing for it, so
    other threads see exactly the module behaviour they would without the trace.
    """

    def __init__(self, leaves: frozenset[str]):
        self._tracing_thread = threading.get_ident()  # before super().__init__ sets the autowrap ids
        super().__init__()
        self.leaves = leaves

    def _elsewhere(self) -> bool:
        return threading.get_ident() != self._tracing_thread

    @property
    def _autowrap_function_ids(self) -> set[int]:
        return set() if self._elsewhere() else self._own_autowrap_ids

    @_autowrap_function_ids.setter
    def _autowrap_function_ids(self, ids: set[int]) -> None:
        self._own_autowrap_ids = ids

    def call_module(self, m: nn.Module, forward, args, kwargs):
        if self._elsewhere():
            return forward(*args, **kwargs)  # the original Module.__call__: hooks and all
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val, parameter_proxy_cache):
        if self._elsewhere():
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return qualified_name in self.leaves or super().is_leaf_module(m, qualified_name)


def trace(model: nn.Module, leaves: frozenset[str] = frozenset()) -> fx.Graph:
    """``torch.fx`` graph of ``model`` (raises whatever tracing raises on an untraceable model)."""
    return _Tracer(leaves).trace(model)
