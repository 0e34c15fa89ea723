"""The intra-op thread count of the calling thread only.

``torch.set_num_threads`` is not per thread: besides the calling thread's OpenMP setting it sets
the count every thread takes when it first uses torch, so a user's thread started while background
work runs with one thread would run with one thread for its whole life (measured: a user thread
started during an Explorer computation saw 1 of 2). :func:`set_own_threads` sets the calling
thread's OpenMP count (``omp_set_num_threads``, which torch's parallel loops, oneDNN and MKL read)
and nothing else.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["own_threads", "set_own_threads"]


@functools.cache
def _omp_set_num_threads():
    """``omp_set_num_threads`` of the OpenMP runtime torch runs on (``None`` if there is none)."""
    if "OpenMP" not in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]:
        return None
    candidates = sorted((Path(torch.__file__).parent / "lib").glob("lib*omp*.so*"))
    for library in [*map(str, candidates), None]:  # torch's own runtime, else the process's
        try:
            function = ctypes.CDLL(library).omp_set_num_threads
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [ctypes.c_int], None
        return function
    return None


def set_own_threads(count: int) -> bool:
    """Give the calling thread ``count`` intra-op threads, leaving every other thread's count and
    the count new threads start with alone. False (and nothing changed) where torch does not run
    on an OpenMP runtime that allows it."""
    function = _omp_set_num_threads()
    if function is None:
        return False
    torch.get_num_threads()  # torch's first use in this thread sets it from the process default: before ours
    function(max(1, int(count)))
    return True


@contextmanager
def own_threads(count: int) -> Iterator[int]:
    """Run the block with ``count`` intra-op threads in the calling thread (at most its count now);
    yields the count it runs with."""
    before = torch.get_num_threads()
    wanted = max(1, min(before, int(count)))
    changed = wanted != before and set_own_threads(wanted)
    try:
        yield wanted if changed else before
    finally:
        if changed:
            set_own_threads(before)
