"""The entry point :func:`atlas`: sample, lay out, bin, average, render."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from ..checks import check_bool, check_choice, check_float, check_int
from ..errors import OptionError
from ..scan.sources import as_source
from .icons import direction_icons, patch_icons
from .layout import LAYOUTS, bin_points, cell_means, layout
from .result import Atlas, AtlasCell
from .sample import sample_activations
from .stages import StageCallback

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["atlas"]


def atlas(net: "NetworkBase", images, layer: str, grid: int = 12, positions: int = 4, method: str = "tsne",
          visualize: bool = True, steps: int = 128, size: int = 64, seed: int = 0, progress: bool = True,
          cossim_power: float = 1.0, top_k: int = 9, batch_size: int = 16, icon_batch: int = 48,
          callback: StageCallback | None = None) -> Atlas:
    """An activation atlas of ``layer`` over ``images`` (Carter, Armstrong, Schubert, Johnson & Olah 2019).

    1. ``positions`` random positions of the layer's map per image give ``M`` activation vectors
       (one forward pass, stopped at the layer; only those vectors are kept);
    2. they are laid out in 2-D (``method``: ``"tsne"``, ``"pca"`` or ``"umap"``, see
       :mod:`.layout`) and binned into a ``grid x grid`` grid;
    3. each non-empty cell's vectors are averaged: its direction ``d``;
    4. each cell gets an icon: with ``visualize``, feature visualisation of ``d`` (Lucid's direction
       objective ``<h, d> cos(h, d)^p`` averaged over positions, ``steps`` Adam steps on a
       ``size``-pixel Fourier-parametrised image, all cells batched); without, the mean of the
       receptive-field patches of the cell's samples (fast, no optimisation).

    Parameters
    ----------
    images
        What ``net.scan`` accepts: a Dataset, a DataLoader (``shuffle=False``), a folder, a list of
        images; or a ``Scan`` (its images are used).
    layer
        A layer name (``net.layers``); spatial layers give ``positions`` vectors per image, a
        non-spatial one (a pooled code) one.
    seed
        Makes the sample, the layout and the icons reproducible.
    cossim_power
        ``p`` in the direction objective (0: the plain projection ``<h, d>``).
    top_k
        Samples listed per cell in :attr:`AtlasCell.top`.
    callback
        ``callback(stage, done, total)`` after each piece of work (:mod:`.stages`); an exception it
        raises stops the build (the Explorer's Cancel).

    Ctrl-C during the sampling keeps the images covered so far, during the icons the pictures
    reached so far (``atlas.interrupted``). The model is left exactly as it was.
    """
    grid = check_int("grid", grid, high=64)
    positions = check_int("positions", positions)
    method = check_choice("method", method, LAYOUTS)
    visualize = check_bool("visualize", visualize)
    steps = check_int("steps", steps, low=0)
    size = check_int("size", size, low=8, high=512)
    seed = check_int("seed", seed, low=0)
    progress = check_bool("progress", progress)
    cossim_power = check_float("cossim_power", cossim_power, low=0)
    top_k = check_int("top_k", top_k, low=0)
    batch_size, icon_batch = check_int("batch_size", batch_size), check_int("icon_batch", icon_batch)
    if callback is not None and not callable(callback):
        raise OptionError(f"callback must be a function callback(stage, done, total), got {callback!r}")
    name = net.layer(layer).name
    if type(images).__name__ == "Scan" and hasattr(images, "_source"):
        if images._source is None:
            raise OptionError("this scan no longer knows its images; pass the images: net.atlas(images, layer)")
        images = images._source
    source = as_source(images)

    samples = sample_activations(net, source, name, positions, seed, batch_size, progress, callback)
    if samples.interrupted:
        warnings.warn(f"atlas: sampling interrupted after {samples.images} images; the atlas uses those",
                      stacklevel=2)
    coords = layout(samples.vectors, method, seed)
    rows, cols = bin_points(coords, grid)
    counts, means = cell_means(samples.vectors, rows, cols, grid)
    flat = rows * grid + cols
    filled = np.flatnonzero(counts.ravel())
    directions = means.reshape(grid * grid, -1)[filled]

    interrupted = samples.interrupted
    if visualize:
        icons, stopped = direction_icons(net, name, directions, steps=steps, size=size, seed=seed,
                                         cossim_power=cossim_power, batch=icon_batch, progress=progress,
                                         callback=callback)
        interrupted = interrupted or stopped
    else:
        icons = patch_icons(net, source, name, samples.image_index, samples.position, flat, grid * grid,
                            size=size, progress=progress, callback=callback)[filled]

    cells = []
    for i, f in enumerate(filled):
        members = np.flatnonzero(flat == f)
        distance = np.linalg.norm(samples.vectors[members] - directions[i], axis=1)
        nearest = members[np.argsort(distance, kind="stable")[:top_k]]
        top = [(int(samples.image_index[m]), int(samples.position[m, 0]), int(samples.position[m, 1])) for m in nearest]
        cells.append(AtlasCell(int(f // grid), int(f % grid), int(counts.ravel()[f]), directions[i], top, icons[i],
                               samples=members))
    settings = dict(grid=grid, positions=positions, method=method, visualize=visualize, steps=steps, size=size,
                    seed=seed, cossim_power=cossim_power, images=samples.images, samples=len(samples.vectors),
                    map_size=samples.map_size)
    return Atlas(net, name, grid, cells, coords, samples.image_index, samples.position, settings, interrupted, source)
