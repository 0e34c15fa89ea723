"""One retained forward graph per network: a new target on the same image costs one backward pass.

A saliency map is ``d f(x) / d x`` for the target's scalar ``f``. Changing the target (another
class, another unit of the same layer, an atlas direction) on the same image changes ``f`` but not
the forward pass that computed the logits and the layer outputs: the first call keeps its autograd
graph (``retain_graph=True``) and the next target only runs a backward pass through it.

What keys the graph, so that a reused graph always gives exactly what a fresh pass would:

* the input: the very values (``torch.equal`` with the kept input, same shape, dtype and device);
* the model (:func:`.structure.state_key`, the one definition for every cache): its modules, every parameter's and buffer's storage
  and version counter (any in-place write -- an optimiser step, ``load_state_dict``,
  ``p.data = ...`` -- changes one of them) and its forward hooks (a hook the user adds or removes
  between two calls);
* the backward rule at rectifiers (``"gradient"``, ``"guided"``, ``"deconvnet"``);
* what the pass produced: the logits (a full pass), or the outputs of the layers it captured (a
  pass stopped early after a unit's layer). A target that needs something the kept pass did not
  produce (a class after a unit, a unit of another layer) runs a fresh pass, which replaces it.

Memory stays bounded: at most one graph per network, released *before* a new forward pass runs
(never two at once), and :func:`release` drops it on demand. The graph holds activations saved
for the backward pass, nothing on the model: parameters are frozen while it is built (no weight
gradient is ever computed), and no hook outlives the pass.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from .structure import state_key

__all__ = ["Forward", "kept", "lookup", "release", "state_key", "store"]


@dataclass
class Forward:
    """A kept forward pass: the leaf input ``x`` (requires grad) and what the pass produced from it."""

    x: torch.Tensor
    state: tuple
    rule: str
    logits: torch.Tensor | None  # None when the pass stopped early after a layer
    outputs: dict[str, torch.Tensor]
    last_rule: tuple  # net.last_rule after the pass: which nonlinearities the rule acted on

    def serves(self, x: torch.Tensor, state: tuple, rule: str, layers: list[str], needs_logits: bool) -> bool:
        return (self.rule == rule and self.state == state and self.x.shape == x.shape and self.x.dtype == x.dtype
                and self.x.device == x.device and (self.logits is not None or not needs_logits)
                and all(name in self.outputs for name in layers) and bool(torch.equal(self.x, x)))


_KEPT: "weakref.WeakKeyDictionary[object, Forward]" = weakref.WeakKeyDictionary()


def lookup(net, x: torch.Tensor, rule: str, layers: list[str], needs_logits: bool) -> Forward | None:
    """The kept pass of ``net`` if it serves this input, rule and target; else ``None`` (and the
    kept pass is released, so the fresh pass that follows never coexists with it)."""
    kept = _KEPT.get(net)
    if kept is None:
        return None
    if kept.serves(x, state_key(net), rule, layers, needs_logits):
        return kept
    release(net)
    return None


def store(net, forward: Forward) -> None:
    """Keep ``forward`` as ``net``'s one retained pass (replacing any other)."""
    _KEPT[net] = forward


def release(net=None) -> None:
    """Drop the retained graph of ``net`` (of every network when ``None``), freeing its memory."""
    if net is None:
        _KEPT.clear()
    else:
        _KEPT.pop(net, None)


def kept(net) -> Forward | None:
    """The pass kept for ``net`` (tests and benchmarks look at it)."""
    return _KEPT.get(net)
