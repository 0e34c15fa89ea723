"""The running state of a scan: per layer, the top-k table, the statistics and the codes.

One layer's output for a batch is reduced by :func:`fold` to ``[B, C]`` summaries (spatial
maxima, their positions, global average pools, zero counts) and merged into a *new* state; the
old one is never mutated, so a state can be shared by a resumed or saved scan and a batch
interrupted half-way leaves the committed state as it was.

Top-k order: value descending, ties broken by the lower image index; a tie of positions inside
one map goes to the first in row-major order. The result is independent of the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import NonFiniteError

__all__ = [
    "LAYER_STATE_FIELDS", "LayerState", "Rows", "State", "empty_layer_state", "flatten", "fold", "fold_statistics",
    "map_width", "merge_layer_states", "merge_top", "needs_positions", "numpy_dtype", "row_statistics",
]


@dataclass
class LayerState:
    """Running state of one layer. Replaced as a whole after each batch (never mutated)."""

    top_values: torch.Tensor  # [C, k] model dtype, -inf where empty
    top_index: torch.Tensor  # [C, k] int64, -1 where empty
    top_y: torch.Tensor  # [C, k] int64 row of the maximum on the map
    top_x: torch.Tensor  # [C, k] int64 column
    code_sum: torch.Tensor  # [C] float64, sum over images of the spatial mean
    max: torch.Tensor  # [C] model dtype
    zeros: torch.Tensor  # [C] int64, positions exactly 0
    firing: torch.Tensor  # [C] int64, images whose spatial max > 0


#: The tensors of a :class:`LayerState`, in field order (the keys of a saved scan).
LAYER_STATE_FIELDS = ("top_values", "top_index", "top_y", "top_x", "code_sum", "max", "zeros", "firing")


@dataclass
class State:
    """The committed state: how many images are covered, and each layer's :class:`LayerState`."""

    count: int
    layers: dict[str, LayerState]
    relevance: dict | None = None  # layer -> relevance_rank.RelevanceTop, for a scan with rank="relevance"


def empty_layer_state(channels: int, k: int, dtype: torch.dtype) -> LayerState:
    return LayerState(
        top_values=torch.full((channels, k), -math.inf, dtype=dtype),
        top_index=torch.full((channels, k), -1, dtype=torch.int64),
        top_y=torch.zeros((channels, k), dtype=torch.int64),
        top_x=torch.zeros((channels, k), dtype=torch.int64),
        code_sum=torch.zeros(channels, dtype=torch.float64),
        max=torch.full((channels,), -math.inf, dtype=dtype),
        zeros=torch.zeros(channels, dtype=torch.int64),
        firing=torch.zeros(channels, dtype=torch.int64),
    )


def numpy_dtype(dtype: torch.dtype):
    """The numpy dtype the codes of a model of ``dtype`` are kept in (float64 stays, the rest float32)."""
    return {torch.float64: np.float64, torch.float16: np.float32, torch.bfloat16: np.float32}.get(dtype, np.float32)


#: Rows a :class:`Rows` starts with at most: a scan of (or a file claiming) 10**9 images allocates as
#: its images arrive, not at once.
FIRST_ROWS = 4096


class Rows:
    """A growable ``[N, ...]`` array for ``capacity`` rows (the most expected); rows past ``count`` are
    scratch (invisible until committed). It starts at :data:`FIRST_ROWS` rows at most and doubles as
    needed, never past ``capacity`` unless more rows are written."""

    def __init__(self, width: int | None, dtype, capacity: int):
        self.width, self.dtype, self.capacity = width, dtype, max(capacity, 1)
        self.data = self._empty(min(self.capacity, FIRST_ROWS))

    def _empty(self, rows: int) -> np.ndarray:
        shape = (rows,) if self.width is None else (rows, self.width)
        return np.empty(shape, dtype=self.dtype) if self.dtype is not object else np.full(shape, None, dtype=object)

    def write(self, start: int, rows) -> None:
        end = start + len(rows)
        if end > len(self.data):
            double = 2 * len(self.data)  # capped at the capacity, unless the rows outgrow it
            new = self._empty(max(end, min(double, self.capacity) if end <= self.capacity else double))
            new[: len(self.data)] = self.data
            self.data = new
        if self.dtype is object:
            for j, r in enumerate(rows):
                self.data[start + j] = r
        else:
            self.data[start:end] = rows


def _stable_descending(values: torch.Tensor) -> torch.Tensor:
    """Per row, the order of ``values`` from largest to smallest, equal values in their original order.

    numpy's stable argsort of the negated rows is the same order as torch's stable descending sort
    (no NaN reaches here; ``-0.0`` and ``0.0`` are equal to both) and about 1.5x faster on the CPU
    for the many short rows of a wide layer (4,096 rows of 41 candidates: 2.8 ms vs 4.0 ms).
    """
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.argsort(np.negative(values.numpy()), axis=1, kind="stable"))
    return torch.sort(values, dim=1, descending=True, stable=True).indices


def merge_top(old: LayerState, channel, image, values, ys, xs, start: int, k: int):
    """New ``(top_values, top_index, top_y, top_x)``: the old top-k of each channel merged with this
    batch's entering candidates (``channel``, ``image`` (in the batch), ``values``, ``ys``, ``xs``:
    one entry each, by channel, images ascending). Only channels with a candidate are re-sorted,
    each with its own candidates alone (padded to the most any channel has)."""
    if len(channel) == 0:
        return old.top_values, old.top_index, old.top_y, old.top_x
    rows, counts = torch.unique_consecutive(channel, return_counts=True)
    every = len(rows) == old.top_values.shape[0]
    pick = (lambda t: t) if every else (lambda t: t[rows])
    row = torch.repeat_interleave(torch.arange(len(rows)), counts)
    slot = torch.arange(len(channel)) - (torch.cumsum(counts, 0) - counts)[row]
    width = int(counts.max())

    def padded(fill, entries, dtype):
        table = torch.full((len(rows), width), fill, dtype=dtype)
        table[row, slot] = entries
        return table

    # A padding entry (-inf) sorts after every kept entry, so it never reaches the first k.
    cand_v = torch.cat([pick(old.top_values), padded(-math.inf, values, old.top_values.dtype)], dim=1)
    cand_i = torch.cat([pick(old.top_index), padded(-1, image + start, torch.int64)], dim=1)
    cand_y = torch.cat([pick(old.top_y), padded(0, ys, torch.int64)], dim=1)
    cand_x = torch.cat([pick(old.top_x), padded(0, xs, torch.int64)], dim=1)
    # Stable descending sort: equal values keep candidate order, i.e. the kept entries (all from
    # earlier images, themselves in index order among equals) first, then this batch in index
    # order => ties go to the lower image index, whatever the batch size.
    order = _stable_descending(cand_v)[:, :k]
    merged = [cand.gather(1, order) for cand in (cand_v, cand_i, cand_y, cand_x)]
    if every:
        return tuple(merged)
    result = []
    for previous, new in zip((old.top_values, old.top_index, old.top_y, old.top_x), merged):
        full = previous.clone()  # states are never mutated: a resumed or saved scan may share them
        full[rows] = new
        result.append(full)
    return tuple(result)


CHUNK_ELEMENTS = 1 << 18  # rows of a layer's output reduced together: 1 MB of float32 (and 1 MB of scratch) in cache


def row_statistics(flat: torch.Tensor, positions: bool):
    """Per ``[B, C]`` row of ``flat`` ``[B, C, P]``: maximum, mean, non-zero count and (if asked) the
    first position of the maximum.

    The rows are taken a cache-sized chunk at a time and every reduction reads the chunk while it is
    in cache, instead of streaming the whole output once per reduction (2-3x less time on a CPU).
    Each row is reduced by the same kernel in the same order either way, so the numbers are the
    same bit for bit as whole-tensor ``amax`` / ``mean`` / ``argmax`` (``torch.max`` gives the first
    maximum in row-major order, like ``argmax``).
    """
    batch, channels, size = flat.shape
    if size == 1:  # a vector layer: its one value is the maximum and the mean, at position 0
        values = flat[:, :, 0]
        return values, values, values.ne(0).float(), (torch.zeros_like(values, dtype=torch.int64) if positions else None)
    values = torch.empty(batch, channels, dtype=flat.dtype, device=flat.device)
    means = torch.empty_like(values)
    nonzero = torch.empty(batch, channels, dtype=torch.float32, device=flat.device)
    where = torch.empty(batch, channels, dtype=torch.int64, device=flat.device) if positions else None
    # chunks of contiguous rows: of the whole batch, or of one image for a slice of the channels
    if flat.is_contiguous():
        groups = [(flat.view(batch * channels, size), values.view(-1), means.view(-1), nonzero.view(-1),
                   where.view(-1) if positions else None)]
    else:
        groups = [(flat[b], values[b], means[b], nonzero[b], where[b] if positions else None) for b in range(batch)]
    for rows, value, mean, count, first in groups:
        step = max(1, CHUNK_ELEMENTS // max(size, 1)) if flat.device.type == "cpu" else len(rows)
        scratch = torch.empty(min(step, len(rows)), size, dtype=torch.float32, device=flat.device)
        for i in range(0, len(rows), step):
            chunk, part = rows[i : i + step], slice(i, i + step)
            if positions:
                torch.max(chunk, dim=1, out=(value[part], first[part]))
            else:
                torch.amax(chunk, dim=1, out=value[part])
            torch.mean(chunk, dim=1, out=mean[part])
            # 1.0 where non-zero, summed in float32, counts the non-zeros exactly (a map has far fewer
            # than 2**24 positions; float16 would stop at 2048) and is several times faster than
            # summing a bool tensor; written into one scratch buffer, not a new one per chunk.
            ones = scratch[: len(chunk)]
            torch.ne(chunk, 0, out=ones)
            torch.sum(ones, dim=1, out=count[part])
    return values, means, nonzero, where


def fold(name: str, out: torch.Tensor, start: int, old: LayerState, k: int) -> tuple[LayerState, np.ndarray]:
    """One layer's output for images ``start ..`` folded into a new state, and the batch's codes ``[B, C]``.

    For channel ``c`` and image ``i`` the top-k ranks ``m_i = max_{y,x} h_c(image_i)[y, x]`` with
    its position; the code is the global average pool ``mean_{y,x} h_c(image_i)[y, x]``.
    :func:`row_statistics` then :func:`fold_statistics` (a scan may reduce the rows elsewhere).
    """
    flat = flatten(out)
    return fold_statistics(name, flat, row_statistics(flat, needs_positions(old)), start, old, k, map_width(out))


def flatten(out: torch.Tensor) -> torch.Tensor:
    """A layer's output as ``[B, C, P]`` (a vector layer: ``P = 1``), on the model's device."""
    return out.detach().reshape(out.shape[0], out.shape[1], -1)


def map_width(out: torch.Tensor) -> int:
    """The width of a layer's map (its last dimension; 1 for a vector layer): positions are ``y * width + x``."""
    return out.shape[-1] if out.dim() >= 3 else 1


def needs_positions(old: LayerState) -> bool:
    """While a channel's table is not full every image enters it: find every maximum's position in
    the same pass as the maxima. Later only the (image, channel) pairs that beat the channel's k-th
    value (an equal value loses to the earlier image) need theirs."""
    return bool(torch.isinf(old.top_values[:, -1]).any())


def fold_statistics(name: str, flat: torch.Tensor, stats, start: int, old: LayerState, k: int,
                    width: int) -> tuple[LayerState, np.ndarray]:
    """:func:`fold` given ``stats``, the :func:`row_statistics` of ``flat`` (with positions if
    :func:`needs_positions`); ``width`` is the map's width (its last dimension)."""
    batch = flat.shape[0]
    values, codes, nonzero, positions = stats
    # the running state lives on the CPU; only [B, C] summaries leave the device
    values, codes = values.cpu(), codes.cpu()
    nonzero = nonzero.sum(dim=0, dtype=torch.float64).to(torch.int64).cpu()
    channel_max = values.amax(dim=0)  # NaN propagates to it, like +inf
    if not (torch.isfinite(channel_max).all() and math.isfinite(values.amin())):
        raise NonFiniteError(
            f"layer {name!r} produced NaN or infinite values on images {start}..{start + batch - 1}; "
            "check the images and that the preprocessing matches the model"
        )
    values = values.to(old.top_values.dtype)
    channel, image = (values > old.top_values[:, -1][None, :]).T.nonzero().unbind(1)  # entering, by channel
    if positions is not None:
        where = positions.cpu()[image, channel]
    else:
        where = flat[image.to(flat.device), channel.to(flat.device)].max(dim=1).indices.cpu()
    top = merge_top(old, channel, image, values[image, channel], where // width, where % width, start, k)
    new = LayerState(
        *top,
        code_sum=old.code_sum + codes.sum(dim=0, dtype=torch.float64),
        max=torch.maximum(old.max, channel_max.to(old.max.dtype)),
        zeros=old.zeros + (flat.shape[0] * flat.shape[2] - nonzero),
        firing=old.firing + (values > 0).sum(dim=0),
    )
    return new, codes.to(torch.float64 if codes.dtype == torch.float64 else torch.float32).numpy()


def merge_layer_states(old: LayerState, part: LayerState, k: int) -> LayerState:
    """``old`` (images ``0 .. s - 1``) followed by ``part``, the state of the next images alone.

    ``part`` is what :func:`fold` makes of a batch from an empty state (a distributed scan's
    worker sends it). Folded in image order, the result equals folding the batch into ``old``
    directly, bit for bit: the top-k of the union is the top-k of the two top-k lists (a stable
    sort keeps ``old``'s lower indices first among equal values), the counts and maxima are exact,
    and ``code_sum`` gets the batch's float64 sum added in the same order as a local scan.
    """
    cand = [torch.cat([a, b], dim=1) for a, b in zip((old.top_values, old.top_index, old.top_y, old.top_x),
                                                       (part.top_values, part.top_index, part.top_y, part.top_x))]
    order = torch.sort(cand[0], dim=1, descending=True, stable=True).indices[:, :k]
    return LayerState(
        *(c.gather(1, order) for c in cand),
        code_sum=old.code_sum + part.code_sum,
        max=torch.maximum(old.max, part.max),
        zeros=old.zeros + part.zeros,
        firing=old.firing + part.firing,
    )
