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
In-place ops run out of place, so every cached clean activation stays intact. An eval-mode batch
norm that alone reads a convolution is folded into it (the same affine map in one pass).
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field, replace

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..hooks import tensor_version
from ..tracing import pair
from .tracer import trace

__all__ = ["Op", "Plan", "Window", "attribute", "build_plan", "trace"]


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
    kernel, stride, dilation = pair(m.kernel_size), pair(m.stride), pair(m.dilation)
    if isinstance(m.padding, str):
        pad = (0, 0) if m.padding == "valid" else tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    else:
        pad = pair(m.padding)
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
        k, s, d = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.dilation)
        return Op(node, "window", m, Window(k, s, pair(m.padding), d, float("-inf"),
                                             lambda w: F.max_pool2d(w, k, s, 0, d)))
    if kind is nn.AvgPool2d and spatial and m.count_include_pad and m.divisor_override is None and not m.ceil_mode:
        k, s = pair(m.kernel_size), pair(m.stride or m.kernel_size)
        return Op(node, "window", m, Window(k, s, pair(m.padding), (1, 1), 0.0, lambda w: F.avg_pool2d(w, k, s, 0)))
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
    """The traced graph with one :class:`Op` per node, in execution order.

    The model is held weakly: plans are cached per model (a weak-key table), and a plan holding its
    model strongly would keep every model ever occluded alive, weights and all, for the process's life.
    """

    ops: list[Op]
    model: InitVar[nn.Module]
    output: fx.Node
    _root: "weakref.ref[nn.Module]" = field(init=False, repr=False)

    def __post_init__(self, model: nn.Module) -> None:
        self._root = weakref.ref(model)

    @property
    def root(self) -> nn.Module:
        model = self._root()
        if model is None:  # only a plan kept past its model's life gets here
            raise RuntimeError("the model of this occlusion plan no longer exists")
        return model

    def needed(self, last: fx.Node) -> list[Op]:
        """The ops ``last`` depends on (itself included), in order: nothing after a unit's layer runs."""
        keep, todo = set(), [last]
        while todo:
            n = todo.pop()
            if n not in keep:
                keep.add(n)
                todo.extend(n.all_input_nodes)
        return [op for op in self.ops if op.node in keep]


def _static_attribute(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target is getattr and node.args[1] in _STATIC_ATTRIBUTES


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


def build_plan(model: nn.Module, graph: fx.Graph, shapes: dict[fx.Node, tuple],
               leaves: frozenset[str] = frozenset()) -> Plan:
    """Label every node of ``graph``; ``shapes`` holds the clean output shape of each tensor node.

    Eval-mode batch norms right after a convolution are folded into it (:func:`_fold_batch_norms`),
    except where the convolution is one of ``leaves`` (a unit's layer: its own output is wanted).
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
        if _static_attribute(node):
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
    _fold_batch_norms(ops, model, leaves)
    return Plan(ops, model, output)


def _fold_batch_norms(ops: list[Op], model: nn.Module, leaves: frozenset[str]) -> None:
    """A convolution read only by an eval-mode batch norm (a ``BatchNorm2d``, or ``F.batch_norm``
    on running statistics, as in timm's ``BatchNormAct2d``) runs with the norm folded into its
    weights, and the norm becomes the identity: the same per-channel affine map, one pass over the
    window instead of two (the norm took a tenth of an occlusion of the default model). The folded
    weights are remade whenever a tensor they come from is replaced or changed in place."""
    labelled = {op.node: op for op in ops}
    for op in ops:
        node = op.node
        readers = [u for u in node.users if not _static_attribute(u)]  # ndim, dtype: the same folded
        if op.kind != "window" or node.op != "call_module" or node.target in leaves or len(readers) != 1:
            continue
        conv, user = model.get_submodule(node.target), readers[0]
        statistics = _norm_statistics(model, user, node)
        if type(conv) is not nn.Conv2d or statistics is None or labelled[user].kind != "elementwise":
            continue
        op.fn, run = _folded(conv, statistics)
        op.window = replace(op.window, run=run)
        labelled[user].fn = lambda x, *a, **k: x


_NORM_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


def _norm_statistics(model: nn.Module, user: fx.Node, source: fx.Node) -> Callable | None:
    """For an eval-mode batch norm ``user`` of ``source`` alone: a callable giving its current
    ``(running_mean, running_var, weight, bias, eps)``; ``None`` for anything else."""
    if user.op == "call_module":
        norm = model.get_submodule(user.target)
        if type(norm) is not nn.BatchNorm2d or user.args != (source,) or user.kwargs or norm.running_mean is None:
            return None
        return lambda: (norm.running_mean, norm.running_var, norm.weight, norm.bias, norm.eps)
    if user.op != "call_function" or user.target is not F.batch_norm:
        return None
    given = {**dict(zip(_NORM_ARGS, user.args)), **user.kwargs}
    if given.get("input") is not source or given.get("training", False) is not False:
        return None
    tensors = [given.get(name) for name in ("running_mean", "running_var", "weight", "bias")]
    eps = given.get("eps", 1e-5)
    if (any(t is not None and not (isinstance(t, fx.Node) and t.op == "get_attr") for t in tensors)
            or tensors[0] is None or tensors[1] is None or not isinstance(eps, (int, float))):
        return None  # statistics computed in the graph: not a constant affine map known here

    def current():
        return (*(None if t is None else attribute(model, t.target) for t in tensors), eps)

    return current


def attribute(root: nn.Module, target: str):
    """``root``'s attribute at a dotted ``target`` (a ``get_attr`` node's), looked up now."""
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _fold(conv: nn.Conv2d, mean, var, weight, bias, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of ``batch_norm(conv(x))``, computed in float64 and rounded once to the
    model's dtype."""
    mean, var, weight, bias = (t.double() if t is not None else None for t in (mean, var, weight, bias))
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = ((conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)) - mean) * scale
    if bias is not None:
        shift = shift + bias
    dtype = conv.weight.dtype
    return (conv.weight.double() * scale.reshape(-1, 1, 1, 1)).to(dtype), shift.to(dtype)


def _folded(conv: nn.Conv2d, statistics: Callable) -> tuple[Callable, Callable]:
    """The norm of ``conv(x)`` as one convolution: on a whole map (``conv``'s own padding), and on
    an unpadded window (:attr:`Window.run`); the weights from the norm's running statistics."""

    kept: dict = {}

    def weights():
        tensors = statistics()
        sources = [t for t in (conv.weight, conv.bias, *tensors) if isinstance(t, torch.Tensor)]
        # the folded pair is made again when any source tensor is replaced or changed in place, and
        # at every call where one keeps no version (an inference tensor)
        key = tuple((id(t), tensor_version(t)) for t in sources)
        if any(version is None for _, version in key) or kept.get("key") != key:
            kept.update(key=key, sources=sources, pair=_fold(conv, *tensors))  # sources: ids stay theirs
        return kept["pair"]

    stride, padding, dilation, groups = conv.stride, conv.padding, conv.dilation, conv.groups
    return (lambda x: F.conv2d(x, *weights(), stride, padding, dilation, groups),
            lambda w: F.conv2d(w, *weights(), stride, 0, dilation, groups))
