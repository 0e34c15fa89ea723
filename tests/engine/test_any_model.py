"""Models the engine was not designed around (issue: any CNN a user brings), each against an
independent computation: no-resize preprocessing, tuple / dict outputs, squeeze-and-excitation
gates, residual adds read through an activation (timm), conv classifiers, GELU/SiLU networks,
one-channel inputs and heads replaced after wrapping."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.saliency import RuleWarning

torch.manual_seed(0)


def cifar_model(channels: int = 3) -> nn.Sequential:
    """A CIFAR-style model: a fixed Linear after the convs, so it runs on 32x32 inputs only."""
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 8 * 8, 5),
    ).eval()


def photo(size: int) -> Image.Image:
    return cw.sample_image("cat").resize((size, size))


# ----------------------------------------------------------------------------- input sizes
def test_no_resize_preprocess_learns_shapes_from_the_real_image():
    net = cw.Network(cifar_model(), preprocess=T.ToTensor())
    img = photo(32)
    top = net.predict(img, k=1)[0]
    reference = cifar_model()
    reference.load_state_dict(net.model.state_dict())
    with torch.no_grad():
        logits = reference(T.ToTensor()(img)[None])[0]
    assert top.index == int(logits.argmax())
    assert net.layer("3").shape == (6, 16, 16)  # learned at 32x32, not at 256x256
    assert net.input_size == (32, 32)
    assert net.saliency(img, 0, "gradient").shape == (3, 32, 32)


def test_input_size_lets_layers_be_listed_before_any_image():
    net = cw.Network(cifar_model(), preprocess=T.ToTensor(), input_size=32)
    assert [layer.shape for layer in net.layers][-1] == (5,)
    assert net.num_classes == 5
    with pytest.raises(cw.OptionError, match="input_size"):
        cw.Network(cifar_model(), preprocess=T.ToTensor(), input_size=(32,))


def test_an_image_that_does_not_fit_gets_a_clear_error():
    net = cw.Network(cifar_model(), preprocess=T.ToTensor())
    net.predict(photo(32))
    before = hook_count(net.model)
    with pytest.raises(cw.ImageError, match=r"cannot run on an input of shape \[3, 40, 40\].*resize images to 32x32"):
        net.predict(photo(40))
    assert hook_count(net.model) == before
    assert net.predict(photo(32), k=1)  # still works


def test_no_image_and_no_input_size_says_how_to_fix_it():
    net = cw.Network(cifar_model(), preprocess=T.ToTensor())
    with pytest.raises(cw.ModelError, match="input_size=\\(H, W\\)"):
        net.layers


# ----------------------------------------------------------------------------- outputs
class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = cifar_model()

    def forward(self, x):
        logits = self.body(x)
        return logits, {"features": x.mean()}


class DictOut(TupleOut):
    def forward(self, x):
        return {"aux": x.mean(), "scores": self.body(x)}


def test_tuple_output_uses_the_first_tensor():
    model = TupleOut().eval()
    net = cw.Network(model, preprocess=T.ToTensor(), input_size=32)
    x = T.ToTensor()(photo(32))
    with torch.no_grad():
        expected = model.body(x[None])[0]
    assert torch.allclose(net.logits(x), expected)
    assert net.predict(x, k=1)[0].index == int(expected.argmax())
    assert net.occlusion(x, 1, window=8, stride=8).shape == (32, 32)
    tree = net.contribution_tree(x, None, depth=1, k=2)
    assert tree.unit.layer == "body.7" and len(tree.children) == 2


def test_dict_output_needs_a_selector_and_then_works():
    net = cw.Network(DictOut().eval(), preprocess=T.ToTensor(), input_size=32)
    with pytest.raises(cw.ModelError, match="output=.*'aux'"):
        net.predict(photo(32))
    for selector in ("scores", lambda out: out["scores"]):
        net = cw.Network(DictOut().eval(), preprocess=T.ToTensor(), input_size=32, output=selector)
        x = T.ToTensor()(photo(32))
        with torch.no_grad():
            expected = net.model.body(x[None])[0]
        assert torch.allclose(net.logits(x), expected)
        assert set(net.activations(x, ["body.0"])) == {"body.0"}
        grad = net.saliency(x, 2, "gradient")
        xg = x[None].clone().requires_grad_(True)
        (reference,) = torch.autograd.grad(net.model.body(xg)[0, 2], xg)
        assert torch.allclose(grad, reference[0], atol=1e-6)


# ----------------------------------------------------------------------------- squeeze-and-excitation
class SEBlock(nn.Module):
    """timm's order: x * gate(x), the gate a 1x1 map from a global pool."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        y = F.relu(self.conv(x))
        return y * torch.sigmoid(self.fc(y.mean((2, 3), keepdim=True)))


def test_a_channel_gate_does_not_make_the_receptive_field_global():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), SEBlock(4), nn.Conv2d(4, 4, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    net = cw.Network(model, preprocess=T.ToTensor(), input_size=32)
    rf = net.layer("1").receptive_field  # conv 3x3 -> conv 3x3 inside the block: 5x5
    assert not rf.is_global and rf.size == (5, 5)
    assert net.layer("2").receptive_field.size == (7, 7)


def test_torchvision_se_networks_have_local_fields():
    import torchvision

    net = cw.Network(torchvision.models.mobilenet_v3_small().eval(), preprocess=T.Compose([T.Resize((64, 64)), T.ToTensor()]))
    spatial = [layer for layer in net.layers if layer.is_spatial and layer.shape[1] * layer.shape[2] > 1]
    assert spatial and not [layer.name for layer in spatial if layer.receptive_field is None or layer.receptive_field.is_global]


# ----------------------------------------------------------------------------- residual adds, timm style
class ActAfterAdd(nn.Module):
    """A residual block whose output is its own activation module's output (timm's BasicBlock)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x) + x)


def bias_free_residual() -> nn.Sequential:
    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, bias=False), nn.ReLU(), ActAfterAdd(5), ActAfterAdd(5),
                          nn.Conv2d(5, 6, 3, padding=1, bias=False), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3, bias=False)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.4 + 0.05)
    return model


def test_a_residual_add_read_through_its_activation_is_a_join():
    net = cw.Network(bias_free_residual(), preprocess=T.ToTensor(), input_size=12)
    block = net.layer("3.act")
    assert block.inputs == ("2.act", "3.conv") and block.input_layer == "2.act"
    # the tree steps over the run of same-shape residual blocks to the stage input, as for torchvision
    assert net.layer_below("3.act") == "1"
    x = torch.randn(3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    unit = cw.Unit("3.act", 2)
    children = net.contributions(x, unit, k=5, rule="gradient", reduce="sum")
    f = net.activations(x, ["3.act"])["3.act"][2].sum().item()
    assert sum(c.score for c in children) == pytest.approx(f, rel=1e-9)  # Euler: shortcut included


# ----------------------------------------------------------------------------- conv classifiers
def squeezenet_like() -> nn.Module:
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU())
            self.classifier = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

        def forward(self, x):
            return torch.flatten(self.classifier(self.features(x)), 1)

    return Net().eval()


def test_conv_classifier_classes_root_the_tree():
    net = cw.Network(squeezenet_like(), preprocess=T.ToTensor(), input_size=24)
    assert net.logit_layer == "classifier.2"
    x = T.ToTensor()(photo(24))
    tree = net.contribution_tree(x, 3, depth=1, k=2)
    assert tree.unit == cw.Unit("classifier.2", 3, reduce="max")
    assert tree.score == pytest.approx(float(net.logits(x)[3]), rel=1e-5)
    assert len(tree.children) == 2


# ----------------------------------------------------------------------------- GELU / SiLU
def gelu_silu_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GELU(), nn.Conv2d(4, 4, 3, padding=1), nn.SiLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).double().eval()


def test_guided_backprop_acts_on_gelu_and_silu():
    model = gelu_silu_net()
    net = cw.Network(model, preprocess=T.ToTensor(), input_size=10)
    x = torch.randn(3, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    # a loop reference: the guided rule written out layer by layer with autograd.functional
    xs = [x[None].clone().requires_grad_(True)]
    h0 = model[0](xs[0]); h1 = F.gelu(h0); h2 = model[2](h1); h3 = F.silu(h2)
    out = model[6](model[5](model[4](h3)))[0, 1]
    g3 = torch.autograd.grad(out, h3, retain_graph=True)[0]
    h2d = h2.detach().requires_grad_(True)
    (d3,) = torch.autograd.grad(F.silu(h2d).sum(), h2d)
    g2 = g3.clamp(min=0) * d3 * (h2d > 0)
    g1 = torch.autograd.grad(h2, h1, g2, retain_graph=True)[0]
    h0d = h0.detach().requires_grad_(True)
    (d1,) = torch.autograd.grad(F.gelu(h0d).sum(), h0d)
    g0 = g1.clamp(min=0) * d1 * (h0d > 0)
    (expected,) = torch.autograd.grad(h0, xs[0], g0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        guided = net.saliency(x, 1, "guided_backprop")
    assert torch.allclose(guided, expected[0], atol=1e-10)
    assert not torch.allclose(guided, net.saliency(x, 1, "gradient"))
    assert net.last_rule[0] == "guided"  # set by the guided pass; gradient calls skip the rule mode
    net.saliency(x, 1, "guided_backprop")
    assert net.last_rule == ("guided", ("gelu", "silu"))


def test_a_rule_with_nothing_to_act_on_warns():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    net = cw.Network(model, preprocess=T.ToTensor(), input_size=8)
    with pytest.warns(RuleWarning, match="equals the plain gradient"):
        guided = net.saliency(torch.randn(3, 8, 8), 0, "guided_backprop")
    assert guided.shape == (3, 8, 8)


# ----------------------------------------------------------------------------- one channel, replaced heads
def test_one_channel_model_displays_as_grey_rgb():
    net = cw.Network(cifar_model(channels=1), preprocess=T.Compose([T.Grayscale(), T.ToTensor()]), input_size=32)
    img = photo(32)
    shown = net.display_image(img)
    grey = np.asarray(img.convert("L"))
    assert shown.shape == (32, 32, 3) and shown.dtype == np.uint8
    assert np.abs(shown[..., 0].astype(int) - grey).max() <= 1 and (shown[..., 0] == shown[..., 2]).all()
    assert net.saliency(img, 0, "gradient").shape == (1, 32, 32)


def test_replacing_the_head_after_wrapping_updates_the_class_count():
    model = cifar_model()
    net = cw.Network(model, preprocess=T.ToTensor(), input_size=32)
    assert net.num_classes == 5
    model[7] = nn.Linear(6 * 8 * 8, 9)
    assert net.num_classes == 9
    assert net.predict(photo(32), k=9)[-1].index in range(9)
    assert net.saliency(photo(32), 8, "gradient").shape == (3, 32, 32)


def test_one_channel_tree_pictures_and_explorer_are_grey_rgb():
    net = cw.Network(cifar_model(channels=1), preprocess=T.Compose([T.Grayscale(), T.ToTensor()]), input_size=32)
    tree = net.contribution_tree(photo(32), None, depth=1, k=2)
    for node in tree.walk():
        assert node.picture.shape == (3, 32, 32) and node.raw_picture.shape == (1, 32, 32)
        assert torch.equal(node.picture[0], node.picture[2])
    explorer = cw.Explorer(net, photo(32))
    assert explorer.error == ""
    assert explorer.image_data.shape == (32, 32, 3) and explorer.tree_pictures.shape[-1] == 3
