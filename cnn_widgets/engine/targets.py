"""What a saliency map, occlusion map or contribution tree explains: a class or a unit.

Plain values only: checking a target against a network is ``NetworkBase.resolve_target``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from .checks import check_choice
from .errors import TargetError

REDUCES = ("sum", "max")  # how a unit's whole map becomes one number: its sum, or its largest pixel
QUANTITIES = ("logit", "probability")  # what a class target explains: its raw score or its softmax


def _index(what: str, value) -> int:
    """``value`` as an ``int`` if it is an integer (also numpy's, a 0-d tensor's, or ``2.0``).

    Bools, strings and fractions are refused rather than converted: ``int(2.7)`` would silently
    pick channel 2.
    """
    if not isinstance(value, (bool, np.bool_, str, bytes)):
        try:
            number = int(value)
            if number == value:
                return number
        except (TypeError, ValueError, RuntimeError, OverflowError):
            pass
    raise TargetError(f"{what} must be an integer, got {value!r}")


@dataclass(frozen=True)
class Unit:
    """A channel of a layer (optionally one position of it), used as a target.

    Parameters
    ----------
    layer
        Layer name as listed in ``net.layers``.
    channel
        Channel index in that layer.
    position
        ``(y, x)`` on the layer's map; ``None`` means the whole map.
    reduce
        How a whole map becomes one number: ``"sum"`` (default) or ``"max"`` (its largest pixel).
    """

    layer: str
    channel: int
    position: tuple[int, int] | None = None
    reduce: str = "sum"

    def __post_init__(self):
        check_choice("Unit.reduce", self.reduce, REDUCES)
        object.__setattr__(self, "channel", _index("Unit.channel", self.channel))
        if self.position is not None:
            position = self.position
            if isinstance(position, (str, bytes)) or not hasattr(position, "__len__") or len(position) != 2:
                raise TargetError(f"Unit.position must be None or a pair (y, x) of integers, got {position!r}")
            object.__setattr__(self, "position", tuple(_index(f"Unit.position {axis}", v) for axis, v in zip("yx", position)))

    def __str__(self) -> str:
        where = f"@{self.position[0]},{self.position[1]}" if self.position is not None else ""
        return f"{self.layer}[{self.channel}]{where}"


Target = Union[int, str, Unit, None]


@dataclass(frozen=True)
class ClassTarget:
    """A class of the model's output, resolved: its index and label."""

    index: int
    label: str


class _TopClass:
    """The top-1 class of the very forward pass that computes the explanation (``target=None``)."""

    def __repr__(self) -> str:
        return "TOP_CLASS"


TOP_CLASS = _TopClass()


def scalar(
    target: Unit | ClassTarget,
    logits: torch.Tensor,
    outputs: dict[str, torch.Tensor],
    quantity: str = "logit",
) -> torch.Tensor:
    """The number being explained, one per batch row: a logit / probability or a unit's value."""
    if isinstance(target, ClassTarget):
        if quantity == "probability":
            return logits.softmax(dim=1)[:, target.index]
        if quantity == "logit":
            return logits[:, target.index]
        check_choice("quantity", quantity, QUANTITIES)
    out = outputs[target.layer][:, target.channel]
    if target.position is not None:
        return out[:, target.position[0], target.position[1]]
    if out.dim() == 1:
        return out
    flat = out.flatten(1)
    return flat.amax(dim=1) if target.reduce == "max" else flat.sum(dim=1)


def check_unit(unit: Unit, info) -> Unit:
    """``unit`` if its channel and position exist in layer ``info`` (a ``LayerInfo``), else a ``TargetError``."""
    if not 0 <= unit.channel < info.channels:
        raise TargetError(
            f"channel {unit.channel} is out of range for layer {info.name!r}, which has "
            f"{info.channels} channels (0..{info.channels - 1})"
        )
    if unit.position is not None:
        if not info.is_spatial:
            raise TargetError(f"layer {info.name!r} has no spatial map; drop the position from the Unit")
        y, x = unit.position
        h, w = info.shape[1:]
        if not (0 <= y < h and 0 <= x < w):
            raise TargetError(
                f"position {(y, x)} is outside the {h}x{w} map of layer {info.name!r}; use 0..{h - 1}, 0..{w - 1}"
            )
    return unit
