"""One batch of a scan: a forward pass that folds every scanned layer into its running state.

Shared by the local scan (:mod:`.run`) and the distributed one (:mod:`.ray_backend`), whose
workers fold into empty states and send the partial result to the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..hooks import StopForward, on_outputs
from .errors import ScanError
from .state import fold

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
        # split across cores that the convolutions (or other processes) keep busy.
        threads = torch.get_num_threads()
        if threads > 1 and output.device.type == "cpu":
            torch.set_num_threads(1)
        try:
            pending[name] = fold(name, output, start, layer_states[name], k)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

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
