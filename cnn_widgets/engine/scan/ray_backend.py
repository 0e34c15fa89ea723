"""Dataset scans on a Ray cluster: ``scan(images, ..., backend="ray", workers=None, resources=None)``.

The scan is split at batch boundaries: batch ``b`` is images ``[b * B, (b + 1) * B)`` of the same
source, with the same batch size as a local scan. Each worker (a Ray actor holding its own copy of
the network, sent once by Ray's serialization from the driver) runs the forward pass of a batch and
folds every layer into an *empty* state (:func:`~.batch.fold_batch`), then sends that batch's partial
state (its own top-k per channel, sums, maxima and counts: ``[C, k]`` and ``[C]`` tensors) and its
codes ``[B, C]`` back. The driver folds the partial states in image order with
:func:`~.state.merge_layer_states`, which equals folding the batch locally bit for bit; so a Ray
scan equals a local scan of the same images with the same batch size (same values when the workers
compute on the same kind of device).

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

Images reach the workers in one of two ways:

* anything a local scan takes (a folder, a list of paths or images, a torch ``Dataset``, a
  ``DataLoader``): the source object is sent to every worker once, and workers load images
  ``[start, stop)`` themselves, so only indices travel (a folder or paths must be visible at the
  same place on every node, e.g. a shared file system);
* a ``ray.data.Dataset`` (or a URI such as ``s3://bucket/images/``, read with
  ``ray.data.read_images(uri, include_paths=True)``): Ray Data reads and decodes in parallel, and the
  driver streams the rows in order, cuts them into batches and hands each one to a worker by
  reference. Rows need an ``image`` column (HxWxC arrays); a ``path`` column lets ``top_images``
  find image ``i`` again; a ``label`` column gives the labels.

Ray is imported here only, lazily: without it, ``backend="ray"`` raises :class:`RayNotInstalledError`.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..checks import check_choice, check_float, check_int
from ..errors import OptionError
from ..hooks import inference_state
from ..images import model_input
from .batch import fold_batch
from .errors import ScanError
from .sources import Source, _collate, as_source, plain_label
from .state import Rows, empty_layer_state, merge_layer_states

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase
    from .result import Scan

__all__ = ["RayDataSource", "RayNotInstalledError", "check_ray_options", "import_ray", "ray_pass", "ray_source"]

#: Per-worker resources a scan accepts (Ray's actor options of the same names).
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "accelerator_type", "resources")
#: A batch whose worker died this many times stops the scan (a batch that kills every worker); so do
#: this many workers in a row of one place that die while starting.
MAX_TRIES = 4
#: How long the driver waits for a dead worker's other calls to resolve (they fail within a second or two).
DEATH_WAIT_S = 30.0


class RayNotInstalledError(ScanError, ImportError):
    """``backend="ray"`` without Ray installed."""


def import_ray():
    """The ``ray`` module (and ``ray.data``), or a :class:`RayNotInstalledError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayNotInstalledError(
            f"backend='ray' needs Ray ({exc}); install it with: pip install cnn_widgets[ray]"
        ) from None
    return ray


def check_ray_options(workers, resources) -> tuple[int | None, dict | None]:
    """``workers`` (a positive integer or ``None``) and ``resources`` (per-worker Ray resources) checked."""
    if workers is not None:
        workers = check_int("workers", workers)
    if resources is None:
        return workers, None
    if not isinstance(resources, dict):
        raise OptionError(f"resources must be a dict of per-worker Ray resources such as "
                          f"{{'num_cpus': 1, 'num_gpus': 1}}, got {resources!r}")
    checked = {}
    for key, value in resources.items():
        key = check_choice("resources key", key, RESOURCE_KEYS)
        if key in ("num_cpus", "num_gpus"):
            value = check_float(f"resources[{key!r}]", value, 0.0)
        elif key == "memory":
            value = int(check_float("resources['memory']", value, 0.0, open_low=True))
        elif key == "accelerator_type":
            if not isinstance(value, str):
                raise OptionError(f"resources['accelerator_type'] must be a string such as 'A100', got {value!r}")
        elif not isinstance(value, dict) or not all(isinstance(n, str) for n in value):
            raise OptionError(f"resources['resources'] must map custom resource names to amounts, got {value!r}")
        else:
            value = {n: check_float(f"resources['resources'][{n!r}]", v, 0.0) for n, v in value.items()}
        checked[key] = value
    return workers, checked


# ------------------------------------------------------------------------------------ sources
def _is_ray_dataset(images) -> bool:
    return type(images).__module__.startswith("ray.data") and hasattr(images, "iter_batches")


class RayDataSource(Source):
    """A ``ray.data.Dataset`` as a scan source: rows in dataset order (``preserve_order``).

    The paths of the covered images are collected as the scan goes (so ``top_images`` and saved
    scans find the images again); rows without a ``path`` column cannot be loaded again.
    """

    kind = "ray"

    def __init__(self, dataset):
        context = getattr(dataset, "context", None) or import_ray().data.DataContext.get_current()
        context.execution_options.preserve_order = True  # row i is image i, on every pass
        columns = dataset.columns()
        if "image" not in columns:
            raise ScanError(f"a ray Dataset to scan needs an 'image' column (it has {columns}); read it with "
                            "ray.data.read_images(path, include_paths=True)")
        self.dataset = dataset
        self.has_paths, self.has_labels = "path" in columns, "label" in columns
        length = dataset.count()
        if length == 0:
            raise ScanError("there are no images to scan (the ray Dataset is empty)")
        self.paths = Rows(None, object, 1)
        self.length, self.seen = length, 0
        super().__init__(self, None, f"ray Dataset of {length} images")

    def __len__(self) -> int:
        return self.length

    def __getstate__(self):  # the dataset itself never travels to workers
        raise TypeError("a RayDataSource stays on the driver")

    def note_paths(self, start: int, paths) -> None:
        self.paths.write(start, list(paths))
        self.seen = max(self.seen, start + len(paths))

    def item(self, i: int):
        if not self.has_paths:
            raise ScanError("this ray Dataset has no 'path' column, so image i cannot be loaded again; read it "
                            "with ray.data.read_images(path, include_paths=True)")
        if not 0 <= i < self.seen:
            raise ScanError(f"image {i} of the ray Dataset has not been scanned yet")
        return self.paths.data[i]

    def record(self) -> dict:
        if self.has_paths and self.seen == self.length:
            return {"kind": "paths", "paths": [str(p) for p in self.paths.data[: self.length]], "length": self.length}
        return {"kind": "unsaved", "description": self.description, "length": self.length}

    @property
    def class_names(self):
        return None

    def batches_of_rows(self, start: int, batch_size: int):
        """``(first, rows)`` for aligned batches from image ``start``; rows: a dict of numpy columns."""
        columns = ["image"] + ["path"] * self.has_paths + ["label"] * self.has_labels
        position, first, buffer = 0, start, []  # rows read so far; index of the buffer's first row

        def cut(size):
            rows = {c: _concat([b[c] for b in buffer]) for c in columns}
            rest = {c: v[size:] for c, v in rows.items()}
            return {c: v[:size] for c, v in rows.items()}, ([rest] if len(rest["image"]) else [])

        for batch in self.dataset.select_columns(columns).iter_batches(batch_size=batch_size, batch_format="numpy"):
            n = len(batch["image"])
            if self.has_paths:
                self.note_paths(position, batch["path"])
            skip, position = max(0, start - position), position + n
            if skip >= n:  # resuming: rows already scanned are read (Ray Data cannot seek) and dropped
                continue
            buffer.append({c: v[skip:] for c, v in batch.items()})
            while sum(len(b["image"]) for b in buffer) >= batch_size:
                rows, buffer = cut(batch_size)
                yield first, rows
                first += batch_size
        if buffer:
            rows, buffer = cut(batch_size)
            yield first, rows


def _concat(parts):
    if len(parts) == 1:
        return parts[0]
    if any(p.dtype == object for p in parts) or len({p.shape[1:] for p in parts}) > 1:
        out = np.empty(sum(len(p) for p in parts), dtype=object)
        out[:] = [x for p in parts for x in p]
        return out
    return np.concatenate(parts)


def ray_source(images) -> Source:
    """The source of a Ray scan: a ``ray.data.Dataset``, a URI Ray reads, or anything a local scan takes."""
    if _is_ray_dataset(images):
        return RayDataSource(images)
    if isinstance(images, str) and "://" in images and not images.startswith("file://"):
        ray = import_ray()
        return RayDataSource(ray.data.read_images(images, include_paths=True, mode="RGB"))
    if isinstance(images, str) and images.startswith("file://"):
        images = images[len("file://"):]
    return as_source(images)


# ------------------------------------------------------------------------------------ workers
class ScanWorker:
    """A Ray actor's body: one copy of the network; folds batches into empty states."""

    def __init__(self, net: "NetworkBase", layers: list[str], k: int, source, num_workers: int, device: str | None):
        if device is not None:
            net.model.to(device)  # the worker's own copy; the driver's model is never touched
        self.net, self.layers, self.k, self.source, self.num_workers = net, layers, k, source, num_workers
        self.empty = {n: empty_layer_state(net.layer(n).shape[0], k, net.dtype) for n in layers}
        self.changed_later: set[str] = set()  # layers whose output a later in-place operation changes

    def pid(self) -> int:
        """This worker's process id; the driver's start probe (answered once the constructor has run)."""
        return os.getpid()

    def _fold(self, x: torch.Tensor, start: int, labels: list):
        with inference_state(self.net.model), torch.no_grad():
            x = x.to(device=self.net.device, dtype=self.net.dtype)
            return start, fold_batch(self.net, self.layers, self.empty, self.k, x, start, self.changed_later), labels

    def scan_range(self, start: int, stop: int):
        """Images ``[start, stop)`` of the source (its first batch from ``start``)."""
        x, labels = next(iter(self.source.batches(self.net, start, stop - start, self.num_workers)))
        return self._fold(x, start, list(labels))

    def scan_rows(self, start: int, rows: dict):
        """Rows of a ray Dataset (``image`` column, optional ``label``)."""
        x, _ = _collate([(model_input(im, self.net.preprocess), None) for im in rows["image"]])
        labels = [plain_label(v) for v in rows["label"]] if "label" in rows else [None] * len(x)
        return self._fold(x, start, labels)


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
