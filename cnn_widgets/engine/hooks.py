"""The one hook mechanism of the engine: capture layer outputs inside a ``with`` block.

Every hook is removed when the block exits, on success and on error, and the model's
``training`` / ``requires_grad`` flags are restored exactly when the last computation holding
them leaves (weights are never written).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn


class StopForward(Exception):
    """Raised from a hook once every requested layer has been captured (saves the rest of the pass)."""


@dataclass
class _Held:
    """The flags one model had before the first holder of its inference state came in."""

    holders: int
    was_training: list[nn.Module]
    frozen: list[nn.Parameter]


_HELD: "weakref.WeakKeyDictionary[nn.Module, _Held]" = weakref.WeakKeyDictionary()
_HELD_LOCK = threading.Lock()


@contextmanager
def inference_state(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode with parameters frozen, then restore the exact previous flags.

    Freezing the parameters means a backward pass computes gradients with respect to the input
    only: no weight gradient is computed or accumulated.

    The state has one owner per model, shared by every thread: the first holder records the flags
    and sets them, later holders (another thread's computation overlapping it, a nested call) only
    join, and the last one to leave restores what the first recorded. So a computation that ends
    while another one still runs never hands the other a model in train mode with trainable
    parameters (which would write running statistics and ``.grad``).
    """
    with _HELD_LOCK:
        held = _HELD.get(model)
        if held is None:
            # only the flags that change are recorded and restored (this runs on every call)
            held = _Held(0, [m for m in model.modules() if m.training],
                         [p for p in model.parameters() if p.requires_grad])
            for m in held.was_training:
                m.training = False
            for p in held.frozen:
                p.requires_grad_(False)
            _HELD[model] = held
        held.holders += 1
    try:
        yield
    finally:
        with _HELD_LOCK:
            held.holders -= 1
            if held.holders == 0:
                del _HELD[model]
                for p in held.frozen:
                    p.requires_grad_(True)
                for m in held.was_training:
                    m.training = True


def holders(model: nn.Module) -> int:
    """How many computations hold ``model``'s inference state now (0: its own flags are in force)."""
    with _HELD_LOCK:
        held = _HELD.get(model)
        return held.holders if held is not None else 0


def this_thread_only(hook: Callable) -> Callable:
    """``hook`` for the calling thread's passes only: a forward hook is registered on the module, which
    every thread shares, so another thread running the same model meanwhile (the user's cell beside
    a background computation, two computations of the widget) must neither trigger it nor be cut
    short by it. On any other thread the wrapped hook returns ``None`` (no change)."""
    owner = threading.get_ident()

    def guarded(*args):
        if threading.get_ident() == owner:
            return hook(*args)
        return None

    return guarded


@contextmanager
def on_outputs(modules: dict[str, nn.Module], callback: Callable[[str, torch.Tensor], None],
               stop_after: bool = False, layouts: dict | None = None) -> Iterator[None]:
    """Call ``callback(name, output)`` the moment each named module produces its output.

    ``layouts`` maps a name to the :class:`~cnn_widgets.engine.tokens.TokenLayout` of a transformer
    block or channels-last stage: the callback then gets its ``[N, C, h, w]`` map, and the rest of
    the pass reads the module's output rebuilt from that map (the same values), so gradients with
    respect to the map flow.

    The callback sees the output before any later operation can change it in place (a
    ``ReLU(inplace=True)``, ResNet's ``out += identity``). With ``stop_after`` the pass is cut short
    (``StopForward``, the caller catches it) once every module has produced its output. Hooks are
    removed when the block exits, also on error. Only passes run by the calling thread are seen
    (:func:`this_thread_only`).
    """
    seen: set[str] = set()
    layouts = layouts or {}

    def make_hook(name: str):
        layout = layouts.get(name)

        def hook(_module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            rebuilt = None
            if layout is not None:
                whole, output = output, layout.to_map(output)
                rebuilt = layout.from_map(output, whole)
            callback(name, output)
            seen.add(name)
            if stop_after and len(seen) == len(modules):
                raise StopForward
            return rebuilt

        return hook

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(this_thread_only(make_hook(name))))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_outputs(
    modules: dict[str, nn.Module], stop_after: bool = False, layouts: dict | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each named module in the yielded dict while the block runs.

    With ``stop_after`` the forward pass is cut short (``StopForward``) as soon as every module
    has produced its output; the caller catches it. ``layouts``: as for :func:`on_outputs`.
    """
    outputs: dict[str, torch.Tensor] = {}
    with on_outputs(modules, outputs.__setitem__, stop_after, layouts):
        yield outputs


def hook_count(model: nn.Module) -> int:
    """Number of hooks registered on any submodule (tests use it to prove nothing is left behind)."""
    total = 0
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
        ):
            total += len(getattr(m, attr, {}) or {})
    return total


def tensor_version(tensor: torch.Tensor) -> int | None:
    """The tensor's version counter (moved by every in-place change), or ``None`` for a tensor made
    under ``torch.inference_mode``, which keeps none."""
    try:
        return tensor._version
    except RuntimeError:
        return None
