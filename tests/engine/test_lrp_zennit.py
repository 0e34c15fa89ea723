"""LRP on real architectures: agreement with zennit (torchvision VGG-16 and ResNet-18 with zennit's
canonizers, the digits CNN), and DenseNet-121 / EfficientNet-B0 (concatenations, batch norms that
pass, SiLU, squeeze-and-excitation gates) against an independent LRP-0 reference.

The torchvision models have random weights (nothing is downloaded), their batch norms calibrated on
a few images so every layer carries signal, and run on 64x64 inputs to keep the module quick.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.lrp_mode import input_bounds

SIZE = 64
ZENNIT = ("epsilon_plus_flat", "epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1")
pytestmark = pytest.mark.usefixtures("one_thread")  # far quicker on two shared cores
MEASURED: dict[tuple[str, str], float] = {}  # (model, composite) -> relative error, printed by the last test


def preprocess64() -> T.Compose:
    return T.Compose([T.Resize(SIZE), T.CenterCrop(SIZE), T.ToTensor(),
                      T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])


def calibrated(model: nn.Module) -> nn.Module:
    """``model`` with its batch norms' running statistics measured on a few images (random-init
    statistics let the signal of a deep network vanish: EfficientNet-B0's logits are ~1e-14)."""
    pre = preprocess64()
    batch = torch.stack([pre(cw.sample_image(name)) for name in ("cat", "coffee", "rocket", "astronaut")])
    batch = torch.cat([batch, batch.flip(-1)])
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # the cumulative average of this one pass
    model.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # stochastic depth drops rows in train mode
        model(batch)
    return model.eval()


def build(name: str) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(num_classes=10)
    return calibrated(model) if name != "vgg16" else model.eval()


@pytest.fixture(scope="module")
def models():
    return {}


def network(models: dict, name: str) -> cw.Network:
    if name not in models:
        models[name] = cw.Network(build(name), preprocess=preprocess64()) if name != "digits" else cw.digits_cnn()
    return models[name]


def image_for(name: str):
    if name == "digits":
        return cw.datasets.digits().test.pil(3)
    return cw.sample_image("cat")


def zennit_relevance(net: cw.Network, x: torch.Tensor, target: int, composite: str, canonizers) -> torch.Tensor:
    """zennit's ``Gradient`` attributor with the composite of the same name; the output relevance is the target's logit."""
    from zennit.attribution import Gradient
    from zennit.composites import (
        EpsilonAlpha2Beta1,
        EpsilonGammaBox,
        EpsilonPlus,
        EpsilonPlusFlat,
    )

    low, high = input_bounds(net)
    made = {
        "epsilon_plus_flat": lambda: EpsilonPlusFlat(canonizers=canonizers),
        "epsilon_plus": lambda: EpsilonPlus(canonizers=canonizers),
        "epsilon_gamma_box": lambda: EpsilonGammaBox(low=low, high=high, canonizers=canonizers),
        "epsilon_alpha2_beta1": lambda: EpsilonAlpha2Beta1(canonizers=canonizers),
    }[composite]()
    with Gradient(net.model, made) as attributor:
        _, rel = attributor(x, lambda out: F.one_hot(torch.tensor([target]), out.shape[1]).to(out) * out)
    return rel[0]


def canonizers_for(name: str):
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    return {"vgg16": [VGGCanonizer()], "resnet18": [ResNetCanonizer()], "digits": [],
            "efficientnet_b0": [SequentialMergeBatchNorm()]}[name]


def compare(models: dict, name: str) -> dict[str, float]:
    net = network(models, name)
    image = image_for(name)
    x = net.prepare(image)
    target = int(net.logits(image).argmax())
    errors = {}
    for composite in ZENNIT:
        ours = net.relevance(image, target, composite=composite)
        hooks = hook_count(net.model)
        theirs = zennit_relevance(net, x, target, composite, canonizers_for(name))
        assert hook_count(net.model) == hooks  # zennit took its hooks off
        assert torch.isfinite(ours.map).all()
        scale = float(theirs.abs().max())
        assert scale > 0
        errors[composite] = MEASURED[(name, composite)] = float((ours.map - theirs).abs().max()) / scale
    return errors


@pytest.mark.parametrize("name", ["vgg16", "resnet18", "digits"])
def test_relevance_agrees_with_zennit(models, name):
    errors = compare(models, name)
    assert max(errors.values()) < 1e-3, errors


def test_relevance_on_efficientnet_is_compared_with_zennit_and_reported(models):
    # not asserted: zennit has no canonizer for EfficientNet's squeeze-and-excitation gates (its
    # plain gradient sends relevance into the gate and scales the rest by it) nor its residual sums
    errors = compare(models, "efficientnet_b0")
    assert all(math.isfinite(e) for e in errors.values())
    print("\nefficientnet_b0 vs zennit (SequentialMergeBatchNorm):",
          ", ".join(f"{c}: {e:.3g}" for c, e in errors.items()))


# ---------------------------------------------------- DenseNet and EfficientNet: an LRP-0 reference
def lrp0_reference(model: nn.Module, x: torch.Tensor, target: int, layers: list[str]) -> tuple[float, list[float], torch.Tensor]:
    """LRP-0 without the engine: gradient x input of a copy whose pass-through nonlinearities (SiLU,
    a batch norm that follows no convolution) have the ratio ``y / x`` as derivative (0 where
    ``x == 0``) and whose sigmoid gates are constants. For LRP-0 the modified gradient ``g = R / z``
    is exactly that network's gradient, so ``R`` at a layer is ``h * grad`` there.

    Returns the logit, ``sum(h * grad)`` at each of ``layers`` (``"input"``: the input) and the input map.
    """
    model = copy.deepcopy(model).double().eval()
    modules = dict(model.named_modules())
    conv_outputs: dict[int, torch.Tensor] = {}  # kept alive, so no other tensor takes their id

    def as_ratio(module, inputs, out):
        h = inputs[0]
        ratio = torch.where(h != 0, out / torch.where(h != 0, h, 1.0), 0.0).detach()
        return out.detach() + ratio * (h - h.detach())

    def after_conv(module, inputs, out):
        conv_outputs[id(out)] = out

    def batch_norm(module, inputs, out):
        if id(inputs[0]) in conv_outputs:  # merged into its convolution: an affine map, its own gradient
            return out
        return as_ratio(module, inputs, out)

    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
        if isinstance(m, nn.SiLU):
            m.register_forward_hook(as_ratio)
        elif isinstance(m, (nn.Sigmoid, nn.Hardsigmoid)):
            m.register_forward_hook(lambda module, inputs, out: out.detach())
        elif isinstance(m, nn.Conv2d):
            m.register_forward_hook(after_conv)
        elif isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(batch_norm)
    captured = {}
    for name in layers:
        if name != "input":
            modules[name].register_forward_hook(lambda module, inputs, out, name=name: captured.__setitem__(name, out))
    leaf = x.double().clone().requires_grad_(True)
    logit = model(leaf)[0, target]
    tensors = [captured[n] if n != "input" else leaf for n in layers]
    grads = torch.autograd.grad(logit, tensors)
    return float(logit.detach()), [float((h.detach() * g).sum()) for h, g in zip(tensors, grads)], (leaf * grads[-1]).detach()[0]


@pytest.mark.parametrize("name,expected_rules", [
    ("densenet121", {"merged batch_norm", "pass:batch_norm", "zero"}),
    ("efficientnet_b0", {"gate", "gate as constant", "merged batch_norm", "pass:silu", "zero"}),
])
def test_lrp0_on_densenet_and_efficientnet_leaks_only_biases(name, expected_rules):
    model = build(name).double()
    net = cw.Network(model, preprocess=preprocess64())
    image = cw.sample_image("cat")
    x = net.prepare(image)
    target = int(net.logits(image).argmax())
    r = net.relevance(image, target, composite="zero")
    assert set(r.rules) == expected_rules
    names = [n for n, _ in r.layers]
    assert names[0] == net.logit_layer and names[-1] == "input"
    totals = [t for _, t in r.layers]
    assert all(math.isfinite(t) for t in totals)
    logit, expected, expected_map = lrp0_reference(model, x, target, names)
    assert r.value == pytest.approx(logit, rel=1e-12)
    assert abs(logit) > 1e-2  # the calibrated network carries signal
    for (layer, total), want in zip(r.layers, expected):
        assert total == pytest.approx(want, rel=1e-7, abs=1e-9 * abs(logit)), layer
    torch.testing.assert_close(r.map, expected_map, rtol=1e-7, atol=1e-9 * float(expected_map.abs().max()))
    # the leaks are the biases' (the merged batch norms' shifts, the classifier's bias): nonzero here ...
    assert max(abs(leak) for _, leak in r.leaks) > 1e-6 * abs(logit)
    # ... and with every bias zero, none: each total is the logit
    unbiased = copy.deepcopy(model)
    with torch.no_grad():
        for m in unbiased.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
                m.bias.zero_()
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
    r0 = cw.Network(unbiased, preprocess=preprocess64()).relevance(image, target, composite="zero")
    assert abs(r0.value) > 1e-6
    for layer, total in r0.layers:
        assert total == pytest.approx(r0.value, rel=1e-9, abs=1e-12), layer


def test_measured_agreement_table():
    """Prints every measured zennit agreement (run with -s); the numbers are asserted above."""
    for (model, composite), error in sorted(MEASURED.items()):
        print(f"{model:16} {composite:22} max|ours - zennit| / max|zennit| = {error:.3g}")
