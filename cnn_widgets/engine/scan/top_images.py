"""A unit's maximally activating images: receptive-field crops and input-space reconstructions.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014, fig. 2: for
each of a unit's top images, the patch of the input its receptive field covers, beside the
deconvnet projection of the unit's value at that position back to the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..checks import check_choice
from ..images import to_rgb_image
from ..pictures import signed_to_uint8
from ..saliency import input_gradients
from ..targets import Unit

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase
    from .sources import Source

__all__ = ["RECONSTRUCTIONS", "TopImage", "collect_top_images", "reconstruct"]

#: Reconstruction methods of :meth:`Scan.top_images`, and the rectifier rule each backpropagates with.
RECONSTRUCTIONS = ("deconvnet", "guided_backprop", "gradient")
_RULES = {"deconvnet": "deconvnet", "guided_backprop": "guided", "guided": "guided", "gradient": "gradient"}


@dataclass
class TopImage:
    """One of a unit's maximally activating images (Zeiler & Fergus fig. 2: patch and reconstruction).

    Attributes
    ----------
    index
        Image index in the scanned source.
    value
        The unit's spatial maximum on that image.
    position
        ``(y, x)`` of that maximum on the layer's map (``None`` for a non-spatial layer).
    box
        Receptive field of that position in the input: ``(top, left, bottom, right)``, exclusive
        ends, clipped to the image.
    image
        The whole input as displayed (``H x W x 3`` uint8: preprocessing without normalisation).
    crop
        ``image[top:bottom, left:right]``.
    reconstruction
        Deconvnet (or guided-backprop / gradient) picture of this unit at this position, computed
        w.r.t. the input, cropped like ``crop`` and scaled for display: grey is 0,
        ``0.5 + 0.5 * clip(r / p99(|r|), -1, 1)`` per crop (``None`` when not asked for).
    raw_reconstruction
        The same crop, unscaled (float32 ``h x w x 3``).
    label
        The image's label when the source gives labels.
    """

    index: int
    value: float
    position: tuple[int, int] | None
    box: tuple[int, int, int, int]
    image: np.ndarray
    crop: np.ndarray
    reconstruction: np.ndarray | None = None
    raw_reconstruction: np.ndarray | None = field(default=None, repr=False)
    label: Any = None


def reconstruct(net: "NetworkBase", inputs: list[torch.Tensor], layer: str, channel: int,
                positions: list[tuple[int, int] | None], method: str = "deconvnet") -> list[np.ndarray]:
    """Input-space picture of ``layer[channel]`` at each position, one per input (``H x W x 3`` float32).

    The unit's value at that position (its whole map's maximum when the position is ``None``; the
    value itself for a non-spatial layer) is back-propagated to the input with the rectifier rule
    of ``method``: deconvnet (Zeiler & Fergus 2014: ``max(g, 0)`` at every ReLU, the forward mask
    ignored, max-pool switches kept), guided backprop (Springenberg et al., "Striving for
    Simplicity: The All Convolutional Net", 2015) or the plain gradient. Inputs of equal size
    share one pass, whatever their positions.
    """
    rule = _RULES[check_choice("method", method, _RULES)]
    results: list[np.ndarray | None] = [None] * len(inputs)
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(inputs):
        groups.setdefault(tuple(x.shape), []).append(i)
    for members in groups.values():
        units = [Unit(layer, channel, position=positions[i], reduce="max") for i in members]
        grad = input_gradients(net, torch.cat([inputs[i] for i in members]), units, rule)[0]
        for row, i in enumerate(members):
            picture = grad[row].detach().float()
            if picture.shape[0] == 1:  # a one-channel model: grey RGB, like its crops
                picture = picture.expand(3, -1, -1)
            results[i] = picture.permute(1, 2, 0).cpu().numpy()
    return results  # type: ignore[return-value]


def _box(info, position, image_size) -> tuple[int, int, int, int]:
    rf = info.receptive_field
    if position is None or rf is None or rf.is_global:
        return 0, 0, int(image_size[0]), int(image_size[1])
    return rf.box(position[0], position[1], image_size=image_size)


def collect_top_images(net: "NetworkBase", source: "Source", table: dict[str, np.ndarray], labels: np.ndarray | None,
                       layer: str, channel: int, n: int, method: str | None) -> list[TopImage]:
    """The first ``n`` rows of ``table`` (:meth:`Scan.top`) for ``channel``, loaded again from ``source``."""
    if method is not None:
        check_choice("method", method, _RULES)
    info = net.layer(layer)
    results, inputs = [], []
    for rank in range(n):
        index = int(table["indices"][channel, rank])
        if index < 0:
            break
        item = source.image(index)
        x = net.prepare(item)
        display = net.display_image(item)
        if display.shape[:2] != tuple(x.shape[-2:]):
            display = np.asarray(to_rgb_image(display).resize((x.shape[-1], x.shape[-2])))
        position = tuple(int(v) for v in table["positions"][channel, rank]) if info.is_spatial else None
        box = _box(info, position, tuple(x.shape[-2:]))
        top, left, bottom, right = box
        results.append(TopImage(
            index=index,
            value=float(table["values"][channel, rank]),
            position=position,
            box=box,
            image=display,
            crop=display[top:bottom, left:right].copy(),
            label=labels[index] if labels is not None else None,
        ))
        inputs.append(x)
    if method is not None and results:
        grads = reconstruct(net, inputs, layer, channel, [r.position for r in results], method)
        for r, g in zip(results, grads):
            top, left, bottom, right = r.box
            r.raw_reconstruction = g[top:bottom, left:right]
            r.reconstruction = signed_to_uint8(r.raw_reconstruction)
    return results
