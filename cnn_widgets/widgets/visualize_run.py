"""The Visualise tab's runs: feature visualisation or DeepDream in a worker thread, streamed as frames.

One run at a time per Explorer: a new request cancels the old one (its thread stops at its next
step and never shows anything again), Stop takes effect at the next step (DeepDream: the next
octave, the engine's callback granularity). Frames are pushed at most ``FPS`` times a second, each
tagged with its request id, and handed to the widget's thread to be set (``scheduler.MainThread``:
trait changes from two threads at once lose messages). Finished runs are cached per (target,
settings) so going back is instant.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..engine import CnnWidgetsError
from .scheduler import MainThread

FPS = 8  # frames pushed per second at most while running (plus the last one)
CACHED_RUNS = 24


@dataclass
class Request:
    """What one run computes: ``call(callback)`` runs the engine; ``key`` names it in the cache."""

    id: int
    key: tuple
    call: Callable[[Callable], object]
    steps: int
    text: str  # what is visualised, in words
    cancelled: threading.Event = field(default_factory=threading.Event)


class VisualizeRunner:
    """Starts, stops and caches runs; ``push(request, frame, curve, info)`` shows one (under the model's turn)."""

    def __init__(self, turns, push: Callable[[Request, np.ndarray | None, list[float], dict], None],
                 main: MainThread | None = None):
        self.turns = turns
        self.push = push
        self.main = main or MainThread()
        self.cache: OrderedDict[tuple, tuple[np.ndarray, list[float], dict]] = OrderedDict()
        self.current: Request | None = None
        self.thread: threading.Thread | None = None
        self.background = True  # False: run in the calling thread (tests, scripts)

    def cached(self, key: tuple):
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        return None

    def start(self, request: Request) -> None:
        self.stop()
        self.current = request
        hit = self.cached(request.key)
        if hit is not None:
            frame, curve, info = hit
            self.push(request, frame, curve, {**info, "cached": True, "running": False})
            return
        self.push(request, None, [], {"running": True, "step": 0, "steps": request.steps, "cached": False})
        if self.background:
            self.thread = threading.Thread(target=self._run, args=(request,), name="cnn_widgets-visualize", daemon=True)
            self.thread.start()
        else:
            self._run(request)

    def stop(self) -> None:
        if self.current is not None:
            self.current.cancelled.set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running thread has finished and its last frame is shown (tests, scripts)."""
        if self.thread is not None:
            self.thread.join(timeout)
        self.main.drain()

    def _post(self, request: Request, frame, curve, info) -> None:
        curve = list(curve)  # the run goes on appending to its own list
        self.main.post(lambda: self.push(request, frame, curve, info))

    def forget(self) -> None:
        self.stop()
        self.cache.clear()

    def _run(self, request: Request) -> None:
        if self.background:
            with self.main.worker():
                self._steps(request)
        else:
            self._steps(request)

    def _steps(self, request: Request) -> None:
        curve: list[float] = []
        last_push, reached = 0.0, 0

        def callback(step, frame, objective):
            nonlocal last_push, reached
            curve.append(float(objective))
            reached = step
            if request.cancelled.is_set():
                return False
            now = time.perf_counter()
            if now - last_push >= 1.0 / FPS:
                last_push = now
                self._post(request, frame, curve, {"running": True, "step": step, "steps": request.steps, "cached": False})
            self.turns.between_steps()
            return not request.cancelled.is_set()

        try:
            with self.turns.background():
                result = request.call(callback)
                if request is not self.current:
                    return  # superseded: nothing stale is drawn
                frame = np.ascontiguousarray(np.asarray(result.image.convert("RGB")), dtype=np.uint8)
                info = {"running": False, "step": reached, "steps": request.steps,
                        "interrupted": bool(result.interrupted), "cached": False}
                full_curve = [float(v) for v in result.objective]
                if not result.interrupted:
                    self.cache[request.key] = (frame, full_curve, info)
                    while len(self.cache) > CACHED_RUNS:
                        self.cache.popitem(last=False)
                self._post(request, frame, full_curve, info)
        except Exception as exc:  # shown in the tab; the Explorer keeps working
            message = str(exc) if isinstance(exc, CnnWidgetsError) else f"{type(exc).__name__}: {exc}"
            if request is self.current:
                self._post(request, None, curve, {"running": False, "error": message, "cached": False})
