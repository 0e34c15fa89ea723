import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers

from cnn_widgets.widgets import array_from_json, array_to_json


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_round_trip_keeps_values_dtype_and_shape(dtype):
    rng = np.random.default_rng(0)
    array = (rng.random((3, 5, 7)) * 200).astype(dtype)
    wire = array_to_json(array)
    assert isinstance(wire["data"], memoryview) and wire["dtype"] == dtype and wire["shape"] == [3, 5, 7]
    assert wire["data"].nbytes == array.nbytes
    for data in (wire["data"], bytes(wire["data"]), bytearray(wire["data"])):
        back = array_from_json({**wire, "data": data})
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)


def test_non_contiguous_arrays_are_sent_contiguous():
    array = np.arange(24, dtype=np.uint8).reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(array_from_json(array_to_json(array)), array)


def test_only_uint8_and_float32_travel():
    with pytest.raises(ValueError, match="uint8 or float32"):
        array_to_json(np.zeros(3, np.float64))
    with pytest.raises(ValueError, match="unsupported"):
        array_from_json({"data": b"\0" * 8, "dtype": "float64", "shape": [1]})
    assert array_to_json(None) is None and array_from_json(None) is None


def test_widget_state_sends_arrays_as_binary_buffers_not_json(explorer):
    state, paths, buffers = _remove_buffers(explorer.get_state())
    sent = {tuple(p) for p in paths}
    for name in ("fmap", "fmap_max", "image_data", "saliency", "occlusion", "tree_pictures"):
        assert (name, "data") in sent, name
        assert state[name]["dtype"] in ("uint8", "float32")
    by_path = dict(zip(map(tuple, paths), buffers))
    assert by_path[("fmap", "data")].nbytes == explorer.fmap.nbytes
    np.testing.assert_array_equal(array_from_json({**state["fmap"], "data": by_path[("fmap", "data")]}), explorer.fmap)
