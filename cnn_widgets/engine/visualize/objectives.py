"""What a feature visualisation maximises, one value per image of the batch.

* a class: its logit (pre-softmax: maximising the probability would rather push other classes down);
* a unit ``cw.Unit(layer, channel)``: the mean of its map, or one neuron with a position;
* a layer name: DeepDream's objective, the mean square of the whole layer (Mordvintsev et al. 2015);
* a :class:`Direction` in a layer's channel space: Lucid's direction objective ``<h, v> * cos(h, v)^p``
  averaged over positions (used by the activation atlas: Carter et al., Distill 2019).

Lucid's diversity term (Olah et al. 2017) pushes a batch apart: minus the mean pairwise cosine
similarity of the images' Gram matrices in the target layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..targets import ClassTarget, Direction, Unit, direction_values, scalar

__all__ = ["Direction", "LayerTarget", "Objective", "direction_values", "diversity", "objective_layer", "objective_value"]


@dataclass(frozen=True)
class LayerTarget:
    """A whole layer (DeepDream)."""

    layer: str


Objective = ClassTarget | Unit | Direction | LayerTarget


def objective_layer(objective: Objective) -> str | None:
    return None if isinstance(objective, ClassTarget) else objective.layer


def objective_value(objective: Objective, logits: torch.Tensor | None, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The quantity maximised, one per batch row."""
    if isinstance(objective, ClassTarget):
        return logits[:, objective.index]
    h = outputs[objective.layer]
    if isinstance(objective, LayerTarget):
        return h.flatten(1).pow(2).mean(dim=1)
    if isinstance(objective, Unit):
        channel = h[:, objective.channel]
        if objective.position is not None:
            return channel[:, objective.position[0], objective.position[1]]
        return channel.flatten(1).mean(dim=1) if channel.dim() > 1 else channel
    # a direction: <h, v> * cos(h, v)^p at every position, averaged -- the very number saliency explains
    return scalar(objective, logits, outputs)


def diversity(h: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine similarity of the batch's Gram matrices (lower is more diverse)."""
    n = h.shape[0]
    if n < 2:
        return h.new_zeros(())
    flat = h.flatten(2) if h.dim() > 2 else h[:, :, None]
    gram = torch.einsum("ncp,ndp->ncd", flat, flat).flatten(1)
    sim = F.cosine_similarity(gram[:, None], gram[None, :], dim=-1)
    return (sim.sum() - sim.diagonal().sum()) / (n * (n - 1))
