"""The :class:`Atlas`: a grid of cells over the 2-D layout of a layer's sampled activations."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..checks import check_bool, check_int
from ..errors import CnnWidgetsError
from .attribution import directional_derivatives

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase
    from ..scan.sources import Source
    from .sample import Samples

__all__ = ["Atlas", "AtlasCell"]


@dataclass
class AtlasCell:
    """One non-empty cell of an atlas.

    Attributes
    ----------
    row, col
        Place on the grid (row 0 at the top).
    count
        How many sampled activation vectors fell in it.
    direction
        ``float32 [C]``: their mean (the vector the icon visualises).
    top
        Up to ``top_k`` samples of the cell nearest to ``direction`` (Euclidean), nearest first, as
        ``(image index, y, x)``: the image in the source and the position on the layer's map.
    icon
        ``uint8 [size, size, 3]``.
    score
        Set by :meth:`Atlas.class_filter`: the cell's attribution to the target.
    samples
        Indices of the cell's samples (rows of :attr:`Atlas.coordinates`).
    """

    row: int
    col: int
    count: int
    direction: np.ndarray = field(repr=False)
    top: list[tuple[int, int, int]]
    icon: np.ndarray = field(repr=False)
    score: float | None = None
    samples: np.ndarray = field(default=None, repr=False)


@dataclass
class Atlas:
    """An activation atlas of one layer (Carter et al., Distill 2019); made by :func:`~.run.atlas`.

    Attributes
    ----------
    layer, grid
        The layer and the grid side.
    cells
        The non-empty cells in row-major order (best first after :meth:`class_filter`).
    coordinates
        ``float32 [M, 2]``: the layout of the ``M`` sampled vectors, ``(x, y)`` in ``[0, 1]``.
    image_index, positions
        ``int64 [M]`` and ``int64 [M, 2]``: the image and ``(y, x)`` map position of each sample.
    interrupted
        True when Ctrl-C cut the sampling or the icons short (what was reached is kept).
    settings
        The options it was made with.
    """

    net: "NetworkBase" = field(repr=False)
    layer: str
    grid: int
    cells: list[AtlasCell] = field(repr=False)
    coordinates: np.ndarray = field(repr=False)
    image_index: np.ndarray = field(repr=False)
    positions: np.ndarray = field(repr=False)
    settings: dict = field(default_factory=dict, repr=False)
    interrupted: bool = False
    _source: "Source | None" = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def counts(self) -> np.ndarray:
        """``int64 [grid, grid]``: samples per cell (0 for empty or filtered-out cells)."""
        counts = np.zeros((self.grid, self.grid), dtype=np.int64)
        for c in self.cells:
            counts[c.row, c.col] = c.count
        return counts

    def cell(self, row: int, col: int) -> AtlasCell | None:
        """The cell at ``(row, col)``, or ``None`` when it is empty (or filtered out)."""
        return next((c for c in self.cells if c.row == row and c.col == col), None)

    @property
    def image(self) -> Image.Image:
        """The grid of icons, empty cells white (see :meth:`render`)."""
        return self.render()

    def render(self, scale_by_count: bool = False, background: int = 255) -> Image.Image:
        """The grid as one picture; with ``scale_by_count`` each icon's side grows with ``sqrt(count)``."""
        check_bool("scale_by_count", scale_by_count)
        background = check_int("background", background, low=0, high=255)
        size = self.settings.get("size", 64)
        canvas = np.full((self.grid * size, self.grid * size, 3), background, dtype=np.uint8)
        most = max((c.count for c in self.cells), default=1)
        for c in self.cells:
            icon = c.icon
            if scale_by_count:
                side = max(4, round(size * np.sqrt(c.count / most)))
                icon = np.asarray(Image.fromarray(icon).resize((side, side), Image.BILINEAR))
            off = (size - icon.shape[0]) // 2
            top, left = c.row * size + off, c.col * size + off
            canvas[top:top + icon.shape[0], left:left + icon.shape[1]] = icon
        return Image.fromarray(canvas)

    def patches(self, cell: AtlasCell) -> list[np.ndarray]:
        """The receptive-field patches (``uint8 h x w x 3``) of the cell's :attr:`~AtlasCell.top` samples."""
        if self._source is None:
            return []
        info = self.net.layer(self.layer)
        crops = []
        for index, y, x in cell.top:
            shown = self.net.display_image(self._source.image(index))
            rf = info.receptive_field
            if rf is None or rf.is_global or not info.is_spatial:
                crops.append(shown)
                continue
            top, left, bottom, right = rf.box(y, x, image_size=shown.shape[:2])
            crops.append(np.ascontiguousarray(shown[top:bottom, left:right]))
        return crops

    def attributions(self, target, batch_size: int = 16, progress: bool = True) -> np.ndarray:
        """``float64 [len(cells)]``: each cell's attribution to ``target`` (class or later unit).

        The mean over the cell's samples of the exact directional derivative of the target w.r.t.
        the layer's activation at the sample's position along the cell's direction (see
        :mod:`.attribution`). One forward and backward pass over the sampled images per target
        (cached on the atlas).
        """
        resolved = self.net._resolve_target(target)
        key = (type(resolved).__name__, repr(resolved))
        if key not in self._cache:
            if self._source is None:
                raise CnnWidgetsError("this atlas no longer knows its images; build it again to filter by class")
            directions = np.zeros((len(self.image_index), self.cells[0].direction.shape[0]), dtype=np.float64)
            for c in self.cells:
                directions[c.samples] = c.direction
            per_sample = directional_derivatives(
                self.net, self._source, self.layer, resolved, self.image_index, self.positions, directions,
                batch_size=check_int("batch_size", batch_size), progress=check_bool("progress", progress))
            self._cache[key] = per_sample  # a sample's value depends only on its own cell's direction
        per_sample = self._cache[key]
        return np.array([float(per_sample[c.samples].mean()) for c in self.cells])

    def class_filter(self, target, k: int = 12, batch_size: int = 16, progress: bool = True) -> "Atlas":
        """A class activation atlas: the ``k`` cells whose direction most raises ``target``, best first.

        ``target`` is a class index or label (its logit) or a ``cw.Unit`` of a later layer. Each kept
        cell carries its :attr:`~AtlasCell.score` (:meth:`attributions`); ties keep grid order.
        """
        k = check_int("k", k)
        scores = self.attributions(target, batch_size=batch_size, progress=progress)
        order = np.argsort(-scores, kind="stable")[:k]
        kept = [replace(self.cells[i], score=float(scores[i])) for i in order]
        return replace(self, cells=kept, settings={**self.settings, "class_filter": repr(target), "k": k},
                       _cache=dict(self._cache))
