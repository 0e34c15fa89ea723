"""The one array serializer of the widgets: ``{data: bytes, dtype, shape}`` over binary buffers.

ipywidgets lifts every ``memoryview`` found in a synced value into a binary buffer of the comm
message, so arrays never travel as JSON lists or base64. Only uint8 and float32 are sent (the JS
decoder knows exactly these two).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets

DTYPES = ("uint8", "float32")


def array_to_json(array: np.ndarray | None, _widget: Any = None) -> dict | None:
    """Serialize a numpy array as ``{"data": memoryview, "dtype": ..., "shape": [...]}``."""
    if array is None:
        return None
    array = np.asarray(array)
    if array.dtype.name not in DTYPES:
        raise ValueError(f"widgets send uint8 or float32 arrays only, got {array.dtype}")
    array = np.ascontiguousarray(array)
    return {"data": memoryview(array).cast("B"), "dtype": array.dtype.name, "shape": list(array.shape)}


def array_from_json(value: dict | None, _widget: Any = None) -> np.ndarray | None:
    """Inverse of :func:`array_to_json` (bytes, bytearray or memoryview data)."""
    if value is None:
        return None
    dtype = value["dtype"]
    if dtype not in DTYPES:
        raise ValueError(f"unsupported array dtype {dtype!r}; expected one of {DTYPES}")
    shape = tuple(int(n) for n in value["shape"])
    data = value["data"]
    raw = data.tobytes() if isinstance(data, memoryview) else bytes(data)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


ARRAY_SERIALIZERS = {"to_json": array_to_json, "from_json": array_from_json}


class Array(traitlets.TraitType):
    """A synced numpy array (uint8 / float32) or ``None``; assigning always notifies.

    Comparing arrays element-wise to decide whether to notify is both costly and ambiguous, so
    every assignment counts as a change.
    """

    default_value = None
    info_text = "a uint8 or float32 numpy array"

    def __init__(self, **kwargs):
        super().__init__(allow_none=True, **kwargs)
        self.tag(sync=True, **ARRAY_SERIALIZERS)

    def validate(self, obj, value):
        if value is None:
            return None
        if not isinstance(value, np.ndarray) or value.dtype.name not in DTYPES:
            self.error(obj, value)
        return value

    def set(self, obj, value):
        new_value = self._validate(obj, value)
        old_value = obj._trait_values.get(self.name, self.default_value)
        obj._trait_values[self.name] = new_value
        obj._notify_trait(self.name, old_value, new_value)
