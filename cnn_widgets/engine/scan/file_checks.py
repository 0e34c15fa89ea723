"""The checks a scan file passes before it is used: checksums, counts, shapes, ranges (see :mod:`.storage`)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from .relevance_rank import TOP_FIELDS, RelevanceTop
from .state import LayerState

__all__ = ["check_int", "check_layer", "check_top", "plain_digest", "read_relevance", "tensor_digest"]


def tensor_digest(tensor: torch.Tensor) -> str:
    """A digest of a tensor's dtype, shape and bytes (any dtype: its storage read as bytes)."""
    data = tensor.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.blake2b(f"{data.dtype}|{tuple(tensor.shape)}".encode(), digest_size=16)
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def plain_digest(value) -> str:
    text = json.dumps(value, sort_keys=True, default=repr, allow_nan=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def check_int(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise TypeError(f"{what} is {value!r}, not an integer of at least {low}")
    return value


def check_top(name: str, shape: tuple[int, ...], ls, k: int, count: int, what: str = "top") -> None:
    """A top-k table (``top_values``, ``top_index``, ``top_y``, ``top_x``): filled rows, order, positions."""
    filled = min(k, count)
    index, values = ls.top_index, ls.top_values
    if bool(((index < 0) | (index >= count))[:, :filled].any()) or bool((index[:, filled:] != -1).any()):
        raise TypeError(f"the {what} images of layer {name!r} are not {filled} image indices in 0..{count - 1} per channel")
    if bool(torch.isinf(values[:, :filled]).any()) or bool((~torch.isinf(values[:, filled:])).any()):
        raise TypeError(f"the {what} values of layer {name!r} do not match its {what} images")
    if filled > 1 and bool((index[:, :filled].sort(dim=1).values.diff(dim=1) == 0).any()):
        raise TypeError(f"layer {name!r} ranks one image twice for a channel" + ("" if what == "top" else f" ({what})"))
    if filled > 1 and bool((values[:, 1:filled] > values[:, : filled - 1]).any()):
        raise TypeError(f"the {what} values of layer {name!r} are not in descending order")
    positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    width = shape[-1] if len(shape) >= 2 else 1  # positions are y * width + x (state.map_width)
    height = positions // width
    if bool(((ls.top_y < 0) | (ls.top_y >= height) | (ls.top_x < 0) | (ls.top_x >= width)).any()):
        raise TypeError(f"the {'' if what == 'top' else what + ' '}positions of layer {name!r} lie outside its "
                        f"{height}x{width} map")


def read_relevance(payload: dict, shapes: dict, k: int, count: int) -> tuple[dict | None, dict | None]:
    """The optional relevance ranking of a file: ``(ranking, tables)``, checked like the layer states."""
    section = payload.get("relevance")
    if section is None:
        return None, None
    sums = payload.get("checksums", {}).get("relevance")
    if not isinstance(section, dict) or not isinstance(sums, dict) or not isinstance(section.get("state"), dict):
        raise TypeError("the relevance ranking is incomplete")
    ranking = section.get("ranking")
    if not isinstance(ranking, dict) or set(ranking) != {"target", "label", "composite"} \
            or sums.get("ranking") != plain_digest(ranking):
        raise TypeError("the relevance ranking does not match its checksum")
    check_int(ranking["target"], "the relevance target", 0)
    if not isinstance(ranking["label"], str) or not isinstance(ranking["composite"], str):
        raise TypeError("the relevance ranking's label or composite is not a name")
    if set(section["state"]) != set(shapes) or not isinstance(sums.get("state"), dict):
        raise TypeError("the relevance tables do not match the layer names")
    tables = {}
    for name, st in section["state"].items():
        if not isinstance(st, dict) or set(st) != set(TOP_FIELDS) or not all(isinstance(t, torch.Tensor) for t in st.values()):
            raise TypeError(f"the relevance table of layer {name!r} holds something other than its tensors")
        if any(sums["state"].get(name, {}).get(f) != tensor_digest(t) for f, t in st.items()):
            raise TypeError(f"the relevance table of layer {name!r} does not match its checksum")
        for f, t in st.items():
            if tuple(t.shape) != (shapes[name][0], k) or t.is_floating_point() != (f == "top_values"):
                raise TypeError(f"the relevance {f} of layer {name!r} has shape {tuple(t.shape)} and {t.dtype}")
        if bool(torch.isnan(st["top_values"]).any()):
            raise TypeError(f"layer {name!r} holds NaN relevance")
        top = RelevanceTop(**st)
        check_top(name, shapes[name], top, k, count, "relevance")
        tables[name] = st
    return ranking, tables


def check_layer(name: str, shape: tuple[int, ...], ls: LayerState, codes: torch.Tensor, k: int, count: int) -> None:
    """One layer's state against its shape, ``k`` and ``count``: sizes, kinds, and every index in range."""
    channels = shape[0]
    positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    sizes = {"top_values": (channels, k), "top_index": (channels, k), "top_y": (channels, k), "top_x": (channels, k),
             "code_sum": (channels,), "max": (channels,), "zeros": (channels,), "firing": (channels,),
             "codes": (count, channels)}
    for field, size in sizes.items():
        tensor = codes if field == "codes" else getattr(ls, field)
        if tuple(tensor.shape) != size:
            raise TypeError(f"the {field} of layer {name!r} has shape {tuple(tensor.shape)}, not {size} "
                            f"({channels} channels, k={k}, {count} images)")
        floating = field in ("top_values", "code_sum", "max", "codes")
        if tensor.is_floating_point() != floating:
            raise TypeError(f"the {field} of layer {name!r} holds {tensor.dtype}")
    if count and bool(torch.isnan(ls.top_values).any() | torch.isnan(codes).any() | torch.isnan(ls.code_sum).any()):
        raise TypeError(f"layer {name!r} holds NaN values")
    check_top(name, shape, ls, k, count)
    if bool(((ls.zeros < 0) | (ls.zeros > count * positions)).any()) or bool(((ls.firing < 0) | (ls.firing > count)).any()):
        raise TypeError(f"the counts of layer {name!r} exceed its {count} images")
