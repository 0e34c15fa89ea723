"""One batch of a scan: a forward pass that folds every scanned layer into its running state.

Shared by the local scan (:mod:`.run`) and the distributed one (:mod:`.ray_backend`), whose
workers fold into empty states and send the partial result to the driver.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

from ..hooks import StopForward, on_outputs, tensor_version
from ..threads import set_own_threads
from .errors import ScanError
from .state import flatten, fold, fold_statistics, map_width, needs_positions, row_statistics

#: Outputs with at least this many elements have their rows reduced by several worker threads
#: (where there are several), each a contiguous block of ``[B * C, P]`` rows; smaller ones by one.
PARALLEL_ELEMENTS = 1 << 18
#: Outputs kept alive to the end of a CPU pass (to be folded after it) take at most this many bytes;
#: a layer past the budget is folded the moment its output exists.
KEPT_BYTES = 256 << 20
_POOL: list = [None, 0]


def _one_thread() -> None:
    set_own_threads(1)  # this pool thread only: every other thread, and new ones, keep their count


def _pool(workers: int) -> ThreadPoolExecutor:
    if _POOL[1] != workers:
        if _POOL[0] is not None:
            _POOL[0].shutdown(wait=False)
        _POOL[:] = [ThreadPoolExecutor(workers, thread_name_prefix="cnnw-scan", initializer=_one_thread), workers]
    return _POOL[0]


def _row_blocks(flat: torch.Tensor, positions: bool, workers: int) -> list:
    """Futures of :func:`.state.row_statistics` of ``flat`` ``[B, C, P]``, its rows (as
    ``[B * C, P]``) cut into ``workers`` contiguous blocks."""
    pool = _pool(workers)
    if not flat.is_contiguous():  # channels-last maps: row_statistics takes each image's rows apart
        return [pool.submit(row_statistics, flat, positions)]
    rows = flat.reshape(1, -1, flat.shape[2])
    parts = workers if flat.numel() >= PARALLEL_ELEMENTS else 1
    bounds = [rows.shape[1] * i // parts for i in range(parts + 1)]
    return [pool.submit(row_statistics, rows[:, a:b], positions) for a, b in zip(bounds, bounds[1:]) if b > a]


def _merge(name: str, flat: torch.Tensor, width: int, blocks: list, start: int, old, k: int):
    """:func:`.state.fold_statistics` of the blocks' statistics put side by side as ``[B, C]``
    tensors (each row is reduced alone, so they are the whole tensor's, bit for bit)."""
    parts = [block.result() for block in blocks]
    stats = tuple(None if parts[0][i] is None else torch.cat([p[i] for p in parts], dim=1).view(flat.shape[:2])
                  for i in range(4))
    return fold_statistics(name, flat, stats, start, old, k, width)


def fold_kept(outputs: dict, layer_states: dict, k: int, start: int, threads: int) -> dict:
    """``{layer: (new LayerState, codes)}`` of the kept ``outputs`` of a finished pass, on ``threads``
    worker threads of one intra-op thread each: per layer, the rows' statistics in blocks (large
    operations that release the GIL), then the merge into its state (many small ones that mostly
    hold it).

    The smallest outputs go first: their blocks are quick and their merges (a fully connected
    layer's are the longest) then overlap with the large maps' blocks. A merge waits on its own
    blocks only, queued before it; the queue is first in, first out, so they were taken by a worker
    already. The calling thread only waits: its OpenMP team would spread the small operations over
    the cores the workers use, and stall whenever another process holds one (measured on AlexNet
    beside one busy process: a scan folding on it ran at 0.31 of the forward's speed, one folding on
    these workers at 0.65-0.77).
    """
    pool = _pool(threads)
    merges = {}
    for name, output in sorted(outputs.items(), key=lambda item: item[1].numel()):
        flat = flatten(output)
        blocks = _row_blocks(flat, needs_positions(layer_states[name]), threads)
        merges[name] = pool.submit(_merge, name, flat, map_width(output), blocks, start, layer_states[name], k)
    return {name: merges[name].result() for name in outputs}


if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["fold_batch", "fold_kept"]


def fold_batch(net: "NetworkBase", layers: list[str], layer_states: dict, k: int, x: torch.Tensor,
               start: int, changed_later: set[str] | None = None) -> dict:
    """Forward one batch (images ``start .. start + B - 1``) and fold every layer into ``layer_states``.

    Returns ``{layer: (new LayerState, codes [B, C])}``; nothing is committed (a distributed
    scan's worker folds into empty states and sends this to the driver).

    On a CPU with several threads, the outputs are kept (up to :data:`KEPT_BYTES`) and folded
    after the pass, their rows reduced by worker threads of one intra-op thread each: a reduction
    run beside the convolutions slows their OpenMP team by its whole length, and one split by
    OpenMP itself stalls whenever another process holds a core. A kept output that a later
    in-place operation changed (its version counter moved: ``ReLU(inplace=True)``,
    ``out += identity``) is never folded: the pass runs again with that layer folded the moment
    its output exists, and ``changed_later`` (kept by the caller across batches) remembers it.
    Such layers, those past the budget and tensors made under ``torch.inference_mode`` (which keep
    no version) are folded the moment their output exists, on the same workers; on one thread or a
    GPU every layer is. Either way no output is cloned and the pass stops after the last scanned
    layer; no backward follows, so no rectifier rule is involved. Call inside ``inference_state``
    and ``no_grad``.
    """
    changed_later = set() if changed_later is None else changed_later
    threads = torch.get_num_threads()
    keep = threads > 1 and x.device.type == "cpu"
    folded, kept, budget = {}, {}, [KEPT_BYTES]

    def on_output(name: str, output: torch.Tensor) -> None:
        kept.pop(name, None)  # a module run twice: its last output counts
        folded.pop(name, None)
        size = output.numel() * output.element_size()
        version = tensor_version(output) if keep and name not in changed_later and size <= budget[0] else None
        if version is not None:
            budget[0] -= size
            kept[name] = (output, version)
        elif keep:  # folded now, but on the workers too: this thread's OpenMP team stalls under load
            folded[name] = fold_kept({name: output}, layer_states, k, start, threads)[name]
        else:
            folded[name] = fold(name, output, start, layer_states[name], k)

    modules = {name: net.layer(name)._module for name in layers}
    with on_outputs(modules, on_output, stop_after=True, layouts={name: net.layer(name).capture for name in layers}):
        try:
            net.model(x)
        except StopForward:
            pass
    changed = {name for name, (output, version) in kept.items() if tensor_version(output) != version}
    if changed:
        changed_later |= changed
        return fold_batch(net, layers, layer_states, k, x, start, changed_later)
    missing = [n for n in layers if n not in folded and n not in kept]
    if missing:
        raise ScanError(f"layers {missing} produced no output in the forward pass; scan other layers")
    folded.update(fold_kept({name: output for name, (output, _) in kept.items()}, layer_states, k, start, threads))
    return {name: folded[name] for name in layers}
