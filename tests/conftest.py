"""Suite-wide: an opt-in memory log (``CW_MEMORY_LOG=path pytest ...``).

After each test it appends one tab-separated line: the test id, this process's resident memory and
its high-water mark (``VmRSS`` / ``VmHWM`` of ``/proc/self/status``, MiB) and the resident memory of
its child processes (kernels, browsers, Jupyter servers, Ray), so the test that raises the suite's
peak can be found (the suite should stay under ~8 GB). Without the variable it does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_LOG = os.environ.get("CW_MEMORY_LOG")


def _status_mib(pid: int | str, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    children, found = {}, []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


if _LOG:
    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(item, nextitem):
        me = os.getpid()
        children = sum(_status_mib(pid, "VmRSS") for pid in _descendants(me))
        with open(_LOG, "a") as log:
            log.write(f"{item.nodeid}\t{_status_mib(me, 'VmRSS'):.0f}\t{_status_mib(me, 'VmHWM'):.0f}\t{children:.0f}\n")
