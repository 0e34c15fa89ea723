"""Coalescing the kernel work of a widget: compute only the latest state, one panel at a time.

The kernel handles comm messages one by one. When a slider drag sends ten updates, computing each
one would queue ten slow computations. Instead a change coming from the front end only marks the
panels it affects as dirty and arms a short timer on the kernel's event loop; every message already
queued is handled (each just marks panels) before the timer fires, so only the newest state is
computed. One panel is computed per loop turn, cheapest first, so messages arriving meanwhile are
seen before the next panel and the cheap panels appear at once.

Changes made from Python code (a cell, ``traitlets.link``) are computed synchronously, so
``explorer.image = img; explorer.predictions`` reads fresh values.

The slow panels (``background``: saliency, the tree, occlusion) run in a worker thread when the
widget lives in a kernel and the request came from the front end (or is the first paint): the
kernel's message thread stays free, so a Cancel click, a slider move or a layer click is received
while occlusion runs. One worker per widget computes them one at a time, in table order; what it
produces is handed to the kernel's thread (:class:`MainThread`) and set there, so trait changes and
comm messages are never made by two threads at once.
"""

from __future__ import annotations

import asyncio
import collections
import threading
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


def in_kernel() -> bool:
    """Whether this runs in an IPython kernel whose event loop is running (where a worker pays off)."""
    if running_loop() is None:
        return False
    try:
        from ipykernel.kernelbase import Kernel

        return Kernel.initialized()
    except Exception:
        return False


class Cancelled(Exception):
    """A computation stopped before its end: cancelled by the user, or superseded by a newer request."""

    def __init__(self, message: str = "cancelled", by_user: bool = True):
        super().__init__(message)
        self.by_user = by_user


class MainThread:
    """Runs what worker threads produce on the thread that owns the widget (the kernel's).

    Trait changes (and the comm messages they send) are not thread-safe: ipywidgets' ``hold_sync``
    collects the names to send in one set per widget, and two threads in it at once lose changes or
    fail ("Set changed size during iteration"). So a worker never sets a trait: ``post(fn)`` queues
    ``fn`` and wakes the event loop captured by :meth:`attach` (``call_soon_threadsafe``), which runs
    it between two front-end messages. Without a loop (scripts, tests) the queue is run by the
    widget's thread at its next own post and by whoever waits for a worker (:meth:`drain`).
    """

    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque[Callable[[], None]] = collections.deque()
        self._local = threading.local()

    def attach(self) -> None:
        """Capture the running event loop of the calling (kernel's) thread, if any."""
        loop = running_loop()
        if loop is not None:
            self.loop = loop

    @contextmanager
    def worker(self):
        """Mark the calling thread as a worker for the block (its posts are handed over)."""
        self._local.worker = True
        try:
            yield
        finally:
            self._local.worker = False

    def is_worker(self) -> bool:
        return getattr(self._local, "worker", False)

    def post(self, fn: Callable[[], None]) -> None:
        if not self.is_worker():
            self.drain()  # what workers handed over first, in order
            fn()
            return
        self._queue.append(fn)
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.drain)
            except RuntimeError:  # closed meanwhile: drained by the next waiter
                pass

    def drain(self) -> None:
        """Run what the workers handed over (on the widget's thread)."""
        if self.is_worker():
            return
        while True:
            try:
                fn = self._queue.popleft()
            except IndexError:
                return
            fn()


class Pipeline:
    """Dirty panels, computed in ``order`` by ``compute(panel)``; ``on_busy(False)`` runs once drained.

    ``generation[panel]`` counts how often the panel was dirtied: a result computed for an older
    generation is dropped by the widget (a newer request superseded it). Panels in ``background``
    go to the worker thread when :attr:`threaded` (see the module docstring); ``current`` is the
    panel the worker computes now.
    """

    def __init__(self, order: Iterable[str], compute: Callable[[str], None], on_busy: Callable[[bool], None],
                 background: Iterable[str] = (), main: MainThread | None = None):
        self.order = list(order)
        self.compute = compute
        self.on_busy = on_busy
        self.background = frozenset(background)
        self.main = main or MainThread()
        self.dirty: set[str] = set()
        self.generation: dict[str, int] = {p: 0 for p in self.order}
        self.current: str | None = None  # computed by the worker now
        self._worker: threading.Thread | None = None
        self._lock = threading.RLock()  # dirty, generation, current and the worker, between the two threads
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self._batch_depth = 0
        self._batch_requested = False
        self._batch_deferred = False
        #: None: defer exactly when handling a front-end (comm) message; True/False forces it (tests).
        self.defer: bool | None = None
        #: None: the background panels go to a worker exactly when running in a kernel; True/False forces it.
        self.threaded: bool | None = None
        #: Test hook: a callable taking (delay, callback) replaces the event loop's call_later.
        self.call_later: Callable[[float, Callable[[], None]], object] | None = None

    @property
    def pending(self) -> bool:
        """Panels wait to be computed or the worker is computing one."""
        return bool(self.dirty) or self._worker is not None

    def uses_worker(self) -> bool:
        return in_kernel() if self.threaded is None else self.threaded

    def request(self, panels: Iterable[str], deferred: bool | None = None, first_paint: bool = False) -> None:
        """Mark ``panels`` dirty and start computing them (at once, or after the debounce when ``deferred``).

        ``first_paint``: compute the quick panels now and hand the background ones to the worker
        (the constructor in a kernel: the cell ends and the widget draws before the slow panels).
        """
        panels = [p for p in panels if p in self.generation]
        if not panels:
            return
        with self._lock:
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
        if first_paint and self.uses_worker():
            self.run_all(hand_off=True)
        else:
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

    def next_panel(self, skip: Iterable[str] = (), only: Iterable[str] | None = None) -> str | None:
        only = None if only is None else set(only)
        for p in self.order:
            if p in self.dirty and p not in skip and (only is None or p in only):
                return p
        return None

    def step(self, hand_off: bool = False) -> bool:
        """Compute the most urgent dirty panel here; False when nothing was left.

        ``hand_off``: the background panels are left to the worker (started if needed).
        """
        with self._lock:
            panel = self.next_panel(skip=self.background if hand_off else ())
            if panel is None:
                if hand_off and self.next_panel(only=self.background) is not None:
                    self._start_worker()
                return False
            self.dirty.discard(panel)
        self._running = True
        try:
            self.compute(panel)
        finally:
            self._running = False
        self.finish_if_idle()
        return True

    def run_all(self, hand_off: bool = False) -> None:
        if self._running:  # a compute changed an input: its panels are dirty and run next
            return
        if self._timer is not None and hasattr(self._timer, "cancel"):
            self._timer.cancel()
        self._timer = None
        while self.step(hand_off):
            pass

    def _tick(self) -> None:
        self._timer = None
        hand_off = self.uses_worker()
        self.step(hand_off)
        with self._lock:
            more = self.next_panel(skip=self.background if hand_off else ()) is not None
            if not more and hand_off and self.next_panel(only=self.background) is not None:
                self._start_worker()
        if more:
            later = self._call_later()
            if later is None:
                self.run_all(hand_off)
            else:
                self._timer = later(0.0, self._tick)

    def finish_if_idle(self) -> None:
        """``on_busy(False)`` when nothing is dirty and the worker is done (on the widget's thread)."""
        with self._lock:
            idle = not self.dirty and self._worker is None and not self._running
        if idle:
            self.on_busy(False)

    # ------------------------------------------------------------ the worker
    def _start_worker(self) -> None:
        """Under the lock: make sure a worker computes the dirty background panels."""
        if self._worker is not None:
            return
        self.main.attach()
        self._worker = threading.Thread(target=self._work, name="cnn_widgets-panels", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        with self.main.worker():
            while True:
                with self._lock:
                    panel = self.next_panel(only=self.background)
                    if panel is None:
                        self._worker, self.current = None, None
                        break
                    self.dirty.discard(panel)
                    self.current = panel
                try:
                    self.compute(panel)
                except BaseException:  # compute reports its own errors; never leave the worker marked running
                    with self._lock:
                        self._worker, self.current = None, None
                    self.main.post(self.finish_if_idle)
                    raise
            self.main.post(self.finish_if_idle)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker has finished (running what it handed over); False on timeout."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.main.drain()
            worker = self._worker
            if worker is None:
                self.main.drain()
                self.finish_if_idle()  # its own post may still be on the way to the loop
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            worker.join(0.02 if remaining is None else min(0.02, remaining))

    def cancel(self, panels: Iterable[str]) -> list[str]:
        """Drop the queued background ``panels``; returns those dropped (the running one is the widget's to stop)."""
        with self._lock:
            dropped = [p for p in panels if p in self.dirty and p in self.background]
            self.dirty.difference_update(dropped)
        return dropped
