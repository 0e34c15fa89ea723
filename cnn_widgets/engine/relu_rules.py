"""Backward rules for ReLU-family nonlinearities, applied however the model writes them.

Guided backprop (Springenberg et al., 2015) and the deconvnet (Zeiler & Fergus, 2014) differ
from the true gradient only at rectifiers. For a rectifier ``y = relu(x)`` with upstream gradient
``g = dL/dy`` the three rules are

* ``gradient``:  ``dL/dx = g * [x > 0]``
* ``deconvnet``: ``dL/dx = max(g, 0)``                     (the forward mask is ignored)
* ``guided``:    ``dL/dx = max(g, 0) * [x > 0]``

(``relu6`` / ``hardtanh(0, t)`` use the mask ``0 < x < t``; ``leaky_relu`` keeps its slope.)

Smooth gated activations ``y = x * gate(x)`` (GELU, SiLU/Swish, Hardswish, Mish: ConvNeXt,
EfficientNet, MobileNetV3) get the same rules with their own slope ``a'(x)``: ``gradient`` is
``g * a'(x)``, ``deconvnet`` is ``max(g, 0)``, and ``guided`` is ``max(g, 0) * a'(x) * [x > 0]``,
positive-part gating as for a ReLU (``a'(x) > 0`` for ``x > 0`` in all four), which is how
guided backprop is usually carried over to these networks. Without this a guided map of such a
model would silently be the plain gradient. :attr:`RuleState.applied` records which kinds of
nonlinearity the rule was applied to, so callers can say which rule actually ran.

Models apply rectifiers as ``nn.ReLU`` / ``nn.ReLU6`` modules (possibly in place, possibly one
instance reused several times, as torchvision's ResNet does) or as ``F.relu`` / ``torch.relu`` /
``Tensor.relu`` calls inside ``forward``. Module hooks (captum's approach) miss the functional
calls and mis-handle reused in-place modules, so we intercept at the torch-function level with a
:class:`torch.overrides.TorchFunctionMode`: every rectifier call made while the mode is active is
replaced by an autograd function whose backward reads the rule *at backward time* from a shared
:class:`RuleState`. One forward pass can therefore serve both true-gradient scores and
guided-backprop pictures (the contribution tree needs both).

In-place rectifiers are computed out of place inside the mode, so a tensor captured by a forward
hook before an in-place ``ReLU(inplace=True)`` keeps its pre-activation value.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

RULES = ("gradient", "deconvnet", "guided")


@dataclass
class RuleState:
    """Mutable holder: which backward rule rectifiers use right now, and where it was applied."""

    rule: str = "gradient"
    applied: set = field(default_factory=set)  # names of the nonlinearities routed through the rule


class _Rectifier(torch.autograd.Function):
    """``clamp(x, lower, upper)`` (or leaky) with a backward chosen by ``state.rule`` at backward time.

    Written with ``setup_context`` and ``generate_vmap_rule`` so that several backward passes can
    run batched (``torch.autograd.grad(..., is_grads_batched=True)``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, state, lower, upper, negative_slope):
        if negative_slope:
            return torch.where(x > 0, x, x * negative_slope)
        return x.clamp(min=lower, max=upper) if upper is not None else torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, state, _lower, upper, negative_slope = inputs
        ctx.state = state
        ctx.upper = upper
        ctx.negative_slope = negative_slope
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        rule = ctx.state.rule
        if rule == "deconvnet":
            return grad.clamp(min=0), None, None, None, None
        if rule not in ("gradient", "guided"):  # pragma: no cover - guarded by rectifier_rules
            raise ValueError(f"unknown backward rule {rule!r}; use one of {RULES}")
        # torch's own fused backward kernels apply the forward mask in one pass
        if ctx.negative_slope:
            out = torch.ops.aten.leaky_relu_backward(grad, x, ctx.negative_slope, False)
        elif ctx.upper is not None:
            out = torch.ops.aten.hardtanh_backward(grad, x, 0.0, ctx.upper)
        else:
            out = torch.ops.aten.threshold_backward(grad, x, 0.0)
        if rule == "guided":
            # mask * max(g, 0) == max(mask * g, 0) for a non-negative local slope; in place on a fresh tensor
            out = out.clamp_(min=0)
        return out, None, None, None, None


class _Gated(torch.autograd.Function):
    """A smooth gated activation (GELU, SiLU, Hardswish, Mish) with the backward chosen by ``state.rule``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, state, kind, approximate):
        return _GATED_FORWARD[kind](x, approximate)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, state, kind, approximate = inputs
        ctx.state, ctx.kind, ctx.approximate = state, kind, approximate
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        rule = ctx.state.rule
        if rule == "deconvnet":
            return grad.clamp(min=0), None, None, None
        if rule == "guided":
            out = _GATED_BACKWARD[ctx.kind](grad.clamp(min=0), x, ctx.approximate)
            return out * (x > 0), None, None, None
        return _GATED_BACKWARD[ctx.kind](grad, x, ctx.approximate), None, None, None


_GATED_FORWARD = {
    "gelu": lambda x, approximate: F.gelu(x, approximate=approximate),
    "silu": lambda x, _: F.silu(x),
    "hardswish": lambda x, _: F.hardswish(x),
    "mish": lambda x, _: F.mish(x),
}
# torch's own derivative kernels: d/dx of each activation times the incoming gradient
_GATED_BACKWARD = {
    "gelu": lambda g, x, approximate: torch.ops.aten.gelu_backward(g, x, approximate=approximate),
    "silu": lambda g, x, _: torch.ops.aten.silu_backward(g, x),
    "hardswish": lambda g, x, _: torch.ops.aten.hardswish_backward(g, x),
    "mish": lambda g, x, _: torch.ops.aten.mish_backward(g, x),
}
_GATED_FUNCS = {F.gelu: "gelu", F.silu: "silu", F.hardswish: "hardswish", F.mish: "mish"}


def _tensor_arg(args, kwargs):
    """The tensor an activation is called on, by position or by keyword (``torch.relu(input=x)``)."""
    return args[0] if args else kwargs.get("input", kwargs.get("self"))


def _relu_args(func, args, kwargs):
    """Return ``(x, lower, upper, negative_slope)`` if ``func`` is a rectifier call, else None.

    The tensor may come by position or by keyword (``torch.relu(input=x)``)."""
    x = _tensor_arg(args, kwargs)
    if not isinstance(x, torch.Tensor):
        return None
    if func in _RELU_FUNCS:
        return x, 0.0, None, 0.0
    if func in _RELU6_FUNCS:
        return x, 0.0, 6.0, 0.0
    if func in _HARDTANH_FUNCS:
        lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
        if lo == 0:
            return x, 0.0, float(hi), 0.0
        return None
    if func in _LEAKY_FUNCS:
        slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
        return x, 0.0, None, float(slope)
    return None


_RELU_FUNCS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_RELU6_FUNCS = {F.relu6}
_HARDTANH_FUNCS = {F.hardtanh, F.hardtanh_}
_LEAKY_FUNCS = {F.leaky_relu, F.leaky_relu_}
#: every rectifier function: the mode sees every torch call, so non-rectifiers take one set lookup
_ALL_RECTIFIERS = frozenset(_RELU_FUNCS | _RELU6_FUNCS | _HARDTANH_FUNCS | _LEAKY_FUNCS | set(_GATED_FUNCS))


class RectifierMode(TorchFunctionMode):
    """Route every ReLU-family call through :class:`_Rectifier` with the shared rule state."""

    def __init__(self, state: RuleState):
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func not in _ALL_RECTIFIERS:
            return func(*args, **(kwargs or {}))
        kwargs = kwargs or {}
        kind = _GATED_FUNCS.get(func)
        if kind is not None:
            x = _tensor_arg(args, kwargs)
            approximate = kwargs.get("approximate", args[1] if kind == "gelu" and len(args) > 1 else "none")
            if not (isinstance(x, torch.Tensor) and x.requires_grad):
                return _GATED_FORWARD[kind](x, approximate)  # out of place, as for the rectifiers
            self.state.applied.add(kind)
            return _Gated.apply(x, self.state, kind, approximate)
        parsed = _relu_args(func, args, kwargs)
        if parsed is not None:
            x, lower, upper, slope = parsed
            if isinstance(x, torch.Tensor) and x.requires_grad:
                self.state.applied.add(getattr(func, "__name__", "relu").rstrip("_"))
                return _Rectifier.apply(x, self.state, lower, upper, slope)
            # No autograd: compute out of place so a tensor captured by a hook is never mutated.
            return _out_of_place(func, x, args, kwargs)
        return func(*args, **kwargs)


def _out_of_place(func, x, args, kwargs):
    if func in _RELU_FUNCS:
        return torch.relu(x)
    if func in _RELU6_FUNCS:
        return x.clamp(0.0, 6.0)
    if func in _HARDTANH_FUNCS:
        lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
        return x.clamp(lo, hi)
    slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
    return torch.where(x > 0, x, x * slope)


@contextmanager
def rectifier_rules(rule: str = "gradient") -> Iterator[RuleState]:
    """Context manager: rectifiers called inside use the backward rule held by the yielded state.

    >>> with rectifier_rules("guided") as state:
    ...     y = model(x)              # forward records the rectifiers
    ...     g = torch.autograd.grad(y[0, c], x)[0]   # guided backprop
    """
    if rule not in RULES:
        raise ValueError(f"unknown backward rule {rule!r}; use one of {', '.join(RULES)}")
    state = RuleState(rule)
    with RectifierMode(state):
        yield state
