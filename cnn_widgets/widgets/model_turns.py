"""One model, two users: the kernel's panel computations and a background run (the Visualise tab).

Hooks, the inference flags and the network's caches belong to one pass at a time, so a background
optimisation and a panel must never run the model at once. The background run holds the turn and
hands it over between two of its steps whenever the kernel waits for it; the kernel then computes
its panel and gives the turn back. So the Explorer stays usable while a run goes on (a panel waits
at most one optimisation step), and the model is never used by two passes together.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager


class ModelTurns:
    def __init__(self):
        self._lock = threading.RLock()  # re-entrant: a kernel computation may start another
        self._waiting = 0  # kernel computations waiting for the turn
        self._count_lock = threading.Lock()

    @contextmanager
    def kernel(self):
        """Hold the model for one panel computation (waits at most one step of a background run)."""
        with self._count_lock:
            self._waiting += 1
        self._lock.acquire()
        with self._count_lock:
            self._waiting -= 1
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def background(self):
        """Hold the model for a background run; call :meth:`between_steps` between its steps."""
        with self._lock:
            yield

    def between_steps(self) -> None:
        """Let waiting kernel computations run now (called with the turn held)."""
        if not self._waiting:
            return
        self._lock.release()
        try:
            while self._waiting:  # until each waiting computation has taken the turn
                time.sleep(0.001)
        finally:
            self._lock.acquire()
