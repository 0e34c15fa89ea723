"""engine.threads: one thread's intra-op count, never another's (torch.set_num_threads also sets the
count every new thread starts with)."""

from __future__ import annotations

import threading

import pytest
import torch

from cnn_widgets.engine.threads import own_threads, set_own_threads


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def in_thread(fn):
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("value", fn()))
    worker.start()
    worker.join()
    return out["value"]


def test_a_thread_started_meanwhile_keeps_the_process_default():
    holding, release, seen = threading.Event(), threading.Event(), {}

    def background():
        with own_threads(1) as count:
            seen["inside"] = (count, torch.get_num_threads())
            holding.set()
            release.wait(10)
        seen["after"] = torch.get_num_threads()

    worker = threading.Thread(target=background)
    worker.start()
    assert holding.wait(10)
    try:
        # a user's thread that first uses torch now, and the main thread: both keep 2
        assert in_thread(lambda: (torch.nn.Conv2d(3, 2, 3)(torch.randn(1, 3, 8, 8)), torch.get_num_threads())[1]) == 2
        assert torch.get_num_threads() == 2
    finally:
        release.set()
        worker.join()
    assert seen == {"inside": (1, 1), "after": 2}


def test_never_more_than_the_thread_has_and_results_unchanged():
    x, w = torch.randn(2, 8, 20, 20), torch.randn(4, 8, 3, 3)
    reference = torch.nn.functional.conv2d(x.double(), w.double())

    def run():
        with own_threads(8) as count:
            return count, torch.nn.functional.conv2d(x, w)

    count, out = in_thread(run)
    assert count == 2
    torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-4)
    assert in_thread(lambda: (set_own_threads(1), torch.get_num_threads())[1]) == 1
    assert torch.get_num_threads() == 2
