"""Cell icons: feature visualisation of many directions at once, or the mean of real patches.

* :func:`direction_icons`: a batch of ``n`` images where image ``i`` maximises Lucid's direction
  objective for direction ``v_i``, ``mean over positions of <h, v_i> * cos(h, v_i)^p`` (Olah et al.,
  "Feature Visualization", Distill 2017; Carter et al., "Activation Atlases", Distill 2019). Every
  image of the batch has its own direction, so a whole atlas is rendered in a few batched ascents
  of :mod:`~cnn_widgets.engine.visualize`'s one ascent loop (Fourier basis, colour decorrelation,
  Lucid's transforms).
* :func:`patch_icons`: the fast version, the mean of the receptive-field patches (resized to the
  icon size) of the sampled positions that fell in each cell: what the cell's inputs look like on
  average, without optimisation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from ..pictures import pixels_to_uint8
from ..targets import Direction, direction_values
from ..visualize.ascent import ascend, runs_at
from ..visualize.transforms import transform_set
from .stages import StageBar, StageCallback

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase
    from ..scan.sources import Source

__all__ = ["direction_icons", "direction_values", "patch_icons"]


def direction_icons(net: "NetworkBase", layer: str, directions: np.ndarray | torch.Tensor, steps: int = 128,
                    size: int = 64, seed: int = 0, cossim_power: float = 1.0, lr: float = 0.05,
                    transforms: str = "standard", batch: int = 48, progress: bool = True, param: str = "fourier",
                    decorrelate: bool = True, callback: StageCallback | None = None) -> tuple[np.ndarray, bool]:
    """``(uint8 [n, size, size, 3] icons, interrupted)``: icon ``i`` maximises direction ``i`` of ``layer``.

    Directions are optimised ``batch`` at a time by visualize's one ascent loop
    (:func:`~cnn_widgets.engine.visualize.ascent.ascend`) on a ``Direction`` with one vector per
    picture, the loss summed over the batch so that every picture gets exactly its own direction's
    gradient (one forward and backward per step for the whole batch, stopped at ``layer``); each
    batch draws its initial noise and transforms from a generator seeded with ``seed`` and the batch
    number, so the icons are reproducible. The picture is fed at ``size`` when the model runs at
    that size (a fully convolutional body), else resized to the model's input size. ``param``,
    ``decorrelate`` and ``transforms`` are those of :func:`~cnn_widgets.engine.visualize.visualize`.
    Ctrl-C keeps the pictures reached so far (``interrupted`` is True).
    """
    from tqdm.auto import tqdm

    v_all = torch.as_tensor(np.asarray(directions), dtype=torch.float32)
    n = len(v_all)
    native = size == net.input_size[0] == net.input_size[1] or runs_at(net, size)
    name = net.layer(layer).name
    icons = np.zeros((n, size, size, 3), dtype=np.uint8)
    chain = transform_set(transforms, size)
    interrupted = False
    total = steps * ((n + batch - 1) // batch)
    bar = StageBar(tqdm(total=total, unit="step", desc=f"atlas: icons {layer}", disable=not progress, leave=False),
                   callback, "icon steps", total)
    try:
        for b, first in enumerate(range(0, n, batch)):
            v = v_all[first:first + batch].to(net.device)
            generator = torch.Generator().manual_seed(seed * 1_000_003 + b)
            reached = ascend(net, Direction(name, v, cossim_power), len(v), size, steps, generator=generator, chain=chain,
                             lr=lr, param=param, decorrelate=decorrelate, native=native, exact=True, reduce="sum",
                             bar=bar)
            icons[first:first + len(v)] = pixels_to_uint8(reached.pixels)
            if reached.interrupted:
                interrupted = True
                break
    finally:
        bar.close()
    return icons, interrupted


def patch_icons(net: "NetworkBase", source: "Source", layer: str, image_index: np.ndarray, position: np.ndarray,
                cell: np.ndarray, cells: int, size: int = 64, progress: bool = True,
                callback: StageCallback | None = None) -> np.ndarray:
    """``uint8 [cells, size, size, 3]``: per cell, the mean of its samples' receptive-field patches.

    ``cell[m]`` is the (flat) cell of sample ``m``. A second pass loads each image once and adds
    its patches into per-cell sums (memory: ``cells * size^2 * 3`` floats, whatever the dataset).
    """
    from tqdm.auto import tqdm

    info = net.layer(layer)
    rf = info.receptive_field
    sums = np.zeros((cells, size, size, 3), dtype=np.float64)
    counts = np.zeros(cells, dtype=np.int64)
    order = np.argsort(image_index, kind="stable")
    wanted = np.unique(image_index)
    starts = np.searchsorted(image_index[order], wanted)
    ends = np.searchsorted(image_index[order], wanted, side="right")
    for done, (i, lo, hi) in enumerate(tqdm(list(zip(wanted, starts, ends)), unit="img", desc=f"atlas: patches {layer}",
                                            disable=not progress, leave=False)):
        if callback is not None:
            callback("images cut into patches", done, len(wanted))
        shown = net.display_image(source.image(int(i)))
        for m in order[lo:hi]:
            if rf is None or rf.is_global or not info.is_spatial:
                crop = shown
            else:
                top, left, bottom, right = rf.box(int(position[m, 0]), int(position[m, 1]), image_size=shown.shape[:2])
                crop = shown[top:bottom, left:right]
            if crop.size == 0:
                continue
            resized = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR), dtype=np.float64)
            sums[cell[m]] += resized
            counts[cell[m]] += 1
    return (sums / np.maximum(counts, 1)[:, None, None, None]).round().clip(0, 255).astype(np.uint8)
