"""How many cores the Explorer's background jobs use: every usable core but one.

The core left over is the kernel's thread (which sends the results), the front end that draws them
and the user's own code. Measured on this 2-core machine: ``benchmarks/bench_visualize_stream.py``
(the Visualise run: one thread makes as many steps a second as two when the machine is otherwise
idle, and far more under any other load, as two OpenMP threads wait at every operation for the one
that was preempted) and ``benchmarks/bench_interactions.py`` (the slow panels in JupyterLab, where
the browser and the server take CPU while the kernel computes: with one thread instead of two,
occlusion of the cat at window 48 took 1.43 s instead of 2.28 s after an image change, 1.86 s
instead of 2.57 s after a stride change, and a saliency map 0.14 s instead of 0.27 s; kernel
timings, medians of 3, load 1.3-2.0).
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
