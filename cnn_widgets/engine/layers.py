"""Discovering the explorable layers of any CNN and their receptive fields, from one traced pass.

One forward pass on a blank image records, for every module call, its output shape and the
order in which calls start and finish. A :class:`torch.overrides.TorchFunctionMode` follows the
same pass through *every* torch operation (modules and functional calls alike) and propagates a
receptive field per tensor:

* each spatial axis carries ``(size, jump, start)``: output pixel ``p`` sees the input interval
  ``[start + p*jump, start + p*jump + size - 1]`` (``start`` may be negative: padding);
* a convolution or pooling with kernel ``k``, stride ``s``, padding ``q``, dilation ``d`` maps it to
  ``(size + (k-1)*d*jump, jump*s, start - q*jump)`` (Dumoulin & Visin, "A guide to convolution
  arithmetic", and Araujo et al., "Computing receptive fields of CNNs", Distill 2019);
* elementwise operations and concatenation take the union of their inputs' intervals (so a
  residual block's field is that of its widest branch);
* anything that mixes all positions (global pooling, flatten, linear, attention-like products
  with a 1x1 map of global extent) has the whole image as its field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

#: A receptive field along one axis: (size, jump, start).
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


@dataclass
class LayerInfo:
    """One explorable layer.

    Attributes
    ----------
    name
        Dotted module name, usable in ``cw.Unit(name, channel)``.
    kind
        ``"conv"``, ``"linear"``, ``"pool"``, ``"activation"`` or ``"block"`` (a container with
        convolutions inside, e.g. a residual block).
    shape
        Output shape without the batch dimension: ``(C, H, W)`` or ``(C,)``.
    receptive_field
        :class:`ReceptiveField` of one output position (``None`` when it cannot be traced, e.g.
        after an upsampling).
    input_layer
        Name of the explorable layer that finished last before this one started (its input).
    mixes_channels
        Whether an output channel depends on several input channels (convolutions other than
        depthwise, linear layers, blocks). Contribution trees step across such layers.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    module_type: str
    receptive_field: ReceptiveField | None = None
    input_layer: str | None = None
    mixes_channels: bool = False
    index: int = 0
    _module: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def is_spatial(self) -> bool:
        return len(self.shape) == 3

    def __str__(self) -> str:
        rf = self.receptive_field
        rf_text = "global" if rf and rf.is_global else (f"rf {rf.size[0]}x{rf.size[1]} stride {rf.stride[0]}" if rf else "rf ?")
        return f"{self.name} ({self.kind}, {'x'.join(map(str, self.shape))}, {rf_text})"


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.PReLU, nn.Hardtanh)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool1d, nn.AvgPool1d)
_SKIP = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def layer_kind(module: nn.Module) -> str | None:
    """Kind of a module as an explorable layer, or None if it is not one by itself."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _POOLS) or "pool" in type(module).__name__.lower():
        return "pool"
    if isinstance(module, _ACTIVATIONS):
        return "activation"
    if isinstance(module, _SKIP):
        return None
    if any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules()) and len(list(module.children())):
        return "block"
    return None


def _mixes_channels(module: nn.Module, kind: str) -> bool:
    if kind in ("linear", "block"):
        return True
    if kind == "conv":
        return not (module.groups > 1 and module.groups == module.in_channels == module.out_channels)
    return False


# --------------------------------------------------------------------------------------------
# receptive-field propagation through every torch operation
# --------------------------------------------------------------------------------------------

_GLOBAL = "global"


def _pair(v) -> tuple:
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
        self._alive: list[torch.Tensor] = [image]  # keep ids unique during the trace

    def field_of(self, tensor: torch.Tensor) -> object | None:
        return self.fields.get(id(tensor))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            self._propagate(func, args, kwargs, out)
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

    def _set(self, out, value):
        if isinstance(out, torch.Tensor):
            self.fields[id(out)] = value
            self._alive.append(out)
        elif isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            self._set(out[0], value)

    def _propagate(self, func, args, kwargs, out):
        inputs = self._inputs(args, kwargs)
        if not inputs:
            return
        name = getattr(func, "__name__", "")
        first, first_field = inputs[0]
        main = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(main, torch.Tensor):
            return
        if main.dim() < 3 or first_field == _GLOBAL:
            self._set(out, _GLOBAL)
            return
        if name in ("conv2d",) and first is args[0]:
            weight = _arg(args, kwargs, 1, "weight", None)
            k = weight.shape[-2:]
            s = _pair(_arg(args, kwargs, 3, "stride", 1))
            pad = _arg(args, kwargs, 4, "padding", 0)
            d = _pair(_arg(args, kwargs, 5, "dilation", 1))
            if isinstance(pad, str):
                pad = (0, 0) if pad == "valid" else tuple(((kk - 1) * dd) // 2 for kk, dd in zip(k, d))
            pad = _pair(pad)
            self._set(out, tuple(_window(first_field[i], k[i], s[i], pad[i], d[i]) for i in range(2)))
            return
        in_hw = first.shape[-2:]
        out_hw = main.shape[-2:]
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
            k = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
            stride = _arg(args, kwargs, 2, "stride", None)
            s = _pair(stride if stride not in (None, []) else k)
            pad = _pair(_arg(args, kwargs, 3, "padding", 0))
            d = _pair(_arg(args, kwargs, 4, "dilation", 1)) if "max" in name else (1, 1)
            self._set(out, tuple(_window(first_field[i], k[i], s[i], pad[i], d[i]) for i in range(2)))
            return
        if func is F.pad or name == "pad":
            pads = _arg(args, kwargs, 1, "pad", (0, 0, 0, 0))
            left, top = pads[0], pads[2] if len(pads) > 2 else 0
            self._set(out, ((first_field[0][0], first_field[0][1], first_field[0][2] - top * first_field[0][1]),
                            (first_field[1][0], first_field[1][1], first_field[1][2] - left * first_field[1][1])))
            return
        spatial = [(t, f) for t, f in inputs if t.dim() >= 3]
        if all(tuple(t.shape[-2:]) == tuple(out_hw) for t, _ in spatial):
            # elementwise, normalisation, concatenation, ...; a broadcast 1x1 global map makes it global
            others = [f for t, f in inputs if t.dim() < 3 or tuple(t.shape[-2:]) != tuple(out_hw)]
            self._set(out, _union([f for _, f in spatial] + [f for f in others if f == _GLOBAL]))
            return
        if tuple(out_hw) == (1, 1):
            self._set(out, _GLOBAL)
        # otherwise (upsampling, cropping, ...): unknown


def _to_receptive_field(value, image_hw: tuple[int, int]) -> ReceptiveField | None:
    if value is None:
        return None
    if value == _GLOBAL:
        return ReceptiveField(size=tuple(image_hw), stride=tuple(image_hw), start=(0, 0), is_global=True)
    return ReceptiveField(
        size=tuple(int(round(a[0])) for a in value),
        stride=tuple(int(round(a[1])) for a in value),
        start=tuple(int(round(a[2])) for a in value),
    )


def discover_layers(model: nn.Module, example: torch.Tensor) -> list[LayerInfo]:
    """Trace one forward pass of ``model`` on ``example`` ([1, 3, H, W]) and list explorable layers.

    A module is explorable when it is called exactly once, returns a ``[1, C, H, W]`` or ``[1, C]``
    tensor, and is a conv / linear / pool / activation module or a block of such modules whose
    output is not simply one of its children's outputs. Layers are ordered by when their output
    is produced.
    """
    names = {m: n for n, m in model.named_modules() if n}
    calls: dict[str, dict] = {}
    clock = [0]
    handles = []

    def pre_hook(module, _inputs):
        name = names[module]
        entry = calls.setdefault(name, {"count": 0})
        entry["count"] += 1
        entry["pre"] = clock[0]
        clock[0] += 1

    def post_hook(module, _inputs, output):
        name = names[module]
        entry = calls[name]
        entry["post"] = clock[0]
        clock[0] += 1
        entry["output"] = output

    tracer = ReceptiveFieldTracer(example)
    try:
        for module in names:
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
        with torch.no_grad(), tracer:
            model(example)
    finally:
        for h in handles:
            h.remove()

    modules = dict(model.named_modules())
    candidates: list[tuple[str, dict, str]] = []
    for name, entry in calls.items():
        out = entry.get("output")
        if entry["count"] != 1 or not isinstance(out, torch.Tensor) or out.dim() not in (2, 4) or out.shape[0] != 1:
            continue
        kind = layer_kind(modules[name])
        if kind is None:
            continue
        candidates.append((name, entry, kind))

    # a container whose output is the very tensor one of its explorable descendants returned adds nothing
    output_owner: dict[int, str] = {}
    for name, entry, kind in sorted(candidates, key=lambda c: -len(c[0])):
        output_owner.setdefault(id(entry["output"]), name)
    kept = [(n, e, k) for n, e, k in candidates if k != "block" or output_owner[id(e["output"])] == n]
    # a pool/activation wrapper (e.g. timm's SelectAdaptivePool2d = pool + flatten) stands for its insides
    wrappers = [n for n, _, k in kept if k != "block" and any(True for _ in modules[n].children())]
    kept = [(n, e, k) for n, e, k in kept if not any(n.startswith(w + ".") for w in wrappers)]
    kept.sort(key=lambda c: c[1]["post"])

    image_hw = tuple(example.shape[-2:])
    layers: list[LayerInfo] = []
    for index, (name, entry, kind) in enumerate(kept):
        module = modules[name]
        before = [layer for layer in layers if calls[layer.name]["post"] < entry["pre"]]
        layers.append(
            LayerInfo(
                name=name,
                kind=kind,
                shape=tuple(entry["output"].shape[1:]),
                module_type=type(module).__name__,
                receptive_field=_to_receptive_field(tracer.field_of(entry["output"]), image_hw),
                input_layer=before[-1].name if before else None,
                mixes_channels=_mixes_channels(module, kind),
                index=index,
                _module=module,
            )
        )
    return layers
