"""Which operations an LRP pass may meet, and what each one becomes (:mod:`.lrp_rules` has the rules).

A :class:`LrpMode` (a thread-local :class:`torch.overrides.TorchFunctionMode`, like the rectifier
rules) watches every torch call of one real forward pass of the model -- modules, functional
calls inside ``forward``, residual additions, concatenations -- so any CNN gets its rules from the
pass itself, with nothing written per architecture. Calls that do not touch the relevance path (no
argument needs a gradient) run untouched. On the path:

* ``conv1d/2d/3d`` and ``linear`` become :class:`.lrp_rules._Affine` with the composite's rule;
  the one reading the network input is the *first layer*;
* an eval-mode ``batch_norm`` right after one of them is merged into it, any other passes;
* ReLU and leaky ReLU keep their gradient (it is the pass rule), computed out of place so a
  captured layer output is never overwritten; ReLU6, GELU, SiLU, Hardswish, Mish, ELU, softplus
  pass the relevance; a sigmoid, hard sigmoid or tanh passes it too and its output is a *gate*:
  multiplied into an activation (squeeze-and-excitation), the gate is a constant;
* the operations in :data:`LINEAR` (bias-free linear maps, routing, shape changes) keep their
  gradient;
* a layer norm, group norm or RMS norm passes the relevance (its statistics are constants);
  ``scaled_dot_product_attention`` and ``multi_head_attention_forward`` (``nn.MultiheadAttention``)
  use constant attention probabilities, linear in the values (CP-LRP / AttnLRP, :mod:`.lrp_attention`);
* a matrix product of two activations (attention scores written out, ``q @ k.transpose(-2, -1)``)
  is a constant on its way to a softmax, whose output then is (timm's Swin, ``fused_attn=False``);
* anything else -- a product or quotient of two activations, a softmax of an activation, attention
  scores meeting anything but a softmax -- raises :class:`~cnn_widgets.engine.errors.UnsupportedLayerError` naming the
  operation and the module it was called from, never a silent gradient.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import OptionError, UnsupportedLayerError
from .lrp_attention import ATTENTION, NORMS, scores_flow
from .relu_rules import _RELU_FUNCS, rectifier_rules
from .lrp_rules import (COMPOSITES, FIRST_ONLY, RULES, GATED, GATES, Composite, LrpState, _Affine, _Call, _InputTimes,
                        _Pass, batch_norm_fold, run_batch_norm)

__all__ = ["DEFAULT_COMPOSITE", "LINEAR", "LrpMode", "composite_key", "composite_named", "lrp_rules", "rule_name"]

# Operations whose ordinary gradient is already the LRP rule: linear maps without a bias, routing
# (max), shape changes, and the rectifiers through the origin (their gradient is y / x).
LINEAR = frozenset("""
view view_as reshape reshape_as flatten unflatten permute transpose t movedim contiguous clone detach
squeeze unsqueeze squeeze_ unsqueeze_ expand expand_as repeat narrow select __getitem__ index_select
split split_with_sizes chunk unbind cat concat concatenate stack pad flip roll
add __add__ __radd__ add_ __iadd__ sub __sub__ __rsub__ sub_ __isub__ neg __neg__
max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices max_pool3d_with_indices
adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d avg_pool1d avg_pool2d avg_pool3d
adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d mean sum interpolate upsample
upsample_nearest upsample_bilinear pixel_shuffle pixel_unshuffle channel_shuffle
dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout
leaky_relu leaky_relu_ max amax to float double half bfloat16 type type_as identity
""".split())
_RELU = _RELU_FUNCS  # the rectifier rules' set: every spelling of a ReLU
_CONV = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
# a clamp written out (ReLU6 as x.clamp(0, 6)): an elementwise nonlinearity like any other, computed out of place
_CLAMPS = {torch.clamp: torch.clamp, torch.clip: torch.clamp, torch.Tensor.clamp: torch.clamp, torch.Tensor.clip: torch.clamp,
           torch.clamp_min: torch.clamp_min, torch.Tensor.clamp_min: torch.clamp_min,
           torch.clamp_max: torch.clamp_max, torch.Tensor.clamp_max: torch.clamp_max}
_MUL = frozenset("mul __mul__ __rmul__ multiply mul_ __imul__".split())
_DIV = frozenset("div __truediv__ divide div_ __itruediv__".split())


DEFAULT_COMPOSITE = "epsilon_plus_flat"

_OWN: dict[str, Composite] = {}  # the caller's own Composite objects, by the session rule they were given


def composite_key(composite: str | Composite) -> str:
    """The name a session rule carries for ``composite`` (``"lrp:<key>"``): a registry name, or for a
    caller's own :class:`Composite` that is not the registry's, a key made from its fields."""
    found = composite_named(composite)
    if COMPOSITES.get(found.name) == found:
        return found.name
    key = f"{found.name}~{abs(hash(found)):x}"
    _OWN[key] = found
    return key


def rule_name(composite: str | Composite) -> str:
    """The engine's rule string of a composite (what sessions, kept graphs and trees are keyed on)."""
    return f"lrp:{composite_key(composite)}"


def composite_named(composite: str | Composite) -> Composite:
    """The composite for a name of :data:`COMPOSITES` or a key of :func:`composite_key` (or a
    :class:`Composite` itself, checked)."""
    if isinstance(composite, Composite):
        found = composite
    elif isinstance(composite, str) and composite in COMPOSITES:
        found = COMPOSITES[composite]
    elif isinstance(composite, str) and composite in _OWN:
        found = _OWN[composite]
    else:
        raise OptionError(f"composite must be one of {', '.join(COMPOSITES)} (or a cw.Composite), got {composite!r}")
    for where, rule in (("conv", found.conv), ("linear", found.linear), ("first", found.first)):
        if rule is not None and rule not in RULES:
            raise OptionError(f"composite {found.name!r}: unknown {where} rule {rule!r}; the rules are {', '.join(RULES)}")
        if where != "first" and rule in FIRST_ONLY:
            raise OptionError(f"composite {found.name!r}: rule {rule!r} is for the first layer only, not {where}")
    return found


def _tensors(value) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


class LrpMode(TorchFunctionMode):
    """Route the relevance path of one forward pass through the LRP rules of ``state.composite``."""

    def __init__(self, state: LrpState, model: nn.Module | None = None):
        super().__init__()
        self.state = state
        self.model = model

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.autograd" or func is torch.Tensor.backward:
            return func(*args, **kwargs)  # a backward pass run inside the session (the kept graphs)
        tensors = [*_tensors(args), *_tensors(list(kwargs.values()))]
        path = [t for t in tensors if t.requires_grad]
        if any(getattr(t, "_cnnw_scores", None) for t in tensors):  # attention scores on their way to a softmax
            return scores_flow(self, func, path, args, kwargs)
        if not path:
            if func in _RELU or kwargs.get("inplace"):
                return _out_of_place(func, args, kwargs)
            return func(*args, **kwargs)
        state = self.state
        if state.leaf is None:
            leaf = next((t for t in path if t.is_leaf), None)
            if leaf is not None:
                state.leaf = leaf
        conv = _CONV.get(func)
        if conv is not None or func is F.linear:
            return self._affine(func, conv, args, kwargs)
        args, kwargs = self._leaf_times(args), self._leaf_times(kwargs)
        name = getattr(func, "__name__", str(func))
        if func is F.batch_norm:
            return self._batch_norm(args, kwargs)
        if func in ATTENTION:
            return ATTENTION[func](self, func, args, kwargs)
        if func in _RELU:
            return torch.relu(args[0])
        if func in GATED or func in _CLAMPS or func in NORMS:
            state.applied.add(f"pass:{name.rstrip('_')}")
            return _Pass.apply(args[0], _elementwise(_CLAMPS.get(func, func), args, kwargs))
        if func in GATES:
            state.applied.add("gate")
            out = _Pass.apply(args[0], GATES[func])
            out._cnnw_gate = True
            return out
        if name in _MUL:
            return self._product(func, name, args, kwargs)
        if name in _DIV and len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].requires_grad:
            self._unsupported(name, "a quotient of two activations")
        if name in LINEAR or name in _DIV:
            if kwargs.get("inplace") and name.startswith(("dropout", "alpha_dropout", "feature_alpha")):
                kwargs = {**kwargs, "inplace": False}
            out = func(*args, **kwargs)
            if name in _RESHAPES and getattr(args[0], "_cnnw_gate", False) and isinstance(out, torch.Tensor):
                out._cnnw_gate = True  # a gate reshaped before it multiplies (SENet's y.view(b, c, 1, 1))
            return out
        out = func(*args, **kwargs)
        if any(t.requires_grad for t in _tensors(out)):  # sizes, shapes, flags and constants pass
            self._unsupported(name, "no LRP rule")
        return out

    # ------------------------------------------------------------------------------- handlers
    def _leaf_times(self, value):
        """``value`` with the network input replaced by ``x * g``'s identity (:class:`_InputTimes`)."""
        leaf = self.state.leaf
        if leaf is None:
            return value
        if isinstance(value, torch.Tensor):
            if value is leaf:
                if self.state.leaf_times is None:
                    self.state.leaf_times = _InputTimes.apply(leaf)
                return self.state.leaf_times
            return value
        if isinstance(value, dict):
            return {k: self._leaf_times(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._leaf_times(v) for v in value)
        return value

    def _affine(self, func, conv, args, kwargs):
        state, composite = self.state, self.state.composite
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        bound = dict(zip(names, args))
        bound.update(kwargs)
        a, weight, bias = bound["input"], bound["weight"], bound.get("bias")
        if weight.requires_grad or (bias is not None and bias.requires_grad):
            self._unsupported(getattr(func, "__name__", "linear"), "weights that depend on the input")
        kind = "linear" if conv is None else "conv"
        first = not state.first_done
        state.first_done = True
        rule = composite.rule_for(kind, first)
        if rule in FIRST_ONLY and a is not state.leaf:
            raise UnsupportedLayerError(
                f"composite {composite.name!r} gives the first layer the {rule!r} rule, which needs the network "
                f"input itself, but the first {kind} layer{self._where()} reads a computed tensor; use a composite "
                "without a first-layer rule (epsilon_plus, epsilon_alpha2_beta1)"
            )
        if rule not in FIRST_ONLY:
            a = self._leaf_times(a)
        options = {k: bound[k] for k in names[3:] if k in bound}
        if conv is None:
            def run(x, w, b):
                return F.linear(x, w, b)
        else:
            fn = _CONV_FN[conv]

            def run(x, w, b):
                return fn(x, w, b, **options)
        call = _Call(kind, run, weight.detach(), None if bias is None else bias.detach(), rule, first, composite,
                     state.low, state.high, geometry=None if conv is None else _geometry(conv, options))
        state.applied.add(rule)
        out = _Affine.apply(a, call)
        state.affine_outputs[id(out)] = (out, call)
        return out

    def _batch_norm(self, args, kwargs):
        x = args[0] if args else kwargs["input"]
        fold = batch_norm_fold(args, kwargs)
        if fold is None:
            self._unsupported("batch_norm", "batch statistics (train mode); LRP needs the running statistics")
        found = self.state.affine_outputs.get(id(x))
        if found is not None and found[0] is x and found[1].fold is None:
            found[1].fold = fold
            self.state.applied.add("merged batch_norm")
        else:
            self.state.applied.add("pass:batch_norm")
        return _Pass.apply(x, run_batch_norm(*fold))

    def _product(self, func, name, args, kwargs):
        tensors = [a for a in args[:2] if isinstance(a, torch.Tensor) and a.requires_grad]
        if len(tensors) == 2:
            gates = [getattr(a, "_cnnw_gate", False) for a in args[:2]]
            if not any(gates):
                self._unsupported(name, "a product of two activations (only a sigmoid-type gate times an "
                                  "activation, as in squeeze-and-excitation, has a rule)")
            args = tuple(a.detach() if g else a for a, g in zip(args[:2], gates)) + tuple(args[2:])
            self.state.applied.add("gate as constant")
        if name.endswith("_") or name.startswith("__i"):
            return torch.mul(*args[:2])
        return func(*args, **kwargs)

    def _where(self) -> str:
        """`` in <Module> 'name'`` for the innermost module of the model on the call stack."""
        names = {id(m): n for n, m in self.model.named_modules()} if self.model is not None else {}
        for frame in inspect.stack(0)[2:]:
            owner = frame.frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and (not names or id(owner) in names):
                label = names.get(id(owner), "")
                return f" in {type(owner).__name__}" + (f" {label!r}" if label else "")
        return ""

    def _unsupported(self, name: str, why: str, where: str | None = None):
        raise UnsupportedLayerError(
            f"LRP has no rule for {name!r}{self._where() if where is None else where}: {why}. The supported operations are convolutions, "
            "linear layers, batch, layer and group norms, rectifiers and gated activations, pooling, additions, "
            "concatenations, squeeze-and-excitation gates and attention (F.scaled_dot_product_attention, "
            "nn.MultiheadAttention, softmax(q @ k.transpose(-2, -1)) @ v); use a gradient method (gradient, integrated_gradients) for this model"
        )


_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _geometry(dims: int, options: dict) -> tuple | None:
    """``(stride, padding, dilation, groups)`` as ``dims``-tuples (``None`` for ``padding="same"``)."""
    padding = options.get("padding", 0)
    if padding == "valid":
        padding = 0
    if isinstance(padding, str):
        return None

    def tup(v):
        return tuple(int(i) for i in v) if isinstance(v, (list, tuple)) else (int(v),) * dims

    return tup(options.get("stride", 1)), tup(padding), tup(options.get("dilation", 1)), int(options.get("groups", 1))


_RESHAPES = frozenset("view view_as reshape reshape_as flatten unflatten permute transpose contiguous squeeze unsqueeze "
                      "expand expand_as repeat to float double half bfloat16 type type_as".split())


def _elementwise(func, args, kwargs):
    """``x -> func(x, <the call's other arguments>)``, never in place (the pass recomputes it in its backward)."""
    if func is F.hardtanh_:
        func = F.hardtanh
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):  # a builtin without a signature (F.gelu, F.softplus): as called, but in place
        more, rest = args[1:], {k: v for k, v in kwargs.items() if k != "inplace"}
    else:
        more, rest = (), dict(list(bound.arguments.items())[1:])
        rest.pop("inplace", None)
    return lambda x: func(x, *more, **rest)


def _out_of_place(func, args, kwargs):
    """A rectifier or ``inplace=True`` call computed out of place (a captured output is never overwritten)."""
    if func in _RELU:
        return torch.relu(args[0])
    return func(*args, **{**kwargs, "inplace": False})


@contextmanager
def lrp_rules(composite: str | Composite, low: torch.Tensor | None = None, high: torch.Tensor | None = None,
              model: nn.Module | None = None) -> Iterator[LrpState]:
    """Context manager: a forward pass inside builds the LRP graph of ``composite``.

    ``low`` / ``high`` bound the network input (the z-B rule). The gradient of the input leaf
    through this graph is the input's relevance; of any other tensor ``t``, ``t * grad`` is its
    relevance.
    """
    found = composite_named(composite)
    state = LrpState(rule=f"lrp:{composite_key(found)}", composite=found, low=low, high=high)
    try:
        with LrpMode(state, model):
            yield state
    finally:
        state.affine_outputs.clear()


def input_bounds(net) -> tuple[torch.Tensor, torch.Tensor]:
    """The lowest and highest model input per channel: black and white pixels through the preprocessing."""
    from .preprocess import pixels_to_input

    dtype, device = net.dtype, net.device
    low = pixels_to_input(torch.zeros(1, 3, 1, 1, dtype=dtype, device=device), net.preprocess, net.input_channels)
    high = pixels_to_input(torch.ones(1, 3, 1, 1, dtype=dtype, device=device), net.preprocess, net.input_channels)
    return torch.minimum(low, high), torch.maximum(low, high)


def session_rules(rule: str, net):
    """The backward rules of one engine session: ``"lrp:<composite>"`` or a rectifier rule."""
    if rule.startswith("lrp:"):
        low, high = input_bounds(net)
        return lrp_rules(rule[4:], low, high, net.model)
    return rectifier_rules(rule)
