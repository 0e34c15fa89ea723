"""Grad-CAM at the module names users know from other tools, against a Grad-CAM written here.

torchvision models with random weights on 64x64 inputs; the reference captures the layer with a
plain forward hook (or recomputes the head by hand for DenseNet) and applies the paper's formula.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.saliency import OptionError

tv = pytest.importorskip("torchvision")

SIZE = 64


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    yield


def build(name: str) -> tuple[nn.Module, cw.Network]:
    torch.manual_seed(0)
    model = getattr(tv.models, name)(weights=None, num_classes=10).eval()
    return model, cw.Network(model, preprocess=lambda img: torch.zeros(3, SIZE, SIZE))


def image(seed: int = 1) -> torch.Tensor:
    return torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def cam_from(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The paper's formula: relu(sum_k mean_ij(dy/dA^k) A^k), bilinearly upsampled to the input."""
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0].detach()


def hooked_cam(model: nn.Module, module: nn.Module, x: torch.Tensor, cls: int, copy: bool = False) -> torch.Tensor:
    """Grad-CAM with a plain forward hook on ``module`` (its output must not be changed in place later).

    With ``copy`` the hook keeps the output and hands the rest of the pass a copy, so a later
    ``out += identity`` changes the copy: Grad-CAM of ``module``'s own output."""
    store = {}
    handle = module.register_forward_hook(
        lambda _m, _i, out: (store.setdefault("a", out), out.clone() if copy else None)[1])
    try:
        score = model(x[None])[0, cls]
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(score, store["a"])
    return cam_from(store["a"], grad)


@pytest.mark.parametrize(
    ("arch", "layer", "module_of"),
    [
        ("resnet18", "layer4", lambda m: m.layer4),
        ("mobilenet_v2", "features.18", lambda m: m.features[18]),
        ("vgg11", "features", lambda m: m.features),
    ],
)
def test_module_names_from_other_tools(arch, layer, module_of):
    model, net = build(arch)
    assert layer not in net.layer_names  # a module name, not an explorable layer
    x = image()
    cls = int(model(x[None]).argmax())
    ours = net.saliency(x, cls, "grad_cam", layer=layer)
    expected = hooked_cam(model, module_of(model), x, cls)
    assert ours.shape == (SIZE, SIZE) and expected.max() > 0
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    # the module object itself works too (pytorch-grad-cam's target_layers style)
    torch.testing.assert_close(net.saliency(x, cls, "grad_cam", layer=module_of(model)), ours)
    assert hook_count(model) == 0


def test_resnet_stage_equals_its_last_block():
    model, net = build("resnet18")
    x = image(2)
    # layer4 returns the very tensor its last block (an explorable layer) returns
    torch.testing.assert_close(net.saliency(x, 3, "grad_cam", layer="layer4"), net.saliency(x, 3, "grad_cam", layer="layer4.1"))


def densenet_head(model: nn.Module, x: torch.Tensor, cls: int, rectified: bool) -> torch.Tensor:
    """DenseNet's forward written out: A = features(x) (norm5's output) or relu(A), then the head."""
    features = model.features(x[None])
    post = F.relu(features)  # DenseNet.forward's functional ReLU, out of place here
    a = post if rectified else features
    score = model.classifier(torch.flatten(F.adaptive_avg_pool2d(post, 1), 1))[0, cls]
    (grad,) = torch.autograd.grad(score, a)
    return cam_from(a, grad)


def test_densenet_features_before_and_after_relu():
    model, net = build("densenet121")
    x = image(3)
    cls = int(model(x[None]).argmax())
    before = densenet_head(model, x, cls, rectified=False)
    after = densenet_head(model, x, cls, rectified=True)
    assert before.max() > 0 and after.max() > 0
    assert not torch.allclose(before, after, rtol=1e-2)  # the choice matters
    for name in ("features", "features.norm5"):  # other tools' names: norm5's output, before the ReLU
        torch.testing.assert_close(net.saliency(x, cls, "grad_cam", layer=name), before, rtol=1e-4, atol=1e-6 * float(before.max()))
        ours = net.saliency(x, cls, "grad_cam", layer=name, after_relu=True)
        torch.testing.assert_close(ours, after, rtol=1e-4, atol=1e-6 * float(after.max()))
    # the default layer is DenseNet's features, taken as they are
    torch.testing.assert_close(net.saliency(x, cls, "grad_cam"), net.saliency(x, cls, "grad_cam", layer="features"))
    assert hook_count(model) == 0


def test_after_relu_refused_where_no_relu_follows():
    _, net = build("resnet18")
    with pytest.raises(OptionError, match="applies no ReLU"):
        net.saliency(image(), 0, "grad_cam", layer="layer4", after_relu=True)
    with pytest.raises(OptionError, match="after_relu must be True or False"):
        net.saliency(image(), 0, "grad_cam", layer="layer4", after_relu="yes")


@pytest.mark.parametrize(("arch", "layer", "module_of"), [
    ("resnet18", "layer4.1.bn2", lambda m: m.layer4[1].bn2),  # BasicBlock: out = bn2(out); out += identity
    ("mobilenet_v3_small", "features.3.block.2", lambda m: m.features[3].block[2]),  # result += input
])
def test_output_changed_in_place_later_is_the_layers_own(arch, layer, module_of):
    model, net = build(arch)
    x = image(4)
    cls = int(model(x[None]).argmax())
    expected = hooked_cam(model, module_of(model), x, cls, copy=True)
    plain = hooked_cam(model, module_of(model), x, cls)  # the sum's map: what an unguarded hook would give
    assert expected.max() > 0 and not torch.allclose(plain, expected, rtol=1e-3, atol=0)
    ours = net.saliency(x, cls, "grad_cam", layer=layer)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    assert hook_count(model) == 0


def test_reused_module_is_refused():
    model, net = build("resnet18")
    # BasicBlock calls its one ReLU module twice; a hook would only keep the second call's output
    with pytest.raises(OptionError, match="runs more than once"):
        net.saliency(image(), 0, "grad_cam", layer="layer4.1.relu")
    assert hook_count(model) == 0


def test_bad_names_suggest_module_names():
    model, net = build("densenet121")
    with pytest.raises(cw.LayerNotFoundError, match="features.norm5"):
        net.saliency(image(), 0, "grad_cam", layer="features.norm6")
    _, resnet = build("resnet18")
    with pytest.raises(cw.LayerNotFoundError, match="'layer4'") as info:
        resnet.saliency(image(), 0, "grad_cam", layer="layer5")
    assert "named_modules" in str(info.value)
    with pytest.raises(OptionError, match="not a submodule"):
        resnet.saliency(image(), 0, "grad_cam", layer=nn.Conv2d(3, 3, 1))
    assert hook_count(model) == 0


def test_non_spatial_modules_are_refused():
    model, net = build("mobilenet_v2")
    with pytest.raises(OptionError, match="spatial layer"):  # a container returning [N, 10]
        net.saliency(image(), 0, "grad_cam", layer="classifier")
    _, resnet = build("resnet18")
    with pytest.raises(OptionError, match="more than one position"):  # explorable but 1x1
        resnet.saliency(image(), 0, "grad_cam", layer="avgpool")
    assert hook_count(model) == 0


def test_unit_target_with_module_layers():
    model, net = build("resnet18")
    x = image(4)
    unit = cw.Unit("layer4.1", 5)
    # a module below the unit: the same as its explorable alias
    torch.testing.assert_close(
        net.saliency(x, unit, "grad_cam", layer="layer3"), net.saliency(x, unit, "grad_cam", layer="layer3.1")
    )
    a = _layer3(model, x)  # layer3's output, the input of layer4
    (grad,) = torch.autograd.grad(model.layer4(a)[0, 5].sum(), a)  # Unit's default reduce: the map's sum
    torch.testing.assert_close(net.saliency(x, unit, "grad_cam", layer="layer3"), cam_from(a, grad), rtol=1e-4, atol=1e-8)
    with pytest.raises(OptionError, match="runs after the unit"):
        net.saliency(x, cw.Unit("layer3.1", 0), "grad_cam", layer="layer4")
    assert hook_count(model) == 0


def _layer3(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model.maxpool(model.relu(model.bn1(model.conv1(x[None]))))
    return model.layer3(model.layer2(model.layer1(out)))
