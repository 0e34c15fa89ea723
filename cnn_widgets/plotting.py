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


# ------------------------------------------------------------------ the Explorer's panels as figures, from the engine
# The same pictures, captions and layout as ``explorer.save_figure`` (export/figures.py), computed
# here from a network and an image: for papers and for slides made without a widget. Each returns a
# matplotlib Figure of exactly ``size * scale`` pixels and, with ``path``, saves it (PNG, SVG, PDF).


def _figure(block, path, scale: int):
    from .engine.checks import check_int
    from .export.sheet import render, save

    scale = check_int("scale", scale, 1, 8)
    if path is not None:
        save(block, path, scale)
    return render(block, scale)


def _target(net, image, target):
    return net.top_class(image) if target is None else target


def _explorer_default(name: str):
    """The value an Explorer starts with for setting ``name`` (its trait's default): one place for both."""
    from .widgets.explorer import Explorer

    return Explorer.class_traits()[name].default_value


def predictions_figure(net, image, k: int | None = None, path=None, scale: int = 2):
    """The image and its top-``k`` classes as bars (the Explorer's first panel; ``k`` defaults to its count)."""
    from .export.figures import predictions_block
    from .widgets.panels.predictions import TOP_K

    k = TOP_K if k is None else k
    preds = [{"label": p.label, "probability": p.probability, "index": p.index} for p in net.predict(image, k=k)]
    return _figure(predictions_block({"image_data": net.display_image(image), "predictions": preds}), path, scale)


def saliency_figure(net, image, target=None, method: str | None = None, opacity: float | None = None, path=None, scale: int = 2):
    """``net.saliency`` of ``target`` (default: the top class) over the image, as the Explorer shows it.

    ``method`` and ``opacity`` default to the Explorer's own starting values.
    """
    from .engine.checks import check_float
    from .engine.saliency import METHODS
    from .export.figures import saliency_block
    from .widgets.panels.base import target_text
    from .widgets.panels.saliency import method_options, saliency_display

    method = _explorer_default("method") if method is None else method
    opacity = check_float("opacity", _explorer_default("opacity") if opacity is None else opacity, 0.0, 1.0)
    target = _target(net, image, target)
    attribution = net.saliency(image, target, method=method)
    state = {"image_data": net.display_image(image), "opacity": opacity, "choices": {"options": {"method": method_options()}},
             "saliency": saliency_display(attribution, METHODS[method].output),
             "saliency_info": {"method": method, "target": target_text(net, target)}}
    return _figure(saliency_block(state), path, scale)


def occlusion_figure(net, image, target=None, window: int | None = None, stride: int | None = None, fill: str | None = None,
                     path=None, scale: int = 2):
    """``net.occlusion`` of ``target`` (default: the top class) over the image, as the Explorer shows it.

    ``window`` and ``stride`` default to what an Explorer on ``net`` starts with, which follows the
    model's input size (``widgets/sizes.occlusion_defaults``: 48 and 24 pixels on a 224-pixel model,
    7 and 4 on a 32-pixel one); a ``window`` given alone keeps that stride, at most the window.
    ``fill`` defaults to the Explorer's.
    """
    from .export.figures import occlusion_block
    from .widgets.panels.base import target_text
    from .widgets.panels.occlusion import occlusion_display
    from .widgets.sizes import occlusion_defaults

    defaults = occlusion_defaults(net.input_size)
    if stride is None:
        stride = defaults["stride"] if window is None else max(1, min(defaults["stride"], int(window)))
    window = defaults["window"] if window is None else window
    fill = _explorer_default("fill") if fill is None else fill
    target = _target(net, image, target)
    heat = net.occlusion(image, target, window=window, stride=stride, fill=fill, progress=False)
    shown, extent = occlusion_display(torch.as_tensor(heat))
    state = {"image_data": net.display_image(image), "occlusion": shown,
             "occlusion_info": {"window": window, "stride": stride, "fill": fill, "extent": extent, "target": target_text(net, target)}}
    return _figure(occlusion_block(state), path, scale)
