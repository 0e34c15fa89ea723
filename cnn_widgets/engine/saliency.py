"""Saliency maps: gradient-based attributions of a class score or a unit, w.r.t. the model input.

Every method is one small function over one shared mechanism, :func:`input_gradients`: a forward
pass inside ``net._session(rule)`` (eval mode, frozen parameters, every ReLU-family call routed
through the backward rule ``"deconvnet"`` or ``"guided"``; for the true gradient the native
rectifiers already are the rule), the target's scalar per batch row, and
``torch.autograd.grad(sum of scalars, x)`` -- gradients w.r.t. the input only, no weight gradient
is ever computed and the model is left untouched. The single-image methods (``gradient``,
``deconvnet``, ``guided_backprop``, ``input_x_gradient``) keep their forward graph
(:mod:`.graph_cache`): a new target on the same image, model and rule runs only a backward pass. ``grad_cam`` (in :mod:`.grad_cam`) backpropagates
to a layer output instead of the input, over the same session.

All maps are raw (signed, unnormalised) attributions w.r.t. the *preprocessed* input, shape
``[3, H, W]`` (``grad_cam``: ``[H, W]`` at input size), detached, on the model's device.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import graph_cache
from .attention import attention_rollout, has_attention
from .checks import check_choice, check_float, check_int, check_keywords
from .errors import OptionError
from .grad_cam import grad_cam
from .hooks import inference_state
from .lrp_mode import DEFAULT_COMPOSITE, rule_name
from .precision import accumulation_dtype, as_result
from .structure import state_key
from .targets import QUANTITIES, TOP_CLASS, ClassTarget, Direction, Target, Unit, check_direction, scalar

__all__ = ["METHODS", "OptionError", "RuleWarning", "SaliencyMethod", "input_gradients", "saliency"]


# --------------------------------------------------------------------------------------------
# the shared mechanism
# --------------------------------------------------------------------------------------------


def _layers_for(target) -> list[str]:
    if isinstance(target, (Unit, Direction)):
        return [target.layer]
    if isinstance(target, (list, tuple)):
        return [target[0].layer]
    return []


def input_gradients(
    net,
    x: torch.Tensor,
    target: Unit | ClassTarget | Direction | Sequence[Unit] | object,
    rule: str = "gradient",
    quantity: str = "logit",
    reuse: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], Unit | ClassTarget | Direction]:
    """Backpropagate the target's scalar of each row of ``x`` to ``x`` with a rectifier ``rule``.

    Rows are independent (eval mode), so ``d(sum_b f(x_b)) / dx`` gives every row its own
    gradient in one backward pass. ``target`` may also be one unit per row, all on one layer (a
    dataset scan reconstructs each top image's own position this way). For unit and direction
    targets the forward pass stops after the layer (the rest of the network cannot change it).
    With ``reuse`` the forward graph is kept (:mod:`.graph_cache`) and a kept one that serves
    this input, model, rule and target is backpropagated again instead of running a new pass.

    Returns ``(gradient [B, 3, H, W], captured layer outputs, resolved target)``.
    """
    per_row = isinstance(target, (list, tuple))
    if per_row and (len(target) != len(x) or len({u.layer for u in target}) != 1):
        raise OptionError("one unit per row of x, all on one layer, is needed for per-row targets")
    unit = per_row or isinstance(target, (Unit, Direction))
    layers = _layers_for(target)
    reuse = reuse and not per_row
    kept = graph_cache.lookup(net, x, rule, layers, needs_logits=not unit) if reuse else None
    if kept is None:
        x = x.detach().requires_grad_(True)
        with _session(net, rule), torch.enable_grad():
            logits, outputs = net._forward(x, layers=layers, stop_early=unit)
        if reuse:
            kept = graph_cache.Forward(x, state_key(net), rule, logits, outputs, net.last_rule)
            graph_cache.store(net, kept)
    else:
        x, logits, outputs = kept.x, kept.logits, kept.outputs
        net.last_rule = kept.last_rule
    # the backward needs no session: the rectifiers' rule is recorded in the graph, parameters were frozen
    with torch.enable_grad():
        if target is TOP_CLASS:
            index = int(logits[0].argmax())
            target = ClassTarget(index, net.label(index))
        if per_row:
            layer = target[0].layer
            value = torch.stack([scalar(u, None, {layer: outputs[layer][b : b + 1]})[0] for b, u in enumerate(target)])
        else:
            value = scalar(target, logits, outputs, quantity)
        (grad,) = torch.autograd.grad(value.sum(), x, retain_graph=reuse)
    return grad, outputs, target


def _session(net, rule: str):
    """``net._session(rule)``, or for the true gradient just eval mode and frozen parameters.

    The native ReLU-family backward *is* the true gradient, so routing rectifiers through the
    rule machinery would only add a Python autograd function per rectifier (about 5-10 % of a
    ResNet-18 saliency call on the CPU). Without the rule mode an in-place rectifier may overwrite
    a captured layer output; that cannot happen here: class targets capture nothing, and a unit
    target stops the pass right after its layer (``stop_early``).
    """
    if rule == "gradient":
        return inference_state(net.model)
    return net._session(rule)


def _resolve(net, x: torch.Tensor, target: Target, *, lazy: bool) -> Unit | ClassTarget | Direction | object:
    """``None`` means the top-1 class: found in the same forward pass when ``lazy``, else now."""
    if isinstance(target, Direction):
        return check_direction(target, net.layer(target.layer))
    if target is None:
        if lazy:
            return TOP_CLASS
        target = net.top_class(x)
    return net._resolve_target(target)


# --------------------------------------------------------------------------------------------
# one function per method
# --------------------------------------------------------------------------------------------


def gradient(net, x, target, quantity: str = "logit") -> torch.Tensor:
    """Vanilla gradient, ``S(x) = d f(x) / d x``.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", ICLR workshop 2014.
    """
    return input_gradients(net, x, _resolve(net, x, target, lazy=True), "gradient", quantity, reuse=True)[0][0]


def deconvnet(net, x, target, quantity: str = "logit") -> torch.Tensor:
    """Deconvnet: backpropagate with every rectifier passing ``max(g, 0)`` (its forward mask ignored).

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    """
    return input_gradients(net, x, _resolve(net, x, target, lazy=True), "deconvnet", quantity, reuse=True)[0][0]


def guided_backprop(net, x, target, quantity: str = "logit") -> torch.Tensor:
    """Guided backpropagation: every rectifier passes ``max(g, 0) * [x > 0]``.

    Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The All
    Convolutional Net", ICLR workshop 2015.
    """
    return input_gradients(net, x, _resolve(net, x, target, lazy=True), "guided", quantity, reuse=True)[0][0]


def input_x_gradient(net, x, target, quantity: str = "logit") -> torch.Tensor:
    """Input times gradient, ``x * d f(x) / d x`` (elementwise).

    Shrikumar, Greenside, Shcherbina & Kundaje, "Not Just a Black Box: Learning Important
    Features Through Propagating Activation Differences", 2016.
    """
    grad = input_gradients(net, x, _resolve(net, x, target, lazy=True), "gradient", quantity, reuse=True)[0][0]
    return x[0] * grad


def smoothgrad(
    net,
    x,
    target,
    n_samples: int = 25,
    noise: float = 0.15,
    seed: int | None = 0,
    batch_size: int = 16,
    quantity: str = "logit",
) -> torch.Tensor:
    """SmoothGrad, ``(1/n) sum_i d f(x + e_i) / d x`` with ``e_i ~ N(0, sigma^2)``.

    ``sigma = noise * (max(x) - min(x))`` (the paper's noise level, 10-20 % of the input range).
    ``seed`` makes the map reproducible (``None``: torch's global generator). With ``noise=0`` the
    map is the plain gradient.

    Smilkov, Thorat, Kim, Viegas & Wattenberg, "SmoothGrad: removing noise by adding noise", 2017.
    """
    check_int("n_samples", n_samples)
    check_int("batch_size", batch_size)
    noise = check_float("noise", noise, low=0)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise OptionError(f"seed must be an integer or None, got {seed!r}")
    resolved = _resolve(net, x, target, lazy=False)
    sigma = noise * float(x.max() - x.min())
    generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    # all the noise at once (on the CPU generator), so the map does not depend on batch_size
    eps = torch.randn((n_samples, *x.shape[1:]), generator=generator, dtype=x.dtype).to(x.device)
    total = torch.zeros_like(x[0], dtype=accumulation_dtype(x.dtype))  # float32 for a bfloat16 model
    for start in range(0, n_samples, batch_size):
        grad = input_gradients(net, x + sigma * eps[start : start + batch_size], resolved, "gradient", quantity)[0]
        total += grad.sum(dim=0, dtype=total.dtype)
    return total / n_samples


INTEGRATIONS = ("gauss_legendre", "trapezoid")


def _integration_nodes(steps: int, integration: str) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alpha_k`` in [0, 1] and weights ``w_k`` with ``sum_k w_k g(alpha_k) ~ int_0^1 g``."""
    if integration == "gauss_legendre":
        t, w = np.polynomial.legendre.leggauss(steps)
        return (t + 1) / 2, w / 2
    if integration == "trapezoid":
        if steps < 2:
            raise OptionError("trapezoid integration needs steps >= 2")
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return alphas, weights
    check_choice("integration", integration, INTEGRATIONS)
    raise AssertionError(f"integration {integration!r} is in INTEGRATIONS but has no rule here")


def integrated_gradients(
    net,
    x,
    target,
    baseline: torch.Tensor | float | None = None,
    steps: int = 32,
    integration: str = "gauss_legendre",
    batch_size: int = 16,
    quantity: str = "logit",
) -> torch.Tensor:
    """Integrated gradients, ``(x - x') * int_0^1 d f(x' + a (x - x')) / d x  da``.

    The baseline ``x'`` is zeros in model-input space by default (a float fills every value, a
    tensor ``[3, H, W]`` is used as it is). The integral uses ``steps`` Gauss-Legendre nodes
    (``integration="trapezoid"``: the trapezoid rule), so completeness,
    ``sum(attribution) = f(x) - f(x')``, holds to quadrature accuracy (about 1e-6 relative on
    smooth models with 32 steps; piecewise-linear ReLU nets converge more slowly).

    Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    """
    check_int("steps", steps)
    check_int("batch_size", batch_size)
    x0 = _baseline(baseline, x)
    alphas, weights = _integration_nodes(steps, integration)
    resolved = _resolve(net, x, target, lazy=False)
    delta = x - x0
    total = torch.zeros_like(x[0], dtype=accumulation_dtype(x.dtype))  # float32 for a bfloat16 model
    for start in range(0, steps, batch_size):
        a = torch.as_tensor(alphas[start : start + batch_size], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        w = torch.as_tensor(weights[start : start + batch_size], dtype=total.dtype, device=x.device).view(-1, 1, 1, 1)
        grad = input_gradients(net, x0 + a * delta, resolved, "gradient", quantity)[0]
        total += (w * grad).sum(dim=0)
    return delta[0] * total


def lrp(net, x, target, composite: str = DEFAULT_COMPOSITE, quantity: str = "logit") -> torch.Tensor:
    """Layer-wise relevance propagation with a composite of rules (:mod:`.relevance`).

    The map is the input's relevance: it sums to the target's logit up to what biases and
    stabilisers absorb (``net.relevance`` reports that per layer).

    Bach, Binder, Montavon, Klauschen, Müller & Samek, "On Pixel-Wise Explanations for Non-Linear
    Classifier Decisions by Layer-Wise Relevance Propagation", PLOS ONE 2015; Montavon et al.,
    "Layer-Wise Relevance Propagation: An Overview", 2019.
    """
    if quantity != "logit":
        raise OptionError("LRP explains a logit or a unit; quantity must be 'logit' "
                          "(relevance is not conserved through the softmax of a probability)")
    return input_gradients(net, x, _resolve(net, x, target, lazy=True), rule_name(composite), quantity, reuse=True)[0][0]


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SaliencyMethod:
    """One entry of the saliency registry.

    ``function(net, x, target, **options)`` returns the raw map for a prepared input ``x``
    ``[1, 3, H, W]``; ``label`` is what menus show; ``output`` is ``"rgb"`` for a ``[3, H, W]``
    attribution or ``"map"`` for an ``[H, W]`` one at input size (displayed as its positive part);
    ``rule`` is the backward rule it uses at nonlinearities (so callers can say when a rule had
    nothing to act on).
    """

    function: Callable[..., torch.Tensor]
    label: str
    output: str = "rgb"
    rule: str = "gradient"  # the backward rule at rectifiers: "gradient", "deconvnet", "guided"; "lrp": per-layer rules
    directions: bool = True  # whether a Direction target works (the function goes through input_gradients)
    applies: Callable[[object], bool] = lambda net: True  # whether menus offer it for a network (attention: ViTs only)


# The registry: adding a method is one function above plus one entry here; ``saliency`` and the
# Explorer's method menu read this table and nothing else.
METHODS: dict[str, SaliencyMethod] = {
    "gradient": SaliencyMethod(gradient, "gradient"),
    "deconvnet": SaliencyMethod(deconvnet, "deconvnet", rule="deconvnet"),
    "guided_backprop": SaliencyMethod(guided_backprop, "guided backprop", rule="guided"),
    "input_x_gradient": SaliencyMethod(input_x_gradient, "input × gradient"),
    "smoothgrad": SaliencyMethod(smoothgrad, "SmoothGrad"),
    "integrated_gradients": SaliencyMethod(integrated_gradients, "integrated gradients"),
    "grad_cam": SaliencyMethod(grad_cam, "Grad-CAM", output="map", directions=False),
    "lrp": SaliencyMethod(lrp, "LRP", rule="lrp", directions=False),
    "attention_rollout": SaliencyMethod(attention_rollout, "attention rollout", output="map", directions=False,
                                        applies=has_attention),
}


def saliency(net, image, target: Target = None, method: str = "guided_backprop", **options) -> torch.Tensor:
    """Attribution of ``target`` w.r.t. the preprocessed input of ``image``.

    Parameters
    ----------
    net
        The :class:`~cnn_widgets.Network`.
    image
        Anything ``net.prepare`` accepts (PIL image, path, array, preprocessed tensor).
    target
        Class index, class label, :class:`~cnn_widgets.Unit`, ``None`` for the top-1 class, or a
        :class:`~cnn_widgets.engine.targets.Direction` ``(layer, vector)`` -- e.g. an activation atlas
        cell's -- whose scalar is the direction objective on that layer,
        ``mean_{y,x} <h[:, y, x], v> * max(cos(h[:, y, x], v), 1e-3) ** cossim_power`` (the number
        ``net.visualize`` maximises for it; every method but ``grad_cam`` takes it).
    method
        One of :data:`METHODS`: ``gradient``, ``deconvnet``, ``guided_backprop``,
        ``input_x_gradient``, ``smoothgrad``, ``integrated_gradients``, ``grad_cam``, ``lrp``,
        ``attention_rollout`` (vision transformers only; class-agnostic, :mod:`.attention`).
    **options
        Method options (see each method's function); every method takes ``quantity``
        (``"logit"``, default, or ``"probability"``) for class targets.

    Returns
    -------
    torch.Tensor
        ``[3, H, W]`` raw signed attributions (``grad_cam``: ``[H, W]``), detached, on the
        model's device; float32 for a bfloat16 / float16 model (:mod:`.precision`).
    """
    fn = METHODS[check_choice("method", method, METHODS)].function
    if isinstance(target, Direction) and not METHODS[method].directions:
        takes = ", ".join(name for name, m in METHODS.items() if m.directions)
        raise OptionError(f"saliency method {method!r} explains a class or a unit, not a Direction; "
                          f"use one of {takes} for a direction")
    check_keywords(fn, options, skip=3, name=f"saliency method {method!r}")
    check_choice("quantity", options.get("quantity", "logit"), QUANTITIES)
    x = net.prepare(image)
    result = as_result(fn(net, x, target, **options).detach())  # float32 for a bfloat16 / float16 model
    rule = METHODS[method].rule
    if rule != "gradient" and not net.last_rule[1]:
        warnings.warn(
            f"{net.name} has no ReLU-family or gated activation (GELU, SiLU, Hardswish, Mish) on the way to "
            f"this target, so {method} has nothing to act on and equals the plain gradient",
            RuleWarning, stacklevel=3,
        )
    return result


class RuleWarning(UserWarning):
    """A backward rule (guided, deconvnet) found no nonlinearity to act on: the map is the gradient."""


# --------------------------------------------------------------------------------------------
# option checks
# --------------------------------------------------------------------------------------------


def _baseline(baseline, x: torch.Tensor) -> torch.Tensor:
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, check_float("baseline", baseline))
    if isinstance(baseline, torch.Tensor):
        b = baseline.detach().to(device=x.device, dtype=x.dtype)
        if not torch.isfinite(b).all():
            raise OptionError("baseline contains NaN or infinite values; pass a finite tensor (or a number)")
        if b.dim() == 3:
            b = b.unsqueeze(0)
        if tuple(b.shape) != tuple(x.shape):
            raise OptionError(
                f"baseline must have the model input's shape {tuple(x.shape[1:])}, got {tuple(baseline.shape)}"
            )
        return b
    raise OptionError(f"baseline must be None (zeros), a number or a tensor [3, H, W], got {type(baseline).__name__}")

