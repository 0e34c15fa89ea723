"""Receptive fields and dataflow, traced through every torch operation of one forward pass.

A :class:`torch.overrides.TorchFunctionMode` sees every op, however the model writes it
(modules, ``F.*`` calls, tensor methods), and attaches to each spatial tensor it creates the
receptive field of one of its positions, as ``(size, jump, start)`` per axis, and the module calls
it was computed from (the traced graph that ``discover_layers`` reads inputs and dominators from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

AxisField = tuple[float, float, float]


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output position of a layer, in input pixels."""

    size: tuple[int, int]
    stride: tuple[int, int]
    start: tuple[int, int]
    is_global: bool = False

    def box(self, y: int, x: int, image_size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """Input box ``(top, left, bottom, right)`` (exclusive ends) seen by output position (y, x).

        Clipped to ``image_size`` (H, W) when it is given.
        """
        top = self.start[0] + y * self.stride[0]
        left = self.start[1] + x * self.stride[1]
        bottom, right = top + self.size[0], left + self.size[1]
        if image_size is not None:
            top, left = max(top, 0), max(left, 0)
            bottom, right = min(bottom, image_size[0]), min(right, image_size[1])
        return int(top), int(left), int(bottom), int(right)


# --------------------------------------------------------------------------------------------
# receptive-field propagation through every torch operation
# --------------------------------------------------------------------------------------------

_GLOBAL = "global"
_IN_PLACE_ARITHMETIC = frozenset("add_ __iadd__ sub_ __isub__ mul_ __imul__ div_ __itruediv__ addcmul_ addcdiv_".split())
INPUT = ("<input>", 0)  # the image, as a source in the traced dataflow graph


def pair(v) -> tuple:
    """``(v, v)`` for one value, a 2-tuple as it is (a kernel size, stride, padding or dilation)."""
    if isinstance(v, (list, tuple)):
        return tuple(v) if len(v) == 2 else (v[0], v[0])
    return (v, v)


def _arg(args, kwargs, index, name, default):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _window(axis: AxisField, k: int, s: int, pad: float, d: int = 1) -> AxisField:
    size, jump, start = axis
    return (size + (k - 1) * d * jump, jump * s, start - pad * jump)


def _union(fields: list) -> object:
    if any(f == _GLOBAL for f in fields):
        return _GLOBAL
    out = []
    for axis in range(2):
        sizes = [f[axis] for f in fields]
        jump = max(a[1] for a in sizes)
        start = min(a[2] for a in sizes)
        end = max(a[2] + a[0] for a in sizes)
        out.append((end - start, jump, start))
    return tuple(out)


class ReceptiveFieldTracer(TorchFunctionMode):
    """Follow a forward pass and attach a receptive field to every spatial tensor it creates."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.fields: dict[int, object] = {id(image): ((1, 1, 0), (1, 1, 0))}
        # which module calls a tensor was computed from (nearest ones): the traced dataflow graph
        self.sources: dict[int, frozenset] = {id(image): frozenset({INPUT})}
        # where the (H, W) axes of a tensor are, for those not laid out [..., H, W]: a permute to
        # channels-last [N, H, W, C] (ConvNeXt's LayerNorm and MLP) keeps its field on axes (1, 2)
        self.axes: dict[int, tuple[int, int]] = {}
        # the (h, w) grids of maps flattened into tokens (a vision transformer's patch embedding)
        self.grids: list[tuple[int, int]] = []
        # tensors computed from one token picked out of [N, tokens, C] (a head on the class token)
        self.picked: set[int] = set()
        # tensors an in-place sum or product wrote to (a residual ``result += input``)
        self.summed_into: set[int] = set()
        self._alive: list[torch.Tensor] = [image]  # keep ids unique during the trace

    def sources_of(self, obj) -> frozenset:
        """Union of the module calls behind every tensor in ``obj`` (nested tuples / lists / dicts)."""
        if isinstance(obj, torch.Tensor):
            return self.sources.get(id(obj), frozenset())
        if isinstance(obj, (list, tuple)):
            return frozenset().union(*(self.sources_of(o) for o in obj)) if obj else frozenset()
        if isinstance(obj, dict):
            return self.sources_of(list(obj.values()))
        return frozenset()

    def tag(self, tensor: torch.Tensor, call: tuple[str, int]) -> None:
        self.sources[id(tensor)] = frozenset({call})
        self._alive.append(tensor)

    def field_of(self, tensor: torch.Tensor) -> object | None:
        return self.fields.get(id(tensor))

    def spatial_axes(self, tensor: torch.Tensor) -> tuple[int, int]:
        """The dimensions of ``tensor`` that hold H and W (the last two unless a permute moved them)."""
        return self.axes.get(id(tensor), (tensor.dim() - 2, tensor.dim() - 1))

    def _hw(self, tensor: torch.Tensor) -> tuple[int, int]:
        a, b = self.spatial_axes(tensor)
        return tensor.shape[a], tensor.shape[b]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            found = self.sources_of((args, kwargs))
            if found:
                for tensor in (out if isinstance(out, (tuple, list)) else (out,)):
                    if isinstance(tensor, torch.Tensor):
                        self.sources[id(tensor)] = found
                        self._alive.append(tensor)
            self._propagate(func, args, kwargs, out)
            self._track_layout(func, args, kwargs, out)
        except Exception:  # a field we cannot trace is simply unknown, never a failed forward
            pass
        return out

    def _inputs(self, args, kwargs) -> list[tuple[torch.Tensor, object]]:
        found = []

        def visit(obj):
            if isinstance(obj, torch.Tensor):
                f = self.fields.get(id(obj))
                if f is not None:
                    found.append((obj, f))
            elif isinstance(obj, (list, tuple)):
                for o in obj:
                    visit(o)

        visit(args)
        visit(list(kwargs.values()))
        return found

    def _set(self, out, value, axes: tuple[int, int] | None = None):
        if isinstance(out, torch.Tensor):
            self.fields[id(out)] = value
            if axes is not None and axes != (out.dim() - 2, out.dim() - 1):
                self.axes[id(out)] = axes
            self._alive.append(out)
        elif isinstance(out, (tuple, list)):  # every piece of a chunk / split (ShuffleNet's channel split)
            for piece in out:
                if isinstance(piece, torch.Tensor):
                    self._set(piece, value, axes)

    def _moved_axes(self, name: str, first: torch.Tensor, args, kwargs, out: torch.Tensor) -> tuple[int, int] | None:
        """Where a permute / transpose puts the spatial axes of ``first`` (None: not such an op)."""
        n = first.dim()
        if name == "permute":
            dims = args[1:] if len(args) > 2 or not isinstance(_arg(args, kwargs, 1, "dims", ()), (list, tuple)) \
                else _arg(args, kwargs, 1, "dims", ())
            order = [int(d) % n for d in dims]
        elif name in ("transpose", "swapaxes", "swapdims"):
            d0, d1 = int(_arg(args, kwargs, 1, "dim0", 0)) % n, int(_arg(args, kwargs, 2, "dim1", 0)) % n
            order = list(range(n))
            order[d0], order[d1] = d1, d0
        else:
            return None
        if sorted(order) != list(range(n)) or out.dim() != n:
            return None
        a, b = self.spatial_axes(first)
        return order.index(a), order.index(b)

    def _track_layout(self, func, args, kwargs, out) -> None:
        """Where the spatial axes of ``out`` are, also where no receptive field is known (a Swin stage
        after a patch merging), and the grids of maps flattened into tokens.

        A ``linear`` / ``layer_norm`` result with four dimensions is channels-last ``[N, H, W, C]``
        (both act on the last axis), and so is ``[N, H*W, C]`` reshaped to four; a permute moves the
        axes; any other op that keeps the rank keeps its first input's axes. A token picked out of
        ``[N, tokens, C]`` marks what is computed from it.
        """
        main = out[0] if isinstance(out, (tuple, list)) and out else out
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None or not isinstance(main, torch.Tensor):
            return
        name = getattr(func, "__name__", "")
        if name in _IN_PLACE_ARITHMETIC:
            self.summed_into.add(id(first))
        if any(id(a) in self.picked for a in args if isinstance(a, torch.Tensor)) or (
                name in ("__getitem__", "select") and first.dim() == 3 and main.dim() == 2):
            self.picked.add(id(main))
            self._alive.append(main)
        if first.dim() == 4 and main.dim() == 3 and id(first) in self.fields and name in ("flatten", "reshape", "view"):
            h, w = self._hw(first)
            if h * w > 1 and h * w in tuple(main.shape[1:]) and (h, w) not in self.grids:
                self.grids.append((h, w))
        if id(main) in self.axes:
            return
        moved = self._moved_axes(name, first, args, kwargs, main)
        if moved is not None:
            axes = moved
        elif name in ("linear", "layer_norm") and main.dim() == 4:
            axes = (1, 2)
        elif first.dim() == 3 and main.dim() == 4 and main.shape[1] * main.shape[2] == first.shape[1] \
                and main.shape[3] == first.shape[2] and name in ("reshape", "view", "unflatten"):
            axes = (1, 2)  # tokens [N, H*W, C] back to a channels-last map [N, H, W, C] (a Swin block)
        elif main.dim() == first.dim():
            axes = self.spatial_axes(first)
        else:
            return
        if axes != (main.dim() - 2, main.dim() - 1):
            self.axes[id(main)] = axes
            self._alive.append(main)

    def _propagate(self, func, args, kwargs, out):
        inputs = self._inputs(args, kwargs)
        if not inputs:
            return
        name = getattr(func, "__name__", "")
        first, first_field = inputs[0]
        main = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(main, torch.Tensor):
            return
        in_hw = self._hw(first)
        moved = self._moved_axes(name, first, args, kwargs, main)
        if moved is not None:  # a permute moves the axes, not the field
            self._set(out, first_field, moved)
            return
        # the result keeps the axes of its first input when it keeps its rank (elementwise ops,
        # a Linear or LayerNorm over channels-last C); any other result is laid out [..., H, W]
        axes = self.spatial_axes(first) if main.dim() == first.dim() else (main.dim() - 2, main.dim() - 1)
        out_hw = (main.shape[axes[0]], main.shape[axes[1]]) if main.dim() >= 2 else ()
        if main.dim() < 3 or (first_field == _GLOBAL and not (first.dim() >= 3 and in_hw == (1, 1))):
            self._set(out, _GLOBAL)
            return
        if name in ("conv2d",) and first is args[0]:
            weight = _arg(args, kwargs, 1, "weight", None)
            k = weight.shape[-2:]
            s = pair(_arg(args, kwargs, 3, "stride", 1))
            pad = _arg(args, kwargs, 4, "padding", 0)
            d = pair(_arg(args, kwargs, 5, "dilation", 1))
            if isinstance(pad, str):
                pad = (0, 0) if pad == "valid" else tuple(((kk - 1) * dd) // 2 for kk, dd in zip(k, d))
            pad = pair(pad)
            self._set(out, tuple(_window(first_field[i], k[i], s[i], pad[i], d[i]) for i in range(2)))
            return
        if "adaptive" in name:
            fields = []
            for i in range(2):
                n_in, n_out = in_hw[i], out_hw[i]
                if n_out == 1:
                    self._set(out, _GLOBAL)
                    return
                if n_in % n_out == 0:
                    k = s = n_in // n_out
                else:
                    k, s = math.ceil(n_in / n_out) + 1, n_in // n_out
                fields.append(_window(first_field[i], k, s, 0))
            self._set(out, tuple(fields))
            return
        if "max_pool2d" in name or "avg_pool2d" in name:
            k = pair(_arg(args, kwargs, 1, "kernel_size", 1))
            stride = _arg(args, kwargs, 2, "stride", None)
            s = pair(stride if stride not in (None, []) else k)
            pad = pair(_arg(args, kwargs, 3, "padding", 0))
            d = pair(_arg(args, kwargs, 4, "dilation", 1)) if "max" in name else (1, 1)
            self._set(out, tuple(_window(first_field[i], k[i], s[i], pad[i], d[i]) for i in range(2)))
            return
        if func is F.pad or name == "pad":
            pads = _arg(args, kwargs, 1, "pad", (0, 0, 0, 0))
            left, top = pads[0], pads[2] if len(pads) > 2 else 0
            self._set(out, ((first_field[0][0], first_field[0][1], first_field[0][2] - top * first_field[0][1]),
                            (first_field[1][0], first_field[1][1], first_field[1][2] - left * first_field[1][1])))
            return
        spatial = [(t, f) for t, f in inputs if t.dim() >= 3]
        same = [f for t, f in spatial if self._hw(t) == out_hw]
        broadcast = [f for t, f in spatial if self._hw(t) == (1, 1) != out_hw]
        if same and len(same) + len(broadcast) == len(spatial):
            # elementwise, normalisation, concatenation, ... A broadcast 1x1 operand (a squeeze-and-
            # excitation gate, a per-channel scale) rescales whole channels: it does not widen the
            # region of the image a position of the result looks at, so it takes no part in the union.
            self._set(out, _union(same), axes)
            return
        if tuple(out_hw) == (1, 1):
            self._set(out, _GLOBAL)
        # otherwise (upsampling, cropping, ...): unknown


def to_receptive_field(value, image_hw: tuple[int, int]) -> ReceptiveField | None:
    if value is None:
        return None
    if value == _GLOBAL:
        return ReceptiveField(size=tuple(image_hw), stride=tuple(image_hw), start=(0, 0), is_global=True)
    return ReceptiveField(
        size=tuple(int(round(a[0])) for a in value),
        stride=tuple(int(round(a[1])) for a in value),
        start=tuple(int(round(a[2])) for a in value),
    )
