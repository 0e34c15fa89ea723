"""Ray scans under real faults: worker processes SIGKILLed by this test (while they start, in the
middle of a batch, and at random through a 2,000-image scan), workers that die on their own while
starting, a batch that kills every worker it reaches, and a worker whose constructor raises.

Every scan that completes must equal a local scan of the same images with the same batch size; a
scan that gives up must say what is done and hand back a partial scan (``error.scan``) that
resumes to the same result.

Kills are real ``SIGKILL``s of Ray worker processes: a worker writes its own pid to a file (from the
dataset's ``__setstate__``, which runs while Ray deserializes the worker's constructor arguments, or
from ``__getitem__``), and a thread of this test kills that pid after checking it is a Ray worker
(``ray::`` process title), never this process or the raylet.

One local Ray cluster (2 CPUs) serves the module, started lean as in ``test_scan_ray.py``.
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
from torch.utils.data import Dataset

from cnn_widgets.engine.scan import Scan, ScanError, scan
from cnn_widgets.engine.scan import ray_driver
from scan_checks import assert_same_scan, integer_images, integer_net, ray_cluster

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(__name__) as head:
        yield head


@pytest.fixture()
def folder():
    """A scratch folder the Ray workers and this test share (not tmp_path: concurrent pytest runs on a
    shared machine prune each other's numbered tmp dirs)."""
    with tempfile.TemporaryDirectory(prefix="cw-ray-faults-") as path:
        yield Path(path)


# ------------------------------------------------------------------------------------------ helpers


def ray_scan(net, images, **kw):
    kw.setdefault("progress", False)
    return scan(net, images, backend="ray", **kw)


def local_scan(net, images, **kw):
    kw.setdefault("progress", False)
    return scan(net, images, **kw)



def claim_a_kill(folder: str, kills: int) -> bool:
    """In a Ray worker: take one of ``kills`` numbered kill slots (first come, first served, across
    processes); if one was free, publish this process's pid for the test's killer and wait for it."""
    for n in range(kills):
        try:
            os.close(os.open(os.path.join(folder, f"claim-{n}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        part = os.path.join(folder, f"kill-{n}.part")
        Path(part).write_text(str(os.getpid()))
        os.replace(part, os.path.join(folder, f"kill-{n}.pid"))  # whole, or not there
        time.sleep(20)  # the killer needs milliseconds; a worker still alive after this fails the test
        return True
    return False


def is_ray_worker(pid: int) -> bool:
    """Whether ``pid`` is a Ray worker process (title ``ray::...``) other than this test process."""
    if pid == os.getpid():
        return False
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False
    return title.startswith("ray::")


def sigkill(pid: int) -> None:
    assert pid != os.getpid() and is_ray_worker(pid), f"pid {pid} is not a Ray worker process"
    os.kill(pid, signal.SIGKILL)


class KillerThread(threading.Thread):
    """A test thread that kills Ray workers: a subclass's ``step()`` runs every 10 ms until it
    returns True or the thread is stopped; an error in it (a pid that is not a Ray worker) is raised
    again on exit."""

    def __init__(self):
        super().__init__(daemon=True)
        self.killed, self.error, self.done = [], None, threading.Event()

    def kill(self, pid: int) -> None:
        sigkill(pid)
        self.killed.append(pid)

    def run(self):
        try:
            while not self.done.is_set() and not self.step():
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - handed to the test on exit
            self.error = exc

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()
        if self.error is not None and exc[0] is None:
            raise self.error


class PublishedPidKiller(KillerThread):
    """SIGKILLs every Ray worker that publishes its pid in ``folder`` (``kill-<n>.pid``)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder, self.seen = folder, set()

    def step(self) -> bool:
        for path in sorted(self.folder.glob("kill-*.pid")):
            if path.name not in self.seen:
                self.seen.add(path.name)
                self.kill(int(path.read_text()))
        return False


class RandomKiller(KillerThread):
    """SIGKILLs a random live Ray worker (one of those that loaded the last 100 images) each time
    the scan has loaded an image past one of ``marks`` (``LoggedSlowImages`` logs the loads)."""

    def __init__(self, log: Path, marks: list[int], seed: int):
        super().__init__()
        self.log, self.marks, self.chooser = log, list(marks), random.Random(seed)

    def step(self) -> bool:
        text = self.log.read_text()
        rows = [line.split() for line in text[: text.rfind("\n") + 1].splitlines()]  # whole lines only
        if rows and max(int(i) for _, i in rows) >= self.marks[0]:
            live = [p for p in sorted({int(p) for p, _ in rows[-100:]} - set(self.killed)) if is_ray_worker(p)]
            if live:
                self.kill(self.chooser.choice(live))
                self.marks.pop(0)
        return not self.marks


class KilledWhileStarting(Dataset):
    """Images; the first ``kills`` worker processes to unpickle this dataset (in the Ray worker's
    constructor) publish their pid and wait there to be SIGKILLed."""

    def __init__(self, images, folder, kills):
        self.images, self.folder, self.kills = images, str(folder), kills

    def __setstate__(self, state):
        self.__dict__.update(state)
        claim_a_kill(self.folder, self.kills)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


class KilledMidBatch(Dataset):
    """Images; the first worker to load image ``at`` publishes its pid and waits to be SIGKILLed."""

    def __init__(self, images, folder, at):
        self.images, self.folder, self.at = images, str(folder), at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.at:
            claim_a_kill(self.folder, 1)
        return self.images[i]


class DiesWhileStarting(Dataset):
    """Images that no worker can unpickle without its process exiting (each try is logged)."""

    def __init__(self, images, log):
        self.images, self.log = images, str(log)

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        os._exit(1)  # no exception, no goodbye: the process is simply gone

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


class MissingOnTheNode(Dataset):
    """Images whose unpickling raises, as it does on a node without a package they need."""

    def __init__(self, images, log):
        self.images, self.log = images, str(log)

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        raise ModuleNotFoundError("No module named 'cw_missing_package'")

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


class KillsEveryWorker(Dataset):
    """Images; a worker loading image ``at`` exits while the counter file counts fewer than ``times``
    deaths (each death adds one), then image ``at`` loads like any other."""

    def __init__(self, images, at, counter, times):
        self.images, self.at, self.counter, self.times = images, at, str(counter), times

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.at:
            died = int(Path(self.counter).read_text()) if os.path.exists(self.counter) else 0
            if died < self.times:
                Path(self.counter).write_text(str(died + 1))
                # a moment of work first: a process gone within a millisecond of its start may not
                # have sent the answer to the driver's start probe, and would count as dying at start
                time.sleep(0.5)
                os._exit(1)
        return self.images[i]


class LoggedSlowImages(Dataset):
    """Images that take ``delay`` seconds each to load; every load appends ``pid index`` to a log."""

    def __init__(self, images, log, delay):
        self.images, self.log, self.delay = images, str(log), delay

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        time.sleep(self.delay)
        with open(self.log, "a") as f:  # one short O_APPEND write: lines never interleave
            f.write(f"{os.getpid()} {i}\n")
        return self.images[i]


# ------------------------------------------------------------------------------------------ tests
def test_workers_killed_while_starting_are_replaced(cluster, folder):
    """Both first workers are SIGKILLed while Ray unpickles their constructor arguments, before any
    batch: they are replaced and their batches sent again, none counted as a batch's fault."""
    net, images = integer_net(), integer_images(30, ties=False)
    with PublishedPidKiller(folder) as killer:
        distributed = ray_scan(net, KilledWhileStarting(images, folder, kills=2), k=5, batch_size=4, workers=2)
    assert len(killer.killed) == 2  # both really died, by SIGKILL
    assert distributed.complete and distributed.count == 30
    assert_same_scan(distributed, local_scan(net, images, k=5, batch_size=4), codes_rtol=1e-6)


def test_a_worker_killed_mid_batch_by_pid(cluster, folder):
    """The worker loading image 17 (batch 16..19) is SIGKILLed there; the other one carries on and
    the batch is done again."""
    net, images = integer_net(), integer_images(30, ties=False)
    with PublishedPidKiller(folder) as killer:
        distributed = ray_scan(net, KilledMidBatch(images, folder, at=17), k=5, batch_size=4, workers=2)
    assert len(killer.killed) == 1
    assert distributed.complete and distributed.count == 30
    assert_same_scan(distributed, local_scan(net, images, k=5, batch_size=4), codes_rtol=1e-6)


def test_workers_that_keep_dying_while_starting_stop_the_scan_with_the_reason(cluster, folder, monkeypatch):
    """Every worker process exits while it unpickles the images: after ``MAX_TRIES`` in a row (lowered
    to 2 here: each try starts a process that imports torch) the scan stops and says so."""
    monkeypatch.setattr(ray_driver, "MAX_TRIES", 2)
    log = folder / "starts"
    net, images = integer_net(), integer_images(12, ties=False)
    with pytest.raises(ScanError) as caught:
        ray_scan(net, DiesWhileStarting(images, log), k=5, batch_size=4, workers=1)
    message = str(caught.value)
    pids = log.read_text().split()
    assert len(pids) == 2  # tried MAX_TRIES times, then gave up
    assert "the Ray workers kept dying while starting: 2 in a row died before their first batch" in message
    # Ray's reason for the last death, with its pid
    assert f"(the last, given images 0..3 first: worker pid {pids[-1]}: " in message
    assert "no image is done yet" in message and "continues from image 0" in message
    assert caught.value.scan is not None and caught.value.scan.count == 0


def test_a_constructor_that_raises_stops_the_scan_at_once_with_its_error(cluster, folder):
    """A real exception while a worker starts (a package missing on the node) is not retried."""
    log = folder / "starts"
    net, images = integer_net(), integer_images(12, ties=False)
    with pytest.raises(ScanError) as caught:
        ray_scan(net, MissingOnTheNode(images, log), k=5, batch_size=4, workers=1)
    message = str(caught.value)
    assert "ModuleNotFoundError: No module named 'cw_missing_package'" in message
    assert "installed on every node" in message and "kept dying" not in message
    assert len(log.read_text().split()) == 1  # no replacement worker was tried
    assert caught.value.scan is not None and caught.value.scan.count == 0


def test_a_batch_that_kills_every_worker_stops_with_a_partial_scan_that_resumes(cluster, folder, monkeypatch):
    """Image 13 (batch 12..15) kills every worker that loads it, ``MAX_TRIES`` times (lowered to 2
    here, as each death costs a new worker process): the scan stops with images 0..11 done, all of
    them (the batches before it finish, they are not thrown away), and resuming from ``error.scan``
    gives the uninterrupted local scan."""
    monkeypatch.setattr(ray_driver, "MAX_TRIES", 2)
    counter = folder / "deaths"
    net, images = integer_net(), integer_images(26, ties=False)
    dataset = KillsEveryWorker(images, at=13, counter=counter, times=2)
    with pytest.raises(ScanError) as caught:
        ray_scan(net, dataset, k=5, batch_size=4, workers=2)
    assert counter.read_text() == "2"  # two workers died on it
    error = caught.value
    message = str(error)
    assert "images 12..15 killed a Ray worker 2 times" in message
    assert "images 0..11 are done (the partial scan is error.scan)" in message
    assert "net.scan(images, backend='ray', resume=error.scan) continues from image 12" in message
    partial = error.scan
    assert isinstance(partial, Scan) and partial.count == 12 and not partial.complete
    assert net.last_scan is partial
    resumed = ray_scan(net, dataset, resume=partial, workers=1)  # the counter is spent: image 13 loads
    assert resumed is partial and resumed.complete and resumed.count == 26
    assert_same_scan(resumed, local_scan(net, images, k=5, batch_size=4), codes_rtol=1e-6)


def test_soak_random_workers_killed_through_a_long_scan(cluster, folder):
    """2,000 images in 40 batches on 2 workers; five times, at spread-out points of the scan, a
    random live worker (one that has loaded images lately, a replacement too) is SIGKILLed. Nothing
    is lost or counted twice."""
    log = folder / "loads"
    log.touch()
    net, images = integer_net(), integer_images(2000, seed=1, ties=False)
    with RandomKiller(log, marks=[250, 600, 950, 1300, 1650], seed=7) as killer:
        distributed = ray_scan(net, LoggedSlowImages(images, log, delay=0.002), k=6, batch_size=50, workers=2)
    assert len(killer.killed) == 5  # five real SIGKILLs of Ray workers during the scan
    assert distributed.complete and distributed.count == 2000 and not distributed.interrupted
    assert_same_scan(distributed, local_scan(net, images, k=6, batch_size=50), codes_rtol=1e-6)
