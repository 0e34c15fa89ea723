"""Scan files: ``torch.save`` of plain data, read back with ``torch.load(weights_only=True)``.

A file holds tensors, numbers, strings, lists and dicts only: ``weights_only=True`` refuses
anything else, and the image source is a record of data (file paths, or a dataset recipe that
:mod:`.recipes` checks against the package's own registry). Reading a file never runs code.

Format history: version 1 saved a dataset as ``{"kind": "recipe", "module", "function",
"kwargs"}``; version 2 saves ``{"kind": "dataset", "name", "kwargs"}``. Both are read.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import LayerNotFoundError
from .errors import ScanError
from .model import model_fingerprint
from .state import LAYER_STATE_FIELDS, LayerState

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["FORMAT", "VERSION", "ScanFile", "check_network", "read_scan_file", "write_scan_file"]

FORMAT = "cnn_widgets.scan"
VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass
class ScanFile:
    """The contents of a scan file (see :meth:`Scan.save`)."""

    net_name: str
    fingerprint: str
    layers: list[str]
    shapes: dict[str, tuple[int, ...]]
    k: int
    count: int
    total: int
    batch_size: int
    interrupted: bool
    source: dict[str, Any]
    class_names: list[str] | None
    labels: list
    states: dict[str, LayerState]
    codes: dict[str, np.ndarray]  # [count, C] per layer


def write_scan_file(path: str | os.PathLike, scan_file: ScanFile) -> None:
    """Write ``scan_file`` to ``path`` atomically (a half-written file is never left behind)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "net_name": scan_file.net_name,
        "fingerprint": scan_file.fingerprint,
        "layers": list(scan_file.layers),
        "shapes": {n: list(s) for n, s in scan_file.shapes.items()},
        "k": scan_file.k,
        "count": scan_file.count,
        "total": scan_file.total,
        "batch_size": scan_file.batch_size,
        "interrupted": scan_file.interrupted,
        "source": scan_file.source,
        "class_names": scan_file.class_names,
        "labels": list(scan_file.labels),
        "state": {
            name: {**{f: getattr(ls, f) for f in LAYER_STATE_FIELDS},
                   "codes": torch.from_numpy(np.ascontiguousarray(scan_file.codes[name]))}
            for name, ls in scan_file.states.items()
        },
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_scan_file(path: str | os.PathLike) -> ScanFile:
    """Read and check a file written by :func:`write_scan_file` (:class:`ScanError` when it is not one)."""
    where = repr(str(path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ScanError(f"no scan file at {where}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ScanError(f"{where} is not a cnn_widgets scan file (or holds more than data, which is refused): "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ScanError(f"{where} is not a cnn_widgets scan file")
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        raise ScanError(f"{where} is a scan file of format version {version!r}; this cnn_widgets reads versions "
                        f"{', '.join(map(str, READABLE_VERSIONS))} (update cnn_widgets, or scan again)")
    try:
        states, codes = {}, {}
        for name, st in payload["state"].items():
            tensors = [st[f] for f in LAYER_STATE_FIELDS] + [st["codes"]]
            if not all(isinstance(t, torch.Tensor) for t in tensors):
                raise TypeError(f"layer {name!r} holds something other than tensors")
            states[name] = LayerState(*tensors[:-1])
            codes[name] = st["codes"].numpy()
        scan_file = ScanFile(
            net_name=str(payload["net_name"]),
            fingerprint=str(payload["fingerprint"]),
            layers=[str(n) for n in payload["layers"]],
            shapes={str(n): tuple(int(v) for v in s) for n, s in payload["shapes"].items()},
            k=int(payload["k"]),
            count=int(payload["count"]),
            total=int(payload["total"]),
            batch_size=int(payload["batch_size"]),
            interrupted=bool(payload["interrupted"]),
            source=payload["source"],
            class_names=payload.get("class_names"),
            labels=list(payload["labels"]),
            states=states,
            codes=codes,
        )
        if not isinstance(scan_file.source, dict) or set(states) != set(scan_file.layers):
            raise TypeError("the image source or the layer states do not match the header")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ScanError(f"{where} is a damaged scan file ({exc}); scan again") from None
    return scan_file


def check_network(scan_file: ScanFile, net: "NetworkBase", path: str | os.PathLike) -> None:
    """Refuse a file made on another architecture; warn when only the weights differ."""
    where = repr(str(path))
    for name, shape in scan_file.shapes.items():
        try:
            info = net.layer(name)
        except LayerNotFoundError:
            raise ScanError(f"the scan in {where} was made on another network: it has layer {name!r}, "
                            f"{net.name} does not") from None
        if tuple(info.shape) != tuple(shape):
            raise ScanError(f"the scan in {where} was made on another network: layer {name!r} has shape "
                            f"{tuple(shape)} there, {tuple(info.shape)} here")
    if model_fingerprint(net.model) != scan_file.fingerprint:
        warnings.warn(f"the scan in {where} was made with other weights than {net.name}'s; its rankings "
                      "describe the old weights", stacklevel=3)
