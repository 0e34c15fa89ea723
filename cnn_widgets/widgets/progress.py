"""Progress, partial results and Cancel for every job of the Explorer's runner (mixed into the Explorer):
the slow panels, the Visualise run and the Atlas build alike.

A panel's ``compute`` calls ``explorer.report_progress(done, total, partial)`` after each piece of
its work (occlusion: after each batch of windows). That call

* stops the computation (raises :class:`~.runner.Cancelled`) when the user pressed Cancel or a
  newer request for the panel came in;
* hands the model to whoever waits for it (a layer click computes between two batches);
* shows the fraction done in the ``progress`` trait and the partial result (``partial()``'s
  traits), at most ``PUSHES_PER_S`` times a second (or the panel's own ``pushes_per_s``).

Every computation of a background panel ends in one of four states, shown in ``progress`` and by the
status line: ``done``, ``cancelled``, ``error`` (one line) or superseded by the next one; so no
panel spins without an end. A cancelled panel keeps what it had drawn (marked as cancelled), the
model and every other trait are untouched (the engine's hooks and flags are restored by its own
``with`` blocks, which the exception passes through).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TypedDict

import traitlets
from traitlets import Dict

from ..engine import CnnWidgetsError
from ..engine.checks import check_choice
from ..engine.hooks import inference_state
from .cores import one_core_free
from .runner import LONG_LANE, Cancelled
from .serialization import Array

PUSHES_PER_S = 8.0  # partial results and progress sent per second at most while a panel runs (unless it sets its own)


class ProgressInfo(TypedDict, total=False):
    """One entry of the ``progress`` trait (``{panel: ProgressInfo}``)."""

    state: str  # "running" | "done" | "cancelled" | "error"
    done: int  # pieces done (occlusion: windows); 0 with total 0: no fraction known (indeterminate)
    total: int
    message: str  # one line: what happened ("cancelled after 24 of 81 windows", the error)
    unit: str  # what a piece is ("windows")


@dataclass
class Task:
    """One computation of one panel (a generation of it), on whichever thread runs it."""

    name: str
    generation: int
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    total: int = 0
    unit: str = ""
    last_push: float = 0.0
    reported: bool = False
    shown: int = -1  # ``done`` of the partial result shown last
    partial: Callable[[], dict] | None = None  # the latest partial result (shown on a Cancel if not yet)


class PanelProgress(traitlets.HasTraits):
    """Mixed into the Explorer: sets ``progress``, ``occlusion_pending`` and each job's result traits."""

    #: What this part uses of the Explorer's other parts (read, called or set); tests/widgets/test_parts.py checks it
    USES: tuple[str, ...] = ('runner', 'panels', 'model_turns', 'net', 'working', 'timings', '_report', '_clear_error')

    progress = Dict().tag(sync=True)  # {job: ProgressInfo} of each slow panel's and job's last (or current) computation
    occlusion_pending = Array()  # uint8 [H, W]: 1 where no window has been computed yet (partial map); None when whole

    def _init_progress(self) -> None:
        self._tasks: dict[str, Task] = {}  # the computation of each panel going on now
        self._local = threading.local()  # the task of the calling thread
        self.on_msg(self._on_progress_message)

    # ------------------------------------------------------------ what panels call
    def report_progress(self, done: int, total: int, partial: Callable[[], dict] | None = None, unit: str = "",
                        urgent: bool = False) -> None:
        """Called by a panel's ``compute`` between two pieces of work; raises ``Cancelled`` to stop it.

        ``urgent``: show this partial result now, even sooner than ``PUSHES_PER_S`` allows (a first
        complete picture)."""
        task = getattr(self._local, "task", None)
        if task is None:
            return
        task.done, task.total, task.unit, task.partial = int(done), int(total), unit, partial
        self._check(task)
        if done < total and (urgent or time.perf_counter() - task.last_push >= 1.0 / self._pushes_per_s(task)):
            self._push_partial(task)
        self.model_turns.between_steps()
        self._check(task)  # a Cancel or a newer request may have come while others used the model

    def _pushes_per_s(self, task: Task) -> float:
        """The panel's own cap (``Panel.pushes_per_s``: the Visualise run's frames) or ``PUSHES_PER_S``."""
        return self.panels[task.name].pushes_per_s or PUSHES_PER_S

    def _push_partial(self, task: Task) -> None:
        task.last_push, task.reported, task.shown = time.perf_counter(), True, task.done
        traits = task.partial() if task.partial is not None else {}
        done, total = task.done, task.total
        self.runner.main.post(lambda: self._show_partial(task, traits, done, total))

    def _check(self, task: Task) -> None:
        if self.runner.generation[task.name] != task.generation:
            raise Cancelled("superseded by a newer request", by_user=False)
        if task.cancelled.is_set():
            raise Cancelled()

    # ------------------------------------------------------------ computing one panel
    def _compute_panel(self, name: str) -> None:
        """Compute panel ``name`` on this thread; its results are set on the widget's thread."""
        task = Task(name, self.runner.generation[name])
        post = self.runner.main.post
        background = name in self.runner.background
        self._tasks[name] = task
        post(lambda: self._started(task, background))
        start = time.perf_counter()
        self._local.task = task
        try:
            # the model's flags have one owner for the whole job (shared with any job overlapping it)
            # a background job on a worker leaves a core to the kernel's thread and the front end (cores.py);
            # computed on the calling thread (a cell, a script: nobody to leave it to) it keeps every core
            on_worker = background and threading.current_thread() is not threading.main_thread()
            with self.model_turns.kernel(), inference_state(self.net.model), one_core_free() if on_worker else nullcontext():
                self._check(task)  # cancelled or superseded while it waited for the model
                result = self.panels[name].compute(self)
            if task.cancelled.is_set():  # a panel without progress calls: Cancel takes effect at its end
                raise Cancelled()
        except Cancelled as stop:
            if stop.by_user and task.shown != task.done and 0 < task.done < task.total:
                self._push_partial(task)  # what was computed up to the Cancel is what stays shown
            post(lambda by_user=stop.by_user: self._stopped(task, by_user))  # (``stop`` is unbound after the block)
            return
        except Exception as exc:  # any failure is shown in the widget, which keeps working
            message = str(exc) if isinstance(exc, CnnWidgetsError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, CnnWidgetsError):
                self.log.debug(traceback.format_exc())
            post(lambda message=message: self._failed(task, message))
            return
        finally:
            self._local.task = None
            if self._tasks.get(name) is task:
                del self._tasks[name]
        elapsed = round(time.perf_counter() - start, 4)
        post(lambda: self._finished(task, result, elapsed, background))

    def _current(self, task: Task) -> bool:
        return self.runner.generation[task.name] == task.generation

    def _set_progress(self, name: str, info: ProgressInfo) -> None:
        self.progress = {**self.progress, name: info}

    def _started(self, task: Task, background: bool) -> None:
        if not self._current(task):
            return
        with self.hold_sync():
            if self.runner.lanes.get(task.name) != LONG_LANE:
                self.working = task.name  # (a long job shows its own progress, not the status line)
            if background:
                self._set_progress(task.name, {"state": "running", "done": 0, "total": 0, "message": "", "unit": ""})

    def _show_partial(self, task: Task, traits: dict, done: int, total: int) -> None:
        if not self._current(task):
            return  # (one computed before a Cancel is still shown: it is what the user saw coming)
        with self.hold_sync():
            for trait, value in traits.items():
                setattr(self, trait, value)
            self._set_progress(task.name, {"state": "running", "done": done, "total": total, "message": "", "unit": task.unit})

    def _finished(self, task: Task, result: dict, elapsed: float, background: bool) -> None:
        if not self._current(task):
            return  # a newer request for this panel came in meanwhile; never show the stale result
        with self.hold_sync():
            for trait, value in result.items():
                setattr(self, trait, value)
            self.timings = {**self.timings, task.name: elapsed}
            self._clear_error(task.name)
            self.panels[task.name].applied(self)
            if background or task.reported:
                self._set_progress(task.name, {"state": "done", "done": task.total, "total": task.total, "message": "",
                                               "unit": task.unit})

    def _stopped(self, task: Task, by_user: bool) -> None:
        if not by_user or not self._current(task):
            return  # superseded: the newer computation shows its own state
        self._set_progress(task.name, {"state": "cancelled", "done": task.done, "total": task.total,
                                       "message": _cancel_message(task.done, task.total, task.unit), "unit": task.unit})

    def _failed(self, task: Task, message: str) -> None:
        if not self._current(task):
            return
        with self.hold_sync():
            self._report(task.name, message)
            self._set_progress(task.name, {"state": "error", "done": task.done, "total": task.total,
                                           "message": message.splitlines()[0] if message else "error", "unit": task.unit})

    # ------------------------------------------------------------ cancel, wait
    def cancel(self, panel: str | None = None) -> None:
        """Stop the computation of ``panel`` (a slow panel or a job) at its next step; ``None``: every slow
        panel (what the status line's Cancel does; a visualisation or an atlas build has its own Stop).

        What it had drawn stays, marked cancelled; a later change of its settings (or
        :meth:`recompute`) computes it again.
        """
        if panel is not None:
            check_choice("panel", panel, self.panels)  # the same OptionError as recompute and save_figure
        names = [panel] if panel is not None else sorted(p for p, lane in self.runner.lanes.items() if lane != LONG_LANE)
        for name in self.runner.cancel(names):  # queued, not started: never computed
            self._set_progress(name, {"state": "cancelled", "done": 0, "total": 0, "message": "cancelled before it started",
                                      "unit": ""})
        for name in names:
            task = self._tasks.get(name)
            if task is not None:
                task.cancelled.set()
        self.runner.finish_if_idle()

    def recompute(self, panel: str) -> None:
        """Compute ``panel`` again with the current settings (what the panel's Compute button does);
        for a job (``"visualize"``, ``"atlas"``) start it (its Start / Build button)."""
        check_choice("panel", panel, self.panels)
        self.runner.request([panel])

    def compute(self) -> None:
        """Finish any pending computation now (front-end changes are otherwise batched or run in the background)."""
        self.runner.run_all()
        self.runner.wait()

    def _on_progress_message(self, _widget, content, buffers) -> None:
        if not isinstance(content, dict) or content.get("type") not in ("cancel", "recompute"):
            return
        try:
            panel = content.get("panel")
            if content["type"] == "cancel":
                self.cancel(panel)
            else:
                self.recompute(str(panel))
        except CnnWidgetsError as exc:
            self._report("input", str(exc))


def _cancel_message(done: int, total: int, unit: str) -> str:
    if total > 0:
        return f"cancelled after {done} of {total} {unit}".rstrip()
    return "cancelled"
