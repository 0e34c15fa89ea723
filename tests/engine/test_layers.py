"""Layer discovery and receptive fields, checked against gradient supports."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnn_widgets as cw


def _positive(model: nn.Module) -> nn.Module:
    """Positive weights and no ReLU dead zones: the input gradient of a pixel covers its whole field."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) + 0.1)
    return model.double().eval()


def _gradient_support(model: nn.Module, upto: nn.Module, x: torch.Tensor, channel: int, y: int, xx: int):
    """Rows / columns of the input where d h[channel, y, xx] / d input is non-zero."""
    captured = {}
    handle = upto.register_forward_hook(lambda m, i, o: captured.__setitem__("h", o))
    try:
        x = x.clone().requires_grad_(True)
        model(x)
        (grad,) = torch.autograd.grad(captured["h"][0, channel, y, xx], x)
    finally:
        handle.remove()
    nz = grad[0].abs().sum(0).nonzero()
    return (int(nz[:, 0].min()), int(nz[:, 1].min()), int(nz[:, 0].max()) + 1, int(nz[:, 1].max()) + 1)


class ConvPoolChain(nn.Module):
    """Strides, padding, dilation and average pools: an AlexNet-like chain with a known geometry."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 5, stride=2, padding=2)
        self.pool1 = nn.AvgPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.pool2 = nn.AvgPool2d(2)
        self.conv3 = nn.Conv2d(4, 5, 3, padding=1)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.pool1(x)
        x = torch.relu(self.conv2(x))
        x = self.pool2(x)
        x = self.conv3(x).relu()
        return self.head(x.mean((2, 3)))


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.branch_a = nn.Conv2d(4, 4, 5, padding=2)
        self.branch_b = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
        self.out = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.stem(x)
        x = self.branch_a(x) + self.branch_b(x)  # union: 5x5 vs (3x3 then 3x3)
        x = self.out(x)
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("model_cls", [ConvPoolChain, ResidualNet])
def test_receptive_fields_equal_gradient_support(model_cls):
    model = _positive(model_cls())
    size = 64
    net = cw.Network(model, preprocess=lambda im: torch.zeros(3, size, size))
    x = torch.rand(1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    modules = dict(model.named_modules())
    checked = 0
    for layer in net.layers:
        if not layer.is_spatial or layer.kind == "block" or layer.name not in modules:
            continue
        _, h, w = layer.shape
        rf = layer.receptive_field
        for y, xx in [(h // 2, w // 2), (0, 0), (h - 1, w - 1)]:
            support = _gradient_support(model, modules[layer.name], x, 0, y, xx)
            assert rf.box(y, xx, (size, size)) == support, (layer.name, y, xx)
            checked += 1
    assert checked >= 9


def test_chain_fields_by_hand():
    net = cw.Network(ConvPoolChain().double(), preprocess=lambda im: torch.zeros(3, 64, 64))
    rf = {layer.name: layer.receptive_field for layer in net.layers}
    assert (rf["conv1"].size, rf["conv1"].stride, rf["conv1"].start) == ((5, 5), (2, 2), (-2, -2))
    # pool 3 s2 p1: 5 + 2*2 = 9, jump 4, start -2 - 2 = -4
    assert (rf["pool1"].size, rf["pool1"].stride, rf["pool1"].start) == ((9, 9), (4, 4), (-4, -4))
    # dilated conv k3 d2: 9 + 2*2*4 = 25
    assert rf["conv2"].size == (25, 25)
    assert net.layer("head").receptive_field.is_global


def test_torchvision_models_list_layers_in_order():
    alexnet = cw.Network(torchvision.models.alexnet(weights=None))
    names = [layer.name for layer in alexnet.layers]
    assert names[:3] == ["features.0", "features.1", "features.2"]
    assert [layer.kind for layer in alexnet.layers][:3] == ["conv", "activation", "pool"]
    assert names[-1] == "classifier.6" and alexnet.layers[-1].shape == (1000,)
    assert alexnet.layer("features.0").receptive_field.size == (11, 11)
    assert alexnet.layer("features.12").shape == (256, 6, 6)
    assert alexnet.layer_below("features.11") == "features.9"  # relu5 -> conv5 -> relu4

    resnet = cw.Network(torchvision.models.resnet18(weights=None))
    names = [layer.name for layer in resnet.layers]
    assert "relu" in names  # the stem ReLU runs once: a layer
    assert "layer1.0.relu" not in names  # one ReLU module called twice per block is not one layer
    assert "layer1.0" in names and resnet.layer("layer1.0").kind == "block"
    assert resnet.layer_below("layer2.0") == "layer1.1"
    assert resnet.layer("layer4.1").receptive_field.size[0] > 224


def test_own_module_with_functional_relu_and_no_sequential():
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 5, 3)
            self.b = nn.Conv2d(5, 6, 3)
            self.fc = nn.Linear(6, 2)

        def forward(self, x):
            return self.fc(F.relu(self.b(F.relu(self.a(x)))).amax((2, 3)))

    net = cw.Network(Mine(), preprocess=lambda im: torch.zeros(3, 20, 20))
    assert [(layer.name, layer.kind, layer.shape) for layer in net.layers] == [
        ("a", "conv", (5, 18, 18)),
        ("b", "conv", (6, 16, 16)),
        ("fc", "linear", (2,)),
    ]
    assert net.layer_below("b") == "a"


def test_unknown_layer_suggests_close_names():
    net = cw.Network(torchvision.models.alexnet(weights=None))
    with pytest.raises(cw.LayerNotFoundError, match=r"did you mean 'features\.1"):
        net.layer("featurs.10")
    with pytest.raises(KeyError):
        net.activations(torch.zeros(3, 224, 224), ["nope"])


def test_model_without_convolutions_is_refused():
    with pytest.raises(cw.ModelError, match="no convolution"):
        cw.Network(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)))
    with pytest.raises(cw.ModelError, match="torch.nn.Module"):
        cw.Network("resnet18")


def test_a_layer_the_model_adds_to_in_place_later_keeps_its_own_output():
    """MobileNetV3's inverted residual returns ``result += input`` on its block's last layer's output:
    the activations are that layer's own output (a plain hook's copy, taken the moment it returned),
    not the sum; VGG's in-place ReLUs are rectifiers the sessions run out of place, no copy needed."""
    from torchvision import models as tvm

    torch.manual_seed(0)
    model = tvm.mobilenet_v3_small(weights=None).eval()
    net = cw.Network(model, preprocess=cw.imagenet_preprocess(size=64, resize=64))
    changed = [layer.name for layer in net.layers if layer.changed_later]
    assert "features.3.block.2" in changed and all(".block." in name for name in changed)
    image = cw.sample_image("cat")
    x = net.prepare(image)
    kept = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda _m, _i, out, n=n: kept.__setitem__(n, out.detach().clone()) and None) for n in changed]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    acts = net.activations(image, changed)
    for name in changed:
        assert torch.equal(acts[name], kept[name][0]), name
    assert not any(layer.changed_later for layer in cw.Network(tvm.vgg11(weights=None),
                                                                preprocess=cw.imagenet_preprocess(size=64, resize=64)).layers)
