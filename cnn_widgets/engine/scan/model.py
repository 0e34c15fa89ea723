"""What a scan needs to know of the network: which layers to scan by default, and whose weights it saw."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["SMALL_NET_LAYERS", "default_scan_layers", "model_fingerprint"]

#: Networks with at most this many spatial explorable layers are scanned at every layer by default.
SMALL_NET_LAYERS = 16


def default_scan_layers(net: "NetworkBase") -> list[str]:
    """The layers a scan covers when none are named.

    * Small networks (at most ``SMALL_NET_LAYERS`` = 16 spatial explorable layers, e.g. the digits
      CNN, AlexNet): every explorable layer, spatial or not (AlexNet's fc6/fc7 codes included).
    * Larger networks with blocks (ResNets, EfficientNets): the first rectified stem layer, every
      block output (the channel-mixing stages of a residual network) and the last spatial layer
      before global pooling (e.g. ``bn2.act`` / ``layer4``).
    * Larger plain chains (VGG): the rectifiers that follow a channel-mixing convolution.
    """
    layers = net.layers
    spatial = [l for l in layers if l.is_spatial and not (l.receptive_field and l.receptive_field.is_global)]
    if len(spatial) <= SMALL_NET_LAYERS:
        return [l.name for l in layers]
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
