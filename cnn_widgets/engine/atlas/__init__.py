"""Activation atlases (Carter, Armstrong, Schubert, Johnson & Olah, "Exploring Neural Networks with
Activation Atlases", Distill 2019): the space of a layer's activations over a dataset, as a grid.

The parts, each importing only the ones listed before it:

* :mod:`.sample` -- activation vectors at a few random positions per image (bounded memory);
* :mod:`.layout` -- 2-D layout (t-SNE, PCA, UMAP), grid binning and cell averages;
* :mod:`.icons` -- batched direction visualisation and mean receptive-field patches;
* :mod:`.attribution` -- directional derivative of a target along a cell's direction;
* :mod:`.result` -- :class:`Atlas` and :class:`AtlasCell` (image, cells, class filter);
* :mod:`.run` -- the entry point :func:`atlas`.
"""

from ..visualize.objectives import direction_values
from .icons import direction_icons, patch_icons
from .layout import LAYOUTS, bin_points, cell_means, layout
from .result import Atlas, AtlasCell
from .run import atlas
from .sample import Samples, sample_activations

__all__ = ["LAYOUTS", "Atlas", "AtlasCell", "Samples", "atlas", "bin_points", "cell_means", "direction_icons",
           "direction_values", "layout", "patch_icons", "sample_activations"]
