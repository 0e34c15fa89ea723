"""The results of :mod:`.contributions`: a ranked child (:class:`Contribution`) and a tree node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from .targets import Unit

__all__ = ["Contribution", "ContributionNode"]


class _OfUnit:
    """``.layer`` and ``.channel`` read through to ``.unit``."""

    unit: Unit

    @property
    def layer(self) -> str:
        return self.unit.layer

    @property
    def channel(self) -> int:
        return self.unit.channel


@dataclass
class Contribution(_OfUnit):
    """One child of a unit: a channel of the layer below and its score ``s_j``."""

    unit: Unit
    score: float


@dataclass
class ContributionNode(_OfUnit):
    """A node of a contribution tree.

    Attributes
    ----------
    unit
        The channel this node stands for (a class is the unit of the logit layer).
    label
        ``"layer[channel]"``, or the class name for a class root.
    score
        For the root: ``f`` of the unit (its max pixel or map sum); for other nodes: the
        contribution ``s_j`` to the parent along this path.
    picture
        Guided backprop of the path-conditioned gradient to the image, ``[3, H, W]`` in ``[0, 1]``
        (grey = 0), normalised on its own by percentile clipping (``None`` with ``pictures=False``).
        With ``rule="lrp"``: the conditional relevance map summed over colour channels as an LRP
        heatmap (white = 0, red positive, blue negative; :func:`.pictures.relevance_picture`).
    raw_picture
        The same gradient before normalisation (signed, w.r.t. the preprocessed input).
    children
        Child nodes, best first (empty at the first layer or at the requested depth).
    children_total
        The scores of every channel of the layer below, summed (the children are the top ``k`` of
        them). With ``rule="lrp"`` this is the node's relevance minus what the step leaked.
    path
        Units from the root's child down to this node (the root has ``()``).
    """

    unit: Unit
    label: str
    score: float
    picture: torch.Tensor | None
    raw_picture: torch.Tensor | None
    children: list["ContributionNode"] = field(default_factory=list)
    path: tuple[Unit, ...] = ()
    children_total: float | None = None  # the scores of every channel of the layer below, summed (None: not expanded)

    def walk(self) -> Iterator["ContributionNode"]:
        """This node and all its descendants, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def pretty(self, indent: str = "") -> str:
        lines = [f"{indent}{self.label}  score {self.score:.4g}"]
        for child in self.children:
            lines.append(child.pretty(indent + "  "))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ContributionNode({self.label}, score={self.score:.4g}, {len(self.children)} children)"
