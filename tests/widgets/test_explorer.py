import io

import ipywidgets
import numpy as np
import pytest
import torch
import traitlets
from PIL import Image
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count


def front_end_update(widget, **state):
    """What the widget manager delivers when the browser changes traits (handled as in the kernel)."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


def model_fingerprint(model: nn.Module):
    return (
        hook_count(model),
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.detach().clone() for p in model.parameters()],
    )


def assert_untouched(model, before):
    after = model_fingerprint(model)
    assert after[:3] == before[:3]
    assert all(torch.equal(a, b) for a, b in zip(after[3], before[3]))


# ------------------------------------------------------------------ defaults and state
def test_default_explorer_shows_the_cat(explorer, net):
    assert explorer.error == "" and explorer.status == "idle"
    assert explorer.image_name == "cat"
    top = net.predict(cw.sample_image("cat"), k=5)
    assert [p["index"] for p in explorer.predictions] == [p.index for p in top]
    assert explorer.predictions[0]["label"] in ("tabby, tabby cat", "tiger cat", "Egyptian cat")
    info = net.layer(explorer.layer)
    assert explorer.fmap.shape == info.shape and explorer.fmap.dtype == np.uint8
    assert explorer.fmap_max.shape == (info.channels,) and explorer.fmap_max.dtype == np.float32
    np.testing.assert_allclose(explorer.fmap_max, net.activations(explorer.image, explorer.layer)[explorer.layer].flatten(1).amax(1).numpy(), rtol=1e-6)
    assert explorer.saliency.shape == explorer.image_data.shape[:2] == explorer.occlusion.shape
    levels = explorer.tree["levels"]
    assert len(levels) == 1 and len(levels[0]["children"]) == explorer.k
    assert explorer.tree_pictures.shape[0] == 1 + explorer.k
    assert [layer["name"] for layer in explorer.layers] == net.layer_names


def test_dead_channels_are_flagged(explorer, net):
    explorer.layer = "bn1.act"
    act = net.activations(explorer.image, "bn1.act")["bn1.act"]
    expected = (act.flatten(1).abs().amax(1) == 0).numpy().astype(np.uint8)
    np.testing.assert_array_equal(explorer.fmap_dead, expected)
    assert explorer.fmap_info["dead"] == int(expected.sum())


def test_per_tile_scaling_stretches_each_live_channel(explorer):
    explorer.scaling = "per_tile"
    live = explorer.fmap_dead == 0
    assert (explorer.fmap.reshape(len(live), -1)[live].max(axis=1) == 255).all()


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "name, value, message",
    [
        ("layer", "blocks.9.9", "no explorable layer"),
        ("layer", "conv_stm", "did you mean 'conv_stem'"),
        ("channel", 100000, "out of range"),
        ("method", "deeplift", "method must be one of"),
        ("fill", "noise", "fill must be one of"),
        ("opacity", 1.5, "between 0 and 1"),
        ("window", 2, "between"),
        ("stride", 1, "between"),
        ("scaling", "log", "scaling must be one of"),
        ("target", 5000, "out of range"),
        ("target", "no such class", "no class is labelled"),
        ("image_name", "moon", "unknown sample image"),
        ("tree_path", [["conv_stem", 999]], "not a path of the tree rooted in"),
    ],
)
def test_invalid_values_are_refused_with_a_reason(explorer, name, value, message):
    before = getattr(explorer, name)
    with pytest.raises(traitlets.TraitError, match=message):
        setattr(explorer, name, value)
    assert getattr(explorer, name) == before


def test_class_labels_become_indices(explorer, net):
    explorer.target = "tiger cat"
    assert explorer.target == net.class_index("tiger cat")
    assert explorer.saliency_info["target"] == "class tiger cat"


def test_bad_front_end_value_becomes_error_and_widget_keeps_working(explorer):
    layer = explorer.layer
    front_end_update(explorer, layer="nope", request_seq=1)
    assert explorer.layer == layer and "no explorable layer 'nope'" in explorer.error
    assert explorer.result_seq == 1  # the request is answered, not left busy
    front_end_update(explorer, channel=3, request_seq=2)
    assert explorer.channel == 3 and explorer.result_seq == 2


# ------------------------------------------------------------------ linking and recomputation
def test_linked_int_slider_drives_the_occlusion_window(explorer, net):
    slider = ipywidgets.IntSlider(min=8, max=224, value=explorer.window)
    traitlets.link((slider, "value"), (explorer, "window"))
    ipywidgets.jslink((slider, "value"), (explorer, "window"))  # a front-end link to the same trait is accepted
    before = explorer.occlusion.copy()
    slider.value = 64
    assert explorer.window == 64 and explorer.occlusion_info["window"] == 64
    assert not np.array_equal(before, explorer.occlusion)
    target = explorer.resolved_target()
    heat = net.occlusion(explorer.image, target, window=64, stride=explorer.stride, fill=explorer.fill, progress=False)
    extent = float(heat.abs().max())
    expected = np.clip(np.round(128 + 127 * heat.numpy() / extent), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(explorer.occlusion, expected)


def test_setting_image_recomputes_predictions(explorer, net):
    coffee = cw.sample_image("coffee")
    explorer.image = coffee
    assert explorer.image_name == "coffee"  # a sample passed by value is named as the sample
    assert [p["index"] for p in explorer.predictions] == [p.index for p in net.predict(coffee, k=5)]
    np.testing.assert_array_equal(explorer.image_data, net.display_image(coffee))
    explorer.image_name = "rocket"
    assert [p["index"] for p in explorer.predictions] == [p.index for p in net.predict(cw.sample_image("rocket"), k=5)]


def test_only_the_panels_a_change_needs_are_computed(explorer, monkeypatch):
    computed = []
    real = explorer._compute_panel
    monkeypatch.setattr(explorer.runner, "compute", lambda panel: (computed.append(panel), real(panel)))
    explorer.method = "gradient"
    assert computed == ["saliency"]
    computed.clear()
    explorer.scaling = "per_tile"
    assert computed == ["feature_maps"]
    computed.clear()
    explorer.channel = 2  # target is the top class: only the filters follow the channel
    assert computed == ["filters"]
    computed.clear()
    explorer.opacity = 0.3
    explorer.colormap = "magma"
    assert computed == []


def test_tree_expands_along_a_path_and_goes_back_up(explorer, net):
    child = explorer.tree["levels"][0]["children"][0]
    explorer.tree_path = [[child["layer"], child["channel"]]]
    levels = explorer.tree["levels"]
    assert len(levels) == 2 and (levels[1]["layer"], levels[1]["channel"]) == (child["layer"], child["channel"])
    root = net.contribution_tree(explorer.image, explorer.resolved_target(), depth=1, k=explorer.k,
                                 path=(cw.Unit(child["layer"], child["channel"]),))
    assert [(c["layer"], c["channel"]) for c in levels[1]["children"]] == [(c.unit.layer, c.unit.channel) for c in root.children]
    assert explorer.tree_pictures.shape[0] == 2 + explorer.k + len(root.children)
    explorer.tree_path = []
    assert len(explorer.tree["levels"]) == 1


def test_uploaded_file_becomes_the_image(explorer, net):
    buffer = io.BytesIO()
    cw.sample_image("coffee").save(buffer, format="PNG")
    explorer._handle_msg({"content": {"data": {"method": "custom", "content": {"type": "image", "name": "coffee.png"}}},
                          "buffers": [memoryview(buffer.getvalue())]})
    assert explorer.image_name == "custom" and explorer.error == ""
    decoded = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    assert [p["index"] for p in explorer.predictions] == [p.index for p in net.predict(decoded, k=5)]


# ------------------------------------------------------------------ errors leave the model untouched
def test_bad_upload_is_reported_and_the_previous_image_kept(explorer, net):
    before = model_fingerprint(net.model)
    predictions = explorer.predictions
    explorer._handle_msg({"content": {"data": {"method": "custom", "content": {"type": "image", "name": "notes.txt"}}},
                          "buffers": [memoryview(b"this is not an image")]})
    assert "notes.txt is not a readable image" in explorer.error and explorer.status == "error"
    assert explorer.predictions == predictions and explorer.image_name == "cat"
    with pytest.raises(traitlets.TraitError, match="NaN"):
        explorer.image = torch.full((3, 224, 224), float("nan"))
    assert_untouched(net.model, before)
    explorer.layer = "conv_stem"  # still working
    assert explorer.fmap.shape[0] == 32
    explorer.image_name = "coffee"
    assert explorer.error == "" and explorer.status == "idle"


class BatchOfOneNet(nn.Module):
    """A real CNN that, like some user models, refuses batches (occlusion sends them)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.shape[0] != 1:
            raise RuntimeError("this model only takes one image at a time")
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_failing_model_shows_an_error_and_is_left_as_it_was():
    model = BatchOfOneNet().train()
    net = cw.Network(model, labels=["a", "b", "c"])
    before = model_fingerprint(model)
    explorer = cw.Explorer(net, window=112, stride=112)
    assert "occlusion" in explorer.error and "one image at a time" in explorer.error
    assert explorer.status == "error"
    assert explorer.predictions and explorer.fmap is not None and explorer.saliency is not None
    assert_untouched(model, before)
    assert model.training  # still in the mode the user left it in
    explorer.channel = 1
    assert explorer.filters_info["layer"] == explorer.layer


# ------------------------------------------------------------------ coalescing and stale results
class ManualLoop:
    """Stands in for the kernel's event loop timers so a test decides when they fire."""

    def __init__(self):
        self.callbacks = []

    def call_later(self, _delay, callback):
        handle = [callback, False]
        self.callbacks.append(handle)

        class Handle:
            def cancel(self_inner):
                handle[1] = True

        return Handle()

    def run(self):
        while self.callbacks:
            callback, cancelled = self.callbacks.pop(0)
            if not cancelled:
                callback()


def test_fast_drag_computes_only_the_latest_value(explorer, net, monkeypatch):
    loop = ManualLoop()
    explorer.runner.defer = True
    explorer.runner.call_later = loop.call_later
    calls = []
    real = net.occlusion
    monkeypatch.setattr(net, "occlusion", lambda *a, **kw: (calls.append(kw["window"]), real(*a, **kw))[1])
    for seq, window in enumerate((40, 56, 72, 96), start=1):
        front_end_update(explorer, window=window, request_seq=seq)
    assert explorer.status == "busy" and explorer.result_seq == 0
    loop.run()
    assert calls == [96]
    assert explorer.occlusion_info["window"] == 96
    assert explorer.result_seq == 4 and explorer.status == "idle"


def test_one_panel_per_loop_turn_lets_newer_requests_in(explorer, net, monkeypatch):
    loop = ManualLoop()
    explorer.runner.defer = True
    explorer.runner.call_later = loop.call_later
    front_end_update(explorer, target="unit", channel=1, request_seq=1)
    while "saliency" in explorer.runner.dirty:  # one cheap panel per turn (filters, then saliency)
        loop.callbacks.pop(0)[0]()
    assert explorer.saliency_info["target"].endswith("[1]") and "tree" in explorer.runner.dirty
    front_end_update(explorer, channel=2, request_seq=2)  # arrives before tree and occlusion ran
    loop.run()
    assert explorer.tree["levels"][0]["channel"] == 2
    assert explorer.occlusion_info["target"].endswith("[2]") and explorer.saliency_info["target"].endswith("[2]")
    assert explorer.result_seq == 2


def test_a_result_overtaken_by_a_newer_request_is_dropped(explorer, net, monkeypatch):
    real = net.saliency

    def saliency_while_user_moves_on(*args, **kwargs):
        result = real(*args, **kwargs)
        explorer.runner.generation["saliency"] += 1  # a newer request for this panel arrived meanwhile
        return result

    old = explorer.saliency.copy()
    monkeypatch.setattr(net, "saliency", saliency_while_user_moves_on)
    explorer.runner.dirty.add("saliency")
    explorer.method = "gradient"
    np.testing.assert_array_equal(explorer.saliency, old)
    assert explorer.saliency_info["method"] == "guided_backprop"


def test_a_sample_passed_by_value_is_named_as_the_sample(tiny):
    """The image menu said "your image" for cw.sample_image("coffee") passed in by value."""
    import numpy as np
    from PIL import Image

    assert cw.Explorer(tiny, image=cw.sample_image("coffee"), window=112, stride=112).image_name == "coffee"
    pixels = np.asarray(cw.sample_image("coffee")).copy()
    pixels[0, 0] ^= 1  # one pixel off: not the sample
    assert cw.Explorer(tiny, image=Image.fromarray(pixels), window=112, stride=112).image_name == "custom"
    explorer = cw.Explorer(tiny, window=112, stride=112)
    explorer.image = cw.sample_image("rocket")
    assert explorer.image_name == "rocket"


def test_captions_name_a_class_of_a_model_without_labels_once():
    from cnn_widgets.widgets.panels.base import target_text

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    net = cw.Network(model, input_size=(16, 16))
    assert target_text(net, 2) == "class 2"  # not "class class 2"
    net.labels = ["cat", "dog", "class 7"]
    assert target_text(net, 0) == "class cat" and target_text(net, 2) == "class class 7"
