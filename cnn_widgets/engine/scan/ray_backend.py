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

The driver's pass (sending batches, replacing workers that die, merging in order) is
:mod:`.ray_driver`.

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
from .state import Rows, empty_layer_state

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["RayDataSource", "RayNotInstalledError", "ScanWorker", "check_ray_options", "import_ray", "ray_source"]

#: Per-worker resources a scan accepts (Ray's actor options of the same names).
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "accelerator_type", "resources")


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
