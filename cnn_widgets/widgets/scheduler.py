"""Coalescing the kernel work of a widget: compute only the latest state, one panel at a time.

The kernel handles comm messages one by one. When a slider drag sends ten updates, computing each
one would queue ten slow computations. Instead a change coming from the front end only marks the
panels it affects as dirty and arms a short timer on the kernel's event loop; every message already
queued is handled (each just marks panels) before the timer fires, so only the newest state is
computed. One panel is computed per loop turn, cheapest first, so messages arriving meanwhile are
seen before the next panel and the cheap panels appear at once.

Changes made from Python code (a cell, ``traitlets.link``) are computed synchronously, so
``explorer.image = img; explorer.predictions`` reads fresh values.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from collections.abc import Callable, Iterable

DEBOUNCE_S = 0.015


def in_comm_message() -> bool:
    """Whether the kernel is currently handling a message from a front end (a comm message)."""
    try:
        from ipykernel.kernelbase import Kernel

        if not Kernel.initialized():
            return False
        kernel = Kernel.instance()
        try:
            parent = kernel.get_parent("shell")
        except TypeError:  # older ipykernel
            parent = kernel.get_parent()
        return (parent or {}).get("header", {}).get("msg_type") == "comm_msg"
    except Exception:
        return False


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Pipeline:
    """Dirty panels, computed in ``order`` by ``compute(panel)``; ``on_idle`` runs once drained.

    ``generation[panel]`` counts how often the panel was dirtied: a result computed for an older
    generation is dropped by the widget (a newer request superseded it).
    """

    def __init__(self, order: Iterable[str], compute: Callable[[str], None], on_busy: Callable[[bool], None]):
        self.order = list(order)
        self.compute = compute
        self.on_busy = on_busy
        self.dirty: set[str] = set()
        self.generation: dict[str, int] = {p: 0 for p in self.order}
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self._batch_depth = 0
        self._batch_requested = False
        self._batch_deferred = False
        #: None: defer exactly when handling a front-end (comm) message; True/False forces it (tests).
        self.defer: bool | None = None
        #: Test hook: a callable taking (delay, callback) replaces the event loop's call_later.
        self.call_later: Callable[[float, Callable[[], None]], object] | None = None

    def request(self, panels: Iterable[str], deferred: bool | None = None) -> None:
        panels = [p for p in panels if p in self.generation]
        if not panels:
            return
        for p in panels:
            self.dirty.add(p)
            self.generation[p] += 1
        self.on_busy(True)
        if deferred is None:
            deferred = self.defer if self.defer is not None else in_comm_message()
        if self._batch_depth:
            self._batch_requested = True
            self._batch_deferred = self._batch_deferred or deferred
            return
        self._trigger(deferred)

    @contextmanager
    def batch(self):
        """Collect the requests made inside the block and start computing once, at its end.

        A block that requested nothing starts nothing (panels dirtied earlier wait for their timer).
        """
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                requested, deferred = self._batch_requested, self._batch_deferred
                self._batch_requested = self._batch_deferred = False
                if requested and self.dirty:
                    self._trigger(deferred)

    def _trigger(self, deferred: bool) -> None:
        later = self._call_later() if deferred else None
        if later is None:
            self.run_all()
        else:
            if self._timer is not None and hasattr(self._timer, "cancel"):
                self._timer.cancel()
            self._timer = later(DEBOUNCE_S, self._tick)

    def _call_later(self):
        if self.call_later is not None:
            return self.call_later
        loop = running_loop()
        return loop.call_later if loop is not None else None

    def next_panel(self) -> str | None:
        for p in self.order:
            if p in self.dirty:
                return p
        return None

    def step(self) -> bool:
        """Compute the most urgent dirty panel; False when nothing was left."""
        panel = self.next_panel()
        if panel is None:
            return False
        self.dirty.discard(panel)
        self._running = True
        try:
            self.compute(panel)
        finally:
            self._running = False
        if not self.dirty:
            self.on_busy(False)
        return True

    def run_all(self) -> None:
        if self._running:  # a compute changed an input: its panels are dirty and run next
            return
        if self._timer is not None and hasattr(self._timer, "cancel"):
            self._timer.cancel()
        self._timer = None
        while self.step():
            pass

    def _tick(self) -> None:
        self._timer = None
        self.step()
        if self.dirty:
            later = self._call_later()
            if later is None:
                self.run_all()
            else:
                self._timer = later(0.0, self._tick)
