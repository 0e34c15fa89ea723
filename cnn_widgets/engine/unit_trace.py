"""One recorded forward pass: every torch operation with a copy of what it produced, and the module
that ran it, so one number of any tensor can be followed back to the operation that computed it.

The recording is a thread-local torch-function mode plus forward hooks that answer only the
calling thread (:func:`~.hooks.this_thread_only`): another thread running the same model meanwhile
is neither recorded nor slowed. A tensor an in-place operation is about to change (a
``ReLU(inplace=True)``, ResNet's ``out += identity``) is copied first, so what an earlier operation
read or produced stays as it was; nothing else is copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .hooks import StopForward, this_thread_only

# operations that only move numbers (the index of one number is found by replaying them on an arange)
MOVES = {
    "view", "reshape", "flatten", "permute", "transpose", "swapaxes", "swapdims", "__getitem__", "squeeze",
    "unsqueeze", "unflatten", "chunk", "split", "narrow", "select", "movedim", "t", "unbind", "view_as",
    "reshape_as", "expand", "expand_as", "tensor_split",
}
# operations that keep every number where it is and its value (in eval mode)
KEEPS = {"contiguous", "clone", "detach", "dropout", "dropout2d", "feature_dropout", "alpha_dropout", "identity",
         "to", "float", "type_as", "__get__"}


def op_name(func) -> str:
    name = getattr(func, "__name__", str(func))
    if name.startswith("_") and not name.startswith("__"):
        name = name.lstrip("_")
    for tail in ("_with_indices",):
        name = name[: -len(tail)] if name.endswith(tail) else name
    return name


def _in_place(name: str, kwargs: dict) -> bool:
    """Whether an operation writes into its first argument (``relu_``, ``__iadd__``, ``inplace=True``)."""
    if name.startswith("__"):
        return name.startswith("__i") and name not in ("__index__", "__int__", "__invert__")
    return name.endswith("_") or bool(kwargs.get("inplace"))


def base_name(name: str) -> str:
    """``relu_`` -> ``relu``, ``__iadd__`` -> ``iadd``: the operation whatever its in-place form."""
    return name.strip("_") if name.startswith("__") else name.rstrip("_")


def arg(record: "Record", position: int, name: str, default=None):
    """An argument of a recorded call, given by position or by keyword."""
    if len(record.args) > position:
        return record.args[position]
    return record.kwargs.get(name, default)


@dataclass
class Record:
    index: int
    name: str
    func: object
    args: tuple
    kwargs: dict
    outputs: tuple  # the produced tensors (the live objects, kept alive so ids stay unique)
    copies: list  # their values when produced (the live tensor until an in-place operation changes it)
    module: str  # the innermost module running when the operation ran ("" at the top level)


class PassRecorder(TorchFunctionMode):
    """Records the operations of a forward pass (use through :func:`record_pass`)."""

    def __init__(self):
        super().__init__()
        self.records: list[Record] = []
        self.producers: dict[int, list[tuple[int, int]]] = {}  # id(tensor) -> [(record index, piece)]
        self.modules: list[str] = []
        self.stop_at: int | None = None  # raise StopForward once this many records exist

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = op_name(func)
        if args and isinstance(args[0], torch.Tensor) and _in_place(name, kwargs):
            self._keep(args[0])
        out = func(*args, **kwargs)
        pieces = out if isinstance(out, (tuple, list)) else (out,)
        tensors = tuple(p for p in pieces if isinstance(p, torch.Tensor))
        if tensors and name != "__get__":
            index = len(self.records)
            self.records.append(Record(index, name, func, args, kwargs, tensors, [t.detach() for t in tensors],
                                       self.modules[-1] if self.modules else ""))
            for piece, t in enumerate(tensors):
                self.producers.setdefault(id(t), []).append((index, piece))
            if self.stop_at is not None and len(self.records) >= self.stop_at:
                raise StopForward
        return out

    def _keep(self, tensor: torch.Tensor) -> None:
        """Copy the value ``tensor`` has now into the record that produced it (it is about to change)."""
        found = self.producers.get(id(tensor))
        if found:
            index, piece = found[-1]
            record = self.records[index]
            if record.copies[piece] is not None and record.copies[piece].data_ptr() == tensor.data_ptr():
                record.copies[piece] = tensor.detach().clone()

    def producer(self, tensor: torch.Tensor, before: int) -> tuple[Record, int] | None:
        """The operation that last wrote ``tensor`` before record ``before`` (and which of its outputs)."""
        for index, piece in reversed(self.producers.get(id(tensor), [])):
            if index < before:
                return self.records[index], piece
        return None

    def value(self, obj, before: int):
        """``obj`` as operation ``before`` read it (a copy made when it was produced; a parameter or the
        model's input as it is)."""
        if not isinstance(obj, torch.Tensor):
            return obj
        found = self.producer(obj, before)
        return obj.detach() if found is None else found[0].copies[found[1]]

    def source(self, obj, before: int) -> str:
        if not isinstance(obj, torch.Tensor):
            return "constant"
        found = self.producer(obj, before)
        if found is None:
            return "parameter" if isinstance(obj, nn.Parameter) else "input"
        return found[0].module or found[0].name


@contextmanager
def record_pass(model: nn.Module, names: dict[nn.Module, str]) -> Iterator[PassRecorder]:
    """Record the next forward pass of ``model`` on this thread; ``names`` names the modules whose
    calls label the operations inside them."""
    recorder = PassRecorder()

    def enter(module, _args):
        recorder.modules.append(names[module])

    def leave(module, _args, _out):
        if recorder.modules:
            recorder.modules.pop()

    handles = []
    try:
        for module in names:
            handles.append(module.register_forward_pre_hook(this_thread_only(enter)))
            handles.append(module.register_forward_hook(this_thread_only(leave)))
        with recorder:
            yield recorder
    finally:
        for handle in handles:
            handle.remove()


def replay_index(record: Record, piece: int, index: tuple[int, ...]) -> tuple[int, ...]:
    """Where number ``index`` of output ``piece`` of a :data:`MOVES` operation was in its input."""
    first = record.args[0]
    numbered = torch.arange(first.numel(), dtype=torch.float64).view(first.shape)
    out = record.func(numbered, *record.args[1:], **record.kwargs)
    out = out[piece] if isinstance(out, (tuple, list)) else out
    flat = int(out[index])
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), first.shape))
