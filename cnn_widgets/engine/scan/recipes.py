"""Dataset recipes in scan files: data naming one of the package's own datasets, never code.

A scan of a dataset made by :mod:`cnn_widgets.engine.datasets` saves the dataset's recipe: the
name of its factory in :data:`~cnn_widgets.engine.datasets.DATASETS` and its keyword arguments,
plain JSON values only::

    {"kind": "dataset", "name": "augmented_photos", "kwargs": {"n": 300, "seed": 0, ...}, "length": 300}

Loading looks the name up in that registry, checks every argument against the factory's
parameters and calls it. Nothing else a file says is ever run: no module is imported and no
function is found by a name the file chooses. (Files of format version 1 named a module and a
function, and loading imported the one and called the other, so a scan file shared by someone
else could run any command on the loading machine. Such records are still read when they name
one of the registry's datasets in this package's own module, and refused otherwise.)
"""

from __future__ import annotations

import inspect
import math

from ..datasets import DATASETS
from .errors import ScanError

__all__ = ["dataset_from_record", "is_plain", "recipe_record"]

#: The module that format-1 recipes named; only its registered datasets are re-created.
LEGACY_MODULE = "cnn_widgets.engine.datasets"
_RECORD_KEYS = {"kind", "name", "kwargs", "length"}
_LEGACY_KEYS = {"kind", "module", "function", "kwargs", "length"}
_MAX_DEPTH = 8


def is_plain(value, depth: int = 0) -> bool:
    """JSON-like data: ``None``, bools, ints, finite floats, strings, and lists / string-keyed dicts of them."""
    if depth > _MAX_DEPTH:
        return False
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v, depth + 1) for k, v in value.items())
    return False


def _parameters(name: str) -> set[str]:
    """Keyword arguments a recipe may give the factory: all but ``transform`` (a callable is code)."""
    return {p for p in inspect.signature(DATASETS[name]).parameters if p != "transform"}


def recipe_record(items) -> dict | None:
    """The record saving ``items`` by recipe, or ``None`` when it is not one of the registry's datasets."""
    recipe = getattr(items, "recipe", None)
    if not (isinstance(recipe, tuple) and len(recipe) == 2):
        return None
    name, kwargs = recipe
    if name not in DATASETS or not isinstance(kwargs, dict) or not is_plain(kwargs) or set(kwargs) - _parameters(name):
        return None
    return {"kind": "dataset", "name": name, "kwargs": dict(kwargs)}


def _refuse(what: str, where: str) -> ScanError:
    return ScanError(
        f"{where} asks to re-create its images with {what}, which is not one of cnn_widgets' datasets "
        f"({', '.join(sorted(DATASETS))} with plain keyword arguments); it was refused and nothing was run. "
        "Pass the images yourself: Scan.load(path, net, images=...)"
    )


def dataset_from_record(record: dict, where: str = "the scan file"):
    """The dataset a saved record names, re-created from the registry; :class:`ScanError` for anything else.

    ``where`` names the file in the messages. Every argument is checked by the factory before it
    builds anything (:mod:`cnn_widgets.engine.datasets`: bounds, types, non-empty names; building is
    then cheap whatever the size asked), and the dataset's length must be the record's.
    """
    kind = record.get("kind")
    if kind == "recipe":  # format 1: {"module", "function", "kwargs"}
        module, name = record.get("module"), record.get("function")
        if set(record) - _LEGACY_KEYS or module != LEGACY_MODULE or not isinstance(name, str) or name not in DATASETS:
            raise _refuse(f"the function {module}.{name}", where)
    elif kind == "dataset":
        name = record.get("name")
        if set(record) - _RECORD_KEYS or not isinstance(name, str) or name not in DATASETS:
            extra = sorted(set(record) - _RECORD_KEYS)
            what = f"the unexpected entries {extra}" if extra else f"the dataset name {name!r}"
            raise _refuse(what, where)
    else:
        raise ScanError(f"{where} has an unknown kind of image source {kind!r}; pass the images: "
                        "Scan.load(path, net, images=...)")
    kwargs = record.get("kwargs", {})
    if not isinstance(kwargs, dict) or not is_plain(kwargs):
        raise _refuse(f"{name}(...) with arguments that are not plain values", where)
    unknown = sorted(set(kwargs) - _parameters(name))
    if unknown:
        raise _refuse(f"{name}(...) with the arguments {unknown}", where)
    shown = repr(kwargs) if len(repr(kwargs)) <= 200 else repr(kwargs)[:200] + " ...}"
    try:
        dataset = DATASETS[name](**kwargs)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise ScanError(f"{where} names the dataset {name}({shown}), which cannot be re-created here ({exc}); "
                        "pass the images: Scan.load(path, net, images=...)") from None
    length = record.get("length")
    if length is not None and len(dataset) != length:
        raise ScanError(f"{where} names the dataset {name}({shown}) of {len(dataset)} images, but says it has "
                        f"{length!r}; the file is damaged. Pass the images: Scan.load(path, net, images=...)")
    return dataset

