"""2-D maps of the images' codes: PCA, and t-SNE as in Karpathy's "t-SNE visualization of CNN codes"."""

from __future__ import annotations

import numpy as np

from ..checks import check_choice, check_int
from .errors import ScanError

__all__ = ["EMBEDDINGS", "embed", "pca"]

#: Methods of :meth:`Scan.embedding`.
EMBEDDINGS = ("pca", "tsne")


def pca(x: np.ndarray, components: int) -> np.ndarray:
    """Projection of the centred rows on the first right singular vectors, each signed so its largest loading is positive."""
    centred = x - x.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:components]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return centred @ (vt * signs[:, None]).T


def embed(codes: np.ndarray, method: str = "pca", seed: int = 0, **options) -> np.ndarray:
    """``[N, 2]`` coordinates of the rows of ``codes`` (see :meth:`Scan.embedding`)."""
    check_choice("method", method, EMBEDDINGS)
    seed = check_int("seed", seed, low=0)
    x = codes.astype(np.float64)
    if len(x) < 2:
        raise ScanError(f"an embedding needs at least 2 scanned images, this scan covers {len(x)}")
    if method == "pca":
        return pca(x, 2)
    from sklearn.manifold import TSNE  # scikit-learn is imported only when t-SNE is asked for

    if len(x) < 5:
        raise ScanError(f"t-SNE needs at least 5 images, this scan covers {len(x)}; use method='pca'")
    if x.shape[1] > 50:
        x = pca(x, min(50, len(x)))
    options.setdefault("perplexity", min(30.0, (len(x) - 1) / 3.0))
    options.setdefault("init", "pca")
    return TSNE(n_components=2, random_state=seed, **options).fit_transform(x)
