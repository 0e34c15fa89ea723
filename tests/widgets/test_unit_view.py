"""The "Inside a unit" tab (unit_view.py, panels/unit.py): a selected position's arithmetic in the traits.

Every number is checked against a computation of its own here (F.conv2d / F.max_pool2d on the
window cut out by hand, the batch norm's formula, the activations the model gives), never against
what the widget itself produced.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cnn_widgets as cw
from cnn_widgets.engine import LayerNotFoundError, TargetError
from cnn_widgets.engine.digits_dataset import digits_split

REL = 1e-5


@pytest.fixture(scope="module")
def digits():
    return cw.digits_cnn()


@pytest.fixture(scope="module")
def digit():
    return digits_split("test")[0][0]


@pytest.fixture()
def widget(digits, digit):
    return cw.Explorer(digits, image=digit, window=8, stride=8)


def close(a, b, rel=REL):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-6)


def click(explorer, **changes):
    """What a click on a feature-map position sends (feature_maps.js): the channel, the position, the tab."""
    explorer.set_state({**changes, "target": "unit", "tab": "unit", "request_seq": explorer.request_seq + 1})


def test_a_clicked_convolution_unit_holds_its_window_kernel_and_products(widget, digits, digit):
    assert widget.unit_info == {}  # the tab is not shown: nothing computed
    click(widget, layer="conv1", channel=3, unit_position=[5, 7])
    assert widget.error == ""
    info = widget.unit_info
    assert (info["layer"], info["channel"], info["position"], info["kind"]) == ("conv1", 3, [5, 7], "conv")

    x = digits.prepare(digit).double()
    conv = digits.model.conv1
    w, b = conv.weight.detach().double()[3], float(conv.bias.detach()[3])
    window = F.pad(x, (1, 1, 1, 1))[0, :, 5:8, 7:10]  # padding 1: output (5, 7) reads rows 4..6, columns 6..8
    assert np.allclose(widget.unit_patch, window.numpy(), rtol=0, atol=1e-7)
    assert np.allclose(widget.unit_kernel, w.numpy(), rtol=0, atol=1e-7)
    assert np.allclose(widget.unit_products, (window * w).numpy(), rtol=1e-6, atol=1e-7)
    assert info["conv"]["channels"] == [0, 1, 2] and info["conv"]["other"] is None  # three input channels: all shown
    assert np.allclose(info["conv"]["sums"], (window * w).sum(dim=(1, 2)).numpy(), rtol=1e-9)
    pre = F.conv2d(x, conv.weight.detach().double(), conv.bias.detach().double(), padding=1)[0, 3]
    assert close(sum(info["conv"]["sums"]) + info["conv"]["bias"], float(pre[5, 7]), 1e-12)
    assert close(info["conv"]["bias"], b)
    # the value is the model's own number; the animation's maps are the input and the channel's output
    model_value = float(digits.activations(digit, ["conv1"])["conv1"][3, 5, 7])
    assert info["value"] == pytest.approx(model_value, rel=REL, abs=1e-7)
    assert np.allclose(widget.unit_input, x[0].numpy(), atol=1e-7) and info["input_is_image"]
    assert np.allclose(widget.unit_output, pre.numpy(), rtol=1e-5, atol=1e-6)
    assert info["slide"] == {"kh": 3, "kw": 3, "sy": 1, "sx": 1, "py": 1, "px": 1, "dy": 1, "dx": 1}
    assert [s["name"] for s in info["then"]] == ["relu"]  # conv1 is followed by relu1


def test_a_max_pool_unit_holds_its_window_and_winner(widget, digits, digit):
    click(widget, layer="pool1", channel=5, unit_position=[3, 2])
    info = widget.unit_info
    relu = digits.activations(digit, ["relu1"])["relu1"][5].double()
    window = relu[6:8, 4:6]  # 2x2, stride 2
    assert info["kind"] == "pool" and info["pool"]["op"] == "max"
    assert np.array_equal(widget.unit_patch[0], window.float().numpy())
    assert info["pool"]["window"] == [6, 4]
    winner = np.unravel_index(int(window.argmax()), (2, 2))
    assert window[winner].item() == window.max().item() == pytest.approx(info["value"])
    assert float(window.flatten()[int(np.ravel_multi_index(info["pool"]["winner"], (2, 2)))]) == float(window.max())
    pooled = F.max_pool2d(relu[None], 2)[0]
    assert np.array_equal(widget.unit_output, pooled.float().numpy())
    assert info["slide"]["sy"] == info["slide"]["sx"] == 2 and info["slide"]["kh"] == 2


def test_the_logit_layer_shows_the_softmax(widget, digits, digit):
    click(widget, layer="fc", channel=3, unit_position=[])
    info = widget.unit_info
    logits = digits.model(digits.prepare(digit)).detach().double()[0]
    assert info["kind"] == "linear" and info["position"] is None
    assert info["value"] == pytest.approx(float(logits[3]), rel=REL)
    sm = info["softmax"]
    probabilities = torch.softmax(logits, 0)
    assert sm["classes"][0] == int(logits.argmax()) and 3 in sm["classes"]
    for c, p, e in zip(sm["classes"], sm["probabilities"], sm["exps"]):
        assert p == pytest.approx(float(probabilities[c]), rel=1e-9, abs=1e-15)
        assert e == pytest.approx(float(torch.exp(logits[c] - logits.max())), rel=1e-9, abs=1e-300)
    lin = info["linear"]
    x = digits.activations(digit, ["pool2"])["pool2"].flatten().double()
    weight = digits.model.fc.weight.detach().double()[3]
    top = torch.argsort((x * weight).abs(), descending=True)[:len(lin["inputs"])]
    assert sorted(lin["inputs"]) == sorted(top.tolist())
    assert sum(lin["products"]) + lin["rest"] + lin["bias"] == pytest.approx(float(logits[3]), rel=REL)


def test_default_model_depthwise_unit_shows_one_channel_then_batch_norm_and_relu6(net):
    image = cw.sample_image("cat")
    explorer = cw.Explorer(net, image=image, window=112, stride=112)
    explorer.select_unit("blocks.1.0.bn2.act", 5, (20, 30))
    info = explorer.unit_info
    assert explorer.tab == "unit" and info["module"] == "blocks.1.0.conv_dw" and info["kind"] == "conv"
    conv, bn = net.model.get_submodule("blocks.1.0.conv_dw"), net.model.get_submodule("blocks.1.0.bn2")
    assert info["conv"]["count"] == 1 and info["conv"]["channels"] == [5] and info["conv"]["groups"] == conv.groups
    # the depthwise conv's input, caught on its way in
    seen = {}
    hook = conv.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0].detach().double()))
    try:
        net.activations(image, ["blocks.1.0.bn2.act"])
    finally:
        hook.remove()
    pre = F.conv2d(seen["x"][:, 5:6], conv.weight.detach().double()[5:6], None, conv.stride, conv.padding)[0, 0, 20, 30]
    assert close(sum(info["conv"]["sums"]) + (info["conv"]["bias"] or 0.0), float(pre), 1e-9)
    scale = float(bn.weight.detach()[5] / torch.sqrt(bn.running_var[5] + bn.eps))
    shift = float(bn.bias.detach()[5] - bn.running_mean[5] * scale)
    norm, act = info["steps"]
    assert norm["name"] == "batch_norm" and close(norm["scale"], scale) and close(norm["shift"], shift, 1e-4)
    assert act["name"] == "hardtanh" and act["bounds"] == [0.0, 6.0]  # ReLU6
    expected = min(6.0, max(0.0, float(pre) * scale + shift))
    model_value = float(net.activations(image, ["blocks.1.0.bn2.act"])["blocks.1.0.bn2.act"][5, 20, 30])
    assert close(expected, model_value) and close(info["value"], model_value)


def test_many_input_channels_show_the_largest_sums_and_group_the_rest(net):
    image = cw.sample_image("cat")
    explorer = cw.Explorer(net, image=image, window=112, stride=112)
    explorer.select_unit("blocks.1.0.conv_pwl", 2, (10, 11))
    info, conv = explorer.unit_info, net.model.get_submodule("blocks.1.0.conv_pwl")
    seen = {}
    hook = conv.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0].detach().double()))
    try:
        value = float(net.activations(image, ["blocks.1.0.conv_pwl"])["blocks.1.0.conv_pwl"][2, 10, 11])
    finally:
        hook.remove()
    sums = conv.weight.detach().double()[2, :, 0, 0] * seen["x"][0, :, 10, 11]  # a 1x1 convolution: one product per channel
    top = torch.argsort(sums.abs(), descending=True)[:6].tolist()
    c = info["conv"]
    assert c["channels"] == top and np.allclose(c["sums"], sums[top].numpy(), rtol=1e-9)
    assert c["other"]["count"] == conv.in_channels - 6
    assert c["other"]["sum"] == pytest.approx(float(sums.sum() - sums[top].sum()), rel=1e-9, abs=1e-12)
    assert explorer.unit_patch.shape == (6, 1, 1) and explorer.unit_input.shape[0] == 6 and not info["input_is_image"]
    assert close(sum(c["sums"]) + c["other"]["sum"] + (c["bias"] or 0.0), value)


def test_a_bad_position_is_a_clear_error_and_changes_nothing(widget):
    click(widget, layer="conv1", channel=3, unit_position=[5, 7])
    before = (widget.layer, widget.channel, widget.tab, list(widget.unit_position), dict(widget.unit_info))
    click(widget, channel=4, unit_position=[16, 0])  # conv1's map is 16 x 16
    assert "outside layer conv1's 16×16 map" in widget.error
    assert (widget.layer, widget.channel, widget.tab, list(widget.unit_position), dict(widget.unit_info)) == before
    with pytest.raises(TargetError, match="outside layer conv1"):
        widget.select_unit("conv1", 1, (0, -1))
    with pytest.raises(TargetError, match="layer fc has no positions"):
        widget.select_unit("fc", 1, (0, 0))
    with pytest.raises(TargetError, match="16 channels"):
        widget.select_unit("conv1", 16, (0, 0))
    with pytest.raises(LayerNotFoundError):
        widget.select_unit("conv9", 0, (0, 0))
    assert (widget.layer, widget.channel, widget.tab, list(widget.unit_position), dict(widget.unit_info)) == before


def test_a_click_on_the_image_picks_the_unit_over_that_pixel(widget, digits):
    widget.select_unit("pool1", 2)
    widget._on_custom_message(widget, {"type": "unit", "y": 8, "x": 3}, [])
    assert widget.error == ""
    field = digits.layer("pool1").receptive_field
    y, x = widget.unit_position
    for p, q, start, size, stride in zip((8, 3), (y, x), field.start, field.size, field.stride):
        centre = start + q * stride + (size - 1) / 2
        assert abs(centre - p) <= stride / 2  # the field centred nearest the pixel
    assert widget.unit_info["position"] == [y, x]
    before = list(widget.unit_position)
    widget._on_custom_message(widget, {"type": "unit", "y": 40, "x": 3}, [])  # the image is 16 x 16
    assert "outside the 16×16 image" in widget.error and widget.unit_position == before
    widget.layer = "fc"
    widget._on_custom_message(widget, {"type": "unit", "y": 2, "x": 3}, [])
    assert "layer fc has no map positions" in widget.error


def test_the_position_follows_a_layer_of_the_same_size_only(widget):
    widget.select_unit("conv1", 3, (5, 7))
    widget.layer = "relu1"  # the same 16 x 16 map: the same place
    assert widget.unit_position == [5, 7] and widget.unit_info["layer"] == "relu1" and widget.unit_info["position"] == [5, 7]
    widget.layer = "pool1"  # 8 x 8: the new channel's maximum
    assert widget.unit_position == []
    value = widget.unit_info["value"]
    assert value == pytest.approx(float(widget.net.activations(widget.image, ["pool1"])["pool1"][3].max()))


def test_the_selected_units_view_is_saved_in_an_export(widget, tmp_path):
    widget.select_unit("conv2", 7, (3, 4))
    page = cw.export_html(widget, tmp_path / "unit.html")
    text = (tmp_path / "unit.html").read_text()
    states = json.loads(re.search(r'<script type="application/json" id="cnnw-states">(.*?)</script>', text, re.DOTALL).group(1))
    entry = next(iter(states.values()))
    assert entry["state"]["tab"] == "unit" and entry["state"]["unit_info"]["position"] == [3, 4]
    paths = {tuple(b["path"]) for b in entry["buffers"]}
    for name in ("unit_patch", "unit_kernel", "unit_products", "unit_input", "unit_output"):
        assert (name, "data") in paths
    patch = next(b for b in entry["buffers"] if b["path"] == ["unit_patch", "data"])
    shape = entry["state"]["unit_patch"]["shape"]
    assert np.array_equal(np.frombuffer(base64.b64decode(patch["data"]), np.float32).reshape(shape), widget.unit_patch)
    assert page is not None


def test_a_position_given_to_the_constructor_is_kept_and_checked(digits, digit):
    """unit_position is checked against the network, so it is set after it (NETWORK_SETTINGS): the
    Explorer opens on that number, and a position off the map is refused naming the map's size."""
    explorer = cw.Explorer(digits, image=digit, layer="conv1", channel=7, unit_position=[4, 6], tab="unit")
    expected = float(digits.activations(digit, "conv1")["conv1"][7, 4, 6])
    assert explorer.unit_position == [4, 6] and explorer.unit_info["position"] == [4, 6]
    assert explorer.unit_info["value"] == pytest.approx(expected, rel=REL)
    with pytest.raises(Exception, match=r"outside layer conv1's 16×16 map"):
        cw.Explorer(digits, image=digit, layer="conv1", channel=7, unit_position=[40, 6])
