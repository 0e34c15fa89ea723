"""What a saliency map, occlusion map or contribution tree explains: a class or a unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import torch

from .errors import TargetError

if TYPE_CHECKING:  # pragma: no cover
    from .network import Network


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
        if self.reduce not in ("sum", "max"):
            raise TargetError(f"Unit.reduce must be 'sum' or 'max', got {self.reduce!r}")
        if isinstance(self.channel, bool) or not isinstance(self.channel, int):
            try:
                object.__setattr__(self, "channel", int(self.channel))
            except (TypeError, ValueError):
                raise TargetError(f"Unit.channel must be an integer, got {self.channel!r}") from None

    def __str__(self) -> str:
        where = f"@{self.position[0]},{self.position[1]}" if self.position is not None else ""
        return f"{self.layer}[{self.channel}]{where}"


Target = Union[int, str, Unit, None]
QUANTITIES = ("logit", "probability")  # what a class target explains: its raw score or its softmax


@dataclass(frozen=True)
class ClassTarget:
    index: int
    label: str


def resolve(net: "Network", target: Target) -> Unit | ClassTarget:
    """Check a user's target against the network and return a canonical form (errors name the fix)."""
    if isinstance(target, Unit):
        info = net.layer(target.layer)  # raises LayerNotFoundError with suggestions
        if not 0 <= target.channel < info.channels:
            raise TargetError(
                f"channel {target.channel} is out of range for layer {info.name!r}, which has "
                f"{info.channels} channels (0..{info.channels - 1})"
            )
        if target.position is not None:
            if not info.is_spatial:
                raise TargetError(f"layer {info.name!r} has no spatial map; drop the position from the Unit")
            y, x = target.position
            h, w = info.shape[1:]
            if not (0 <= y < h and 0 <= x < w):
                raise TargetError(
                    f"position {(y, x)} is outside the {h}x{w} map of layer {info.name!r}; use 0..{h - 1}, 0..{w - 1}"
                )
        return target
    n = net.num_classes
    if target is None:
        raise TargetError("no target given; pass a class index, a class label or cw.Unit(layer, channel)")
    if isinstance(target, str):
        index = net.class_index(target)
        return ClassTarget(index, net.label(index))
    if isinstance(target, bool):
        raise TargetError(f"target {target!r} is not a class index; pass an int, a label or cw.Unit")
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise TargetError(
            f"cannot use {target!r} as a target; pass a class index, a class label string or cw.Unit(layer, channel)"
        ) from None
    if index != target:
        raise TargetError(f"class index must be an integer, got {target!r}")
    if not 0 <= index < n:
        raise TargetError(f"class index {index} is out of range; the model has {n} classes (0..{n - 1})")
    return ClassTarget(index, net.label(index))


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
        raise TargetError(f"quantity must be 'probability' or 'logit', got {quantity!r}")
    out = outputs[target.layer][:, target.channel]
    if target.position is not None:
        return out[:, target.position[0], target.position[1]]
    if out.dim() == 1:
        return out
    flat = out.flatten(1)
    return flat.amax(dim=1) if target.reduce == "max" else flat.sum(dim=1)
