"""Drive a real Explorer in a real IPython kernel through the messages its front end sends.

A :class:`KernelDriver` starts an ``ipykernel`` kernel on the test process's own python
(``sys.executable``, through a kernelspec written to a temporary folder, with ``OMP_NUM_THREADS=1``)
and talks to it as JupyterLab would:

* ``execute(code)`` / ``value(expr)``: run a cell; read a JSON value back;
* ``update(comm_id, state)``: a trait change made in the front end (a ``comm_msg`` with
  ``method: "update"``), ``custom(comm_id, content)``: a custom message (``method: "custom"``);
* ``wait_idle(var)``: poll until the Explorer in ``var`` has no job running or queued.

A background thread drains the iopub channel all the time (the kernel never blocks on a full
socket): it keeps each cell's stdout, the kernel's stderr and counts the widget messages.

What the front end sends for the jobs (recompute / cancel of a panel, the Visualise run, the atlas)
is built in one place, :func:`job_message`. ``CW_KERNEL_PROTOCOL=old`` in the environment selects
the protocol from before the runner (``{"type": "visualize", "action": "start"}``, ...), to run these
tests against an older commit.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

KERNEL_NAME = "cnn-widgets-test"
MARKER = "__cw_kernel_value__:"
SLOW_PANELS = ("saliency", "tree", "occlusion")
JOBS = (*SLOW_PANELS, "visualize", "atlas")
PROTOCOL = os.environ.get("CW_KERNEL_PROTOCOL", "new")  # "new": the runner's protocol; "old": before it
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class KernelError(RuntimeError):
    """A cell raised in the kernel (the message holds the kernel's traceback)."""


def job_message(action: str, job: str) -> dict | None:
    """The custom message content of a front end's Compute (``action="recompute"``) or Cancel
    (``action="cancel"``) of ``job`` (a slow panel, ``"visualize"`` or ``"atlas"``); None when the
    protocol has no such message."""
    assert action in ("recompute", "cancel") and job in JOBS, (action, job)
    if PROTOCOL == "old" and job == "visualize":
        return {"type": "visualize", "action": "start" if action == "recompute" else "stop"}
    if PROTOCOL == "old" and job == "atlas":
        return {"type": "atlas", "action": "build"} if action == "recompute" else None
    return {"type": action, "panel": job}


def atlas_click(action: str, row: int, col: int) -> dict:
    """An atlas cell click (``"explain"``) or hover (``"hover"``)."""
    return {"type": "atlas", "action": action, "row": int(row), "col": int(col)}


from .kernel_helpers import CountTraces, UserLoop, explorer_busy, model_differences, model_snapshot  # noqa: F401,E402

HELPERS = Path(__file__).with_name("kernel_helpers.py")


# ---------------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------------


class KernelDriver:
    """One ipykernel kernel running ``sys.executable``; see the module docstring.

    Parameters
    ----------
    env
        Extra environment variables of the kernel (``OMP_NUM_THREADS=1`` is always set).
    startup_timeout
        Seconds to wait for the kernel to answer.
    """

    def __init__(self, env: dict[str, str] | None = None, startup_timeout: float = 90.0):
        self._dir = tempfile.TemporaryDirectory(prefix="cw-kernel-")
        kernels = Path(self._dir.name, "kernels")
        spec = kernels / KERNEL_NAME
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "cnn_widgets tests", "language": "python",
            "env": {"OMP_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        }))
        specs = KernelSpecManager(kernel_dirs=[str(kernels)])
        self.km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
        # cwd: an empty folder, so the kernel imports cnn_widgets exactly as the test process does
        # (PYTHONPATH first, then the installed package), never from a checkout it happens to sit in
        self._log = open(Path(self._dir.name, "kernel.log"), "wb")  # the process's own stdout / stderr (a crash)
        self.km.start_kernel(env={**os.environ, "OMP_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1", **(env or {})},
                             cwd=self._dir.name, stdout=self._log, stderr=self._log)
        self.kc = self.km.client()
        self.kc.start_channels()
        self._lock = threading.Lock()
        self._stdout: dict[str, list[str]] = defaultdict(list)  # parent msg_id -> stdout text
        self._idle: dict[str, threading.Event] = {}  # msg_id of a message sent -> set once the kernel handled it
        self.stderr: list[str] = []  # everything the kernel wrote to stderr (worker threads' tracebacks too)
        self.iopub_counts: Counter[str] = Counter()  # iopub messages by type
        self._closing = threading.Event()
        self._drainer = threading.Thread(target=self._drain, name="iopub-drain", daemon=True)
        try:
            # wait_for_ready reads the iopub socket itself: the drainer starts only after it, since two
            # threads reading one zmq socket split a multipart message (CI saw an empty one: IndexError
            # in Session.deserialize at kernel start)
            self.kc.wait_for_ready(timeout=startup_timeout)
            self._drainer.start()
            self.install_helpers()
        except BaseException:
            self.shutdown()
            raise

    # ------------------------------------------------------------------ iopub
    def _drain(self) -> None:
        while not self._closing.is_set():
            try:
                msg = self.kc.iopub_channel.get_msg(timeout=0.1)
            except queue.Empty:
                continue
            except Exception:  # the channel closed under us at shutdown
                if self._closing.is_set():
                    return
                continue
            kind = msg["header"]["msg_type"]
            parent = msg.get("parent_header", {}).get("msg_id", "")
            content = msg["content"]
            with self._lock:
                self.iopub_counts[kind] += 1
                if kind == "stream" and content.get("name") == "stdout":
                    self._stdout[parent].append(content["text"])
                elif kind == "stream":
                    self.stderr.append(content["text"])
                elif kind == "error":
                    self.stderr.append(_ANSI.sub("", "\n".join(content.get("traceback", []))))
                elif kind == "status" and content.get("execution_state") == "idle" and parent in self._idle:
                    self._idle[parent].set()

    def _send(self, msg_type: str, content: dict, track: bool = True) -> str:
        msg = self.kc.session.msg(msg_type, content)
        msg_id = msg["header"]["msg_id"]
        if track:  # registered before its idle status can come
            with self._lock:
                self._idle[msg_id] = threading.Event()
        self.kc.shell_channel.send(msg)
        return msg_id

    def wait_handled(self, msg_id: str, timeout: float = 60.0) -> None:
        """Block until the kernel has handled message ``msg_id`` (its iopub ``idle`` came)."""
        with self._lock:
            event = self._idle[msg_id]  # (sent with track=True)
        deadline = time.monotonic() + timeout
        while not event.wait(0.5):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the kernel did not handle message {msg_id} within {timeout} s")
        with self._lock:
            self._idle.pop(msg_id, None)

    def _check_alive(self) -> None:
        if not self.km.is_alive():
            self._log.flush()
            log = Path(self._dir.name, "kernel.log").read_text(errors="replace")
            raise KernelError(f"the kernel died; its output:\n{log[-4000:]}\nits stderr messages:\n{''.join(self.stderr)[-4000:]}")

    # ------------------------------------------------------------------ cells
    def execute(self, code: str, timeout: float = 120.0) -> str:
        """Run ``code`` as a cell; return its stdout; raise :class:`KernelError` with the traceback on error."""
        msg_id = self._send("execute_request", {"code": code, "silent": False, "store_history": False,
                                                "user_expressions": {}, "allow_stdin": False, "stop_on_error": False})
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.kc.get_shell_msg(timeout=0.5)
            except queue.Empty:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cell did not finish within {timeout} s:\n{code}") from None
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        self.wait_handled(msg_id, max(5.0, deadline - time.monotonic()))  # its stdout has arrived
        with self._lock:
            out = "".join(self._stdout.pop(msg_id, []))
        content = reply["content"]
        if content["status"] != "ok":
            trace = _ANSI.sub("", "\n".join(content.get("traceback", [])))
            raise KernelError(f"{content.get('ename')}: {content.get('evalue')}\n{trace}\n--- cell:\n{code}")
        return out

    def value(self, expr: str, timeout: float = 120.0):
        """The JSON-decoded value of Python expression ``expr`` evaluated in the kernel."""
        out = self.execute(f"import json as _cw_json\nprint({MARKER!r} + _cw_json.dumps({expr}))", timeout)
        lines = [line for line in out.splitlines() if line.startswith(MARKER)]
        if not lines:
            raise KernelError(f"no value printed for {expr!r}; stdout was:\n{out}")
        return json.loads(lines[-1][len(MARKER):])

    def install_helpers(self) -> None:
        """Define the kernel-side helpers of this module (``explorer_busy``, ``model_snapshot``, ...) in the kernel."""
        self.execute(HELPERS.read_text())

    # ------------------------------------------------------------------ widget messages
    def comm_id(self, var: str) -> str:
        """The comm id of the widget stored in kernel variable ``var``."""
        return self.value(f"{var}.comm.comm_id")

    def _comm_msg(self, comm_id: str, data: dict, wait: bool) -> str:
        msg_id = self._send("comm_msg", {"comm_id": comm_id, "data": data}, track=wait)
        if wait:
            self.wait_handled(msg_id)
        return msg_id

    def update(self, comm_id: str, state: dict, wait: bool = False) -> str:
        """What the front end sends when the user changes traits (``wait``: until the kernel handled it)."""
        return self._comm_msg(comm_id, {"method": "update", "state": state, "buffer_paths": []}, wait)

    def custom(self, comm_id: str, content: dict | None, wait: bool = False) -> str | None:
        """A custom message from the front end (``None``: nothing to send, e.g. no such message in this protocol)."""
        if content is None:
            return None
        return self._comm_msg(comm_id, {"method": "custom", "content": content}, wait)

    def job(self, comm_id: str, action: str, job: str, wait: bool = False) -> str | None:
        """Compute (``action="recompute"``) or cancel a job: a slow panel, ``"visualize"`` or ``"atlas"``."""
        return self.custom(comm_id, job_message(action, job), wait)

    def wait_idle(self, var: str, timeout: float = 120.0, settle: int = 2) -> float:
        """Poll until the Explorer ``var`` has nothing running or queued, ``settle`` polls in a row
        (each poll is a cell, so what the workers handed to the kernel's loop has been run too).
        Returns the seconds waited."""
        start = time.monotonic()
        idle = 0
        while idle < settle:
            busy = self.value(f"explorer_busy({var})")
            idle = 0 if busy else idle + 1
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{var} still busy after {timeout} s")
            if busy:
                time.sleep(0.1)
        return time.monotonic() - start

    # ------------------------------------------------------------------ end
    def shutdown(self) -> None:
        """Stop the kernel (at once) and the channels; safe to call twice."""
        self._closing.set()
        if self._drainer.ident is not None:  # stopped before the channels close: one reader of a socket
            self._drainer.join(5)
        try:
            self.kc.stop_channels()
        except Exception:
            pass
        try:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
        finally:
            self._log.close()
            self._dir.cleanup()

