"""One batch of a scan: a forward pass that folds every scanned layer into its running state.

Shared by the local scan (:mod:`.run`) and the distributed one (:mod:`.ray_backend`), whose
workers fold into empty states and send the partial result to the driver.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..hooks import StopForward, on_outputs
from .errors import ScanError
from .state import LAYER_STATE_FIELDS, LayerState, fold

#: Outputs with at least this many elements are folded by several threads, each a slice of the
#: channels on one intra-op thread; smaller ones on the calling thread (one intra-op thread).
PARALLEL_ELEMENTS = 1 << 18
_POOL: list = [None, 0]


def _one_thread() -> None:
    torch.set_num_threads(1)  # per thread (OpenMP): the caller keeps its own count


def _pool(workers: int) -> ThreadPoolExecutor:
    if _POOL[1] != workers:
        if _POOL[0] is not None:
            _POOL[0].shutdown(wait=False)
        _POOL[:] = [ThreadPoolExecutor(workers, thread_name_prefix="cnnw-scan", initializer=_one_thread), workers]
    return _POOL[0]


def fold_channels(name: str, output: torch.Tensor, start: int, old: LayerState, k: int, workers: int,
                  threads: int | None = None):
    """:func:`.state.fold` of ``output`` on worker threads (one intra-op thread each, ``threads`` of
    them), its channels split into ``workers`` slices.

    Every number a fold computes belongs to one channel (its top-k, statistics and codes), so the
    slices folded apart and put back side by side are the whole fold, bit for bit.
    """
    pool = _pool(threads or workers)
    if workers <= 1:
        return pool.submit(fold, name, output, start, old, k).result()
    channels = output.shape[1]
    bounds = [channels * i // workers for i in range(workers + 1)]
    parts = [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]

    def one(part):
        a, b = part
        sliced = LayerState(*(getattr(old, f)[a:b] for f in LAYER_STATE_FIELDS))
        return fold(name, output[:, a:b], start, sliced, k)

    folded = list(pool.map(one, parts))
    state = LayerState(*(torch.cat([getattr(s, f) for s, _ in folded]) for f in LAYER_STATE_FIELDS))
    return state, np.concatenate([codes for _, codes in folded], axis=1)

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["fold_batch"]


def fold_batch(net: "NetworkBase", layers: list[str], layer_states: dict, k: int, x: torch.Tensor,
               start: int) -> dict:
    """Forward one batch (images ``start .. start + B - 1``) and fold every layer into ``layer_states``.

    Returns ``{layer: (new LayerState, codes [B, C])}``; nothing is committed (a distributed
    scan's worker folds into empty states and sends this to the driver).

    Each layer is folded the moment its output exists: an in-place operation later in the model
    (``ReLU(inplace=True)``, ``out += identity``) cannot alter what was seen, no output is kept
    alive to the end of the pass (peak memory: the plain forward's), and no out-of-place copies
    are needed (the pass is the plain forward; no backward follows, so no rectifier rule is
    involved). The pass stops after the last scanned layer.
    Call inside ``inference_state`` and ``no_grad``.
    """
    pending = {}

    def fold_output(name: str, output: torch.Tensor) -> None:
        # The reductions are small and memory-bound: on a CPU they run faster on one thread than
        # split by OpenMP across cores that the convolutions (or other processes) keep busy. They
        # run on worker threads that keep one intra-op thread each (a large output split by
        # channels among one per core), so this thread's OpenMP team is never resized: switching
        # torch.set_num_threads between 1 and 2 around every layer made a 2-thread scan of
        # AlexNet 3x slower than its forward pass on a loaded machine.
        threads = torch.get_num_threads()
        if threads > 1 and output.device.type == "cpu":
            parts = threads if output.numel() >= PARALLEL_ELEMENTS and output.shape[1] > 1 else 1
            pending[name] = fold_channels(name, output, start, layer_states[name], k, parts, threads)
        else:
            pending[name] = fold(name, output, start, layer_states[name], k)

    modules = {name: net.layer(name)._module for name in layers}
    with on_outputs(modules, fold_output, stop_after=True):
        try:
            net.model(x)
        except StopForward:
            pass
    missing = [n for n in layers if n not in pending]
    if missing:
        raise ScanError(f"layers {missing} produced no output in the forward pass; scan other layers")
    return pending
