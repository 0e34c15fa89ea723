"""Scan files: ``torch.save`` of plain data, read back with ``torch.load(weights_only=True)``.

A file holds tensors, numbers, strings, lists and dicts only: ``weights_only=True`` refuses
anything else, and the image source is a record of data (file paths, or a dataset recipe that
:mod:`.recipes` checks against the package's own registry). Reading a file never runs code.

A file is checked before anything in it is used: every tensor against the checksum saved beside
it, the plain fields against theirs, then every count and shape against each other (``count <=
total``, ``[C, k]`` top-k tables whose image indices lie in ``0 .. count - 1``, ``[count, C]`` codes,
one label per image, the source's length). A damaged file is refused with a :class:`ScanError`
naming what is wrong; it never loads with other numbers.

Writing is atomic: the file is written under a temporary name in the same folder, flushed to the
disk and renamed over the target; a write that fails (a full disk) removes its temporary file.

Format history: version 1 saved a dataset as ``{"kind": "recipe", "module", "function",
"kwargs"}``; version 2 saves ``{"kind": "dataset", "name", "kwargs"}``; version 3 adds the
checksums. All three are read (the older two without checksums, with every other check).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import LayerNotFoundError
from .errors import ScanError
from .model import model_fingerprint
from .file_checks import check_int, check_layer, plain_digest, read_relevance, tensor_digest
from .state import LAYER_STATE_FIELDS, LayerState

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["FORMAT", "VERSION", "ScanFile", "check_network", "check_save_path", "read_scan_file", "write_scan_file"]

FORMAT = "cnn_widgets.scan"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
#: The fields a file keeps beside the layer states (the header its checksum covers).
HEADER_FIELDS = ("net_name", "fingerprint", "layers", "shapes", "k", "count", "total", "batch_size", "interrupted",
                 "source", "class_names", "labels")


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
    ranking: dict | None = None  # rank="relevance": {"target": int, "label": str, "composite": str}
    relevance: dict | None = None  # rank="relevance": layer -> {top_values, top_index, top_y, top_x}


def check_save_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`Path` a scan can be written to, or a :class:`ScanError` saying why not.

    Called before a scan begins, so a missing or read-only folder is found then, not after an
    hour of scanning: the folder must exist and take a new file (one is created and removed).
    """
    try:
        path = Path(os.fspath(path)).expanduser()
    except TypeError:
        raise ScanError(f"save_to must be a file path, got {type(path).__name__} {path!r}") from None
    where = repr(str(path))
    if path.is_dir():
        raise ScanError(f"save_to={where} is a folder; give a file name in it, such as {str(path / 'scan.pt')!r}")
    folder = path.parent
    if not folder.is_dir():
        raise ScanError(f"cannot save the scan to {where}: the folder {str(folder)!r} does not exist; create it "
                        "(os.makedirs(folder)) or choose another save_to. Nothing was scanned")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".probe")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ScanError(f"cannot save the scan to {where}: the folder {str(folder)!r} cannot be written "
                        f"({exc.strerror or exc}); choose another save_to. Nothing was scanned") from None
    return path


def _header_digest(payload: dict) -> str:
    """A digest of the plain fields (numbers, names, labels, source) as canonical JSON."""
    return plain_digest({f: payload.get(f) for f in HEADER_FIELDS})


def write_scan_file(path: str | os.PathLike, scan_file: ScanFile) -> None:
    """Write ``scan_file`` to ``path`` atomically: a failed write leaves neither a half-written file nor
    its temporary file behind, and raises :class:`ScanError` with the reason (``No space left on device``)."""
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
    payload["checksums"] = {
        "header": _header_digest(payload),
        "state": {name: {f: tensor_digest(t) for f, t in st.items()} for name, st in payload["state"].items()},
    }
    if scan_file.ranking is not None:  # an optional section: files without it read as before
        payload["relevance"] = {"ranking": dict(scan_file.ranking), "state": scan_file.relevance}
        payload["checksums"]["relevance"] = {
            "ranking": plain_digest(payload["relevance"]["ranking"]),
            "state": {name: {f: tensor_digest(t) for f, t in st.items()} for name, st in scan_file.relevance.items()}}
    path = Path(path)
    tmp, writer = None, None
    try:
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            writer = _Writer(file)
            torch.save(payload, writer)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, (OSError, RuntimeError)):
            # torch reports a failed write as "unexpected pos ..."; the writer kept the system's reason
            cause = writer.error if writer is not None and writer.error is not None else exc
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause).splitlines()[0]
            raise ScanError(f"the scan could not be written to {str(path)!r} ({reason}); nothing was left "
                            "there") from exc
        raise


class _Writer:
    """A file for ``torch.save`` that keeps the first :class:`OSError` of a write (a full disk), which
    torch itself turns into an ``unexpected pos`` message."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.file.flush()


def _load_payload(path: str | os.PathLike):
    where = repr(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ScanError(f"no scan file at {where}") from None
    except IsADirectoryError:
        raise ScanError(f"{where} is a folder, not a scan file") from None
    except PermissionError as exc:
        raise ScanError(f"cannot read the scan file {where} ({exc.strerror})") from None
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # a damaged archive fails in many ways: OSError, RuntimeError, UnpicklingError, ...
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ScanError(f"{where} is not a cnn_widgets scan file, or it is damaged (truncated, or bytes changed), "
                        f"or it holds more than data, which is refused: {text}") from None


def _check_checksums(payload: dict) -> None:
    """Every tensor and the plain fields against the digests saved beside them (format 3 on)."""
    sums = payload.get("checksums")
    if not isinstance(sums, dict) or not isinstance(sums.get("state"), dict):
        raise TypeError("the checksums are missing")
    if sums.get("header") != _header_digest(payload):
        raise TypeError("the plain fields (counts, names, labels or image source) do not match their checksum")
    state = payload["state"]
    if set(sums["state"]) != set(state):
        raise TypeError("the layers do not match their checksums")
    for name, st in state.items():
        expected = sums["state"][name]
        if not isinstance(st, dict) or not isinstance(expected, dict) or set(expected) != set(st):
            raise TypeError(f"layer {name!r} does not match its checksums")
        for field, tensor in st.items():
            if not isinstance(tensor, torch.Tensor) or expected[field] != tensor_digest(tensor):
                raise TypeError(f"the {field} of layer {name!r} does not match its checksum")


def read_scan_file(path: str | os.PathLike) -> ScanFile:
    """Read and check a file written by :func:`write_scan_file` (:class:`ScanError` when it is not one,
    or is damaged: a checksum, a count or a shape that does not match)."""
    where = repr(str(path))
    payload = _load_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ScanError(f"{where} is not a cnn_widgets scan file")
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        raise ScanError(f"{where} is a scan file of format version {version!r}; this cnn_widgets reads versions "
                        f"{', '.join(map(str, READABLE_VERSIONS))} (update cnn_widgets, or scan again)")
    try:
        if not isinstance(payload.get("state"), dict):
            raise TypeError("the layer states are missing")
        if version >= 3 or "checksums" in payload:  # present: checked (a flipped version number skips nothing)
            _check_checksums(payload)
        k = check_int(payload["k"], "k", 1)
        total = check_int(payload["total"], "the number of images", 1)
        count = check_int(payload["count"], "the number of images covered", 0)
        if count > total:
            raise TypeError(f"it covers {count} images of {total}")
        layers = payload["layers"]
        if not isinstance(layers, list) or not layers or not all(isinstance(n, str) for n in layers) \
                or len(set(layers)) != len(layers):
            raise TypeError("the layer names are not a list of distinct names")
        shapes = payload["shapes"]
        if not isinstance(shapes, dict) or set(shapes) != set(layers) or set(payload["state"]) != set(layers):
            raise TypeError("the layer shapes or states do not match the layer names")
        shapes = {n: tuple(check_int(v, f"a size of layer {n!r}", 1) for v in shapes[n]) for n in layers}
        if any(not shape for shape in shapes.values()):
            raise TypeError("a layer has no shape")
        labels = payload["labels"]
        if not isinstance(labels, list) or len(labels) != count:
            raise TypeError(f"it has {len(labels) if isinstance(labels, list) else 'no list of'} labels for {count} images")
        source = payload["source"]
        if not isinstance(source, dict):
            raise TypeError("the image source is not a record")
        if "length" in source and source["length"] != total:
            raise TypeError(f"its image source has {source['length']!r} images, the scan {total}")
        class_names = payload.get("class_names")
        if class_names is not None and not (isinstance(class_names, list) and all(isinstance(c, str) for c in class_names)):
            raise TypeError("the class names are not a list of names")
        states, codes = {}, {}
        for name in layers:
            st = payload["state"][name]
            if not isinstance(st, dict):
                raise TypeError(f"layer {name!r} holds no state")
            tensors = [st[f] for f in LAYER_STATE_FIELDS] + [st["codes"]]
            if not all(isinstance(t, torch.Tensor) for t in tensors):
                raise TypeError(f"layer {name!r} holds something other than tensors")
            states[name] = LayerState(*tensors[:-1])
            check_layer(name, shapes[name], states[name], st["codes"], k, count)
            codes[name] = st["codes"].numpy()
        scan_file = ScanFile(
            net_name=str(payload["net_name"]),
            fingerprint=str(payload["fingerprint"]),
            layers=list(layers),
            shapes=shapes,
            k=k,
            count=count,
            total=total,
            batch_size=check_int(payload["batch_size"], "the batch size", 1),
            interrupted=bool(payload["interrupted"]),
            source=source,
            class_names=class_names,
            labels=labels,
            states=states,
            codes=codes,
        )
        scan_file.ranking, scan_file.relevance = read_relevance(payload, shapes, k, count)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        what = f"no {exc.args[0]!r} entry" if isinstance(exc, KeyError) else str(exc)
        raise ScanError(f"{where} is a damaged scan file: {what}; it was not loaded (scan again, or load a copy)") from None
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
