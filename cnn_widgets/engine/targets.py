"""What a saliency map, occlusion map or contribution tree explains: a class, a unit or a direction.

Plain values only: checking a target against a network is ``NetworkBase._resolve_target`` (and
:func:`check_direction` for a :class:`Direction`).
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
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


class Direction:
    """A direction ``vector`` ``[C]`` in the channel space of ``layer`` (e.g. an activation atlas cell).

    Its value on an image is Lucid's direction objective (Olah et al., Distill 2017; Carter et al.,
    "Activation Atlases", Distill 2019), averaged over the layer's positions ``(y, x)``:

        f(h) = mean_{y,x} <h[:, y, x], v> * max(cos(h[:, y, x], v), 1e-3) ** cossim_power

    ``net.visualize(direction)`` maximises exactly this number and ``net.saliency(image, direction)``
    explains exactly this number (its gradient w.r.t. the input, under the method's backward rule),
    so a picture and a saliency map of one direction are about one quantity. With
    ``cossim_power=0`` it is the mean projection ``mean_{y,x} <h[:, y, x], v>`` (linear in ``h``;
    its scale follows ``|v|``); the default ``1`` weighs each position by how well it points along
    ``v``, so the map concentrates on the positions that look like the direction. A vector
    ``[n, C]`` gives each row of a batch its own direction (batched feature visualisation).

    ``name`` is only how the direction is shown (``"atlas cell (2, 3) of blocks.4"``). A Direction is
    immutable, like :class:`Unit`: assigning a field raises ``dataclasses.FrozenInstanceError`` (an
    ``AttributeError``). An all-zero vector is refused where it is used (it has no objective).
    """

    __slots__ = ("layer", "vector", "cossim_power", "name")

    def __init__(self, layer: str, vector, cossim_power: float = 1.0, name: str = ""):
        if isinstance(vector, torch.Tensor):
            vector = vector.detach()
        else:
            try:
                vector = torch.as_tensor(np.asarray(vector, dtype=np.float64))
            except (TypeError, ValueError):
                raise TargetError(f"Direction.vector must be numbers, one per channel of {layer!r}, got {vector!r}") from None
        if not vector.is_floating_point():
            vector = vector.double()
        if vector.dim() not in (1, 2) or vector.shape[-1] == 0:
            raise TargetError(f"Direction.vector must be one value per channel ([C], or [n, C] for a batch), got shape {tuple(vector.shape)}")
        if not bool(torch.isfinite(vector).all()):
            raise TargetError("Direction.vector contains NaN or infinite values")
        if isinstance(cossim_power, bool) or not isinstance(cossim_power, (int, float)) or not cossim_power >= 0:
            raise TargetError(f"Direction.cossim_power must be a number >= 0, got {cossim_power!r}")
        for slot, value in (("layer", str(layer)), ("vector", vector), ("cossim_power", float(cossim_power)), ("name", str(name))):
            object.__setattr__(self, slot, value)

    def __setattr__(self, name, value):  # frozen, like Unit: the same error a frozen dataclass raises
        raise FrozenInstanceError(f"cannot assign to field {name!r}: a Direction is immutable; make a new one, "
                                  "e.g. cw.Direction(d.layer, new_vector, d.cossim_power)")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}: a Direction is immutable")

    def __eq__(self, other) -> bool:
        return (isinstance(other, Direction) and (self.layer, self.cossim_power) == (other.layer, other.cossim_power)
                and self.vector.shape == other.vector.shape and bool(torch.equal(self.vector, other.vector.to(self.vector.dtype))))

    def __hash__(self) -> int:
        return hash((self.layer, self.cossim_power, tuple(self.vector.shape), self.vector.double().sum().item()))

    def __repr__(self) -> str:
        return f"Direction({self.layer!r}, <{'x'.join(map(str, self.vector.shape))} vector>, cossim_power={self.cossim_power:g})"

    def __str__(self) -> str:
        return self.name or f"direction in {self.layer}"


def direction_values(h: torch.Tensor, directions: torch.Tensor, cossim_power: float = 1.0) -> torch.Tensor:
    """Row ``i``: ``mean_{y,x} <h_i[:, y, x], v_i> * max(cos(h_i[:, y, x], v_i), 1e-3)^p``.

    Lucid's direction objective with one direction per row (an activation atlas optimises a
    batch of cells at once): ``h`` is ``[n, C, H, W]`` (or ``[n, C]``), ``directions`` ``[n, C]``.
    """
    v = directions.to(dtype=h.dtype, device=h.device)
    hv = h if h.dim() == 4 else h[:, :, None, None]
    dot = torch.einsum("nchw,nc->nhw", hv, v)
    if cossim_power == 0:
        return dot.flatten(1).mean(dim=1)
    cos = dot / (hv.norm(dim=1) * v.norm(dim=1)[:, None, None]).clamp_min(1e-8)
    return (dot * cos.clamp_min(1e-3) ** cossim_power).flatten(1).mean(dim=1)


def check_direction(direction: Direction, info) -> Direction:
    """``direction`` if its vector has one value per channel of layer ``info`` (a ``LayerInfo``), else a ``TargetError``."""
    if direction.vector.shape[-1] != info.channels:
        raise TargetError(
            f"the direction has {direction.vector.shape[-1]} values but layer {info.name!r} has {info.channels} "
            f"channels; pass one value per channel (net.layer({info.name!r}).channels)"
        )
    zero = (direction.vector == 0).all(dim=-1)
    if bool(zero.any()):
        row = f" (row {int(zero.nonzero()[0, 0])} of the batch)" if direction.vector.dim() == 2 else ""
        raise TargetError(
            f"the direction in {info.name!r} is all zeros{row}: it points nowhere, so its objective is 0 on "
            "every image (a blank map, a grey picture); pass a vector with at least one non-zero value"
        )
    return direction


Target = Union[int, str, Unit, Direction, None]


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
    target: Unit | ClassTarget | Direction,
    logits: torch.Tensor,
    outputs: dict[str, torch.Tensor],
    quantity: str = "logit",
) -> torch.Tensor:
    """The number being explained, one per batch row: a logit / probability, a unit's value, or a
    direction's objective (:class:`Direction`; ``quantity`` applies to classes only)."""
    if isinstance(target, Direction):
        h = outputs[target.layer]
        v = target.vector.to(dtype=h.dtype, device=h.device)
        return direction_values(h, v.expand(h.shape[0], -1) if v.dim() == 1 else v, target.cossim_power)
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
    return _reduce(out.flatten(1), target.reduce)


def _reduce(values: torch.Tensor, reduce: str) -> torch.Tensor:
    """A unit's map (flattened in its last dimension) as one number: THE rule of ``Unit.reduce``."""
    return values.amax(dim=-1) if reduce == "max" else values.sum(dim=-1)


def scalar_table(
    target: Unit | ClassTarget,
    logits: torch.Tensor,
    outputs: dict[str, torch.Tensor],
    quantity: str = "logit",
) -> tuple[torch.Tensor, int]:
    """:func:`scalar` of every target of the same kind at once, ``[rows, C]``, and the column of ``target``.

    A class target: every class's logit or probability. A unit: every channel of its layer, with
    its position or reduce. Column ``c`` equals ``scalar`` of the target with that class or channel.
    """
    if isinstance(target, ClassTarget):
        check_choice("quantity", quantity, QUANTITIES)
        return (logits.softmax(dim=1) if quantity == "probability" else logits), target.index
    out = outputs[target.layer]
    if target.position is not None:
        return out[:, :, target.position[0], target.position[1]], target.channel
    if out.dim() == 2:
        return out, target.channel
    return _reduce(out.flatten(2), target.reduce), target.channel


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
