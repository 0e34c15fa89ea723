"""The :class:`Scan` result and its queries: top images, codes, embeddings, statistics, dead channels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..checks import check_choice, check_float, check_int
from ..errors import LayerNotFoundError, TargetError
from ..targets import Unit
from .embedding import embed
from .relevance_rank import RANKS, TOP_FIELDS, RelevanceRanking, RelevanceTop
from .errors import ScanError
from .sources import Source, as_source, plain_label, source_from_record
from .state import LayerState, Rows, State, empty_layer_state, numpy_dtype
from .storage import ScanFile, check_network, read_scan_file, write_scan_file
from .top_images import TopImage, collect_top_images

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["ChannelStats", "Scan"]


@dataclass
class ChannelStats:
    """Per-channel statistics of one layer over the scanned images (arrays of length C)."""

    mean: np.ndarray
    max: np.ndarray
    fraction_zero: np.ndarray
    fraction_images_firing: np.ndarray
    images: int


def _unit_of(unit) -> tuple[str, int]:
    if isinstance(unit, Unit):
        return unit.layer, unit.channel
    if isinstance(unit, (tuple, list)) and len(unit) == 2:
        return str(unit[0]), int(unit[1])
    raise TargetError(f"a unit is cw.Unit(layer, channel) or a (layer, channel) pair, got {unit!r}")


class Scan:
    """The result of :func:`~cnn_widgets.engine.scan.scan`: top-k images, statistics and codes per layer.

    Attributes
    ----------
    net
        The scanned network.
    layers
        Names of the scanned layers.
    k
        Images kept per channel.
    count
        Number of images covered (the first ``count`` of the source).
    total
        Number of images in the source.
    complete
        ``count == total``.
    interrupted
        The last pass was stopped by Ctrl-C (resume it with ``net.scan(images, resume=scan)``).
    labels
        ``np.ndarray`` of the covered images' labels, or ``None`` when the source has none.
    class_names
        Names of the label values when the source has them (``dataset.classes``, sub-folders).
    """

    def __init__(self, net: "NetworkBase", layers: Sequence[str], k: int, source: Source | None, total: int,
                 batch_size: int, fingerprint: str, ranking: RelevanceRanking | None = None):
        self.net = net
        self.layers = list(layers)
        self.k = int(k)
        self.total = int(total)
        self.batch_size = int(batch_size)
        self.fingerprint = fingerprint
        self.interrupted = False
        self._source = source
        self._source_record = source.record() if source is not None else {"kind": "unsaved", "length": total}
        self.class_names = source.class_names if source is not None else None
        self._shapes = {name: tuple(net.layer(name).shape) for name in self.layers}
        self._codes = {name: Rows(self._shapes[name][0], numpy_dtype(net.dtype), total) for name in self.layers}
        self._labels = Rows(None, object, total)
        self.ranking = ranking  # the class and composite of the relevance ranking (rank="relevance"), else None
        self._state = State(0, {name: empty_layer_state(self._shapes[name][0], self.k, net.dtype)
                                for name in self.layers},
                            None if ranking is None else {name: RelevanceTop.empty(self._shapes[name][0], self.k, net.dtype)
                                                          for name in self.layers})

    # ---------------------------------------------------------------- bookkeeping
    @property
    def count(self) -> int:
        return self._state.count

    @property
    def complete(self) -> bool:
        return self.count >= self.total

    def __repr__(self) -> str:
        status = "complete" if self.complete else ("interrupted" if self.interrupted else "partial")
        return f"Scan({self.net.name}, {len(self.layers)} layers, k={self.k}, {self.count}/{self.total} images, {status})"

    def _commit(self, start: int, layers: dict[str, tuple[LayerState, np.ndarray]], labels: list,
                relevance: dict[str, RelevanceTop] | None = None) -> None:
        """Make images ``start .. start + len(labels) - 1`` part of the scan, all layers at once.

        Codes and labels go to rows past ``count`` first (invisible); the state assignment that
        makes them visible is one statement, so Ctrl-C leaves either the old or the new scan.
        """
        for name, (_, codes) in layers.items():
            self._codes[name].write(start, codes)
        self._labels.write(start, labels)
        self._state = State(start + len(labels), {name: state for name, (state, _) in layers.items()},
                            relevance if relevance is not None else self._state.relevance)

    def _check_layer(self, layer: str) -> str:
        if layer in self._shapes:
            return layer
        info = self.net.layer(layer)  # raises LayerNotFoundError with suggestions for unknown names
        raise LayerNotFoundError(
            f"layer {info.name!r} was not scanned; this scan covers {', '.join(repr(n) for n in self.layers[:8])}"
            + (" ..." if len(self.layers) > 8 else "") + f" (scan again with layers=[{info.name!r}])"
        )

    def _check_unit(self, unit) -> tuple[str, int]:
        layer, channel = _unit_of(unit)
        layer = self._check_layer(layer)
        c = self._shapes[layer][0]
        if not 0 <= channel < c:
            raise TargetError(f"channel {channel} is out of range for layer {layer!r}, which has {c} channels (0..{c - 1})")
        return layer, channel

    # ---------------------------------------------------------------- queries
    def top(self, layer: str, by: str = "activation") -> dict[str, np.ndarray]:
        """Raw top-k table of a layer: ``values``, ``indices``, ``positions`` (``[C, k]``; ``[C, k, 2]``).

        ``by="relevance"`` (a scan made with ``rank="relevance"``): ranked by each channel's relevance
        for the scan's target class, ``values`` that relevance, ``positions`` where it peaks.
        """
        layer = self._check_layer(layer)
        st = self._relevance_table(layer) if check_choice("by", by, RANKS) == "relevance" else self._state.layers[layer]
        kept = min(self.k, self.count)
        values = st.top_values[:, :kept]
        return {
            "values": values.to(torch.float64 if values.dtype == torch.float64 else torch.float32).numpy().copy(),
            "indices": st.top_index[:, :kept].numpy().copy(),
            "positions": np.stack([st.top_y[:, :kept].numpy(), st.top_x[:, :kept].numpy()], axis=-1),
        }

    def _relevance_table(self, layer: str) -> RelevanceTop:
        if self.ranking is None:
            raise ScanError("this scan ranked images by activation only; scan again with rank='relevance', "
                            "target=<class> to rank them by relevance")
        return self._state.relevance[layer]

    def top_images(self, unit, method: str | None = "deconvnet", k: int | None = None,
                   by: str = "activation") -> list[TopImage]:
        """The unit's top images, best first, with receptive-field crops and reconstructions.

        Parameters
        ----------
        unit
            ``cw.Unit(layer, channel)`` or ``(layer, channel)``.
        method
            ``"deconvnet"`` (Zeiler & Fergus), ``"guided_backprop"`` (Springenberg et al.),
            ``"gradient"``, or ``None`` for no reconstruction (faster: no backward pass).
        k
            How many (at most the scan's ``k``; ``None``: the scan's ``k``).
        by
            ``"activation"`` (most activating, Zeiler & Fergus) or ``"relevance"`` (most relevant for
            the scan's target class, CRP's relevance maximisation; needs ``rank="relevance"``):
            ``value`` is then the channel's relevance and ``position`` where it peaks.

        The images are loaded again from the source (``dataset[i]``, the file, ``images[i]``).
        """
        layer, channel = self._check_unit(unit)
        table = self.top(layer, by)
        n = min(self.k if k is None else check_int("k", k), table["indices"].shape[1])
        if n and self._source is None:
            raise ScanError(
                "this scan was loaded without its images (they were not files or a cnn_widgets dataset); "
                "pass them again: Scan.load(path, net, images=...)"
            )
        labels = self._labels.data if self.labels is not None else None
        return collect_top_images(self.net, self._source, table, labels, layer, channel, n, method)

    def image(self, index: int):
        """Image ``index`` of the scanned dataset, loaded again from its source (PIL image or tensor)."""
        if self._source is None:
            raise ScanError("this scan was loaded without its images; pass them again: Scan.load(path, net, images=...)")
        if not 0 <= index < self.count:
            raise ScanError(f"image index {index} is out of range; this scan covers {self.count} images")
        return self._source.image(index)

    @property
    def labels(self) -> np.ndarray | None:
        labels = self._labels.data[: self.count]
        if self.count == 0 or all(v is None for v in labels):
            return None
        try:
            return np.array(list(labels))
        except Exception:  # ragged labels
            return labels.copy()

    def codes(self, layer: str) -> np.ndarray:
        """Global-average-pooled code of each covered image: ``[count, C]`` (a copy)."""
        layer = self._check_layer(layer)
        return self._codes[layer].data[: self.count].copy()

    def embedding(self, layer: str, method: str = "pca", seed: int = 0, **options) -> np.ndarray:
        """2-D coordinates ``[N, 2]`` of the images' codes at ``layer``, one row per covered image.

        ``"pca"``: projection of the centred codes ``X - mean`` on the first two right singular
        vectors of their SVD (sign fixed so the largest loading of each axis is positive).
        ``"tsne"``: scikit-learn's t-SNE (van der Maaten & Hinton, "Visualizing Data using t-SNE",
        2008) with PCA initialisation and ``random_state=seed``; codes wider than 50 are first
        reduced to 50 PCA dimensions, and the perplexity defaults to ``min(30, (N - 1) / 3)``.
        Extra ``options`` go to ``TSNE``.
        """
        return embed(self.codes(layer), method, seed, **options)

    def stats(self, layer: str) -> ChannelStats:
        """Per-channel mean, max, fraction of positions exactly zero and fraction of images firing."""
        layer = self._check_layer(layer)
        st = self._state.layers[layer]
        n = max(self.count, 1)
        shape = self._shapes[layer]
        positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return ChannelStats(
            mean=(st.code_sum / n).numpy(),
            max=st.max.double().numpy(),
            fraction_zero=(st.zeros.double() / (n * positions)).numpy(),
            fraction_images_firing=(st.firing.double() / n).numpy(),
            images=self.count,
        )

    def dead_channels(self, layer: str, threshold: float = 0.01) -> list[int]:
        """Channels that (nearly) never fire: positive on at most ``threshold`` of the images.

        A channel fires on an image when its largest value there is ``> 0``; with the default
        ``threshold=0.01`` a channel is dead when it is zero (or negative) everywhere on at least
        99% of the scanned images. ``threshold=0`` asks for channels that never fired at all
        (Karpathy's cs231n notes, "Visualizing what ConvNets learn": dead filters).
        """
        threshold = check_float("threshold", threshold, 0.0, 1.0)
        if self.count == 0:
            raise ScanError("the scan covers no image yet")
        frac = self.stats(layer).fraction_images_firing
        return [int(c) for c in np.flatnonzero(frac <= threshold)]

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the scan to ``path`` (``torch.save`` of plain data with checksums; read back with
        ``weights_only=True``). Atomic: a write that fails (a full disk, a read-only folder) raises
        :class:`ScanError` with the reason and leaves the file that was there, if any, as it was."""
        state = self._state  # one snapshot: a scan running in another thread cannot tear it
        write_scan_file(path, ScanFile(
            net_name=self.net.name, fingerprint=self.fingerprint, layers=self.layers, shapes=self._shapes,
            k=self.k, count=state.count, total=self.total, batch_size=self.batch_size,
            interrupted=self.interrupted, source=self._source_record, class_names=self.class_names,
            labels=[plain_label(v) for v in self._labels.data[: state.count]],
            states=state.layers,
            codes={name: self._codes[name].data[: state.count] for name in state.layers},
            ranking=None if self.ranking is None else vars(self.ranking),
            relevance=None if state.relevance is None else {
                name: {f: getattr(top, f) for f in TOP_FIELDS} for name, top in state.relevance.items()},
        ))

    @classmethod
    def load(cls, path: str | os.PathLike, net: "NetworkBase", images=None) -> "Scan":
        """Read a scan written by :meth:`save` for the same network.

        The images are found again from the saved file paths or dataset recipe (only the package's
        own datasets, :data:`cnn_widgets.engine.datasets.DATASETS`, are re-created: a file cannot
        run code); for other sources pass the same ``images`` as for the scan (needed by
        :meth:`top_images` and to resume).
        """
        saved = read_scan_file(path)
        check_network(saved, net, path)
        if images is not None:
            source = as_source(images)
        else:
            source = source_from_record(saved.source, f"the scan file {str(path)!r}")
        if source is not None and len(source) != saved.total:
            raise ScanError(f"the images given have {len(source)} items; the scan was made on {saved.total}")
        ranking = None if saved.ranking is None else RelevanceRanking(**saved.ranking)
        result = cls(net, saved.layers, saved.k, source, saved.total, saved.batch_size, saved.fingerprint, ranking)
        if images is None:
            result._source_record = saved.source
        result.class_names = saved.class_names or result.class_names
        for name, codes in saved.codes.items():
            result._codes[name].write(0, codes)
        result._labels.write(0, saved.labels)
        result._state = State(saved.count, dict(saved.states), None if saved.relevance is None else {
            name: RelevanceTop(**tables) for name, tables in saved.relevance.items()})
        result.interrupted = saved.interrupted
        return result
