"""What a scan needs to know of the network: which layers to scan by default, whose top images
another layer already shows (its stand-in), and whose weights it saw."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..tracing import pair

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["SMALL_NET_LAYERS", "StandIn", "default_scan_layers", "model_fingerprint", "scan_stand_in", "stand_ins"]

#: Networks with at most this many spatial explorable layers are scanned at every layer whose top
#: images no other scanned layer already shows.
SMALL_NET_LAYERS = 16


def default_scan_layers(net: "NetworkBase") -> list[str]:
    """The layers a scan covers when none are named.

    * Small networks (at most ``SMALL_NET_LAYERS`` = 16 spatial explorable layers, e.g. the digits
      CNN, AlexNet): every explorable layer, spatial or not (AlexNet's fc6/fc7 codes included),
      except those whose top images are provably another scanned layer's (:func:`stand_ins`):

      - a convolution or linear layer read, unchanged, only by a ReLU, LeakyReLU or ELU (AlexNet's
        ``features.0``, whose ReLU is ``features.1``): these keep positive values as they are and
        the order of all values, so wherever a channel fires the rectifier has the same top images
        with the same maxima at the same positions; the rectifier is what the next layer sees;
      - a pooling layer that is the identity at this input size (AlexNet's ``avgpool``, 6x6 in and out);
      - a max pool whose windows cover all of its input (AlexNet's 3x3 stride-2 pools): each
        channel's maximum over the map is its input's, so the same images rank first.

      Scanning those too would show the same images again and, on AlexNet, add about a sixth to the
      time of its forward pass (19 layers instead of 8). What a left-out layer has of its own are
      its statistics and codes (its embedding): name it to get them, e.g.
      ``net.scan(images, layers=["features.0"])``. Asked for a left-out layer, the Explorer's
      dataset panels name the scanned layer that shows its top images (:func:`scan_stand_in`).
    * Larger networks with blocks (ResNets, EfficientNets): the first rectified stem layer, every
      block output (the channel-mixing stages of a residual network) and the last spatial layer
      before global pooling (e.g. ``bn2.act`` / ``layer4``).
    * Larger plain chains (VGG): the rectifiers that follow a channel-mixing convolution.
    """
    layers = net.layers
    spatial = [l for l in layers if l.is_spatial and not (l.receptive_field and l.receptive_field.is_global)]
    if len(spatial) <= SMALL_NET_LAYERS:
        shown = stand_ins(net)
        return [l.name for l in layers if l.name not in shown]
    blocks = [l for l in spatial if l.kind == "block"]
    if blocks:
        chosen = []
        first_act = next((l for l in spatial if l.kind == "activation"), None)
        if first_act is not None and first_act.index < blocks[0].index:
            chosen.append(first_act)
        chosen += blocks
        if spatial[-1] not in chosen:
            chosen.append(spatial[-1])
        return [l.name for l in sorted(chosen, key=lambda l: l.index)]
    by_name = {l.name: l for l in layers}
    rectified = [
        l for l in spatial
        if l.kind == "activation" and l.input_layer in by_name and by_name[l.input_layer].kind == "conv"
        and by_name[l.input_layer].mixes_channels
    ]
    return [l.name for l in (rectified or spatial)]


@dataclass(frozen=True)
class StandIn:
    """Another layer whose top images (per channel, the images with the highest maximum over the
    map) a layer shares, and why."""

    layer: str
    reason: str
    #: the maxima are also at the same positions (a rectifier's), not only in the same images
    same_positions: bool


def stand_ins(net: "NetworkBase") -> dict[str, StandIn]:
    """The layers whose top images are provably those of another layer, each with that layer.

    * a convolution or linear layer whose output only a ReLU, LeakyReLU (slope >= 0) or ELU reads,
      unchanged: these leave positive values as they are and keep the order of all values, so for
      every channel the same images have the same positive maxima at the same positions (GELU,
      SiLU and the like are not monotone; ReLU6 and Hardtanh make ties of what they clip);
    * a pooling layer that is the identity at the current input size (adaptive pooling to the
      size it is given, or a 1x1 window with stride 1), reading its input layer unchanged;
    * a max pool whose windows cover every position of its input, read unchanged: each channel's
      maximum over the map is its input's, so the same images rank first (at other positions).

    Which layer reads which output unchanged is ``LayerInfo.fed_by``, from the pass that
    found the layers.
    """
    layers = net.layers
    by_name = {l.name: l for l in layers}
    readers: dict[str, list[str]] = {}
    for l in layers:
        for source in l.inputs:
            readers.setdefault(source, []).append(l.name)
    found: dict[str, StandIn] = {}
    for l in layers:
        source = by_name.get(l.fed_by or "")
        if source is None or l.inputs != (source.name,):
            continue
        module = l._module  # (a block's ':tokens' layer is its block's module)
        if (source.kind in ("conv", "linear") and readers.get(source.name) == [l.name]
                and source.shape == l.shape and _keeps_positive_order(module)):
            why = f"the {l.module_type} right after it is monotone: same images, same positions wherever a channel fires"
            found[source.name] = StandIn(l.name, why, True)
        elif _is_identity_pool(module, source.shape, l.shape):
            size = "x".join(map(str, l.shape[1:]))
            why = f"{l.module_type} {l.name} is the identity at {size} (same size in and out)"
            found[l.name] = StandIn(source.name, why, True)
        elif _covers_input(module, source.shape, l.shape):
            why = f"the max-pool windows of {l.name} cover all of {source.name}: each channel keeps its maximum"
            found[l.name] = StandIn(source.name, why, False)
    return found


def scan_stand_in(net: "NetworkBase", layer: str, scanned=None) -> StandIn | None:
    """The layer that shows ``layer``'s top images (following :func:`stand_ins` from link to link),
    or None: the first one in ``scanned`` when it is given, else the last one (one a default scan
    covers). The reasons of every link are joined."""
    links = stand_ins(net)
    name = net.layer(layer).name
    reasons, same = [], True
    step = links.get(name)
    while step is not None:
        reasons.append(step.reason)
        same = same and step.same_positions
        if scanned is not None and step.layer in scanned:
            return StandIn(step.layer, "; ".join(reasons), same)
        name, step = step.layer, links.get(step.layer)
    if scanned is None and reasons:
        return StandIn(name, "; ".join(reasons), same)
    return None


def _keeps_positive_order(module: nn.Module) -> bool:
    """Elementwise, non-decreasing and the identity on positive values (exact classes only: a
    subclass may compute something else)."""
    if type(module) is nn.ReLU:
        return True
    if type(module) is nn.LeakyReLU:
        return module.negative_slope >= 0
    if type(module) is nn.ELU:
        return module.alpha >= 0
    return False


def _is_identity_pool(module: nn.Module, before: tuple, after: tuple) -> bool:
    if len(before) != 3 or before != after:
        return False
    if type(module) in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d):
        return True  # output size = input size: every window is one pixel
    if type(module) in (nn.AvgPool2d, nn.MaxPool2d):
        one = pair(module.kernel_size) == (1, 1) and pair(module.stride) == (1, 1) and pair(module.padding) == (0, 0)
        return one and getattr(module, "divisor_override", None) in (None, 1)
    return False


def _covers_input(module: nn.Module, before: tuple, after: tuple) -> bool:
    """A max pool whose windows together cover every input position (the padding they also cover
    is -inf and never the maximum)."""
    if len(before) != 3 or len(after) != 3 or before[0] != after[0]:
        return False
    if type(module) is nn.AdaptiveMaxPool2d:
        return True  # adaptive windows [floor(i n / o), ceil((i + 1) n / o)) tile the input
    if type(module) is not nn.MaxPool2d:
        return False
    m = module
    kernel, stride, padding, dilation = (pair(v) for v in (m.kernel_size, m.stride, m.padding, m.dilation))
    for axis in (0, 1):
        k, s, p, d = kernel[axis], stride[axis], padding[axis], dilation[axis]
        covered = {j * s - p + i * d for j in range(after[1 + axis]) for i in range(k)}
        if not covered.issuperset(range(before[1 + axis])):
            return False
    return True


def model_fingerprint(model: torch.nn.Module) -> str:
    """Identity of the weights: per tensor its name, shape, dtype, the wrap-around sum of its bytes
    read as 64-bit words, and up to 256 evenly spaced bytes.

    Integer sums are exact and independent of thread counts, so the same weights always give the
    same string, and changing any weight changes the sum. About 10 ms per 100 MB of weights.
    """
    digest = hashlib.blake2b(digest_size=16)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
            if not raw.size:
                continue
            words = raw.size // 8 * 8
            total = raw[:words].view(np.uint64).sum(dtype=np.uint64) + np.uint64(raw[words:].sum(dtype=np.uint64))
            digest.update(np.asarray(total, dtype=np.uint64).tobytes())
            digest.update(raw[:: max(1, raw.size // 256)][:256].tobytes())
    return digest.hexdigest()
