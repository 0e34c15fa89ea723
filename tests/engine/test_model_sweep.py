"""Keep "any CNN a user brings" fixed: every public engine call on many architectures.

Each model is built with random weights (nothing is downloaded) at a small input size and put
through layers, predict, activations, filters, every saliency method (a class and a unit),
occlusion, contributions, the contribution tree (class and unit roots), a tiny scan with top
images and, on a few, the Explorer. Results must be finite, shaped right and non-trivial where
the math says so, and the model must be exactly as it was: same weights and buffers, same
``training`` and ``requires_grad`` flags, no hook, no ``.grad``.

One network per model lives for all its tests (a module-scoped fixture parametrized by the
model's id: pytest groups the tests of one model together, so one model is in memory at a time).
Run on its own: ``pytest tests/engine/test_model_sweep.py --durations=0``.
"""

from __future__ import annotations

import copy

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import models as tvm
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.saliency import METHODS, RuleWarning

pytestmark = pytest.mark.slow

# fast options: every method still runs its real code path (two noise samples, two nodes)
FAST_OPTIONS = {"smoothgrad": {"n_samples": 2}, "integrated_gradients": {"steps": 2}}
SCAN_SAMPLES = ("cat", "coffee", "rocket", "astronaut")


# ----------------------------------------------------------------------------- hand-written models
class Residual(nn.Module):
    """A bias-free basic block (conv-BN-ReLU-conv-BN + x, ReLU): positively homogeneous in eval mode."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)


def small_resnet(channels: int = 3, classes: int = 5) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        Residual(8), nn.MaxPool2d(2), Residual(8),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes),
    )


class TupleOut(nn.Module):
    """Research-code style: logits plus extras in a tuple."""

    def __init__(self):
        super().__init__()
        self.body = tvm.resnet18(weights=None, num_classes=10)

    def forward(self, x):
        return self.body(x), {"mean": x.mean()}


class DictOut(nn.Module):
    """Logits under a key of a dict, next to other outputs: needs ``output="scores"``."""

    def __init__(self):
        super().__init__()
        self.body = small_resnet()

    def forward(self, x):
        return {"aux": x.mean(), "scores": self.body(x)}


def cifar_model() -> nn.Sequential:
    """A fixed Linear after the convs: runs on 32x32 inputs only (``preprocess=T.ToTensor()``)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(16 * 8 * 8, 10),
    )


def mnist_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )


# ----------------------------------------------------------------------------- the cases
def imagenet_at(size: int):
    return cw.imagenet_preprocess(size=size, resize=size)


@dataclass(frozen=True)
class Case:
    """One model of the sweep.

    ``size`` is the model-input side; ``image_size`` the side of the PIL images handed in (None:
    the photo as it is). ``euler``: bias-free and positively homogeneous inside (eval-mode BN at
    its initial statistics), so a join unit's gradient contributions sum to its value.
    ``freeze``: freeze the first parameters, as a user fine-tuning the head would.
    """

    id: str
    build: Callable[[], cw.Network]
    size: int
    channels: int = 3
    image_size: int | None = 96
    euler: bool = False
    eval_mode: bool = False
    freeze: bool = False
    explorer: bool = False
    calibrate: bool = False
    incremental: bool = True  # torch.fx can trace it (incremental occlusion runs)


def torchvision_case(name: str, size: int = 64, **kwargs) -> Callable[[], cw.Network]:
    def build():
        model = getattr(tvm, name)(weights=None, **kwargs)
        return cw.Network(model, preprocess=imagenet_at(size), name=name)

    return build


def timm_case(name: str, **kwargs) -> Callable[[], cw.Network]:
    """A timm model at 64 px, random weights (vision transformers: 4x4 patch tokens of 16 px)."""

    def build():
        import timm

        return cw.Network(timm.create_model(name, pretrained=False, img_size=64, **kwargs),
                          preprocess=imagenet_at(64), name=name)

    return build


def torchvision_vit() -> cw.Network:
    """torchvision's vit_b_16 at 64 px; its head starts at zero (every class score 0 for any image),
    so it gets random weights as a trained head has."""
    model = tvm.vit_b_16(weights=None, image_size=64)
    nn.init.normal_(model.heads.head.weight, std=0.02)
    return cw.Network(model, preprocess=imagenet_at(64), name="vit_b_16")


def timm_resnet18() -> cw.Network:
    import timm

    return cw.Network(timm.create_model("resnet18", pretrained=False), preprocess=imagenet_at(64), name="timm resnet18")


CASES = [
    Case("alexnet", torchvision_case("alexnet"), 64),
    Case("vgg11_bn", torchvision_case("vgg11_bn", num_classes=10), 64, freeze=True),
    Case("resnet50", torchvision_case("resnet50"), 64, euler=True, eval_mode=True, freeze=True),
    Case("densenet121", torchvision_case("densenet121"), 64),
    Case("googlenet", torchvision_case("googlenet", aux_logits=False, init_weights=True), 64, calibrate=True),
    Case("inception_v3", torchvision_case("inception_v3", size=80, aux_logits=False, init_weights=True), 80, calibrate=True),
    Case("mobilenet_v2", torchvision_case("mobilenet_v2"), 64, calibrate=True),
    Case("mobilenet_v3_small", torchvision_case("mobilenet_v3_small"), 64, explorer=True, calibrate=True),
    Case("efficientnet_b0", torchvision_case("efficientnet_b0"), 64, calibrate=True),
    Case("regnet_y_400mf", torchvision_case("regnet_y_400mf"), 64, eval_mode=True, calibrate=True),
    Case("shufflenet_v2_x0_5", torchvision_case("shufflenet_v2_x0_5"), 64),
    Case("squeezenet1_1", torchvision_case("squeezenet1_1"), 64, explorer=True),
    Case("mnasnet0_5", torchvision_case("mnasnet0_5"), 64, calibrate=True),
    Case("convnext_tiny", torchvision_case("convnext_tiny"), 64),
    Case("timm_resnet18", timm_resnet18, 64, euler=True),
    Case("default", lambda: cw.load_default(), 224, image_size=None),
    Case("gray28", lambda: cw.Network(mnist_model(), preprocess=T.Compose(
        [T.Grayscale(), T.Resize((28, 28)), T.ToTensor(), T.Normalize((0.5,), (0.5,))]), name="gray28"),
        28, channels=1, explorer=True),
    Case("cifar32_no_resize", lambda: cw.Network(cifar_model(), preprocess=T.ToTensor(), name="cifar32"),
         32, image_size=32, explorer=True),
    Case("tuple_output", lambda: cw.Network(TupleOut(), preprocess=imagenet_at(64), name="tuple"), 64),
    Case("dict_output", lambda: cw.Network(DictOut(), preprocess=imagenet_at(48), output="scores", name="dict"),
         48, euler=True, eval_mode=True),
    # vision transformers: blocks as [C, h, w] maps on the patch grid, the class token a layer of its own
    Case("vit_tiny", timm_case("vit_tiny_patch16_224"), 64, explorer=True),
    Case("deit_tiny", timm_case("deit_tiny_patch16_224"), 64),
    Case("swin_tiny", timm_case("swin_tiny_patch4_window7_224", window_size=2), 64),
    Case("vit_hybrid", timm_case("vit_tiny_r_s16_p8_224"), 64, incremental=False),  # its ResNet stem is not fx-traceable
    Case("vit_b_16", torchvision_vit, 64),
]
BY_ID = {case.id: case for case in CASES}
ALL = [case.id for case in CASES]


# ----------------------------------------------------------------------------- the state of a model
@dataclass
class Snapshot:
    state: dict[str, torch.Tensor]
    training: list[bool]
    requires_grad: list[bool]
    hooks: int

    @classmethod
    def of(cls, model: nn.Module) -> "Snapshot":
        return cls(
            {k: v.detach().clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()],
            hook_count(model),
        )

    def check(self, model: nn.Module) -> None:
        assert hook_count(model) == self.hooks, "a hook was left on the model"
        assert [m.training for m in model.modules()] == self.training, "training flags changed"
        assert [p.requires_grad for p in model.parameters()] == self.requires_grad, "requires_grad flags changed"
        assert all(p.grad is None for p in model.parameters()), "a parameter gradient was computed"
        state = model.state_dict()
        assert state.keys() == self.state.keys()
        changed = [k for k, v in self.state.items() if not torch.equal(state[k], v)]
        assert not changed, f"weights or buffers changed: {changed[:5]}"
        assert torch._C._len_torch_function_stack() == 0, "a TorchFunctionMode was left active"


@dataclass
class Swept:
    """A built network with the image, units and layers its tests use."""

    case: Case
    net: cw.Network
    image: Image.Image
    snapshot: Snapshot
    mid: str = ""  # a spatial layer in the middle of the network, below which the tree can go
    unit: cw.Unit | None = None  # its strongest channel on the image
    join: cw.Unit | None = None  # a unit of a residual join (euler cases)
    top: int = 0
    extra: dict = field(default_factory=dict)

    def untouched(self) -> None:
        self.snapshot.check(self.net.model)


def photo(name: str, size: int | None) -> Image.Image:
    img = cw.sample_image(name)
    return img if size is None else img.resize((size, size))


def pick_mid(net: cw.Network) -> str:
    """A spatial layer around the middle, after the first rectifier module, with a layer below it."""
    layers = net.layers
    first = next((l.index for l in layers if l.kind == "activation"), 0)  # GoogLeNet's ReLUs are functional
    spatial = [l for l in layers if l.is_spatial and l.shape[1] * l.shape[2] > 1 and l.index > first
               and l.kind != "pool" and net.layer_below(l.name) is not None]
    assert spatial, "no spatial layer after the first activation"
    return spatial[len(spatial) // 2].name


def strongest(net: cw.Network, image, layer: str) -> int:
    act = net.activations(image, layer)[layer]
    return int(act.flatten(1).sum(1).argmax())


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def swept(request, two_threads) -> Swept:
    case = BY_ID[request.param]
    torch.manual_seed(0)
    net = case.build()
    model = net.model
    wake_layer_scales(model)
    if case.calibrate:
        calibrate_batch_norm(model, torch.stack([net.preprocess(photo(name, case.image_size)) for name in SCAN_SAMPLES]))
    if case.eval_mode:
        model.eval()
    if case.freeze:
        params = list(model.parameters())
        for p in params[: len(params) // 2]:
            p.requires_grad_(False)
    snapshot = Snapshot.of(model)
    image = photo("cat", case.image_size)
    item = Swept(case, net, image, snapshot)
    item.top = int(net.logits(image).argmax())
    item.mid = pick_mid(net)
    item.unit = cw.Unit(item.mid, strongest(net, image, item.mid))
    if case.euler:
        joins = [l for l in net.layers if l.is_join and l.is_spatial and l.shape[1] * l.shape[2] > 1
                 and net.layer_below(l.name) is not None]
        assert joins, "a residual network without joins"
        layer = joins[len(joins) // 2].name
        item.join = cw.Unit(layer, strongest(net, image, layer), reduce="sum")
    return item


def calibrate_batch_norm(model: nn.Module, x: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of ``x`` (one train-mode pass, flags restored).

    Freshly initialised depthwise networks (MobileNet, EfficientNet, MnasNet) otherwise shrink the
    signal to logits of 1e-10 in eval mode: every probability 0.001, every occlusion drop 0. Done
    before the snapshot, so the sweep still proves the engine leaves the model as it found it.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    training = [m.training for m in model.modules()]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: exactly the batch statistics after one pass
    model.train()
    with torch.no_grad():
        model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    for m, flag in zip(model.modules(), training):
        m.training = flag


def wake_layer_scales(model: nn.Module) -> None:
    """ConvNeXt initialises its layer scales to 1e-6: every block is then the identity plus 1e-6 of
    its branch, and guided backprop (which acts on the branches' GELUs) differs from the gradient by
    1e-7. Trained ConvNeXts have scales of order 0.1-1: use 0.5."""
    with torch.no_grad():
        for module in model.modules():
            scale = getattr(module, "layer_scale", None)
            if isinstance(scale, torch.Tensor):
                scale.fill_(0.5)


def per_model(ids=ALL):
    return pytest.mark.parametrize("swept", ids, indirect=True)


def input_shape(swept: Swept) -> tuple[int, int, int]:
    return (swept.case.channels, swept.case.size, swept.case.size)


# ----------------------------------------------------------------------------- layers and forward passes
@per_model()
def test_layers(swept: Swept):
    net = swept.net
    layers = net.layers
    names = [l.name for l in layers]
    assert len(names) == len(set(names)) > 2
    assert net.input_size == (swept.case.size, swept.case.size)
    assert any(l.kind == "conv" for l in layers)
    for layer in layers:
        assert layer.kind in ("conv", "linear", "pool", "activation", "block") and layer.shape
        assert net.layer(layer.name) is layer
        assert layer.input_layer is None or layer.input_layer in names[: layer.index]
        assert set(layer.inputs) <= set(names[: layer.index])
    # a local layer has a local field (squeeze-and-excitation gates do not make it global)
    local = [l for l in layers if l.is_spatial and l.shape[1] * l.shape[2] > 1]
    assert local
    untraced = [l.name for l in local if l.receptive_field is None]
    assert not untraced, f"receptive field not traced: {untraced[:5]}"
    # (a transformer block's extra tokens, [C, 1, tokens], see the whole image)
    wide = [l.name for l in local if l.receptive_field.is_global and not (l.layout and l.layout.extra_only)]
    assert not wide, f"global receptive field on a map with several positions: {wide[:5]}"
    for l in local:
        # stride 0: an adaptive pool enlarging a 1x1 map (AlexNet, VGG at 64x64) repeats one position
        assert all(s >= 1 for s in l.receptive_field.size) and all(s >= 0 for s in l.receptive_field.stride)
    assert net.num_classes == len(net.labels) >= 2
    assert net.logit_layer is None or net.layer(net.logit_layer).shape[0] == net.num_classes
    swept.untouched()


@per_model()
def test_predict_activations_filters(swept: Swept):
    net, image = swept.net, swept.image
    top = net.predict(image, k=3)
    assert len(top) == 3 and top[0].index == swept.top
    probs = [p.probability for p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert all(0 <= p.index < net.num_classes and math.isfinite(p.logit) for p in top)
    acts = net.activations(image)
    assert list(acts) == net.layer_names
    for layer in net.layers:
        assert tuple(acts[layer.name].shape) == layer.shape, layer.name
        assert torch.isfinite(acts[layer.name]).all(), layer.name
    assert torch.allclose(net.logits(image), net.logits(image))
    conv = next(l for l in net.layers if l.kind == "conv")
    weights = net.filters(conv.name)
    assert weights.dim() == 4 and weights.shape[0] == conv.channels
    assert torch.equal(weights, conv._module.weight)
    weights.zero_()  # a copy: the model keeps its weights
    shown = net.display_image(image)
    assert shown.shape == (swept.case.size, swept.case.size, 3) and shown.dtype == np.uint8
    swept.untouched()


# ----------------------------------------------------------------------------- saliency
@per_model()
@pytest.mark.parametrize("method", list(METHODS))
def test_saliency(swept: Swept, method: str):
    net, image = swept.net, swept.image
    options = FAST_OPTIONS.get(method, {})
    shape = input_shape(swept) if METHODS[method].output == "rgb" else input_shape(swept)[1:]
    if not METHODS[method].applies(net):  # attention rollout on a CNN or a Swin: it says why, model untouched
        with pytest.raises(cw.ModelError, match="attention"):
            net.saliency(image, swept.top, method, **options)
        swept.untouched()
        return
    if method == "lrp" and swept.case.id == "vit_hybrid":
        # LRP runs through layer norms and attention (ConvNeXt, ViT, DeiT, Swin, vit_b_16: CP-LRP), but the
        # hybrid ViT's padded stem conv is refused: the default flat first-layer rule needs the input itself
        with pytest.raises(cw.UnsupportedLayerError, match="first conv layer"):
            net.saliency(image, swept.top, method, **options)
        swept.untouched()
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuleWarning)  # every model here has rectifiers or gated units
        for target in (swept.top, swept.unit):
            result = net.saliency(image, target, method, **options)
            assert tuple(result.shape) == shape, (target, tuple(result.shape))
            assert torch.isfinite(result).all(), target
            rule = METHODS[method].rule
            if method == "grad_cam":
                assert (result >= 0).all()
            elif rule == "gradient":
                assert result.abs().max() > 0, f"{method} of {target} is all zero"
            # (guided / deconvnet may be all zero: a unit whose kernel sums negative has no positive
            # gradient left after the first rectifier, e.g. the default model's blocks.4.0.bn2.act[455])
            if rule != "gradient":
                # LRP's session rule names its composite: "lrp:epsilon_plus_flat" (the default)
                assert net.last_rule[0] == (rule if rule != "lrp" else "lrp:epsilon_plus_flat") and net.last_rule[1], net.last_rule
                if target == swept.top:
                    if "gradient" not in swept.extra:  # computed once per model
                        swept.extra["gradient"] = net.saliency(image, target, "gradient")
                    plain = swept.extra["gradient"]
                    scale = plain.abs().max()
                    assert scale > 0 and (result - plain).abs().max() > 1e-3 * scale, f"{method} equals the gradient"

    swept.untouched()


# ----------------------------------------------------------------------------- occlusion
@per_model()
def test_occlusion(swept: Swept):
    net, image, size = swept.net, swept.image, swept.case.size
    half = size // 2
    for target in (None, swept.unit):  # 4 windows each
        heat = net.occlusion(image, target, window=half, stride=half, fill="mean")
        assert tuple(heat.shape) == (size, size) and torch.isfinite(heat).all()
        assert heat.abs().max() > 0, f"occluding a quarter of the image never changes {target}"
    grid = net.occlusion(image, swept.top, window=half, stride=half, fill="zero", grid=True)
    assert tuple(grid.shape) == (2, 2) and torch.isfinite(grid).all()
    swept.untouched()


@per_model()
def test_incremental_occlusion_equals_full_recomputation(swept: Swept):
    """Krypton's incremental occlusion (``method="incremental"``, which "auto" may leave) against the
    whole network per copy, on windows that overlap and are clipped at the border, for the top class
    and a unit (summed map).

    In float64: in float32 full recomputation itself moves by about 6e-5 of the largest drop
    between batch sizes 1 and 7 on Inception-v3 (logits near 80; different kernels, different
    rounding), which would hide a real error of that size. Every model that torch.fx can trace must run incrementally."""
    net, image, size = swept.net, swept.image, swept.case.size
    net64 = cw.Network(copy.deepcopy(net.model).double(), preprocess=net.preprocess, output=net.output, name=net.name)
    x = net.prepare(image).double()
    window, stride = size // 3, size // 4  # e.g. 21 / 16 at 64 px: 4 x 4 windows, the last clipped
    for target in (swept.top, swept.unit):
        options = {"window": window, "stride": stride, "fill": "mean", "quantity": "logit", "progress": False,
                   "batch_size": 7}
        incremental = net64.occlusion(x, target, result=True, execution="incremental", **options)
        full = net64.occlusion(x, target, execution="full", grid=True, **options)
        if not swept.case.incremental:  # the full network per window, and the reason said
            assert incremental.method == "full" and "TraceError" in incremental.reason, incremental.reason
        assert incremental.method == "incremental" or not swept.case.incremental, incremental.reason
        scale = float(full.abs().max())
        assert scale > 0, f"no window changes {target}"
        torch.testing.assert_close(incremental.grid, full, rtol=0, atol=1e-9 * scale)
    swept.untouched()


# ----------------------------------------------------------------------------- contributions and trees
def check_ranked(children, layer: str, k: int, net: cw.Network):
    assert 1 <= len(children) <= k
    scores = [c.score for c in children]
    assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
    channels = net.layer(layer).channels
    assert all(c.unit.layer == layer and 0 <= c.unit.channel < channels for c in children)
    assert len({c.unit.channel for c in children}) == len(children)


@per_model()
def test_contributions(swept: Swept):
    net, image = swept.net, swept.image
    logit_layer = net.logit_layer
    assert logit_layer is not None, "no layer outputs the class scores: a class cannot root a tree"
    children = net.contributions(image, swept.top, k=2)
    check_ranked(children, net.layer_below(logit_layer), 2, net)
    children = net.contributions(image, swept.unit, k=2, rule="gradient", reduce="sum")
    check_ranked(children, net.layer_below(swept.unit.layer), 2, net)
    if swept.join is not None:  # Euler: bias-free and homogeneous, the shortcut included
        below = net.layer_below(swept.join.layer)
        everything = net.contributions(image, swept.join, k=net.layer(below).channels, rule="gradient", reduce="sum")
        value = float(net.activations(image, swept.join.layer)[swept.join.layer][swept.join.channel].sum())
        assert value > 0
        assert sum(c.score for c in everything) == pytest.approx(value, rel=1e-4)
    swept.untouched()


def check_tree(net: cw.Network, root, depth: int, k: int, shape: tuple[int, ...]):
    count = 0
    for node in root.walk():
        count += 1
        # the raw gradient has the input's channels; the picture is always RGB (grey for one channel)
        assert tuple(node.picture.shape) == (3, *shape[1:]) and tuple(node.raw_picture.shape) == shape
        assert torch.isfinite(node.raw_picture).all() and math.isfinite(node.score)
        assert node.picture.min() >= 0 and node.picture.max() <= 1
        if node.children:
            below = net.layer_below(node.unit.layer)
            check_ranked(node.children, below, k, net)
            assert all(child.path == (*node.path, child.unit) for child in node.children)
    assert 1 + k <= count <= sum(k**d for d in range(depth + 1))
    assert root.children, "the root has no children"


@per_model()
def test_contribution_tree(swept: Swept):
    net, image = swept.net, swept.image
    tree = net.contribution_tree(image, swept.top, depth=2, k=2)
    assert tree.unit.layer == net.logit_layer and tree.unit.channel == swept.top
    assert tree.score == pytest.approx(float(net.logits(image)[swept.top]), rel=1e-4, abs=1e-5)
    check_tree(net, tree, 2, 2, input_shape(swept))
    tree = net.contribution_tree(image, swept.unit, depth=1, k=2, rule="gradient", reduce="sum")
    assert tree.unit.layer == swept.unit.layer and tree.unit.channel == swept.unit.channel
    check_tree(net, tree, 1, 2, input_shape(swept))
    # expanding one child on click equals growing it inside the bigger tree
    child = tree.children[0]
    again = net.contribution_tree(image, swept.unit, depth=0, k=2, rule="gradient", reduce="sum", path=(child.unit,))
    assert again.score == pytest.approx(child.score, rel=1e-4, abs=1e-6)
    swept.untouched()


# ----------------------------------------------------------------------------- a tiny scan
@per_model()
def test_scan(swept: Swept):
    net, case = swept.net, swept.case
    images = [photo(name, case.image_size) for name in SCAN_SAMPLES]
    last_spatial = [l.name for l in net.layers if l.is_spatial][-1]
    layers = list(dict.fromkeys([swept.mid, last_spatial]))
    scan = net.scan(images, layers=layers, k=2, progress=False)
    assert scan.count == len(images) and scan.layers == layers
    tops = scan.top_images(swept.unit)
    assert len(tops) == 2 and tops[0].value >= tops[1].value
    for item in tops:
        assert 0 <= item.index < len(images) and math.isfinite(item.value)
        top, left, bottom, right = item.box
        assert 0 <= top < bottom <= case.size and 0 <= left < right <= case.size
        assert item.crop.shape == (bottom - top, right - left, 3) and item.crop.dtype == np.uint8
        assert item.reconstruction.shape[:2] == item.crop.shape[:2] and np.isfinite(item.raw_reconstruction).all()
        assert item.reconstruction.shape[2] in (case.channels, 3)  # one channel: test_one_channel_reconstruction_is_rgb
    # the best image's value is the unit's maximum on it
    best = net.activations(images[tops[0].index], swept.mid)[swept.mid][swept.unit.channel].max()
    assert tops[0].value == pytest.approx(float(best), rel=1e-4, abs=1e-5)
    coords = scan.embedding(swept.mid)
    assert coords.shape == (len(images), 2) and np.isfinite(coords).all()
    assert all(0 <= c < net.layer(last_spatial).channels for c in scan.dead_channels(last_spatial))
    swept.untouched()


# ----------------------------------------------------------------------------- inside a unit
@per_model()
def test_explain_unit_adds_up_on_every_layer(swept: Swept):
    """Issue 28: the arithmetic of each layer's strongest number, recomputed in float64 from the parts
    shown, is the model's own number: to 1e-5 of the number, or of a hundredth of the size of the
    terms summed where they cancel to near zero (float32 rounding of a long sum is relative to its
    terms, not its result)."""
    net, image = swept.net, swept.image
    acts = net.activations(image)
    kinds = set()
    for layer in net.layers:
        act = acts[layer.name]
        channel = int(act.flatten(1).amax(1).argmax()) if act.dim() > 1 else int(act.argmax())
        r = net.explain_unit(image, cw.Unit(layer.name, channel))
        expected = float(act[channel].max()) if act.dim() > 1 else float(act[channel])
        assert r.value == expected, layer.name
        assert abs(r.total - r.value) <= 1e-5 * max(abs(r.value), 1e-2 * r.magnitude), (layer.name, r.total, r.value)
        kinds.add(r.kind)
    assert "conv" in kinds  # every model in the sweep has a convolution (a ViT its patch embedding)
    swept.untouched()


# ----------------------------------------------------------------------------- the Explorer
@per_model([case.id for case in CASES if case.explorer])
def test_explorer(swept: Swept):
    explorer = cw.Explorer(swept.net, swept.image)
    explorer.compute()
    assert getattr(explorer, "error", "") == "", explorer.error
    assert getattr(explorer, "status", "idle") != "error"
    assert explorer.layer in swept.net.layer_names
    if hasattr(explorer, "predictions"):
        assert explorer.predictions and explorer.predictions[0]["index"] == swept.top
    image_data = getattr(explorer, "image_data", None)
    if image_data is not None:
        assert image_data.shape[:2] == (swept.case.size, swept.case.size)
        for trait in ("saliency", "occlusion"):
            value = getattr(explorer, trait, None)
            if value is not None:
                assert value.shape[:2] == image_data.shape[:2], trait
    swept.untouched()


def test_one_channel_reconstruction_is_rgb():
    net = BY_ID["gray28"].build()
    images = [photo(name, 28) for name in SCAN_SAMPLES[:2]]
    scan = net.scan(images, layers=["3"], k=1, progress=False)
    (top,) = scan.top_images(cw.Unit("3", 0))
    assert top.reconstruction.shape == top.crop.shape and top.raw_reconstruction.shape == top.crop.shape


# ----------------------------------------------------------------------------- the rest, on the transformers
VITS = ["vit_tiny", "deit_tiny", "swin_tiny", "vit_hybrid", "vit_b_16"]


@per_model(VITS)
def test_transformer_feature_visualisation_dream_atlas(swept: Swept):
    """Feature visualisation of a block's unit raises it; DeepDream and the atlas run on a block's tokens."""
    net, image, size = swept.net, swept.image, swept.case.size
    viz = net.visualize(swept.unit, steps=8, progress=False, seed=0)
    assert viz.image.size == (size, size) and viz.objective[-1] > viz.objective[0]
    dream = net.dream(image, swept.mid, octaves=1, steps=2, progress=False)
    assert dream.image.size == (size, size)
    atlas = net.atlas([photo(name, swept.case.image_size) for name in SCAN_SAMPLES], swept.mid, grid=2, positions=2,
                      visualize=False, progress=False)
    assert atlas.layer == swept.mid
    swept.untouched()


@per_model(VITS)
def test_transformer_trust_calls(swept: Swept):
    """Sanity check, faithfulness, probes and attention maps on the transformers."""
    net, image = swept.net, swept.image
    check = net.sanity_check(image, swept.top, methods=["gradient"], progress=False)
    assert check.methods == ["gradient"]
    faithful = net.faithfulness(image, swept.top, methods=["gradient"], steps=4, progress=False)
    assert all(math.isfinite(v) for v in faithful.auc.values())
    probe = net.probe(image, swept.top, kinds=("grey", "blur"))
    assert all(0 <= p <= 1 for p in probe.probability.values())
    if METHODS["attention_rollout"].applies(net):
        maps = net.attention(image)
        assert maps and all(torch.isfinite(m).all() and m.dim() == 3 for m in maps.values())
    swept.untouched()
