"""Noisy linear imputation, the fill of ROAD (Rong, Leemann, Nguyen, Fiedler, Seidel & Kasneci, "A
Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022).

Deleting pixels to a constant baseline leaks the removed set's shape through its edges, and the
model can read the attribution's ranking off the mask itself. ROAD ("RemOve And Debias") fills each
removed pixel with the weighted mean of its 8 neighbours instead -- weight 1/6 for the 4 edge
neighbours and 1/12 for the 4 diagonal ones, renormalised over the neighbours inside the image --
where a removed neighbour is itself unknown, so the removed pixels of one image solve one sparse
linear system (one right-hand side per channel)::

    (sum_{j in N(i)} w_ij) v_i - sum_{j in N(i) removed} w_ij v_j = sum_{j in N(i) kept} w_ij x_j

and get Gaussian noise of standard deviation ``noise`` (the paper's 0.01, in model-input units) on
top. The system is symmetric positive definite whenever one pixel is kept (every connected set of
removed pixels then touches a kept one); with every pixel removed its solutions are the constant
images, and the one nearest the image -- its per-channel mean -- is used. The equations are those
of the authors' code (github.com/tleemann/road_evaluation) and Quantus's ``noisy_linear_imputation``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["NEIGHBOUR_WEIGHTS", "ROAD_NOISE", "imputation_system", "noisy_linear_imputation", "road_images"]

#: ``(row offset, column offset, weight)`` of the 8 neighbours: edges 1/6, diagonals 1/12 (sum 1).
NEIGHBOUR_WEIGHTS = tuple((dy, dx, 1 / 12 if dy and dx else 1 / 6)
                          for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
#: The paper's noise: standard deviation 0.01 added to every imputed value.
ROAD_NOISE = 0.01


def imputation_system(image: np.ndarray, removed: np.ndarray):
    """The linear system of the removed pixels: ``(A, b, index)`` with ``A`` a sparse ``[k, k]``
    CSC matrix, ``b`` ``[k, C]`` (one column per channel) and ``index`` the ``k`` removed pixels'
    raster indices, in raster order; ``A @ v = b`` gives their values.

    ``image`` is ``[C, H, W]`` and ``removed`` a boolean ``[H, W]`` with at least one pixel kept.
    """
    from scipy import sparse

    c, h, w = image.shape
    index = np.flatnonzero(removed.ravel())
    k = len(index)
    variable = np.full(h * w, -1, dtype=np.int64)
    variable[index] = np.arange(k)
    rows, cols = np.divmod(index, w)
    flat = image.reshape(c, h * w)
    diagonal, b = np.zeros(k), np.zeros((k, c))
    entries_i, entries_j, entries_w = [np.arange(k)], [np.arange(k)], []
    for dy, dx, weight in NEIGHBOUR_WEIGHTS:
        r, q = rows + dy, cols + dx
        inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        own = np.flatnonzero(inside)  # the equations with this neighbour
        neighbour = r[inside] * w + q[inside]
        diagonal[own] += weight  # the weights renormalise over neighbours inside the image
        unknown = variable[neighbour] >= 0
        entries_i.append(own[unknown])
        entries_j.append(variable[neighbour[unknown]])
        entries_w.append(np.full(int(unknown.sum()), -weight))
        b[own[~unknown]] += weight * flat[:, neighbour[~unknown]].T  # each equation meets each offset once
    data = np.concatenate([diagonal, *entries_w])
    a = sparse.csc_matrix((data, (np.concatenate(entries_i), np.concatenate(entries_j))), shape=(k, k))
    return a, b, index


def noisy_linear_imputation(x: torch.Tensor, removed: torch.Tensor, noise: float = ROAD_NOISE,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` ``[C, H, W]`` with the pixels of ``removed`` (boolean ``[H, W]``) replaced by their
    noisy linear imputation (module docstring); the kept pixels are returned unchanged.

    The system is solved in float64 on the CPU (scipy's SuperLU, all channels at once); the noise,
    ``N(0, noise^2)`` per imputed value, is drawn from ``generator`` (the CPU one: the same seed
    gives the same image on any device).
    """
    from scipy.sparse.linalg import spsolve

    c, h, w = x.shape
    mask = removed.detach().cpu().numpy().astype(bool).reshape(h, w)
    k = int(mask.sum())
    if k == 0:
        return x.clone()
    image = x.detach().cpu().double().numpy()
    if k == h * w:  # every constant image solves the system: take the nearest, the channel means
        values = np.repeat(image.reshape(c, -1).mean(axis=1, keepdims=True), k, axis=1)
        index = np.arange(k)
    else:
        a, b, index = imputation_system(image, mask)
        values = np.asarray(spsolve(a, b)).reshape(k, c).T
    imputed = torch.from_numpy(values)
    if noise:
        imputed = imputed + noise * torch.randn((c, k), generator=generator, dtype=torch.float64)
    out = x.detach().clone().reshape(c, h * w)
    out[:, torch.from_numpy(index).to(x.device)] = imputed.to(device=x.device, dtype=x.dtype)
    return out.reshape(c, h, w)


def road_images(x: torch.Tensor, rank: torch.Tensor, counts: Sequence[int], noise: float,
                generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """One imputed image ``[C, H, W]`` per count: the pixels of ``rank < count`` removed (``rank``
    ``[H, W]``: each pixel's position in the removal order). The noise is drawn step after step from
    ``generator``, so the images do not depend on how they are batched."""
    for count in counts:
        yield noisy_linear_imputation(x, rank < count, noise, generator)
