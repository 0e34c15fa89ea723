"""2-D layout of activation vectors, and the grid: binning, counts and cell averages.

Carter et al. (Distill 2019) lay the sampled activations out with UMAP (cosine metric), bin the
plane into a grid and average the activation vectors that fall in each cell. The methods here:

* ``"tsne"`` (default): scikit-learn's t-SNE (van der Maaten & Hinton 2008) with the cosine
  metric and PCA initialisation. scikit-learn is already a dependency, the result is deterministic
  for a seed, and like UMAP it keeps neighbourhoods, which is what makes cells coherent;
* ``"pca"``: the two leading principal axes (exact, instant; a global linear view that tends to
  crowd the centre);
* ``"umap"``: UMAP (McInnes et al. 2018), the paper's choice, when the optional ``umap-learn``
  package is installed (it is not a dependency: it brings numba and llvmlite, about 100 MB and a
  JIT warm-up of tens of seconds on first use, for little gain at the few thousand points an atlas
  over one's own images holds).

The layout is normalised to ``[0, 1]`` on each axis (min-max); point ``(x, y)`` falls in row
``min(floor(y * grid), grid - 1)`` and column ``min(floor(x * grid), grid - 1)``, so every point
lands in exactly one cell.
"""

from __future__ import annotations

import numpy as np

from ..errors import OptionError

__all__ = ["LAYOUTS", "bin_points", "cell_means", "layout"]

LAYOUTS = ("tsne", "pca", "umap")


def _pca(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    # a principal axis is defined up to its sign: make its largest loading positive (deterministic)
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    coords = centred @ (axes * signs[:, None]).T
    if coords.shape[1] < 2:  # one channel: a degenerate second axis
        coords = np.concatenate([coords, np.zeros((len(coords), 2 - coords.shape[1]))], axis=1)
    return coords


def layout(vectors: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """``float32 [M, 2]`` coordinates in ``[0, 1]`` for ``vectors`` ``[M, C]``, deterministic for ``seed``."""
    x = np.asarray(vectors, dtype=np.float64)
    m = len(x)
    if m < 2:
        coords = np.zeros((m, 2))
    elif method == "pca" or m < 5:
        coords = _pca(x)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        # cosine distances are undefined for zero vectors (dead positions of a rectified layer)
        x = x + 1e-12 * (np.linalg.norm(x, axis=1, keepdims=True) == 0)
        perplexity = float(min(30.0, (m - 1) / 3))
        coords = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed,
                      n_jobs=1).fit_transform(x)
    elif method == "umap":
        try:
            import umap
        except ImportError:
            raise OptionError("method='umap' needs the optional package umap-learn (pip install umap-learn); "
                              "method='tsne' (the default) needs nothing more") from None
        coords = umap.UMAP(n_components=2, metric="cosine", random_state=seed,
                           n_neighbors=min(15, m - 1)).fit_transform(x)
    else:  # pragma: no cover - checked by the caller
        raise OptionError(f"method must be one of {LAYOUTS}, got {method!r}")
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((coords - lo) / span).astype(np.float32)


def bin_points(coords: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` ``int64 [M]`` of each point of a ``[0, 1]`` layout on a ``grid x grid`` grid."""
    coords = np.asarray(coords, dtype=np.float64)
    cols = np.clip(np.floor(coords[:, 0] * grid), 0, grid - 1).astype(np.int64)
    rows = np.clip(np.floor(coords[:, 1] * grid), 0, grid - 1).astype(np.int64)
    return rows, cols


def cell_means(vectors: np.ndarray, rows: np.ndarray, cols: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """``counts int64 [grid, grid]`` and ``means float32 [grid, grid, C]`` (zeros in empty cells)."""
    flat = rows * grid + cols
    counts = np.bincount(flat, minlength=grid * grid)
    onehot = np.zeros((grid * grid, len(flat)))
    onehot[flat, np.arange(len(flat))] = 1.0  # sums by one matrix product (np.add.at is slow)
    sums = onehot @ np.asarray(vectors, dtype=np.float64)
    means = sums / np.maximum(counts, 1)[:, None]
    return counts.reshape(grid, grid), means.reshape(grid, grid, -1).astype(np.float32)
