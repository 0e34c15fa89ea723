"""Network basics: images, predictions, activations, filters, errors, model state, offline default."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )


def small_preprocess(pil: Image.Image) -> torch.Tensor:
    array = np.asarray(pil.resize((16, 16)), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1) - 0.5


@pytest.fixture()
def net():
    return cw.Network(small_cnn(), preprocess=small_preprocess, labels=["tabby, tabby cat", "dog", "car"])


def reference_forward(model, x):
    """Plain loop over the Sequential, out-of-place, no hooks: every layer output."""
    outs = {}
    with torch.no_grad():
        for i, layer in enumerate(model):
            x = layer(x.clone())
            outs[str(i)] = x[0]
    return outs


def test_activations_equal_a_plain_forward_and_are_cached(net):
    pil = cw.sample_image("coffee")
    got = net.activations(pil)
    expected = reference_forward(net.model.eval(), small_preprocess(pil)[None])
    assert set(got) == {layer.name for layer in net.layers}
    for name, value in got.items():
        torch.testing.assert_close(value, expected[name])
    # "0" is captured before the in-place ReLU: it keeps negative values
    assert (got["0"] < 0).any() and (got["1"] >= 0).all()
    # cached per image: the second call does no forward pass (counted by the module's own forward:
    # a hook would itself change what the model computes, which the cache key notices)
    calls = []
    first = net.model[0]
    plain = first.forward
    first.forward = lambda x: (calls.append(1), plain(x))[1]
    try:
        net.activations(pil, ["3"])
        assert calls == []
        with torch.no_grad():
            net.model[0].weight.mul_(2.0)  # weights changed: the cache must not be reused
        again = net.activations(pil, "0")["0"]
        assert calls == [1]
        assert not torch.allclose(again, got["0"])
    finally:
        del first.forward


def test_predict_softmax_and_labels(net):
    x = torch.randn(3, 16, 16)
    logits = net.model.eval()(x[None])[0].detach()
    top = net.predict(x, k=2)
    probs = logits.softmax(0)
    order = probs.argsort(descending=True)
    assert [p.index for p in top] == order[:2].tolist()
    assert top[0].probability == pytest.approx(probs[order[0]].item(), rel=1e-6)
    assert top[0].label == net.labels[order[0]]
    assert net.class_index("tabby") == 0 and net.class_index("Dog") == 1
    with pytest.raises(cw.TargetError, match="did you mean 'dog'"):
        net.class_index("dgo")


def test_filters_are_copies(net):
    w = net.filters("0")
    assert w.shape == (4, 3, 3, 3)
    w.zero_()
    assert net.model[0].weight.abs().sum() > 0
    with pytest.raises(cw.LayerNotFoundError, match="no filters"):
        net.filters("2")


@pytest.mark.parametrize(
    "make, same_pixels",
    [
        (lambda: cw.sample_image("cat"), True),
        (lambda: np.asarray(cw.sample_image("cat")), True),
        (lambda: np.asarray(cw.sample_image("cat")).astype(np.float64) / 255.0, True),
        (lambda: np.dstack([np.asarray(cw.sample_image("cat")), np.full((300, 451), 255, np.uint8)]), True),
        (lambda: cw.sample_image("cat").convert("RGBA"), True),
        (lambda: np.asarray(cw.sample_image("cat").convert("L")), False),
        (lambda: cw.sample_image("cat").convert("L"), False),
    ],
)
def test_image_forms_are_converted(net, make, same_pixels):
    x = net.prepare(make())
    assert x.shape == (1, 3, 16, 16)
    if same_pixels:
        torch.testing.assert_close(x, net.prepare(cw.sample_image("cat")), atol=1 / 255, rtol=0)
    else:  # grayscale becomes three equal channels
        assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 1], x[0, 2])


def test_path_and_grayscale_file(net, tmp_path):
    path = tmp_path / "gray.png"
    cw.sample_image("camera").convert("L").save(path)
    x = net.prepare(str(path))
    assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 1], x[0, 2])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((3, 32, 32), np.uint8), "channels-first"),
        (np.zeros((32, 32, 5), np.uint8), "HxWx3"),
        (np.zeros((2, 4, 32, 32), np.uint8), "HxWx3"),
        (np.full((8, 8, 3), 2.0), r"\[0, 1\]"),
        (np.full((8, 8, 3), np.nan), "NaN"),
        ("/no/such/file.png", "not found"),
        (42, "cannot use an object of type int"),
        (torch.zeros(2, 3, 16, 16), r"\[1, C, H, W\]; got a batch of 2"),
        (torch.zeros(3, 16, 16, dtype=torch.uint8), "must be float"),
    ],
)
def test_bad_images_get_clear_errors(net, bad, message):
    with pytest.raises(cw.ImageError, match=message):
        net.predict(bad)
    assert hook_count(net.model) == 0


def test_non_finite_outputs_are_reported_and_leave_no_trace():
    model = small_cnn()
    with torch.no_grad():
        model[7].bias[1] = float("nan")
    net = cw.Network(model, preprocess=small_preprocess)
    model.train()
    with pytest.raises(cw.NonFiniteError, match="NaN or infinite"):
        net.predict(torch.zeros(3, 16, 16))
    assert hook_count(model) == 0 and model.training


def test_unit_and_class_target_errors(net):
    with pytest.raises(cw.TargetError, match="out of range.*has 6 channels"):
        net._resolve_target(cw.Unit("3", 6))
    with pytest.raises(cw.TargetError, match="out of range; the model has 3 classes"):
        net._resolve_target(3)
    with pytest.raises(cw.TargetError, match="outside the 8x8 map"):
        net._resolve_target(cw.Unit("3", 0, position=(8, 0)))
    with pytest.raises(cw.LayerNotFoundError, match="did you mean"):
        net._resolve_target(cw.Unit("33", 0))


def test_model_state_restored_after_success_and_after_an_error():
    model = small_cnn()
    model.train()
    model[3].weight.requires_grad_(False)  # a user's partially frozen model
    flags = [p.requires_grad for p in model.parameters()]
    weights = [p.detach().clone() for p in model.parameters()]
    net = cw.Network(model, preprocess=small_preprocess)
    net.predict(torch.randn(3, 16, 16))
    net.contribution_tree(torch.randn(3, 16, 16), 0, depth=2, k=2)

    class Boom(Exception):
        pass

    def explode(module, inputs, output):
        raise Boom

    handle = model[4].register_forward_hook(explode)  # the user's own hook fails mid-forward
    with pytest.raises(Boom):
        net.contributions(torch.randn(3, 16, 16), cw.Unit("4", 0))
    handle.remove()
    assert hook_count(model) == 0
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert all(p.grad is None for p in model.parameters())  # no weight gradient was ever computed
    assert torch._C._len_torch_function_stack() == 0


def test_float64_model_computes_in_float64():
    net = cw.Network(small_cnn().double(), preprocess=small_preprocess)
    assert net.prepare(np.zeros((16, 16, 3), np.uint8)).dtype == torch.float64
    assert net.activations(torch.zeros(3, 16, 16), "0")["0"].dtype == torch.float64


def test_default_model_on_the_cat_offline(no_network):
    with pytest.raises(OSError):
        socket.create_connection(("pypi.org", 443))
    net = cw.load_default(fresh=True)
    top = net.predict(cw.sample_image("cat"), k=3)
    assert {p.label for p in top} == {"Egyptian cat", "tiger cat", "tabby, tabby cat"}
    assert sum(p.probability for p in top) > 0.8
    assert net.input_size == (224, 224)
    assert net.layers[0].name == "conv_stem" and net.layers[-1].shape == (1000,)
    # other offline photos are recognised too
    assert net.predict(cw.sample_image("coffee"), k=1)[0].label == "espresso"


def test_unknown_sample_image():
    with pytest.raises(cw.ImageError, match="choose one of"):
        cw.sample_image("dog")


def test_named_models_load_with_random_weights_offline(no_network):
    net = cw.load_model("resnet18")
    assert net.layers[0].name == "conv1" and net.num_classes == 1000
    with pytest.raises(cw.ModelError, match="torchvision has no model"):
        cw.load_model("resnet19")


def test_downloadable_weights_offline_give_a_clear_error(no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights to fall back on
    with pytest.raises(cw.ModelError, match="could not download .*offline.*weights=None"):
        cw.load_model("alexnet", weights="DEFAULT")
