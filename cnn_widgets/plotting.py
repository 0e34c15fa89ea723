"""Static matplotlib figures of engine results, for lecture notebooks and papers.

The live widget draws on canvases; these functions give the same pictures as labelled figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .engine.pictures import channels_last_array, magnitude_map, signed_to_rgb  # noqa: F401 - the last two re-exported for notebooks


def plot_predictions(predictions: Sequence, ax=None, title: str | None = None):
    """Horizontal bar chart of ``net.predict`` output."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    labels = [p.label.split(",")[0] for p in predictions][::-1]
    probs = [p.probability for p in predictions][::-1]
    ax.barh(labels, probs, color="#4c72b0")
    ax.set_xlabel("probability")
    ax.set_xlim(0, 1)
    if title:
        ax.set_title(title)
    for y, p in enumerate(probs):
        ax.text(min(p + 0.01, 0.85), y, f"{p:.2f}", va="center", fontsize=8)
    return ax


def plot_heatmap(image: np.ndarray, heat: torch.Tensor | np.ndarray, ax=None, title: str = "", label: str = "", cmap: str = "RdBu_r", alpha: float = 0.6, symmetric: bool = True):
    """A heat map over an image with a labelled colour bar."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    heat = heat.detach().cpu().numpy() if isinstance(heat, torch.Tensor) else np.asarray(heat)
    ax.imshow(image)
    if symmetric:
        vmax = float(np.abs(heat).max()) or 1.0
        shown = ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=-vmax, vmax=vmax)
    else:
        shown = ax.imshow(heat, cmap=cmap, alpha=alpha)
    colorbar = plt.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label(label)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    return ax


def plot_tree(node, follow: Sequence[int] | None = None, thumb: float = 1.9, title: str | None = None):
    """Draw a contribution tree the way "Why is this a cat?" (Cogswell) reads it: one row per level, following one child.

    Row 0 is the root; row ``r + 1`` shows the children of the node followed in row ``r``
    (``follow[r]``, default 0: the best child), framed in orange. Each thumbnail is the node's
    guided-backprop picture with its label and contribution score, so a row reads
    "these parts + ... = the framed node above".
    """
    import matplotlib.pyplot as plt

    rows = [[node]]
    chosen = []
    current = node
    level = 0
    while current.children:
        index = follow[level] if follow is not None and level < len(follow) else 0
        rows.append(current.children)
        chosen.append(index)
        current = current.children[min(index, len(current.children) - 1)]
        level += 1
    cols = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(thumb * cols, thumb * 1.3 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for ax in axes[r]:
            ax.axis("off")
        for c, n in enumerate(row):
            ax = axes[r][c]
            ax.imshow(channels_last_array(n.picture))
            ax.set_title(f"{n.label}\nscore {n.score:.3g}", fontsize=8)
            # row r + 1 holds the children of the node followed in row r: frame that node
            followed = r + 1 < len(rows) and (r == 0 or c == chosen[r - 1])
            if followed:
                ax.axis("on")
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_edgecolor("#ff7f0e")
                    spine.set_linewidth(3)
    if title:
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_size_inches()[1]))
    else:
        fig.tight_layout()
    return fig


def plot_top_images(tops: Sequence, title: str = "", names: Sequence[str] | None = None, size: float = 1.5):
    """Zeiler & Fergus figure-2 style: the top receptive-field patches over their reconstructions.

    ``tops`` is ``scan.top_images(unit)``; ``names`` maps a scan label to a readable name.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(tops), figsize=(size * len(tops), size * 2.3), squeeze=False)
    for col, top in enumerate(tops):
        source = names[top.label] if names is not None and top.label is not None else (top.label if top.label is not None else "")
        axes[0][col].imshow(top.crop)
        axes[0][col].set_title(f"#{top.index} {source}\nmax {top.value:.3g}", fontsize=7)
        if top.reconstruction is not None:
            axes[1][col].imshow(top.reconstruction)
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_ylabel("patch", fontsize=8)
    axes[1][0].set_ylabel("reconstruction", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
