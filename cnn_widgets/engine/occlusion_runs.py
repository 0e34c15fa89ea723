"""The target's value for batches of occluded copies: incremental (Krypton), full, or ``auto``'s choice.

:func:`~.occlusion.occlusion` lays out the windows; an :class:`Evaluator` runs them.
"""

from __future__ import annotations

import logging

import torch

from .errors import NonFiniteError
from .incremental import IncrementalRunner, Patch, plan_for
from .incremental.regions import read_window
from .structure import select_logits
from .targets import TOP_CLASS, ClassTarget, Unit, scalar, scalar_table
from .tokens import TOKENS

__all__ = ["FULL_WORK", "Evaluator", "run_windows"]

#: ``execution="auto"`` runs every window in full when one window, run incrementally first, recomputes
#: at least this share of a full forward pass. ``benchmarks/bench_occlusion_auto.py`` (cat, 32/16, 2
#: threads, random weights): EfficientNet-B0 (0.96: squeeze-and-excitation) took 6.4 s incrementally
#: against 2.4 s in full, MobileNetV3-small (0.90) 0.49 s against 0.51 s, the default model (0.63)
#: 1.15 s against 1.99 s; by hand, in float64: ShuffleNet-V2 at 64 px (0.79) 0.5 s against 0.2 s,
#: DenseNet-121 at 97x131 (0.66) 3.1 s against 4.5 s.
FULL_WORK = 0.75
log = logging.getLogger(__name__)


class Evaluator:
    """The target's value for the clean image and for batches of occluded copies.

    Runs incrementally when the model traces with torch.fx (Krypton), else (or when asked) the whole
    network per copy; ``reason`` says why it fell back. With ``table`` each call returns the drops
    of every class (a class target) or every channel of the unit's layer, ``[rows, C]``, whose
    column :attr:`column` is the target's (:func:`~.targets.scalar_table`): the same passes.
    """

    def __init__(self, net, x, resolved, quantity, method, approx, fill_image, window, table: bool = False):
        self.net, self.x, self.resolved, self.quantity = net, x, resolved, quantity
        self.fill_image, self.window, self.table, self.column = fill_image, window, table, None
        self.unit = isinstance(resolved, Unit)
        self.runner, self.reason, self.full_windows, self.runs = None, None, 0, 0
        # a transformer block's map is read out of its tokens (the ":tokens" layer is the same module's)
        self.layout = net.layer(resolved.layer).layout if self.unit else None
        if method in ("auto", "incremental"):
            try:
                leaves = frozenset([resolved.layer]) if self.unit else frozenset()
                plan, clean = plan_for(net.model, x, leaves)
                last = plan.output
                if self.unit:
                    module = resolved.layer.removesuffix(TOKENS)
                    last = next((op.node for op in plan.ops if op.node.op == "call_module" and op.node.target == module), None)
                    if last is None:
                        raise ValueError(f"layer {resolved.layer!r} is not a module call of the traced graph")
                self.runner = IncrementalRunner(plan, clean, last, approx)
                self.base = self._value(clean[last], 1)
            except (NonFiniteError, KeyboardInterrupt):
                raise
            except Exception as err:  # untraceable or unsupported: the plain model is always right
                self.runner = None
                self.reason = f"{type(err).__name__}: {err}".splitlines()[0][:300]
                log.debug("occlusion runs the full network per window: %s", self.reason)
        if self.runner is not None and method == "auto" and approx is None:  # tau needs the runner
            self._leave_if_no_gain()
        if self.runner is None:  # also when auto left it: each drop from one method's values
            self.base = self._full_batch(x)

    def _leave_if_no_gain(self) -> None:
        """``auto``: one window at the centre of the image, run incrementally and thrown away, says
        how much of the network a window makes it redo; from :data:`FULL_WORK` on, every window
        runs in full instead."""
        h, w = self.x.shape[-2:]
        self.runner.run(self._patch([((h - self.window) // 2, (w - self.window) // 2)]), 1)
        share = self.runner.macs / max(1, self.runner.macs_full_row)
        self.runner.macs = 0  # the probe is not part of the work done for the map
        if share >= FULL_WORK:
            self.runner = None  # every window runs in full
            why = ("self-attention lets every token see every patch, so one window changes every token of the "
                   "blocks after it" if any(layer.layout is not None for layer in self.net.layers) else
                   "e.g. global pooling inside the network, as in squeeze-and-excitation blocks, changes every position")
            self.reason = (f"incremental inference would recompute {share:.0%} of the network for each window "
                           f"(at least {FULL_WORK:.0%}; {why}), so every window ran in full")
            log.debug("occlusion: %s", self.reason)

    def _value(self, out, rows):
        if self.unit:
            out = out[0] if isinstance(out, (tuple, list)) else out
            out = self.layout.to_map(out) if self.layout is not None else out
            logits, outputs = None, {self.resolved.layer: out}
        else:
            logits, outputs = select_logits(out, self.net.output, self.net.name), {}
        checked = logits if logits is not None else out
        if not bool(torch.isfinite(checked).all()):
            raise NonFiniteError(f"{self.net.name} produced NaN or infinite values for an occluded copy; check the weights")
        return self._scalar(logits, outputs)

    def _full_batch(self, batch):
        layers = [self.resolved.layer] if self.unit else []
        logits, outputs = self.net._forward(batch, layers=layers, stop_early=self.unit)
        return self._scalar(logits, outputs)

    def _scalar(self, logits, outputs):
        """The target's value per row (the first call, the clean image's, resolves the top class), or the table."""
        if self.resolved is TOP_CLASS:
            index = int(logits[0].argmax())
            self.resolved = ClassTarget(index, self.net.label(index))
        if self.table:
            values, self.column = scalar_table(self.resolved, logits, outputs, self.quantity)
            return values
        return scalar(self.resolved, logits, outputs, self.quantity)

    def __call__(self, corners: list[tuple[int, int]]) -> torch.Tensor:
        """Drops ``f(x) - f(occluded)`` for the windows at ``corners``."""
        x, window = self.x, self.window
        if self.runner is None:
            self.full_windows += len(corners)
            batch = x.repeat(len(corners), 1, 1, 1)
            for row, (t, l) in enumerate(corners):
                batch[row, :, t : t + window, l : l + window] = self.fill_image[0, :, t : t + window, l : l + window]
            return self.base - self._full_batch(batch)
        out = self.runner.run(self._patch(corners), len(corners))
        return self.base - self._value(out, len(corners))

    def _patch(self, corners: list[tuple[int, int]]) -> Patch:
        """The occluded input squares at ``corners``, as a patch of the clean image."""
        x, window = self.x, self.window
        h, w = x.shape[-2:]
        tops = torch.tensor([t for t, _ in corners])
        lefts = torch.tensor([l for _, l in corners])
        # the input patch: the window's square, moved back inside the image where it is clipped
        top, left = tops.clamp(max=h - window), lefts.clamp(max=w - window)
        rows = top[:, None] + torch.arange(window) >= tops[:, None]
        cols = left[:, None] + torch.arange(window) >= lefts[:, None]
        inside = (rows[:, :, None] & cols[:, None, :])[:, None].to(x.device)
        value = torch.where(inside, read_window(self.fill_image, None, top, left, (window, window)),
                            read_window(x, None, top, left, (window, window)))
        return Patch(value, top, left)

    @property
    def method(self) -> str:
        return "incremental" if self.runner is not None else "full"

    @property
    def work(self) -> float:
        if self.runner is None:
            return 1.0
        return self.runner.macs / max(1, self.runner.macs_full_row * self.runs)



def run_windows(evaluate: Evaluator, corners, batch_size: int, bar, on_batch) -> torch.Tensor:
    """The drops at ``corners``, ``batch_size`` windows at a time (``bar``: a tqdm bar or ``None``;
    ``on_batch(done, drops so far)`` after each batch)."""
    drops = []
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        drops.append(evaluate(chunk))
        evaluate.runs += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
        if on_batch is not None:
            on_batch(start + len(chunk), torch.cat(drops))
    return torch.cat(drops) if drops else torch.zeros(0)
