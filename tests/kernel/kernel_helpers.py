"""Kernel-side helpers: self-contained code that the driver runs in the kernel as text (install_helpers).

Sent as this file's text, not through ``inspect.getsource`` (which parses the module with ``ast``, and
CPython 3.11 can fail that with "AST constructor recursion depth mismatch" late in a long test run).
The tests also import the classes to use them in-process.
"""

from __future__ import annotations

def explorer_busy(ex) -> bool:
    """Whether the Explorer has a job running or queued (panels, the Visualise run, the atlas)."""
    runner = getattr(ex, "runner", None)
    if runner is not None and runner.busy:
        return True
    pipeline = getattr(ex, "pipeline", None)
    if pipeline is not None and pipeline.pending:
        return True
    visualizer = getattr(ex, "visualizer", None)
    thread = getattr(visualizer, "thread", None)
    return bool(thread is not None and thread.is_alive())


def model_snapshot(model) -> dict:
    """Copies of everything a computation must leave as it was: tensors, flags, gradients, hooks."""
    from cnn_widgets.engine.hooks import hook_count

    return {
        "tensors": {f"param {n}": p.detach().clone() for n, p in model.named_parameters()}
        | {f"buffer {n}": b.detach().clone() for n, b in model.named_buffers()},
        "training": {n or "<root>": m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad_none": {n: p.grad is None for n, p in model.named_parameters()},
        "hooks": hook_count(model),
    }


def model_differences(model, before: dict) -> list[str]:
    """What differs between ``model`` now and ``before`` (a :func:`model_snapshot`), in words."""
    import torch

    now = model_snapshot(model)
    diffs = []
    for name, tensor in before["tensors"].items():
        other = now["tensors"].get(name)
        if other is None or other.dtype != tensor.dtype or not torch.equal(other, tensor):
            diffs.append(f"{name} changed")
    for key in ("training", "requires_grad", "grad_none"):
        for name, flag in before[key].items():
            if now[key].get(name) != flag:
                diffs.append(f"{key} of {name}: {flag} -> {now[key].get(name)}")
    if now["hooks"] != before["hooks"]:
        diffs.append(f"hooks: {before['hooks']} -> {now['hooks']}")
    return diffs


class UserLoop:
    """The user's own work in the same kernel: a thread calling its own small model over and over.

    Each call must give the output computed before the thread started (``torch.equal``); anything
    else (an exception, a proxy, other numbers) counts as a failure, its first few kept in ``errors``.
    """

    def __init__(self, pause: float = 0.002):
        import threading

        import torch

        gen = torch.Generator().manual_seed(1)
        self.model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
        self.x = torch.rand(1, 3, 16, 16, generator=gen)
        with torch.no_grad():
            self.expected = self.model(self.x).clone()
        self.pause, self.calls, self.failures, self.errors = pause, 0, 0, []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="user-loop", daemon=True)
        self.thread.start()

    def _run(self):
        import time

        import torch

        while not self._stop.is_set():
            try:
                with torch.no_grad():
                    out = self.model(self.x)
                if not (isinstance(out, torch.Tensor) and torch.equal(out, self.expected)):
                    raise AssertionError(f"wrong output: {type(out).__name__}")
            except Exception as exc:
                self.failures += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            self.calls += 1
            time.sleep(self.pause)

    def stop(self) -> dict:
        self._stop.set()
        self.thread.join(10)
        return {"calls": self.calls, "failures": self.failures, "errors": self.errors}


class CountTraces:
    """Counts ``torch.fx.Tracer.trace`` calls (every symbolic trace, on any thread) until ``undo()``."""

    def __init__(self):
        import torch.fx

        self.count = 0
        self._original = torch.fx.Tracer.trace
        original = self._original

        def trace(tracer, *args, **kwargs):
            self.count += 1
            return original(tracer, *args, **kwargs)

        torch.fx.Tracer.trace = trace

    def undo(self) -> int:
        import torch.fx

        torch.fx.Tracer.trace = self._original
        return self.count


