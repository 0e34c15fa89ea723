"""The entry point :func:`scan`: one forward pass over a dataset, in batches, interruptible and resumable."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..checks import check_bool, check_choice, check_int
from ..errors import OptionError
from ..hooks import inference_state
from .batch import fold_batch
from .errors import ScanError, ScanSaveWarning
from .model import default_scan_layers, model_fingerprint
from .relevance_rank import check_ranking, relevance_batch
from .result import Scan
from .sources import as_source
from .storage import check_save_path

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["scan"]


def _scan_batch(result: Scan, x: torch.Tensor, start: int, labels: list, changed_later: set[str]) -> None:
    """Forward one batch (images ``start .. start + B - 1``), fold every layer (and, with a relevance
    ranking, merge one LRP pass of the target), commit atomically."""
    folded = fold_batch(result.net, result.layers, result._state.layers, result.k, x, start, changed_later)
    relevance = None
    if result.ranking is not None:
        relevance = relevance_batch(result.net, result.layers, result._state.relevance, result.k, x, start, result.ranking)
    result._commit(start, folded, labels, relevance)


def scan(
    net: "NetworkBase",
    images,
    layers: Sequence[str] | str | None = None,
    k: int = 9,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
    save_to: str | os.PathLike | None = None,
    resume: "Scan | str | os.PathLike | None" = None,
    backend: str = "local",
    workers: int | None = None,
    resources: dict | None = None,
    rank: str = "activation",
    target=None,
    composite: str | None = None,
) -> Scan:
    """One forward pass over a dataset, keeping top-k images, statistics and codes per channel.

    Parameters
    ----------
    net
        The network.
    images
        A map-style torch ``Dataset`` (items: image or ``(image, label)``), a ``DataLoader`` with
        ``shuffle=False``, a folder of image files, or a list of PIL images / arrays / paths /
        preprocessed tensors ``[3, H, W]``.
    layers
        Layer names; default :func:`default_scan_layers` (the layers of a small network whose top
        images no other scanned layer shows; stem, block outputs and last spatial layer of a large
        one). Non-spatial layers work too (their
        code is the vector itself, the top images have no position).
    k
        Images kept per channel (9: Zeiler & Fergus' 3x3 grids).
    batch_size
        Images per forward pass (default 32, or the resumed scan's batch size: keep it equal to
        get bit-identical results).
    num_workers
        DataLoader worker processes loading and preprocessing images (0: in this process).
    progress
        Show a tqdm progress bar.
    save_to
        Write the scan there when the pass ends (also when it is interrupted or stops on an
        error). A folder that does not exist or cannot be written is refused before the pass
        begins; a write that fails at the end (a full disk) leaves no partial file and gives a
        :class:`ScanSaveWarning` naming the path and the reason: the scan is returned all the same.
    resume
        A partial :class:`Scan` or the path of a saved one, made with the same network, layers
        and images: scanning continues at its first unscanned image. The result equals one
        uninterrupted scan.
    backend
        ``"local"`` (this process) or ``"ray"``: the batches run on Ray workers (the connected
        cluster, ``RAY_ADDRESS``, or a local one) and the driver merges them in order; the result
        is the same :class:`Scan`, identical to a local scan with the same batch size. ``images``
        may then also be a ``ray.data.Dataset`` or a URI Ray reads. See :mod:`.ray_backend`.
    workers
        Ray workers (actors, each holding a copy of the network); default: as many as the
        cluster's CPUs (GPUs) hold. ``backend="ray"`` only.
    resources
        Ray resources per worker, e.g. ``{"num_cpus": 4, "num_gpus": 1}`` (default one CPU, and
        one GPU where the cluster has GPUs). ``backend="ray"`` only.
    rank, target, composite
        ``rank="relevance"`` also keeps, per channel, the top images by the channel's relevance for
        the class ``target`` (LRP with ``composite``, default ``"epsilon_plus_flat"``: relevance
        maximisation, Achtibat et al. 2023), read with ``scan.top_images(unit, by="relevance")``.
        It costs one LRP pass (a forward and a backward) per batch; local backend only.

    Ctrl-C stops the pass and returns the images covered so far (``scan.interrupted``; only whole
    batches are kept); the model, its flags and hooks are left as before.

    Work is never lost: the scan under way is ``net.last_scan`` from its first batch on, and an
    error that stops the pass (an unreadable image, a batch that keeps killing Ray workers) carries
    the partial scan as ``error.scan`` (and is saved to ``save_to``), so
    ``net.scan(images, resume=error.scan)`` continues at its first unscanned image.
    """
    from tqdm.auto import tqdm

    k = check_int("k", k)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size)
    num_workers = check_int("num_workers", num_workers, low=0)
    progress = check_bool("progress", progress)
    backend = check_choice("backend", backend, ("local", "ray"))
    if backend == "ray":
        from . import ray_backend, ray_driver  # the only modules that use ray (imported lazily, in ray_backend)

        workers, resources = ray_backend.check_ray_options(workers, resources)
        ray_backend.import_ray()
        source = ray_backend.ray_source(images)
    else:
        if workers is not None or resources is not None:
            raise OptionError("workers and resources are options of backend='ray'; pass backend='ray' or leave them out")
        source = as_source(images)
    if save_to is not None:
        save_to = check_save_path(save_to)  # before an hour of scanning, not after
    if isinstance(layers, str):
        layers = [layers]
    names = default_scan_layers(net) if layers is None else [net.layer(n).name for n in layers]
    names = list(dict.fromkeys(names))
    if not names:
        raise ScanError("no layer to scan; pass layers=[...] (net.layers lists them)")
    if composite is not None and rank != "relevance":
        raise OptionError("composite is an option of rank='relevance'; pass rank='relevance' or leave it out")
    ranking = check_ranking(net, rank, target, composite, backend)

    if resume is not None:
        result = resume if isinstance(resume, Scan) else Scan.load(resume, net, images=source)
        if result.fingerprint != model_fingerprint(net.model):
            raise ScanError("the network's weights changed since this scan began; start a new scan")
        if layers is not None and names != result.layers:
            raise ScanError(f"resume scans the layers of the original scan ({len(result.layers)}); leave layers=None")
        if result.total != len(source):
            raise ScanError(f"resume needs the same images: the scan was made on {result.total}, got {len(source)}")
        if k != 9 and k != result.k:  # 9 is the default: left alone, the original k is kept
            raise ScanError(f"resume keeps the original k={result.k}")
        if ranking != result.ranking:
            raise ScanError(f"resume keeps the original ranking ({'by activation' if result.ranking is None else result.ranking}); "
                            "pass the same rank, target and composite")
        result._source = source
        if batch_size is None:
            batch_size = result.batch_size
    else:
        batch_size = batch_size or 32
        result = Scan(net, names, k, source, len(source), batch_size, model_fingerprint(net.model), ranking)

    start = result.count
    result.interrupted = False
    net.last_scan = result  # reachable whatever ends the pass (resume=net.last_scan)
    bar = tqdm(total=result.total, initial=start, unit="img", desc=f"scan {net.name}", disable=not progress)
    try:
        position = start
        if backend == "ray":  # the driver only merges; the model here is never run
            ray_driver.ray_pass(result, source, start, batch_size, num_workers, bar, workers, resources)
        else:
            changed_later: set[str] = set()  # layers whose output a later in-place operation changes
            with inference_state(net.model), torch.no_grad():
                for x, labels in source.batches(net, start, batch_size, num_workers):
                    _scan_batch(result, x.to(device=net.device, dtype=net.dtype), position, labels, changed_later)
                    position += len(labels)
                    bar.update(len(labels))
    except KeyboardInterrupt:
        result.interrupted = True
        warnings.warn(
            f"scan interrupted: {result.count} of {result.total} images covered; continue with "
            "net.scan(images, resume=scan)", stacklevel=2,
        )
    except Exception as exc:
        _attach_partial(exc, result)
        raise
    finally:
        bar.close()
        if save_to is not None:
            _save(result, save_to)
    return result


def _done_text(result: Scan) -> str:
    return f"images 0..{result.count - 1} are done" if result.count else "no image is done yet"


def _attach_partial(exc: Exception, result: Scan) -> None:
    """Give the error that stopped a pass the partial scan (``error.scan``) and say what is done."""
    try:  # ScanError documents it; another package's error takes it where it can
        exc.scan = result
    except AttributeError:
        pass
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(f"the scan stopped with {result.count} of {result.total} images covered ({_done_text(result)}); "
                     "continue with net.scan(images, resume=error.scan) (or resume=net.last_scan)")


def _save(result: Scan, path) -> None:
    """Write ``result`` to ``path``; a failure is a warning, never the loss of the scan itself."""
    try:
        result.save(path)  # a failed write raises ScanError with the path and the reason, and leaves no file
    except ScanError as exc:
        warnings.warn(
            f"{exc}. The scan ({result.count} of {result.total} images) is returned and kept as net.last_scan: "
            "save it elsewhere with scan.save(path)", ScanSaveWarning, stacklevel=3,
        )
