"""Layer-wise relevance propagation of a class or a unit, with the relevance summed layer by layer.

``net.relevance(image, target, composite=...)`` runs one LRP pass (:mod:`.lrp_mode`,
:mod:`.lrp_rules`) and returns the input's relevance map together with the total relevance at the
target and at every layer of the chain below it (``net.layer_below`` from the target's layer down:
cuts of the network, where everything flowing down passes). LRP is conservative up to what biases
and stabilisers absorb; :attr:`Relevance.leaks` says how much each step lost or gained. For a
bias-free ReLU network with the LRP-0 (``"zero"``) or z-plus rules every total equals the target's
score (the tests check it to 1e-9 in float64).

``net.saliency(image, target, method="lrp", composite=...)`` gives the same map through the
saliency registry (the Explorer's menu, the Trust tab, figures): :func:`.saliency.lrp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .contributions import _chain
from .lrp_mode import DEFAULT_COMPOSITE, composite_named, rule_name
from .targets import ClassTarget, Target, Unit, scalar

if TYPE_CHECKING:  # pragma: no cover
    from .core import NetworkBase
    from .images import ImageLike

__all__ = ["DEFAULT_COMPOSITE", "Relevance", "relevance", "rule_name"]

@dataclass
class Relevance:
    """One LRP pass: the input relevance ``map`` ``[C, H, W]`` and the total relevance per layer.

    ``layers`` lists ``(name, total)`` from the target's layer down to ``"input"``; the first total
    is the target's score itself (a logit, or the unit's value).
    """

    map: torch.Tensor
    target: Unit | ClassTarget
    composite: str
    value: float
    layers: list[tuple[str, float]]
    rules: tuple[str, ...]  # the rules and pass-throughs that ran (zplus, flat, merged batch_norm, gate as constant ...)

    @property
    def leaks(self) -> list[tuple[str, float]]:
        """Relevance lost (positive) or gained (negative) on each step down: ``(lower layer, upper - lower)``."""
        return [(lower, upper - total) for (_, upper), (lower, total) in zip(self.layers, self.layers[1:])]

    def table(self) -> str:
        rows = [f"{'layer':<28} {'relevance':>14} {'leak':>12} {'share kept':>10}"]
        previous = None
        for name, total in self.layers:
            leak = "" if previous is None else f"{previous - total:12.4g}"
            share = f"{total / self.value:10.4f}" if self.value else ""
            rows.append(f"{name:<28} {total:14.6g} {leak:>12} {share}")
            previous = total
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (f"Relevance({self.target}, composite={self.composite!r}, value={self.value:.4g}, "
                f"input total={self.layers[-1][1]:.4g})")


def relevance(net: "NetworkBase", image: "ImageLike", target: Target = None,
              composite: str = DEFAULT_COMPOSITE) -> Relevance:
    """LRP of ``target`` (class index or label, ``cw.Unit``, ``None``: the top class) on ``image``.

    ``composite`` is one of :data:`.lrp_rules.COMPOSITES` (zennit's composites by the same names:
    ``epsilon_plus_flat``, ``epsilon_gamma_box``, ``epsilon_alpha2_beta1``, ... and ``zero``,
    LRP-0, which for a ReLU network is gradient x input). A model with an operation LRP has no rule
    for raises :class:`~cnn_widgets.engine.errors.UnsupportedLayerError` naming it.
    """
    rule = rule_name(composite)
    x = net.prepare(image).detach().clone().requires_grad_(True)
    resolved = net._resolve_target(target if target is not None else net.top_class(x))
    unit = isinstance(resolved, Unit)
    if unit:
        start = resolved.layer
    elif net.logit_layer is not None:
        start = net.logit_layer
    else:
        start = None
    layers = _chain(net, start, None) if start is not None else []
    with net._session(rule) as state, torch.enable_grad():
        logits, outputs = net._forward(x, layers, stop_early=unit)
        value = scalar(resolved, logits, outputs)[0]
        tensors = [outputs[name] for name in layers] + [x]
        grads = torch.autograd.grad(value, tensors, allow_unused=True)
    totals = [(name, float((h.detach() * g).sum()) if g is not None else 0.0)
              for name, h, g in zip(layers, tensors, grads)]
    input_map = grads[-1] if grads[-1] is not None else torch.zeros_like(x)
    totals.append(("input", float(input_map.sum())))
    return Relevance(input_map[0].detach(), resolved, composite_named(rule[4:]).name, float(value.detach()), totals,
                     tuple(sorted(state.applied)))

