"""The driver's side of a Ray scan (:mod:`.ray_backend`): batches sent to workers, workers that die
replaced, results merged into the scan in image order.

Batch identity is explicit: a batch is its first image index. The driver keeps results that
arrive early in a reorder buffer and commits batch ``start`` only when every image before it is
committed, so each batch is folded exactly once; a batch whose worker died is sent again and a
late duplicate is dropped. At most ``2 * workers`` batches are in flight or waiting, so the
driver's memory is the local scan's bound plus that many partial states. Ctrl-C, ``save_to`` and
``resume`` behave as in a local scan (only whole batches, in order, are kept).

Workers that die. Ray never restarts a worker (``max_restarts=0``): the driver replaces a dead one
itself and sends its unfinished batches again, to a worker that is up where there is one, so no
batch runs twice behind its back. Every new worker is first sent a ``pid()`` call, its start probe;
an actor runs its calls in order, so an answered probe means its constructor ran, and a worker that
dies after answering died running its oldest unfinished batch. That batch counts a try (the batches
queued behind it do not); a batch that has killed ``MAX_TRIES`` workers stops the scan. A worker
that dies before answering (killed while it unpickles the network or the images: out of memory, a
lost node) counts against its place instead, and ``MAX_TRIES`` such deaths in a row stop the scan
("the Ray workers kept dying while starting", with Ray's last reason). Ray 2.60 tells these two
deaths apart only in the text of its ``ActorDiedError`` ("The actor never ran"), hence the probe. A
constructor that *raises* is another matter: Ray reports an ``ActorDiedError`` with
``actor_init_failed`` and the exception's traceback (a package missing on the node, images not
reachable there); it would fail the same way on every try, so the scan stops at once with that
exception's text. When a batch stops the scan (its own error, such as an unreadable image, or
``MAX_TRIES`` dead workers), the batches before it still finish and are committed, as in a local
scan, and the error says which images are done: :func:`~.run.scan` hands the partial scan over as
``error.scan`` (and ``net.last_scan``), and ``resume=error.scan`` continues at its first unscanned
image.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import ScanError
from .ray_backend import RayDataSource, ScanWorker, import_ray
from .sources import Source
from .state import merge_layer_states

if TYPE_CHECKING:  # pragma: no cover
    from .result import Scan

__all__ = ["MAX_TRIES", "merge_parts", "ray_pass"]

#: A batch whose worker died this many times stops the scan (a batch that kills every worker); so do
#: this many workers in a row of one place that die while starting.
MAX_TRIES = 4
#: How long the driver waits for a dead worker's other calls to resolve (they fail within a second or two).
DEATH_WAIT_S = 30.0


def _work(source: Source, start: int, batch_size: int, ray):
    """``(start, stop, method, payload)`` for every batch from ``start``, in order."""
    if isinstance(source, RayDataSource):
        for first, rows in source.batches_of_rows(start, batch_size):
            yield first, first + len(rows["image"]), "scan_rows", ray.put({c: v for c, v in rows.items() if c != "path"})
        return
    loader = getattr(source, "loader", None)
    step = loader.batch_size if loader is not None and loader.batch_size else batch_size
    for first in range(start, len(source), step):
        yield first, min(first + step, len(source)), "scan_range", None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _death_reason(exc: BaseException) -> str:
    """Why Ray says a worker died, in one line: its pid and Ray's exit detail (not Ray's advice)."""
    text = _ANSI.sub("", str(exc))
    pid = re.search(r"^\s*pid: (\d+)\s*$", text, re.M)
    detail = re.search(r"Worker exit detail: (.*?)(?= Some common causes|$)", text, re.M)
    reason = detail.group(1).strip() if detail else _last_line(exc)
    return f"worker pid {pid.group(1)}: {reason}" if pid else reason


def _done_and_resume(result: "Scan") -> str:
    """What a scan that stops leaves done, and the call that continues it."""
    done = (f"images 0..{result.count - 1} are done (the partial scan is error.scan)" if result.count
            else "no image is done yet (error.scan is the empty partial scan)")
    return f"{done}; net.scan(images, backend='ray', resume=error.scan) continues from image {result.count}"


def _start_failed(exc: BaseException) -> ScanError:
    """A worker whose constructor raised (its own error, not a killed process): the same on every try."""
    return ScanError(f"the Ray workers could not start: {_last_line(exc)} (raised while a worker loaded the network "
                     "and the images; cnn_widgets and torch must be installed on every node, and the images "
                     "reachable there)")


def _actor_options(ray, resources: dict | None) -> dict:
    if resources is None:
        resources = {"num_cpus": 1}
        if ray.cluster_resources().get("GPU", 0) >= 1:  # GPUs where the cluster has them
            resources["num_gpus"] = 1
    resources.setdefault("num_cpus", 1)
    # The driver replaces a dead worker and sends its lost batches again itself (not Ray), so no
    # batch can run twice behind the driver's back.
    return {**resources, "max_restarts": 0, "max_task_retries": 0}


def merge_parts(result: "Scan", parts: dict) -> dict:
    """A worker's partial states of the batch after ``result.count`` merged into the committed ones."""
    layers = result._state.layers
    return {name: (merge_layer_states(layers[name], part, result.k), codes) for name, (part, codes) in parts.items()}


class _Slot:
    """A worker's place: its current actor, that actor's start probe (a ``pid()`` call sent first,
    answered once the constructor has run) and whether the probe has been answered."""

    def __init__(self, actor):
        self.actor, self.probe, self.up = actor, actor.pid.remote(), False


def ray_pass(result: "Scan", source: Source, start: int, batch_size: int, num_workers: int, bar,
             workers: int | None, resources: dict | None) -> None:
    """Scan images ``start ..`` of ``source`` on Ray workers, committing batches into ``result`` in order.

    A worker that dies is replaced and its batches are sent again, to a worker that is up where
    there is one. Only the batch it was running (its oldest unfinished call: an actor runs its calls
    in order) counts a try, and only if the worker had started (its start probe was answered); a
    worker that dies while starting counts for its place instead, ``MAX_TRIES`` in a row stop the
    scan. A constructor that raises stops the scan at once. A batch that stops the scan (its own
    error, or ``MAX_TRIES`` tries) first lets every batch before it finish and commit, as a local scan
    would have, then raises.
    """
    if start >= len(source):
        return
    ray = import_ray()
    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS (or ray.init(address=...) beforehand) picks an existing cluster
    options = _actor_options(ray, resources)
    cluster = ray.cluster_resources()
    for key, name in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        if options.get(key, 0) > cluster.get(name, 0):
            raise ScanError(f"a worker asks for {key}={options[key]:g} but the Ray cluster has {cluster.get(name, 0):g} "
                            f"{name}s in all; pass resources={{...}} that fit (ray.cluster_resources() lists them)")
    if workers is None:
        per = options.get("num_gpus") or options["num_cpus"] or 1
        workers = max(1, int(cluster.get("GPU" if options.get("num_gpus") else "CPU", 1) // per))
    workers = max(1, min(workers, -(-(len(source) - start) // batch_size)))
    device = "cuda" if options.get("num_gpus") else None
    payload = source if not isinstance(source, RayDataSource) else None
    net_ref, source_ref = ray.put(result.net), ray.put(payload)
    actor_class = ray.remote(ScanWorker).options(**options)
    died = ray.exceptions.RayActorError
    lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)  # a result lost, the worker lives
    unresolved = ray.exceptions.GetTimeoutError

    slots: list[_Slot] = []
    probes: dict = {}  # start probe not answered yet -> worker place
    start_deaths = [0] * workers  # workers of each place that died before starting, in a row

    def start_worker(a: int) -> None:
        """A new actor in place ``a`` (a new place when ``a == len(slots)``)."""
        slot = _Slot(actor_class.remote(net_ref, result.layers, result.k, source_ref, num_workers, device))
        if a == len(slots):
            slots.append(slot)
        else:
            slots[a] = slot
        probes[slot.probe] = a

    for a in range(workers):
        start_worker(a)
    work = _work(source, start, batch_size, ray)
    window = 2 * workers
    inflight: dict = {}  # ObjectRef -> (item, worker place, actor, tries, order sent)
    load = [0] * workers
    ready: dict[int, tuple] = {}  # batch start -> (stop, parts, labels), waiting for earlier batches
    sent = 0
    next_start, exhausted = start, False
    failure = None  # (first image of the batch the scan stops before, () -> the error to raise there)

    def submit(item, tries: int) -> None:
        """Send a batch to the least loaded worker that is up (any worker while none is)."""
        nonlocal sent
        up = [a for a in range(workers) if slots[a].up] or range(workers)
        a = min(up, key=load.__getitem__)
        first, stop, method, rows = item
        args = (first, stop) if method == "scan_range" else (first, rows)
        actor = slots[a].actor
        inflight[getattr(actor, method).remote(*args)] = (item, a, actor, tries, sent)
        load[a] += 1
        sent += 1

    def stop_before(first: int, make) -> None:
        """Stop the scan at batch ``first``: nothing from it on is sent or kept; earlier batches finish."""
        nonlocal failure
        if failure is None or first < failure[0]:
            failure = (first, make)
            for later in [s for s in ready if s >= first]:
                del ready[later]

    def send_again(item, tries: int) -> None:
        if failure is None or item[0] < failure[0]:
            submit(item, tries)

    def charge(item, tries: int, exc: BaseException, what: str) -> None:
        """One more try of a batch lost with its worker, or the end of the scan after ``MAX_TRIES``."""
        if tries < MAX_TRIES:
            send_again(item, tries + 1)  # redone; counted once, when its result arrives
            return
        reason = _death_reason(exc)
        stop_before(item[0], lambda: ScanError(
            f"images {item[0]}..{item[1] - 1} {what} {tries} times (last: {reason}); the scan stops before them: "
            f"{_done_and_resume(result)} (an image that crashes its loader, or needs more memory than a worker "
            "has: the dead workers' logs say which, ray logs worker-*.err)"))

    def accept(item, value) -> None:
        first, parts, labels = value
        if first == item[0] and first >= next_start and first not in ready and (failure is None or first < failure[0]):
            ready[first] = (item[1], parts, labels)  # a duplicate, or a batch past a failure, is dropped

    def raised(exc):
        """The worker's own error (bad image, NaN, ...), raised where a local scan raises it."""
        cause = getattr(exc, "cause", None)
        error = cause if isinstance(cause, BaseException) else exc
        return lambda: error

    def came_up(a: int) -> None:
        slots[a].up, start_deaths[a] = True, 0
        probes.pop(slots[a].probe, None)

    def start_probe(slot: _Slot):
        """The answer to ``slot``'s start probe once its actor is dead: ``None`` (it had started) or the error."""
        ray.wait([slot.probe], timeout=DEATH_WAIT_S)
        try:
            ray.get(slot.probe, timeout=0)
        except died as exc:
            if exc.actor_init_failed:
                raise _start_failed(exc) from None
            return exc
        except (unresolved, *lost):
            pass  # unknown (not once the actor is dead): counted as the batch's death, the old rule
        return None

    def worker_died(a: int, actor, exc: BaseException, losses: list) -> None:
        """The ``actor`` of place ``a`` died: keep what it finished, replace it, send its batches again."""
        if exc.actor_init_failed:  # its constructor raised: every worker on a node like it would
            raise _start_failed(exc) from None
        current = slots[a].actor is actor
        if current:  # one Ray only calls unavailable may still be running: its calls end here
            ray.kill(actor, no_restart=True)
        mine = [ref for ref, entry in inflight.items() if entry[2] is actor]  # all fail or have finished
        if mine:
            ray.wait(mine, num_returns=len(mine), timeout=DEATH_WAIT_S)
        for ref in mine:
            item, _, _, tries, order = inflight.pop(ref)
            load[a] -= 1
            try:
                value = ray.get(ref, timeout=0)
            except ray.exceptions.RayTaskError as error:
                stop_before(item[0], raised(error))
            except (died, unresolved, *lost) as error:
                losses.append((item, tries, order, error))
            else:
                accept(item, value)
        start_error = None
        if current:
            start_error = None if slots[a].up else start_probe(slots[a])
            probes.pop(slots[a].probe, None)
            start_worker(a)
        losses.sort(key=lambda loss: loss[2])
        if start_error is None:  # it died running its oldest batch: that one counts a try, the ones behind it not
            if losses:
                item, tries, _, error = losses.pop(0)
                charge(item, tries, error, "killed a Ray worker")
        else:
            start_deaths[a] += 1
            if start_deaths[a] >= MAX_TRIES:
                count, reason = start_deaths[a], _death_reason(start_error)
                # its first batch is named: a worker that dies a moment after starting may not have
                # answered its probe yet
                last = "the last"
                if losses:
                    last += f", given images {losses[0][0][0]}..{losses[0][0][1] - 1} first"
                stop_before(min([loss[0][0] for loss in losses], default=next_start), lambda: ScanError(
                    f"the Ray workers kept dying while starting: {count} in a row died before their first batch, "
                    f"while loading the network and the images ({last}: {reason}); a worker needs the memory "
                    "for its copy of the network (resources={'memory': ...}) on a node that stays up. "
                    f"{_done_and_resume(result)}"))
        for item, tries, _, _ in losses:
            send_again(item, tries)

    try:
        while True:
            while failure is None and not exhausted and len(inflight) + len(ready) < window:
                item = next(work, None)
                if item is None:
                    exhausted = True
                else:
                    submit(item, 1)
            while next_start in ready:
                stop, parts, labels = ready.pop(next_start)
                result._commit(next_start, merge_parts(result, parts), labels)
                bar.update(stop - next_start)
                next_start = stop
            if failure is not None and next_start >= failure[0]:  # every batch before it is committed
                raise failure[1]() from None
            if not inflight:
                if ready or failure is not None:  # cannot happen: the next batch is always in flight or ready
                    raise ScanError(f"batch {next_start} went missing; scan again (or resume)")
                if exhausted:
                    break
                continue  # the commits above freed the window (it was full of results): send more
            done, _ = ray.wait(list(inflight) + list(probes), num_returns=1)
            for ref in done:
                if ref in probes:  # a worker has started, or died starting
                    a = probes[ref]
                    try:
                        ray.get(ref)
                    except died as exc:
                        worker_died(a, slots[a].actor, exc, [])
                    except lost:
                        probes.pop(ref)  # no answer to read: the worker is up once a batch comes back
                    else:
                        came_up(a)
                    continue
                if ref not in inflight:  # taken with its dead worker's other batches
                    continue
                item, a, actor, tries, order = inflight.pop(ref)
                load[a] -= 1
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    stop_before(item[0], raised(exc))
                except died as exc:
                    worker_died(a, actor, exc, [(item, tries, order, exc)])
                except lost as exc:  # its result was lost (with a node); the worker itself still answers
                    charge(item, tries, exc, "were lost")
                else:
                    if slots[a].actor is actor and not slots[a].up:
                        came_up(a)
                    accept(item, value)
    finally:
        for slot in slots:  # in-flight batches die with them
            ray.kill(slot.actor, no_restart=True)
        if isinstance(source, RayDataSource):
            result._source_record = source.record()
