"""Layer-wise relevance propagation rules, written as a modified gradient.

Bach et al. 2015, "On pixel-wise explanations for non-linear classifier decisions by layer-wise
relevance propagation"; Montavon et al. 2019, "Layer-wise relevance propagation: an overview".
The rules and composites carry zennit's meanings (same modified weights, same stabiliser
``z + eps * sign(z)`` with ``sign(0) = +1``, same default ``eps = 1e-6`` and ``gamma = 0.25``).

**The modified gradient.** The quantity the backward pass carries is ``g`` with relevance
``R_t = t * g_t`` at every tensor ``t`` of the forward pass. Then

* every linear operation without a bias (pooling, upsampling, reshapes, slicing, concatenation,
  addition, multiplication by a constant) needs no rule at all: its ordinary gradient splits the
  relevance of a sum by contribution (``R_a = a / (a + b) * R``), a max by routing it to the winner,
  an average in proportion to the inputs -- LRP-0, conservative;
* an elementwise nonlinearity ``y = f(x)`` (ReLU6, GELU, SiLU, a batch norm, a sigmoid) passes the
  relevance through (zennit's ``Pass``): ``g_x = g_y * y / x``. For ReLU and leaky ReLU this *is*
  the gradient, so they keep their native backward; ReLU6, the gated activations and batch norms
  go through :class:`_Pass` (a zero input carries no relevance: ``R = x g``);
* a squeeze-and-excitation gate (the output of a sigmoid or hard sigmoid that multiplies an
  activation) is treated as a constant: the product passes the relevance to the activation and
  none into the gate's branch (``x * s`` with ``s`` constant is linear in ``x``);
* a convolution or linear layer applies its rule in :class:`_Affine`'s backward, with the
  parameters of a batch norm that follows it merged in (zennit's canonizers, done once here for
  any model: the batch norm passes the relevance, the layer before it uses the merged weights);
* the first layer (the one reading the network's input) may use a rule whose input relevance is
  not ``input * g`` (flat, w-square, z-B): it sends the relevance itself to the input leaf, and the
  input relevance is the gradient of the leaf (everything else reaching the leaf goes through
  :class:`_InputTimes`, which turns ``g`` into ``x * g``).

So the relevance of any tensor of the pass -- a layer's output, a channel, the input -- is read
with one ordinary ``torch.autograd.grad`` through this graph, and everything the engine does with
gradients (conditional masks, the contribution tree, several targets over one kept graph) works
on relevance unchanged. Which operations may appear is decided in :mod:`.lrp_mode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .relu_rules import RuleState

__all__ = ["COMPOSITES", "Composite", "LrpState", "RULES"]

RULES = ("zero", "epsilon", "zplus", "gamma", "alpha_beta", "flat", "w_square", "zbox")
FIRST_ONLY = ("flat", "w_square", "zbox")  # rules whose input relevance is not input * g: first layer only


@dataclass(frozen=True)
class Composite:
    """Which rule each kind of layer uses (zennit's composites, by the same names).

    ``first`` is the rule of the layer reading the network input (``None``: its kind's rule),
    ``conv`` of every other convolution, ``linear`` of every other fully connected layer.
    """

    name: str
    label: str
    conv: str
    linear: str = "epsilon"
    first: str | None = None
    epsilon: float = 1e-6  # the epsilon rule's epsilon
    stabilizer: float = 1e-6  # every other rule's denominator shift
    gamma: float = 0.25
    alpha: float = 2.0
    beta: float = 1.0

    def rule_for(self, kind: str, first: bool) -> str:
        if first and self.first is not None:
            return self.first
        return self.conv if kind == "conv" else self.linear


# The registry: ``net.saliency(method="lrp", composite=name)``, the tree's relevance rule and the
# Explorer's menus read this table and nothing else.
COMPOSITES: dict[str, Composite] = {c.name: c for c in (
    Composite("epsilon_plus_flat", "ε+♭: z⁺, flat first layer", conv="zplus", first="flat"),
    Composite("epsilon_plus", "ε+: z⁺ convolutions", conv="zplus"),
    Composite("epsilon_gamma_box", "εγ-box: γ, z-B first layer", conv="gamma", first="zbox"),
    Composite("epsilon_alpha2_beta1", "εα2β1: α2β1 convolutions", conv="alpha_beta"),
    Composite("epsilon_alpha2_beta1_flat", "εα2β1♭: α2β1, flat first layer", conv="alpha_beta", first="flat"),
    Composite("epsilon_plus_w_square", "ε+w²: z⁺, w² first layer", conv="zplus", first="w_square"),
    Composite("zero", "LRP-0 (= gradient × input for ReLU nets)", conv="zero", linear="zero"),
)}


@dataclass
class LrpState(RuleState):
    """The session state of an LRP pass (a :class:`RuleState`, so the engine's callers treat it alike).

    ``applied`` names the rules and pass-throughs that ran; ``low`` / ``high`` are the input's bounds
    (the z-B rule's box); ``leaf`` is the network input once the first operation has read it.
    """

    composite: Composite | None = None
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None
    leaf: torch.Tensor | None = None
    leaf_times: torch.Tensor | None = None  # _InputTimes(leaf), made once
    affine_outputs: dict = field(default_factory=dict)  # id(output) -> (output, _Call): a batch norm finds its layer
    first_done: bool = False


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)`` with ``sign(0) = +1`` (zennit's stabiliser), in ``z``'s dtype (bfloat16 stays bfloat16)."""
    return torch.where(z >= 0, z + eps, z - eps)


@dataclass
class _Call:
    """One convolution or linear call of the pass: how to run it again, and which rule it has.

    What a rule's backward needs besides the arriving relevance -- the merged weights, the rule's
    denominators -- depends only on the forward pass, so it is computed once and kept in ``cache``:
    every further backward pass through the same graph (a second target, the tree's conditional
    maps, run side by side on several threads) costs only the transposed products.
    """

    kind: str  # "conv" or "linear"
    run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]  # (input, weight, bias)
    weight: torch.Tensor
    bias: torch.Tensor | None
    rule: str
    first: bool
    composite: Composite
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None
    fold: tuple[torch.Tensor, torch.Tensor] | None = None  # (scale, shift) of the batch norm merged in
    geometry: tuple | None = None  # (stride, padding, dilation, groups) of a convolution with numeric padding
    cache: dict = field(default_factory=dict)

    def kept(self, key, make: Callable[[], object]):
        found = self.cache.get(key)
        if found is None:
            found = self.cache[key] = make()  # two threads may both make it: the same value, kept once
        return found

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias with a following batch norm merged in (bias 0 when the layer has none)."""
        return self.kept("params", self._merged)

    def _merged(self):
        w = self.weight
        b = self.bias if self.bias is not None else w.new_zeros(w.shape[0])
        if self.fold is None:
            return w, b
        scale, shift = self.fold
        return w * scale.view(-1, *([1] * (w.dim() - 1))), b * scale + shift

    def transpose(self, s: torch.Tensor, w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``W^T s`` at an input shaped like ``a``: the layer's input gradient for weight ``w``."""
        if self.kind == "linear":
            return s @ w
        if self.geometry is not None:
            stride, padding, dilation, groups = self.geometry
            # the input only gives its shape here (no weight gradient); the saved one needs no copy
            return torch.ops.aten.convolution_backward(s, a, w, None, stride, padding, dilation, False,
                                                       [0] * len(stride), groups, (True, False, False))[0]
        with torch.enable_grad():  # string padding ("same"): through the layer itself
            leaf = a.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.run(leaf, w, None), leaf, s)
        return grad


def _out_shape(z: torch.Tensor) -> tuple:
    return (1, -1, *([1] * (z.dim() - 2)))


def _signed_terms(call: _Call, a: torch.Tensor, z: torch.Tensor, w_pos, b_pos, w_neg, sign) -> tuple[torch.Tensor, bool]:
    """zennit's two-term denominator ``d = w_pos a+ + b_pos + w_neg a-`` (the a- term skipped when
    ``a >= 0``, as after every rectifier); returns ``(z / stab(d), whether a has negative values)``.
    ``sign`` (+1 / -1) says that ``w_pos`` and ``b_pos`` have that sign throughout (the z+ and
    alpha-beta parts): with ``a >= 0`` the denominator has it too and is stabilised in one step."""
    negative = bool(a.amin() < 0)
    if not negative and sign is not None:
        d = call.run(a, w_pos, b_pos).add_(sign * call.composite.stabilizer)
        return torch.div(z, d, out=d), False
    d = call.run(a.clamp(min=0), w_pos, b_pos)
    if negative:
        d = d + call.run(a.clamp(max=0), w_neg, None)
    return z / stabilize(d, call.composite.stabilizer), negative


def _two_sided(call, a, z, g, key, w_pos, b_pos, w_neg, sign=None):
    """The two-term rule's modified gradient at ``a``: ``s = z g / stab(d)``, ``w_pos^T s`` where
    ``a > 0`` and ``w_neg^T s`` where ``a < 0``."""
    factor, negative = call.kept(key, lambda: _signed_terms(call, a, z, w_pos, b_pos, w_neg, sign))
    s = g * factor
    g_pos = call.transpose(s, w_pos, a)
    if not negative:
        return g_pos  # R = a * g vanishes where a == 0: no need to pick
    return torch.where(a > 0, g_pos, call.transpose(s, w_neg, a))


def _gamma(call, a, z, z_out, w, b, g):
    """zennit's gamma rule with two convolutions and three transposes at most (its own form takes four
    of each). With ``Q = w+ a+ + w- a-`` and ``z_out = w a + b`` its two denominators are
    ``d+ = z_out + gamma (Q + b+)`` (positive outputs) and ``d- = z_out + gamma (z_out - b - Q + b-)``
    (negative ones); its weight pairs ``(w + gamma w+, w + gamma w-)`` written out give, with
    ``T1 = w^T s+``, ``T2 = w^T s-`` and ``T3 = w+^T (s+ - s-)``, the modified gradient
    ``T1 + (1 + gamma) T2 + gamma T3`` where ``a > 0`` and ``(1 + gamma) T1 + T2 - gamma T3`` where
    ``a < 0``. After a rectifier (``a >= 0``): one convolution, two transposes."""
    gamma, eps = call.composite.gamma, call.composite.stabilizer

    def factors():
        wp = w.clamp(min=0)
        negative = bool(a.amin() < 0)
        q = call.run(a.clamp(min=0) if negative else a, wp, None)
        if negative:
            q = q + call.run(a.clamp(max=0), w.clamp(max=0), None)
        view = _out_shape(z)
        d_pos = z_out + gamma * (q + b.clamp(min=0).view(view))
        d_neg = z_out + gamma * (z_out - q + (b.clamp(max=0) - b).view(view))
        f_pos = torch.where(z_out > 0, z / stabilize(d_pos, eps), 0)
        f_neg = torch.where(z_out < 0, z / stabilize(d_neg, eps), 0)
        return wp, f_pos, f_neg, negative

    wp, f_pos, f_neg, negative = call.kept("gamma", factors)
    s_pos, s_neg = g * f_pos, g * f_neg
    t3 = call.transpose(s_pos - s_neg, wp, a)
    if not negative:
        return call.transpose(s_pos + (1 + gamma) * s_neg, w, a) + gamma * t3
    t1, t2 = call.transpose(s_pos, w, a), call.transpose(s_neg, w, a)
    return torch.where(a > 0, t1 + (1 + gamma) * t2 + gamma * t3, (1 + gamma) * t1 + t2 - gamma * t3)


def relevance_backward(call: _Call, a: torch.Tensor, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The modified gradient at the layer's input ``a`` (or, for a first-layer rule, the input's relevance).

    ``z`` is the layer's own output and ``g`` the modified gradient arriving there, so ``z * g`` is
    the relevance arriving (a batch norm merged after the layer passes it unchanged).
    """
    c = call.composite
    w, b = call.params()
    rule = call.rule
    if rule in ("zero", "epsilon", "gamma"):
        z_out = z if call.fold is None else call.kept(
            "z_out", lambda: z * call.fold[0].view(_out_shape(z)) + call.fold[1].view(_out_shape(z)))
    if rule in ("zero", "epsilon"):
        def factor():
            if rule == "epsilon":
                return z / stabilize(z_out, c.epsilon)
            return (z / z_out).nan_to_num_(0.0, 0.0, 0.0)  # LRP-0: a zero output passes nothing
        return call.transpose(g * call.kept("factor", factor), w, a)
    if rule == "zplus":
        wp, bp, wn = call.kept("zplus", lambda: (w.clamp(min=0), b.clamp(min=0), w.clamp(max=0)))
        return _two_sided(call, a, z, g, "d", wp, bp, wn, sign=1)
    if rule in ("alpha_beta", "gamma"):
        if rule == "gamma":
            return _gamma(call, a, z, z_out, w, b, g)
        wp, wn, bp, bn = call.kept("mods", lambda: (w.clamp(min=0), w.clamp(max=0), b.clamp(min=0), b.clamp(max=0)))
        return (c.alpha * _two_sided(call, a, z, g, "d+", wp, bp, wn, sign=1)
                - c.beta * _two_sided(call, a, z, g, "d-", wn, bn, wp, sign=-1))
    # first-layer rules: the relevance of the input itself
    if rule in ("flat", "w_square"):
        wm = call.kept("wm", lambda: torch.ones_like(w) if rule == "flat" else w * w)
        factor = call.kept("factor", lambda: z / stabilize(
            call.run(torch.ones_like(a), wm, None if rule == "flat" else b * b), c.stabilizer))
        return call.transpose(g * factor, wm, a)
    if rule == "zbox":
        wp, wn = call.kept("box", lambda: (w.clamp(min=0), w.clamp(max=0)))
        low, high = call.low.expand_as(a), call.high.expand_as(a)
        factor = call.kept("factor", lambda: z / stabilize(call.run(a, w, b) - call.run(low, wp, b.clamp(min=0))
                                                           - call.run(high, wn, b.clamp(max=0)), c.stabilizer))
        s = g * factor
        return a * call.transpose(s, w, a) - low * call.transpose(s, wp, a) - high * call.transpose(s, wn, a)
    raise AssertionError(f"rule {rule!r} is in RULES but has no backward here")


class _Affine(torch.autograd.Function):
    """A convolution or linear layer whose backward applies its LRP rule (:func:`relevance_backward`)."""

    @staticmethod
    def forward(ctx, a, call: _Call):
        z = call.run(a, call.weight, call.bias)
        ctx.call = call
        ctx.save_for_backward(a)
        # the output without a reference cycle (detached: no grad_fn), and its version: a later in-place
        # `out += identity` changes it, and the backward then runs the layer again for the value the next layer read
        ctx.z, ctx.version = z.detach(), z._version
        return z

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        call = ctx.call
        z = ctx.z if ctx.z._version == ctx.version else call.kept("z", lambda: call.run(a, call.weight, call.bias))
        return relevance_backward(call, a, z, g), None


class _Pass(torch.autograd.Function):
    """``y = f(x)`` elementwise, relevance passed through: ``g_x = g_y * y / x`` (0 where ``x == 0``)."""

    @staticmethod
    def forward(ctx, x, f):
        ctx.f, ctx.ratio = f, None
        ctx.save_for_backward(x)
        return f(x)

    @staticmethod
    def backward(ctx, g):
        ratio = ctx.ratio
        if ratio is None:  # made on the first backward pass and kept for the next ones (a tree's pictures)
            (x,) = ctx.saved_tensors
            ratio = ctx.ratio = (ctx.f(x) / x).nan_to_num_(0.0, 0.0, 0.0)  # x == 0: 0 (0 / 0, y / 0)
        return g * ratio, None


class _InputTimes(torch.autograd.Function):
    """Identity on the network input; its backward turns ``g`` into the input's relevance ``x * g``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return x * g


def batch_norm_fold(args, kwargs) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, shift)`` of an eval-mode ``F.batch_norm`` call (``None`` when it normalises by the batch)."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    mean, var = bound.get("running_mean"), bound.get("running_var")
    if bound.get("training", False) or mean is None or var is None:
        return None
    scale = torch.rsqrt(var + bound.get("eps", 1e-5))
    if bound.get("weight") is not None:
        scale = scale * bound["weight"]
    shift = -mean * scale
    if bound.get("bias") is not None:
        shift = shift + bound["bias"]
    return scale.detach(), shift.detach()


def run_batch_norm(scale: torch.Tensor, shift: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    shape = (1, -1)

    def run(x):
        view = shape + (1,) * (x.dim() - 2)
        return x * scale.view(view) + shift.view(view)

    return run


# elementwise nonlinearities that pass the relevance (functions of torch.nn.functional; hardtanh too)
GATED = frozenset({F.relu6, F.gelu, F.silu, F.hardswish, F.mish, F.elu, F.softplus, F.hardtanh, F.hardtanh_})
GATES = {torch.sigmoid: torch.sigmoid, torch.Tensor.sigmoid: torch.sigmoid, F.sigmoid: torch.sigmoid,
         F.hardsigmoid: F.hardsigmoid, torch.tanh: torch.tanh, torch.Tensor.tanh: torch.tanh, F.tanh: torch.tanh}
