"""Saliency methods against independent oracles: captum, plain autograd, closed forms."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.errors import CnnWidgetsError
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.saliency import METHODS, OptionError

captum_attr = pytest.importorskip("captum.attr")

torch.set_num_threads(min(torch.get_num_threads(), 2))


# ------------------------------------------------------------------------------------------ models


class SmallNet(nn.Module):
    """AlexNet-like, distinct non-inplace nn.ReLU modules (what captum's module hooks support)."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.pool2 = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(32, 16)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(16, classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.relu3(self.conv3(self.relu2(self.conv2(x))))
        x = self.pool2(x).flatten(1)
        return self.fc2(self.relu4(self.fc1(x)))


class FunctionalNet(SmallNet):
    """The same network with every rectifier written as a functional call inside forward."""

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = torch.relu(self.conv3(self.conv2(x).relu()))
        x = self.pool2(x).flatten(1)
        return self.fc2(F.relu(self.fc1(x), inplace=True))


class ReusedReluNet(nn.Module):
    """A residual block like torchvision's BasicBlock: ONE in-place nn.ReLU called three times."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv1 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        x = self.relu(self.conv0(x))
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        out = out + x
        out = self.relu(out)
        return self.fc(self.pool(out).flatten(1))


class DistinctReluNet(ReusedReluNet):
    """The same computation with three distinct non-inplace ReLU modules (captum's supported case)."""

    def __init__(self, classes: int = 4):
        super().__init__(classes)
        self.relu_a, self.relu_b, self.relu_c = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.relu_a(self.conv0(x))
        out = self.relu_b(self.conv1(x))
        out = self.conv2(out) + x
        out = self.relu_c(out)
        return self.fc(self.pool(out).flatten(1))


class SmoothNet(nn.Module):
    """No kinks anywhere (softplus / tanh): integrated gradients' quadrature converges fast."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.conv2 = nn.Conv2d(5, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = F.softplus(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


class ExplodingNet(SmallNet):
    """Raises from forward when asked: an injected error in the middle of a computation."""

    explode = False

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        if self.explode:
            raise RuntimeError("injected failure")
        x = self.pool1(x)
        x = self.relu3(self.conv3(self.relu2(self.conv2(x))))
        return self.fc2(self.relu4(self.fc1(self.pool2(x).flatten(1))))


def make(cls, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**kwargs).double().eval()


def wrap(model: nn.Module) -> cw.Network:
    return cw.Network(model, preprocess=lambda img: torch.zeros(3, 16, 16), labels=None)


def image(seed: int = 1, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, size, size, generator=g, dtype=torch.float64)


def captum_map(cls, model, x, target, **kwargs) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum warns about setting hooks on ReLU modules
        inputs = x.unsqueeze(0).clone().requires_grad_(True)
        return cls(model).attribute(inputs, target=target, **kwargs)[0].detach()


def snapshot(model: nn.Module):
    return (
        hook_count(model),
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def assert_unchanged(model: nn.Module, before) -> None:
    hooks, training, grads, state = before
    assert hook_count(model) == hooks == 0
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------------------ captum


@pytest.mark.parametrize(
    "method, oracle, kwargs",
    [
        ("gradient", "Saliency", {"abs": False}),
        ("deconvnet", "Deconvolution", {}),
        ("guided_backprop", "GuidedBackprop", {}),
        ("input_x_gradient", "InputXGradient", {}),
    ],
)
@pytest.mark.parametrize("target", [0, 3])
def test_equals_captum_on_small_net(method, oracle, kwargs, target):
    model = make(SmallNet)
    x = image()
    ours = wrap(model).saliency(x, target, method)
    theirs = captum_map(getattr(captum_attr, oracle), model, x, target, **kwargs)
    assert ours.shape == (3, 16, 16) and ours.dtype == torch.float64
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_rules_really_differ():
    # otherwise the captum comparisons above could pass with one rule for all three
    net, x = wrap(make(SmallNet)), image()
    maps = [net.saliency(x, 2, m) for m in ("gradient", "deconvnet", "guided_backprop")]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.allclose(maps[i], maps[j])


def test_torchvision_alexnet_equals_captum():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = tv.models.alexnet(weights=None, num_classes=10).eval()  # in-place ReLUs, random weights
    net = cw.Network(model)
    x = torch.randn(3, 80, 80)
    for method, oracle, kwargs in (
        ("gradient", captum_attr.Saliency, {"abs": False}),
        ("deconvnet", captum_attr.Deconvolution, {}),
        ("guided_backprop", captum_attr.GuidedBackprop, {}),
    ):
        ours = net.saliency(x, 7, method)
        theirs = captum_map(oracle, model, x, 7, **kwargs)
        scale = theirs.abs().max()
        assert scale > 0
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6 * float(scale))
    assert hook_count(model) == 0


@pytest.mark.parametrize("method", ["gradient", "deconvnet", "guided_backprop", "grad_cam"])
def test_functional_relu_equals_module_relu(method):
    modules, functional = make(SmallNet), make(FunctionalNet)
    functional.load_state_dict(modules.state_dict())
    x = image(4)
    # the functional net has no relu modules, so grad_cam is taken at a layer both have
    options = {"layer": "conv3"} if method == "grad_cam" else {}
    a = wrap(modules).saliency(x, 1, method, **options)
    b = wrap(functional).saliency(x, 1, method, **options)
    assert a.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("method, oracle", [("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")])
def test_reused_inplace_relu_equals_captum_on_distinct_relus(method, oracle):
    reused, distinct = make(ReusedReluNet), make(DistinctReluNet)
    distinct.load_state_dict(reused.state_dict())
    x = image(5)
    torch.testing.assert_close(reused(x[None]), distinct(x[None]))
    ours = wrap(reused).saliency(x, 2, method)
    theirs = captum_map(getattr(captum_attr, oracle), distinct, x, 2)
    assert theirs.abs().max() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ours, wrap(reused).saliency(x, 2, "gradient"))


# ------------------------------------------------------------------------------------------ targets


def test_target_none_label_and_probability():
    model = make(SmallNet)
    net = cw.Network(model, preprocess=lambda img: torch.zeros(3, 16, 16), labels=list("abcde"))
    x = image(6)
    top = int(model(x[None]).argmax())
    torch.testing.assert_close(net.saliency(x, None, "gradient"), net.saliency(x, top, "gradient"))
    torch.testing.assert_close(net.saliency(x, "c", "gradient"), net.saliency(x, 2, "gradient"))
    xg = x[None].clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(xg).softmax(1)[0, 2], xg)
    torch.testing.assert_close(net.saliency(x, 2, "gradient", quantity="probability"), expected[0])


@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_unit_target_sum_and_max(reduce):
    model = make(SmallNet)
    net, x = wrap(model), image(7)
    unit = cw.Unit("conv2", 3, reduce=reduce)
    xg = x[None].clone().requires_grad_(True)
    fmap = model.conv2(model.pool1(model.relu1(model.conv1(xg))))[0, 3]
    value = fmap.sum() if reduce == "sum" else fmap.max()
    (expected,) = torch.autograd.grad(value, xg)
    ours = net.saliency(x, unit, "gradient")
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, expected[0], rtol=1e-10, atol=1e-14)
    # a single position: gradient of that pixel
    xg = x[None].clone().requires_grad_(True)
    pixel = model.conv2(model.pool1(model.relu1(model.conv1(xg))))[0, 3, 2, 5]
    (expected,) = torch.autograd.grad(pixel, xg)
    torch.testing.assert_close(net.saliency(x, cw.Unit("conv2", 3, (2, 5)), "gradient"), expected[0])


@pytest.mark.parametrize("method", ["gradient", "guided_backprop"])
def test_unit_before_an_inplace_relu_keeps_its_preactivation(method):
    # conv1 feeds the reused in-place ReLU: the unit is conv1's output, negative values included
    model = make(ReusedReluNet)
    net, x = wrap(model), image(23)
    xg = x[None].clone().requires_grad_(True)
    fmap = model.conv1(torch.relu(model.conv0(xg)))[0, 2]
    assert (fmap < 0).any()
    (expected,) = torch.autograd.grad(fmap.sum(), xg)
    ours = net.saliency(x, cw.Unit("conv1", 2), method)
    if method == "gradient":
        torch.testing.assert_close(ours, expected[0], rtol=1e-10, atol=1e-14)
    else:  # guided: same support, but the rectifier below passes only positive gradients
        assert not torch.allclose(ours, expected[0])
        torch.testing.assert_close(
            ours, captum_map(captum_attr.GuidedBackprop, _Conv1Unit(model), x, None), rtol=1e-10, atol=1e-14
        )


class _Conv1Unit(nn.Module):
    """sum of conv1's channel 2 as a model output, with a distinct ReLU (captum's supported case)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.relu = model, nn.ReLU()

    def forward(self, x):
        return self.model.conv1(self.relu(self.model.conv0(x)))[:, 2].sum(dim=(1, 2))


def test_sum_and_max_differ_and_max_is_local():
    net, x = wrap(make(SmallNet)), image(8)
    total = net.saliency(x, cw.Unit("conv1", 1), "gradient")
    peak = net.saliency(x, cw.Unit("conv1", 1, reduce="max"), "gradient")
    assert not torch.allclose(total, peak)
    # the max pixel of a 3x3 conv map sees a 3x3 input patch only
    assert int((peak.abs().sum(0) > 0).sum()) <= 9


# ------------------------------------------------------------------------------------------ smoothgrad / IG


def test_smoothgrad_zero_noise_is_gradient():
    net, x = wrap(make(SmallNet)), image(9)
    grad = net.saliency(x, 1, "gradient")
    smooth = net.saliency(x, 1, "smoothgrad", noise=0.0, n_samples=5, batch_size=2)
    torch.testing.assert_close(smooth, grad, rtol=1e-12, atol=1e-15)


def test_smoothgrad_matches_reference_and_batching():
    model = make(SmoothNet)
    net, x = wrap(model), image(10)
    ours = net.saliency(x, 0, "smoothgrad", n_samples=6, noise=0.2, seed=3, batch_size=4)
    again = net.saliency(x, 0, "smoothgrad", n_samples=6, noise=0.2, seed=3, batch_size=1)
    torch.testing.assert_close(ours, again)
    eps = torch.randn((6, 3, 16, 16), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = 0.2 * float(x.max() - x.min())
    total = torch.zeros_like(x)
    for e in eps:
        xi = (x + sigma * e)[None].requires_grad_(True)
        total += torch.autograd.grad(model(xi)[0, 0], xi)[0][0]
    torch.testing.assert_close(ours, total / 6)
    assert not torch.allclose(ours, net.saliency(x, 0, "gradient"))


@pytest.mark.parametrize("baseline", [None, 0.5, "tensor"])
def test_integrated_gradients_completeness_smooth(baseline):
    model = make(SmoothNet)
    net, x = wrap(model), image(11)
    if baseline == "tensor":
        baseline = image(12) * 0.3
    x0 = torch.zeros_like(x) if baseline is None else (torch.full_like(x, baseline) if isinstance(baseline, float) else baseline)
    attr = net.saliency(x, 1, "integrated_gradients", baseline=baseline, steps=32, batch_size=10)
    with torch.no_grad():
        delta = float(model(x[None])[0, 1] - model(x0[None])[0, 1])
    assert abs(delta) > 1e-3
    assert abs(float(attr.sum()) - delta) <= 1e-3 * abs(delta)


def test_integrated_gradients_equals_captum_gauss_legendre():
    model = make(SmallNet)
    net, x = wrap(model), image(13)
    ours = net.saliency(x, 4, "integrated_gradients", steps=16, batch_size=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum_attr.IntegratedGradients(model).attribute(
            x[None], target=4, n_steps=16, method="gausslegendre", internal_batch_size=16
        )[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_integrated_gradients_trapezoid_equals_captum_and_converges():
    model = make(SmallNet)
    net, x = wrap(model), image(14)
    ours = net.saliency(x, 0, "integrated_gradients", steps=9, integration="trapezoid", batch_size=4)
    # plain loop reference (captum's riemann_trapezoid weights sum to 1 - 1/n, so it is no oracle here)
    total = torch.zeros_like(x)
    for k in range(9):
        xk = (k / 8 * x)[None].requires_grad_(True)
        weight = 0.5 / 8 if k in (0, 8) else 1 / 8
        total += weight * torch.autograd.grad(model(xk)[0, 0], xk)[0][0]
    torch.testing.assert_close(ours, x * total, rtol=1e-9, atol=1e-12)
    # on a smooth model the trapezoid rule's completeness error shrinks like 1/steps^2
    smooth = make(SmoothNet)
    snet = wrap(smooth)
    with torch.no_grad():
        delta = float(smooth(x[None])[0, 0] - smooth(torch.zeros_like(x)[None])[0, 0])
    errors = [
        abs(float(snet.saliency(x, 0, "integrated_gradients", steps=n, integration="trapezoid").sum()) - delta)
        for n in (5, 9)
    ]
    assert errors[1] < errors[0] / 2.5


def test_input_x_gradient_is_x_times_gradient():
    net, x = wrap(make(SmallNet)), image(15)
    torch.testing.assert_close(net.saliency(x, 0, "input_x_gradient"), x * net.saliency(x, 0, "gradient"))


# ------------------------------------------------------------------------------------------ grad-cam


def test_grad_cam_hand_computation():
    model = make(SmallNet)
    net, x = wrap(model), image(16)
    # A = output of relu2 ([8, 8, 8]); the head is the rest of the network
    a = model.relu2(model.conv2(model.pool1(model.relu1(model.conv1(x[None]))))).detach().requires_grad_(True)
    score = model.fc2(model.relu4(model.fc1(model.pool2(model.relu3(model.conv3(a))).flatten(1))))[0, 3]
    (g,) = torch.autograd.grad(score, a)
    weights = g.mean(dim=(2, 3))[0]
    cam = torch.clamp(sum(weights[k] * a[0, k].detach() for k in range(8)), min=0)
    expected = F.interpolate(cam[None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
    ours = net.saliency(x, 3, "grad_cam", layer="relu2")
    assert ours.shape == (16, 16) and (ours >= 0).all() and ours.max() > 0
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-14)


def test_grad_cam_default_layers():
    net = wrap(make(SmallNet))
    x = image(17)
    # default for a class: the last spatial non-pooling layer (relu3, 8x8) before global pooling
    torch.testing.assert_close(net.saliency(x, 1, "grad_cam"), net.saliency(x, 1, "grad_cam", layer="relu3"))
    # a unit of conv3 is explained in the layer below it (the input of conv3: relu2)
    unit = cw.Unit("conv3", 2)
    torch.testing.assert_close(net.saliency(x, unit, "grad_cam"), net.saliency(x, unit, "grad_cam", layer="relu2"))
    # first conv: nothing below, its own layer
    first = cw.Unit("conv1", 2)
    torch.testing.assert_close(net.saliency(x, first, "grad_cam"), net.saliency(x, first, "grad_cam", layer="conv1"))


def test_grad_cam_default_layer_on_torchvision():
    tv = pytest.importorskip("torchvision")
    from cnn_widgets.engine.grad_cam import _cam_layer
    from cnn_widgets.engine.targets import ClassTarget

    torch.manual_seed(0)
    assert _cam_layer(cw.Network(tv.models.resnet18(num_classes=3)), ClassTarget(0, ""), None)[0] == "layer4.1"
    assert _cam_layer(cw.Network(tv.models.alexnet(num_classes=3)), ClassTarget(0, ""), None)[0] == "features.11"


def test_grad_cam_bad_layers():
    net, x = wrap(make(SmallNet)), image(18)
    with pytest.raises(OptionError, match="spatial"):
        net.saliency(x, 0, "grad_cam", layer="fc1")
    with pytest.raises(OptionError, match="after the unit"):
        net.saliency(x, cw.Unit("conv2", 0), "grad_cam", layer="relu3")
    with pytest.raises(cw.LayerNotFoundError, match="relu2"):
        net.saliency(x, 0, "grad_cam", layer="relu22")


# ------------------------------------------------------------------------------------------ model state


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_leaves_the_model_as_it_was(method):
    model = make(SmallNet)
    model.train()  # must come back in training mode
    model.fc1.weight.requires_grad_(False)  # a mix of flags must come back exactly
    net, x = wrap(model), image(19)
    before = snapshot(model)
    options = {"n_samples": 3} if method == "smoothgrad" else {"steps": 4} if method == "integrated_gradients" else {}
    if not METHODS[method].applies(net):  # attention rollout on a CNN: refused, clearly, the model as it was
        with pytest.raises(cw.ModelError, match="vision transformer"):
            net.saliency(x, 1, method, **options)
        assert_unchanged(model, before)
        return
    out = net.saliency(x, 1, method, **options)
    assert not out.requires_grad and out.grad_fn is None
    assert out.shape == ((16, 16) if method == "grad_cam" else (3, 16, 16))
    assert_unchanged(model, before)


@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "smoothgrad", "integrated_gradients", "grad_cam"])
def test_injected_error_leaves_the_model_as_it_was(method):
    model = make(ExplodingNet)
    model.train()
    net, x = wrap(model), image(20)
    net.layers  # discover while it still works
    before = snapshot(model)
    model.explode = True
    with pytest.raises(RuntimeError, match="injected"):
        net.saliency(x, 0, method)
    assert_unchanged(model, before)
    model.explode = False
    assert net.saliency(x, 0, method).abs().max() > 0


def test_bad_method_and_options():
    model = make(SmallNet)
    net, x = wrap(model), image(21)
    before = snapshot(model)
    with pytest.raises(OptionError, match="guided_backprop") as info:
        net.saliency(x, 0, "guided_backpropagation")
    assert isinstance(info.value, CnnWidgetsError)
    for name in METHODS:
        assert name in str(info.value)
    with pytest.raises(OptionError, match="n_samples"):
        net.saliency(x, 0, "gradient", n_samples=3)
    with pytest.raises(OptionError, match="positive integer"):
        net.saliency(x, 0, "smoothgrad", n_samples=0)
    with pytest.raises(OptionError, match="non-negative"):
        net.saliency(x, 0, "smoothgrad", noise=-1)
    with pytest.raises(OptionError, match="shape"):
        net.saliency(x, 0, "integrated_gradients", baseline=torch.zeros(3, 8, 8))
    with pytest.raises(OptionError, match="gauss_legendre"):
        net.saliency(x, 0, "integrated_gradients", integration="simpson")
    with pytest.raises(OptionError, match="quantity"):
        net.saliency(x, 0, "gradient", quantity="prob")
    with pytest.raises(cw.TargetError):
        net.saliency(x, 99, "gradient")
    with pytest.raises(cw.TargetError):
        net.saliency(x, cw.Unit("conv2", 99), "gradient")
    assert_unchanged(model, before)


def test_grad_enabled_and_no_grad_context():
    net, x = wrap(make(SmallNet)), image(22)
    with torch.no_grad():
        inside = net.saliency(x, 0, "guided_backprop")
    torch.testing.assert_close(inside, net.saliency(x, 0, "guided_backprop"))
    assert torch.is_grad_enabled()


# ------------------------------------------------------------------------------------------ directions


from cnn_widgets.engine.targets import Direction  # noqa: E402


class TwoPointwise(nn.Module):
    """``h = W2 relu(W1 x + b1) + b2`` with 1x1 convolutions: every gradient has a closed form per pixel."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.pool(self.conv2(self.relu(self.conv1(x)))).flatten(1))


def _pointwise_closed_form(model, x, v, power, rule):
    """numpy float64: d/dx of mean_{yx} <h, v> max(cos(h, v), 1e-3)^p, ReLU backward by ``rule``."""
    import numpy as np

    w1, b1 = model.conv1.weight[:, :, 0, 0].detach().numpy(), model.conv1.bias.detach().numpy()
    w2, b2 = model.conv2.weight[:, :, 0, 0].detach().numpy(), model.conv2.bias.detach().numpy()
    xs = x.numpy().reshape(3, -1)  # [3, P]
    a = w1 @ xs + b1[:, None]
    h = w2 @ np.maximum(a, 0) + b2[:, None]  # [5, P]
    v = v.numpy()
    n_pos = xs.shape[1]
    dot = v @ h
    hn, vn = np.linalg.norm(h, axis=0), np.linalg.norm(v)
    cos = dot / (hn * vn)
    if power == 0:
        dh = np.repeat(v[:, None], n_pos, axis=1)
    else:  # p = 1: d/dh of dot^2 / (|h||v|) where cos > 1e-3, else of 1e-3 * dot
        dh = np.where(cos > 1e-3, 2 * dot * v[:, None] / (hn * vn) - dot**2 * h / (hn**3 * vn), 1e-3 * v[:, None])
    dh /= n_pos
    dr = w2.T @ dh
    if rule == "guided":
        da = np.maximum(dr, 0) * (a > 0)
    elif rule == "deconvnet":
        da = np.maximum(dr, 0)
    else:
        da = dr * (a > 0)
    return torch.from_numpy((w1.T @ da).reshape(x.shape))


@pytest.mark.parametrize("power", [0.0, 1.0])
@pytest.mark.parametrize("method,rule", [("gradient", "gradient"), ("guided_backprop", "guided"), ("deconvnet", "deconvnet")])
def test_direction_saliency_is_the_closed_form_gradient_of_the_direction_objective(method, rule, power):
    model = make(TwoPointwise, seed=3)
    net, x = wrap(model), image(31, size=6)
    v = torch.tensor([0.7, -1.2, 0.4, 1.5, -0.3], dtype=torch.float64)
    expected = _pointwise_closed_form(model, x, v, power, rule)
    got = net.saliency(x, Direction("conv2", v, cossim_power=power), method)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    ixg = net.saliency(x, Direction("conv2", v, cossim_power=power), "input_x_gradient")
    if rule == "gradient":
        torch.testing.assert_close(ixg, x * expected, rtol=1e-10, atol=1e-12)


def test_direction_gradient_matches_finite_differences_on_a_3x3_relu_net():
    model = make(SmallNet, seed=4)
    net, x = wrap(model), image(32)
    target = Direction("relu2", torch.linspace(-1, 1, 8, dtype=torch.float64) + 0.3)
    grad = net.saliency(x, target, "gradient")

    def f(z):
        with torch.no_grad():
            h = model.relu2(model.conv2(model.pool1(model.relu1(model.conv1(z[None])))))
        v = target.vector
        dot = torch.einsum("nchw,c->nhw", h, v)
        cos = dot / (h.norm(dim=1) * v.norm()).clamp_min(1e-8)
        return float((dot * cos.clamp_min(1e-3)).mean())

    eps = 1e-6
    for c, y, xx in [(0, 3, 4), (1, 8, 8), (2, 12, 1), (0, 15, 15), (1, 6, 10)]:
        step = torch.zeros_like(x)
        step[c, y, xx] = eps
        fd = (f(x + step) - f(x - step)) / (2 * eps)
        assert abs(fd - float(grad[c, y, xx])) <= 1e-6 * max(1.0, abs(fd)), (c, y, xx, fd, float(grad[c, y, xx]))
    assert grad.abs().max() > 0


def test_direction_with_p0_is_linear_in_the_units_of_its_layer():
    """With cossim_power=0 the objective is mean_{yx} <h, v> = sum_c v_c * Unit(c, sum) / HW: the
    gradient is the same combination of the units' gradients (computed one by one)."""
    model = make(SmallNet, seed=5)
    net, x = wrap(model), image(33)
    v = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = net.saliency(x, Direction("conv3", v, cossim_power=0), "gradient")
    hw = net.layer("conv3").shape[1] * net.layer("conv3").shape[2]
    expected = sum(v[c] * net.saliency(x, cw.Unit("conv3", c), "gradient") for c in range(8)) / hw
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_bad_directions_are_refused_and_leave_the_model_as_it_was():
    model = make(SmallNet)
    model.train()
    net, x = wrap(model), image(34)
    before = snapshot(model)
    with pytest.raises(cw.TargetError, match="8 channels"):
        net.saliency(x, Direction("conv3", torch.ones(5)), "gradient")
    with pytest.raises(cw.LayerNotFoundError, match="conv3"):
        net.saliency(x, Direction("conv33", torch.ones(8)), "gradient")
    with pytest.raises(OptionError, match="grad_cam.*not a Direction"):
        net.saliency(x, Direction("conv3", torch.ones(8)), "grad_cam")
    with pytest.raises(cw.TargetError, match="NaN"):
        Direction("conv3", torch.tensor([1.0, float("nan")]))
    with pytest.raises(cw.TargetError, match="one value per channel"):
        Direction("conv3", torch.ones(2, 2, 2))
    with pytest.raises(cw.TargetError, match="numbers"):
        Direction("conv3", "abc")
    assert_unchanged(model, before)
    out = net.saliency(x, Direction("conv3", torch.ones(8)), "guided_backprop")
    assert out.shape == (3, 16, 16) and out.abs().max() > 0
    assert_unchanged(model, before)
