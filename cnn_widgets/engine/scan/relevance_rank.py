"""Relevance maximisation: per channel, the images where the channel contributes most to a class.

Achtibat et al., "From attribution maps to human-understandable explanations through Concept
Relevance Propagation", Nature Machine Intelligence 2023 (zennit-crp's ``RelMax``): reference
images of a concept chosen by how much relevance the concept carries for the target class, not by
how strongly it fires. A scan with ``rank="relevance"`` runs, for each batch beside the activation
pass, one LRP pass of the target class (:mod:`..relevance`) and keeps per channel the top ``k``
images by the channel's relevance ``sum_p h * g`` (position: where that relevance peaks), in the
same table layout, order and tie rule as the activation ranking (:func:`.state.merge_top`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..checks import check_choice
from ..errors import OptionError
from ..lrp_mode import DEFAULT_COMPOSITE, composite_key
from ..targets import ClassTarget
from .state import merge_top

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["RANKS", "RelevanceRanking", "RelevanceTop", "check_ranking", "relevance_batch"]

# what a scan ranks images by (activation always; relevance when asked), with the words menus show
RANKS = {"activation": "most activating", "relevance": "most relevant"}
TOP_FIELDS = ("top_values", "top_index", "top_y", "top_x")


@dataclass(frozen=True)
class RelevanceRanking:
    """The class a relevance scan ranks for, and the LRP composite."""

    target: int
    label: str
    composite: str


@dataclass
class RelevanceTop:
    """One layer's relevance top-k table (the fields of a :class:`.state.LayerState` that rank)."""

    top_values: torch.Tensor  # [C, k] the channel's relevance for the target, -inf where empty
    top_index: torch.Tensor  # [C, k] int64 image index, -1 where empty
    top_y: torch.Tensor  # [C, k] int64 row where the channel's relevance peaks
    top_x: torch.Tensor  # [C, k] int64 column

    @classmethod
    def empty(cls, channels: int, k: int, dtype: torch.dtype) -> "RelevanceTop":
        return cls(torch.full((channels, k), -math.inf, dtype=dtype), torch.full((channels, k), -1, dtype=torch.int64),
                   torch.zeros((channels, k), dtype=torch.int64), torch.zeros((channels, k), dtype=torch.int64))


def check_ranking(net: "NetworkBase", rank: str, target, composite, backend: str) -> RelevanceRanking | None:
    """The ranking a scan keeps beside the activation one (``None`` for ``rank="activation"``)."""
    check_choice("rank", rank, RANKS)
    if rank == "activation":
        if target is not None:
            raise OptionError("target is an option of rank='relevance' (the class the images are ranked for); "
                              "pass rank='relevance' or leave target out")
        return None
    if target is None:
        raise OptionError("rank='relevance' ranks images by how much each channel contributes to a class: "
                          "pass target=<class index or label>")
    if backend != "local":
        raise OptionError("rank='relevance' runs on the local backend (backend='local')")
    resolved = net._resolve_target(target)
    if not isinstance(resolved, ClassTarget):
        raise OptionError(f"rank='relevance' needs a class target (index or label), got {target!r}")
    return RelevanceRanking(resolved.index, resolved.label,
                            composite_key(composite if composite is not None else DEFAULT_COMPOSITE))


def relevance_batch(net: "NetworkBase", layers: list[str], tops: dict[str, RelevanceTop], k: int, x: torch.Tensor,
                    start: int, ranking: RelevanceRanking) -> dict[str, RelevanceTop]:
    """One LRP pass of ``ranking.target`` over the batch ``x`` (images ``start ..``), merged into new tables."""
    leaf = x.detach().clone().requires_grad_(True)
    with net._session(f"lrp:{ranking.composite}"), torch.enable_grad():
        logits, outputs = net._forward(leaf, layers)
        captured = [outputs[name] for name in layers]
        grads = torch.autograd.grad(logits[:, ranking.target].sum(), captured, allow_unused=True)
    new = {}
    for name, h, g in zip(layers, captured, grads):
        relevance = h.detach() * g if g is not None else torch.zeros_like(h)
        batch, channels = relevance.shape[:2]
        flat = relevance.reshape(batch, channels, -1)
        values = flat.sum(dim=2).to(tops[name].top_values.dtype)  # [B, C]
        peak = flat.argmax(dim=2)
        width = relevance.shape[-1] if relevance.dim() > 2 else 1
        ys, xs = (peak // width, peak % width) if relevance.dim() > 2 else (torch.zeros_like(peak),) * 2
        channel = torch.arange(channels).repeat_interleave(batch)  # by channel, images ascending
        image = torch.arange(batch).repeat(channels)
        merged = merge_top(tops[name], channel, image, values.t().reshape(-1).cpu(), ys.t().reshape(-1).cpu(),
                           xs.t().reshape(-1).cpu(), start, k)
        new[name] = RelevanceTop(*merged)
    return new
