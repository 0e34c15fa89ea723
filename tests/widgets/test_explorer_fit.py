"""Issue 9 item 7: the Explorer takes any CNN and fits its settings to it, refuses bad ones, recovers."""

import pytest
import torch
import traitlets
from torch import nn

import cnn_widgets as cw
from cnn_widgets.widgets import sizes


def front_end_update(widget, **state):
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


@pytest.fixture(scope="module")
def digits():
    return cw.digits_cnn()


def tiny_module():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def test_a_raw_module_is_wrapped():
    model = tiny_module()
    explorer = cw.Explorer(model, window=112, stride=112)
    assert isinstance(explorer.net, cw.Network) and explorer.net.model is model
    assert explorer.error == "" and explorer.status == "idle" and len(explorer.predictions) == 3
    explorer.net = tiny_module()  # also when set later
    assert isinstance(explorer.net, cw.Network)


def test_small_inputs_get_windows_and_ranges_that_fit(digits):
    explorer = cw.Explorer(digits)
    assert explorer.error == "" and explorer.status == "idle"
    side = min(digits.input_size)
    ranges = explorer.choices["ranges"]
    assert ranges["window"]["max"] == side and ranges["stride"]["max"] <= side
    assert 1 <= explorer.stride <= explorer.window <= side
    assert explorer.occlusion.shape == explorer.image_data.shape[:2] == (16, 16)
    with pytest.raises(traitlets.TraitError, match="between"):
        explorer.window = 48  # beyond this model's input
    # the ImageNet model keeps the familiar defaults and its ranges
    assert sizes.occlusion_defaults((224, 224)) == {"window": 48, "stride": 24}
    assert sizes.occlusion_ranges((224, 224))["window"] == {"min": 8, "max": 224, "step": 4}


def test_switching_network_refits_the_windows(explorer, digits):
    explorer.net = digits
    assert explorer.window <= 16 and explorer.choices["ranges"]["window"]["max"] == 16
    assert explorer.error == ""


@pytest.mark.parametrize("settings, message", [
    ({"layer": "conv9"}, "conv1, relu1, pool1"),
    ({"layer": "conv1", "channel": 99}, "out of range"),
    ({"channel": -1}, "out of range"),
])
def test_bad_settings_at_construction_are_refused(digits, settings, message):
    with pytest.raises(traitlets.TraitError, match=message):
        cw.Explorer(digits, **settings)


def test_good_settings_at_construction_are_kept(digits):
    explorer = cw.Explorer(digits, layer="conv2", channel=5, window=8, stride=4)
    assert (explorer.layer, explorer.channel, explorer.window, explorer.stride) == ("conv2", 5, 8, 4)


def test_a_rejected_front_end_value_clears_on_the_next_good_change(digits):
    explorer = cw.Explorer(digits)
    front_end_update(explorer, layer="nope")
    assert explorer.status == "error" and "nope" in explorer.error
    front_end_update(explorer, layer="conv2")
    explorer.compute()
    assert explorer.error == "" and explorer.status == "idle" and explorer.layer == "conv2"
