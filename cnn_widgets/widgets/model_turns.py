"""One model, several users: the kernel's panel computations, the panel worker and the Visualise run.

Hooks, the inference flags and the network's caches belong to one pass at a time, so two threads
must never run the model at once. Whoever uses the model holds the turn; a long run (occlusion
batch by batch, an optimisation step by step) calls :meth:`ModelTurns.between_steps`, which hands
the turn to everyone waiting, in the order they asked, and takes it back after them. So a layer
click computes between two occlusion batches, and occlusion and a visualisation running together
take turns instead of one waiting for the other's end.
"""

from __future__ import annotations

import collections
import threading
from contextlib import contextmanager


class ModelTurns:
    def __init__(self):
        self._cond = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()  # tickets of the waiting threads, first come first
        self._owner: int | None = None
        self._depth = 0  # re-entrant: a computation holding the turn may call code that asks for it again

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def _acquire(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            ticket = object()
            self._queue.append(ticket)
            while self._owner is not None or self._queue[0] is not ticket:
                self._cond.wait()
            self._queue.popleft()
            self._owner, self._depth = me, 1
            self._cond.notify_all()  # the next ticket is now at the head

    def _release(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    @contextmanager
    def kernel(self):
        """Hold the model for one computation (waits at most one step of a run holding it)."""
        self._acquire()
        try:
            yield
        finally:
            self._release()

    background = kernel  # a long run holds the turn the same way and calls between_steps

    def between_steps(self) -> None:
        """Let everyone waiting use the model now, then take the turn back (called with the turn held)."""
        me = threading.get_ident()
        with self._cond:
            if self._owner != me or self._depth != 1 or not self._queue:
                return  # nobody waits, or a nested holder: handing over here would break the outer one
            self._owner, self._depth = None, 0
            self._cond.notify_all()
        self._acquire()  # queued behind everyone who waited
