"""The one runner of the Explorer's work: every panel and every long job (the Visualise run, the
Atlas build) is computed here, with one progress, partial-result and Cancel mechanism
(``progress.py``), and this file is the one place in the widgets that starts threads.

The kernel handles comm messages one by one. When a slider drag sends ten updates, computing each
one would queue ten slow computations. Instead a change coming from the front end only marks the
panels it affects as dirty and arms a short timer on the kernel's event loop; every message already
queued is handled (each just marks panels) before the timer fires, so only the newest state is
computed. One panel is computed per loop turn, cheapest first, so messages arriving meanwhile are
seen before the next panel and the cheap panels appear at once.

Changes made from Python code (a cell, ``traitlets.link``) are computed synchronously, so
``explorer.image = img; explorer.predictions`` reads fresh values.

The slow jobs (``lanes``: saliency, the tree, occlusion in lane ``"panels"``; the Visualise run and
the Atlas build in lane ``"long"``) run in a worker thread per lane when the widget lives in a
kernel and the request came from the front end (or is the first paint; a long job always): the
kernel's message thread stays free, so a Cancel click, a slider move or a layer click is received
while occlusion runs. Each lane's worker computes its jobs one at a time, in table order; the two
lanes take turns with the model (``model_turns.py``: between two steps of a job), so a long
visualisation and the slow panels progress together. What a worker produces is handed to the
kernel's thread (:class:`MainThread`) and set there, so trait changes and comm messages are never
made by two threads at once. The model's flags have one owner while anything runs (the engine's
reference-counted ``inference_state``, held by each job for its whole length).
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


PANEL_LANE = "panels"
LONG_LANE = "long"


class Runner:
    """Dirty jobs, computed in ``order`` by ``compute(job)``; ``on_busy(False)`` runs once the panels are drained.

    ``generation[job]`` counts how often the job was requested: a result computed for an older
    generation is dropped by the widget (a newer request superseded it). Jobs in ``lanes`` go to
    their lane's worker thread when :attr:`threaded` (see the module docstring); ``current[lane]``
    is the job that lane computes now. The busy status (``on_busy``) follows the panels only: a
    long job shows its own progress and never holds the status line.
    """

    def __init__(self, order: Iterable[str], compute: Callable[[str], None], on_busy: Callable[[bool], None],
                 lanes: dict[str, str] | None = None, main: MainThread | None = None):
        self.order = list(order)
        self.compute = compute
        self.on_busy = on_busy
        self.lanes = dict(lanes or {})
        self.background = frozenset(self.lanes)
        self.main = main or MainThread()
        self.dirty: set[str] = set()
        self.generation: dict[str, int] = {p: 0 for p in self.order}
        self.current: dict[str, str | None] = {}  # lane -> the job its worker computes now
        self._workers: dict[str, threading.Thread] = {}
        self._lock = threading.RLock()  # dirty, generation, current and the workers, between the threads
        self._timer: asyncio.TimerHandle | None = None
        self._running = False
        self._batch_depth = 0
        self._batch_requested = False
        self._batch_deferred = False
        #: None: defer exactly when handling a front-end (comm) message; True/False forces it (tests).
        self.defer: bool | None = None
        #: None: the slow jobs go to a worker exactly when running in a kernel; True/False forces it.
        self.threaded: bool | None = None
        #: Test hook: a callable taking (delay, callback) replaces the event loop's call_later.
        self.call_later: Callable[[float, Callable[[], None]], object] | None = None

    def _long(self, job: str) -> bool:
        return self.lanes.get(job) == LONG_LANE

    @property
    def pending(self) -> bool:
        """Panels wait to be computed or the panel worker is computing one (long jobs not counted)."""
        with self._lock:
            return any(not self._long(p) for p in self.dirty) or PANEL_LANE in self._workers

    @property
    def busy(self) -> bool:
        """Anything at all waits or runs: a panel, a visualisation, an atlas build."""
        with self._lock:
            return bool(self.dirty) or bool(self._workers) or self._running

    def running(self, job: str) -> bool:
        """``job`` is queued or being computed."""
        with self._lock:
            return job in self.dirty or job in self.current.values()

    def uses_worker(self) -> bool:
        return in_kernel() if self.threaded is None else self.threaded

    def request(self, panels: Iterable[str], deferred: bool | None = None, first_paint: bool = False) -> None:
        """Mark ``panels`` dirty and start computing them (at once, or after the debounce when ``deferred``).

        ``first_paint``: compute the quick panels now and hand the slow ones to the workers
        (the constructor in a kernel: the cell ends and the widget draws before the slow panels).
        A long job always goes to its worker in a kernel (a cell that starts one is not blocked).
        """
        panels = [p for p in panels if p in self.generation]
        if not panels:
            return
        with self._lock:
            for p in panels:
                self.dirty.add(p)
                self.generation[p] += 1
        if not all(self._long(p) for p in panels):
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

    def _handed_off(self, hand_off: bool) -> frozenset[str]:
        """The jobs this thread leaves to the workers: the slow ones when handing off, long ones in a kernel."""
        if hand_off:
            return self.background
        return frozenset(p for p in self.background if self._long(p)) if self.uses_worker() else frozenset()

    def step(self, hand_off: bool = False) -> bool:
        """Compute the most urgent dirty job here; False when nothing was left.

        ``hand_off``: the slow jobs are left to the workers (started if needed).
        """
        skip = self._handed_off(hand_off)
        with self._lock:
            panel = self.next_panel(skip=skip)
            if panel is None:
                self._start_workers(skip)
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
        skip = self._handed_off(hand_off)
        with self._lock:
            more = self.next_panel(skip=skip) is not None
            if not more:
                self._start_workers(skip)
        if more:
            later = self._call_later()
            if later is None:
                self.run_all(hand_off)
            else:
                self._timer = later(0.0, self._tick)

    def finish_if_idle(self) -> None:
        """``on_busy(False)`` when no panel is dirty and the panel worker is done (on the widget's thread)."""
        with self._lock:
            idle = not self.pending and not self._running
        if idle:
            self.on_busy(False)

    # ------------------------------------------------------------ the workers
    def _start_workers(self, handed_off: Iterable[str]) -> None:
        """Under the lock: make sure a worker computes each lane's dirty jobs among ``handed_off``."""
        for lane in sorted({self.lanes[p] for p in handed_off if p in self.dirty}):
            if lane in self._workers:
                continue
            self.main.attach()
            # THE place the Explorer starts threads (tests grep for it)
            worker = threading.Thread(target=self._work, args=(lane,), name=f"cnn_widgets-{lane}", daemon=True)
            self._workers[lane] = worker
            worker.start()

    def _work(self, lane: str) -> None:
        mine = [p for p in self.order if self.lanes.get(p) == lane]
        with self.main.worker():
            try:
                while True:
                    with self._lock:
                        panel = self.next_panel(only=mine)
                        if panel is None:
                            del self._workers[lane]
                            self.current.pop(lane, None)
                            break
                        self.dirty.discard(panel)
                        self.current[lane] = panel
                    self.compute(panel)  # reports its own errors
            except BaseException:
                with self._lock:  # never leave the lane marked running
                    self._workers.pop(lane, None)
                    self.current.pop(lane, None)
                raise
            finally:
                self.main.post(self.finish_if_idle)

    def wait(self, timeout: float | None = None, jobs: bool = True) -> bool:
        """Block until the workers have finished (running what they handed over); False on timeout.

        ``jobs=False`` waits for the panels only (a long job may go on).
        """
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.main.drain()
            with self._lock:
                workers = [w for lane, w in self._workers.items() if jobs or lane == PANEL_LANE]
            if not workers:
                self.main.drain()
                self.finish_if_idle()  # its own post may still be on the way to the loop
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            workers[0].join(0.02 if remaining is None else min(0.02, remaining))

    def cancel(self, panels: Iterable[str]) -> list[str]:
        """Drop the queued slow ``panels``; returns those dropped (a running one is the widget's to stop)."""
        with self._lock:
            dropped = [p for p in panels if p in self.dirty and p in self.background]
            self.dirty.difference_update(dropped)
        return dropped
