"""How many cores the Explorer's background jobs use: every usable core but one.

The core left over is the kernel's thread (which sends the results), the front end that draws them
and the user's own code. Measured on this 2-core machine: ``benchmarks/bench_visualize_stream.py``
(the Visualise run: one thread makes as many steps a second as two when the machine is otherwise
idle, and far more under any other load, as two OpenMP threads wait at every operation for the one
that was preempted); for the slow panels it neither helps nor hurts: ``benchmarks/
bench_interactions.py --background-threads 1`` and ``2`` run alternately (1, 2, 1, 2; JupyterLab,
load 1.2-2.3) gave the occlusion panel 1.56 / 1.45 / 1.66 / 1.45 s after a window change and
2.34 / 2.14 / 2.18 / 2.15 s after a stride change (kernel medians of 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..engine.threads import own_threads


def usable_cpus() -> int:
    """The cores this process may run on (its affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextmanager
def one_core_free() -> Iterator[int]:
    """Run the block with every usable core but one as the calling thread's intra-op threads (never
    more than it has now); every other thread keeps its count (:func:`~..engine.threads.own_threads`)."""
    with own_threads(usable_cpus() - 1) as count:
        yield count
