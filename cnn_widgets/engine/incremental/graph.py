"""The model as a torch.fx graph, each op labelled by how a changed patch passes through it.

Krypton (Nakandala, Kumar & Papakonstantinou, SIGMOD 2019) propagates an occluded patch layer by
layer; which rule applies depends on the op:

* ``window``: convolution and pooling -- the patch grows by kernel, stride, padding and dilation;
* ``elementwise``: activations, batch norm in eval mode, residual adds, products -- the output
  changes where any input changes (the union of the inputs' patches);
* ``cat``: concatenation along channels -- the union, each input read over it;
* ``full``: anything else (global pooling, flatten, linear, attention, an unknown module or
  function): its output is computed on whole maps and is then different everywhere.

Only what is known to be local gets a local rule, so an unknown op costs speed, never correctness.
In-place ops run out of place, so every cached clean activation stays intact.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

__all__ = ["Op", "Plan", "Window", "build_plan"]


@dataclass(frozen=True)
class Window:
    """A sliding-window op run on a gathered window with no padding of its own.

    ``pad`` is ``(top, left)`` padding of the input; ``fill`` the padding value (0 for a
    convolution, ``-inf`` for max pooling); ``run(window)`` computes the op on an unpadded window.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilation: tuple[int, int]
    fill: float
    run: Callable[[torch.Tensor], torch.Tensor]
    macs_per_output: int = 0  # multiply-adds per output element (convolutions), for the work count


@dataclass
class Op:
    node: fx.Node
    kind: str  # "input", "static", "elementwise", "window", "cat", "full", "output"
    fn: Callable | None = None  # out-of-place callable taking the loaded args / kwargs
    window: Window | None = None
    macs_per_row: int = 0  # multiply-adds of a full (one-image) run of a linear layer


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


# activations that may run in place: their out-of-place equivalents
_ACTIVATIONS: dict[type, Callable[[nn.Module], Callable]] = {
    nn.ReLU: lambda m: F.relu,
    nn.ReLU6: lambda m: F.relu6,
    nn.Hardswish: lambda m: F.hardswish,
    nn.Hardsigmoid: lambda m: F.hardsigmoid,
    nn.SiLU: lambda m: F.silu,
    nn.Mish: lambda m: F.mish,
    nn.LeakyReLU: lambda m: (lambda x: F.leaky_relu(x, m.negative_slope)),
    nn.ELU: lambda m: (lambda x: F.elu(x, m.alpha)),
    nn.Hardtanh: lambda m: (lambda x: F.hardtanh(x, m.min_val, m.max_val)),
    nn.Sigmoid: lambda m: torch.sigmoid,
    nn.Tanh: lambda m: torch.tanh,
    nn.GELU: lambda m: m,
    nn.Softplus: lambda m: m,
    nn.PReLU: lambda m: m,
    nn.Identity: lambda m: (lambda x, *a, **k: x),
}
_DROPOUTS = (nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.Dropout3d, nn.AlphaDropout)

_ELEMENTWISE_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
    torch.add, torch.sub, torch.mul, torch.div, torch.relu, torch.sigmoid, torch.tanh, torch.clamp,
    F.relu, F.relu6, F.hardtanh, F.silu, F.gelu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.elu,
    F.mish, F.sigmoid, F.tanh,
}
_INPLACE_FUNCTIONS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                      operator.itruediv: operator.truediv}
_ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "add", "sub", "mul", "div", "clamp", "contiguous", "hardswish"}
_STATIC_ATTRIBUTES = {"ndim", "dtype", "device", "is_cuda", "layout"}  # the same for clean and occluded rows


def _conv_window(m: nn.Conv2d, in_shape) -> Window | None:
    if type(m) is not nn.Conv2d or m.padding_mode != "zeros":
        return None  # subclasses (e.g. "same"-padding ones) may pad in forward
    kernel, stride, dilation = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
    if isinstance(m.padding, str):
        pad = (0, 0) if m.padding == "valid" else tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    else:
        pad = _pair(m.padding)
    macs = (m.in_channels // m.groups) * kernel[0] * kernel[1]
    return Window(kernel, stride, pad, dilation, 0.0,
                  lambda w: F.conv2d(w, m.weight, m.bias, stride, 0, dilation, m.groups), macs)


def _module_op(node: fx.Node, m: nn.Module, shapes: dict) -> Op:
    """How the module called at ``node`` treats a patch (given the clean shapes of its input / output)."""
    kind = type(m)
    if kind in _ACTIVATIONS:
        return Op(node, "elementwise", _ACTIVATIONS[kind](m))
    if isinstance(m, _DROPOUTS):
        return Op(node, "elementwise", lambda x: x)  # eval mode (occlusion runs in inference_state)
    if kind in (nn.BatchNorm2d, nn.BatchNorm1d) and m.track_running_stats and m.running_mean is not None:
        # eval-mode batch norm is a per-channel affine map (with batch statistics it would not be)
        return Op(node, "elementwise", m)
    in_shape, out_shape = shapes.get(node.args[0] if node.args else None), shapes.get(node)
    spatial = in_shape is not None and out_shape is not None and len(in_shape) == 4 and len(out_shape) == 4
    if kind is nn.Conv2d and spatial:
        window = _conv_window(m, in_shape)
        if window is not None:
            return Op(node, "window", m, window)
    if kind is nn.MaxPool2d and not m.return_indices and spatial:
        k, s, d = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.dilation)
        return Op(node, "window", m, Window(k, s, _pair(m.padding), d, float("-inf"),
                                             lambda w: F.max_pool2d(w, k, s, 0, d)))
    if kind is nn.AvgPool2d and spatial and m.count_include_pad and m.divisor_override is None and not m.ceil_mode:
        k, s = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
        return Op(node, "window", m, Window(k, s, _pair(m.padding), (1, 1), 0.0, lambda w: F.avg_pool2d(w, k, s, 0)))
    if kind in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d) and spatial and not getattr(m, "return_indices", False):
        (hi, wi), (ho, wo) = in_shape[-2:], out_shape[-2:]
        if (hi, wi) == (ho, wo):
            return Op(node, "elementwise", lambda x: x)  # e.g. AlexNet's 6x6 pool on a 6x6 map
        if hi % ho == 0 and wi % wo == 0 and (ho, wo) != (1, 1):  # an ordinary pool with kernel = stride
            k = (hi // ho, wi // wo)
            pool = F.avg_pool2d if kind is nn.AdaptiveAvgPool2d else F.max_pool2d
            return Op(node, "window", m, Window(k, k, (0, 0), (1, 1), 0.0, lambda w: pool(w, k, k)))
    if kind is nn.Linear:
        return Op(node, "full", m, macs_per_row=m.in_features * m.out_features * (
            int(torch.Size(in_shape[1:-1]).numel()) if in_shape is not None else 1))
    if getattr(m, "inplace", False):
        return Op(node, "full", lambda x, *a, **k: m(x.clone(), *a, **k))
    return Op(node, "full", m)


def _function_op(node: fx.Node) -> Op:
    target = node.target
    if target in _INPLACE_FUNCTIONS:
        return Op(node, "elementwise", _INPLACE_FUNCTIONS[target])
    out_of_place = (lambda *a, **k: target(*a, **{**k, "inplace": False})) if "inplace" in node.kwargs else target
    if target in _ELEMENTWISE_FUNCTIONS:
        return Op(node, "elementwise", out_of_place)
    if target is F.dropout and not _arg(node, 2, "training", False):
        return Op(node, "elementwise", lambda x, *a, **k: x)
    if target is F.batch_norm and not _arg(node, 5, "training", False):
        return Op(node, "elementwise", target)  # running statistics: a per-channel affine map
    if target is torch.cat and _arg(node, 1, "dim", 0) in (1, -3):
        return Op(node, "cat", target)
    return Op(node, "full", out_of_place)


def _arg(node: fx.Node, position: int, name: str, default):
    return node.args[position] if len(node.args) > position else node.kwargs.get(name, default)


def _method_op(node: fx.Node) -> Op:
    name = node.target
    plain = name[:-1] if name.endswith("_") and not name.endswith("__") else name
    call = lambda self, *a, **k: getattr(self, plain)(*a, **k)  # noqa: E731 -- out of place always
    if plain in _ELEMENTWISE_METHODS:
        return Op(node, "elementwise", call)
    if plain != name:
        return Op(node, "full", call)
    return Op(node, "full", lambda self, *a, **k: getattr(self, name)(*a, **k))


@dataclass
class Plan:
    """The traced graph with one :class:`Op` per node, in execution order."""

    ops: list[Op]
    root: nn.Module
    output: fx.Node

    def needed(self, last: fx.Node) -> list[Op]:
        """The ops ``last`` depends on (itself included), in order: nothing after a unit's layer runs."""
        keep, todo = set(), [last]
        while todo:
            n = todo.pop()
            if n not in keep:
                keep.add(n)
                todo.extend(n.all_input_nodes)
        return [op for op in self.ops if op.node in keep]


class _Tracer(fx.Tracer):
    """Symbolic tracer that also keeps ``leaves`` (a unit's layer) as single module calls."""

    def __init__(self, leaves: frozenset[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return qualified_name in self.leaves or super().is_leaf_module(m, qualified_name)


def trace(model: nn.Module, leaves: frozenset[str] = frozenset()) -> fx.Graph:
    """``torch.fx`` graph of ``model`` (raises whatever tracing raises on an untraceable model)."""
    return _Tracer(leaves).trace(model)


def _in_place_conflict(node: fx.Node) -> bool:
    """An in-place op whose input is read again elsewhere: running it out of place would change results."""
    in_place = (
        (node.op == "call_method" and node.target.endswith("_") and not node.target.endswith("__"))
        or (node.op == "call_function" and (node.target in _INPLACE_FUNCTIONS or node.kwargs.get("inplace") is True))
    )
    if node.op == "call_module":
        return False  # checked with the module (its `inplace` flag) in build_plan
    first = node.args[0] if node.args else None
    return in_place and isinstance(first, fx.Node) and len(first.users) > 1


def build_plan(model: nn.Module, graph: fx.Graph, shapes: dict[fx.Node, tuple]) -> Plan:
    """Label every node of ``graph``; ``shapes`` holds the clean output shape of each tensor node.

    Raises ``ValueError`` for graphs this engine will not run incrementally (the caller then runs
    the plain model): a second required input, or an in-place op whose input is read elsewhere.
    """
    ops, dynamic, output = [], set(), None
    for node in graph.nodes:
        if node.op == "placeholder":
            if dynamic and not node.args:
                raise ValueError("the model's forward takes more than one required input")
            ops.append(Op(node, "input" if not dynamic else "static"))
            if not dynamic:
                dynamic.add(node)
            continue
        if node.op == "output":
            output = node
            ops.append(Op(node, "output"))
            continue
        if node.op == "get_attr":
            ops.append(Op(node, "static"))
            continue
        if not any(n in dynamic for n in node.all_input_nodes):
            ops.append(Op(node, "static"))  # same value for every occluded copy: computed once
            continue
        if node.op == "call_function" and node.target is getattr and node.args[1] in _STATIC_ATTRIBUTES:
            ops.append(Op(node, "static"))
            continue
        if _in_place_conflict(node):
            raise ValueError(f"in-place op {node.target} on a tensor that is read again")
        if node.op == "call_module":
            m = model.get_submodule(node.target)
            if getattr(m, "inplace", False) and isinstance(node.args[0], fx.Node) and len(node.args[0].users) > 1:
                raise ValueError(f"in-place module {node.target} on a tensor that is read again")
            op = _module_op(node, m, shapes)
        elif node.op == "call_function":
            op = _function_op(node)
        else:
            op = _method_op(node)
        dynamic.add(node)
        ops.append(op)
    return Plan(ops, model, output)
