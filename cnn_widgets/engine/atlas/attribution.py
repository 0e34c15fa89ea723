"""How much a direction of a layer raises a target: the directional derivative at the sampled positions.

The class activation atlas of Carter et al. (Distill 2019) keeps the cells whose activations most
support a class. Here a cell's score is the exact directional derivative of the target ``f`` (a
class logit, or a later unit) w.r.t. the layer's activation at each of the cell's samples, along the
cell's direction ``d`` (its mean activation vector), averaged over the samples ``s = (image, y, x)``:

    score(cell) = mean_{s in cell} <d f(image_s) / d h[:, y_s, x_s], d>
                = mean_{s in cell} lim_{e -> 0} (f(h + e d delta_{y_s x_s}) - f(h)) / e

i.e. how fast the target rises when the cell's direction is added at that position of the real
image. One forward and one backward pass over the images (in batches) gives every sample's
gradient; only the ``C``-vectors at the sampled positions are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import OptionError
from ..scan.sources import Source
from ..visualize.objectives import objective_value

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase
    from ..targets import ClassTarget, Unit

__all__ = ["directional_derivatives"]


def directional_derivatives(net: "NetworkBase", source: "Source", layer: str, target: "ClassTarget | Unit",
                            image_index: np.ndarray, position: np.ndarray, directions: np.ndarray,
                            batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """``float64 [M]``: ``<d target / d h[:, y_m, x_m] (image_m), directions[m]>`` for every sample ``m``."""
    from tqdm.auto import tqdm

    name = net.layer(layer).name
    target_layer = getattr(target, "layer", None)
    if target_layer is not None and net.layer(target_layer).index <= net.layer(name).index:
        raise OptionError(f"the unit's layer {target_layer!r} is not above {name!r}; pick a class or a later unit")
    layers = [name] + ([target_layer] if target_layer is not None else [])
    wanted = np.unique(image_index)
    rows_of = {int(i): np.flatnonzero(image_index == i) for i in wanted}
    result = np.zeros(len(image_index), dtype=np.float64)
    directions_t = torch.as_tensor(np.asarray(directions, dtype=np.float64))
    subset = _Subset(source, [int(i) for i in wanted])
    done = 0
    bar = tqdm(total=len(subset), unit="img", desc=f"atlas: attribution {layer}", disable=not progress, leave=False)
    try:
        for x, _ in subset.batches(net, 0, batch_size, 0):
            x = x.to(device=net.device, dtype=net.dtype).requires_grad_(True)  # so the layer joins the graph
            with net._session("gradient"), torch.enable_grad():
                logits, outputs = net._forward(x, layers=layers, stop_early=False)
                h = outputs[name]
                value = objective_value(target, logits, outputs)
                (grad,) = torch.autograd.grad(value.sum(), h, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(h)
            grad = grad.detach().double().cpu()
            if grad.dim() == 2:
                grad = grad[:, :, None, None]
            for b in range(len(grad)):
                rows = rows_of[subset.indices[done + b]]
                g = grad[b][:, torch.from_numpy(position[rows, 0]), torch.from_numpy(position[rows, 1])].T
                result[rows] = (g * directions_t[rows].to(g.dtype)).sum(dim=1).numpy()
            done += len(grad)
            bar.update(len(grad))
    finally:
        bar.close()
    return result


class _Subset(Source):
    """The images of ``source`` at ``indices`` (those sampled), prepared and batched like any source."""

    def __init__(self, source: "Source", indices: list[int]):
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def item(self, i: int):
        return self.source.item(self.indices[i])

    def label(self, i: int):
        return None
