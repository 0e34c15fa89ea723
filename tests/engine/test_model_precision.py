"""Compiled, TorchScript and low-precision models: every public call, and the model untouched after each.

- ``torch.compile(model)``: the engine explores ``_orig_mod`` and never runs the compiled graph (a
  counting backend proves it), so every result is the eager model's, to the bit.
- TorchScript (scripted, traced, a scripted submodule) and compiled parts inside an eager model:
  refused with a ``ModelError`` that names them and what to pass instead.
- bfloat16 / float16 models: every call runs in the model's dtype; the numbers are checked against
  a plain torch computation in the same dtype (the same forward, ``torch.autograd.grad``) and against
  the float32 model within that dtype's precision.

Run on its own: ``pytest tests/engine/test_model_precision.py --durations=0``.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.saliency import METHODS

FAST = {"smoothgrad": {"n_samples": 2}, "integrated_gradients": {"steps": 2}}
# relative error of one pass against the float32 model: 8 and 11 bits of mantissa
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 4e-3, torch.float32: 1e-6}


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)) + x)


def small_cnn() -> nn.Sequential:
    """32x32 RGB -> 5 classes: conv, BN, ReLU, a residual block, pool, conv, ReLU, pool, linear."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), Residual(8), nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5),
    ).eval()


def resnet18() -> nn.Module:
    return tvm.resnet18(weights=None).eval()


@dataclass
class Snapshot:
    """Weights, buffers, flags, hooks and dtypes of a module (the user's object: compiled or not)."""

    state: dict
    training: list
    requires_grad: list
    hooks: int

    @classmethod
    def of(cls, model: nn.Module) -> "Snapshot":
        return cls({k: v.detach().clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
                   [p.requires_grad for p in model.parameters()], hook_count(model))

    def check(self, model: nn.Module, after: str) -> None:
        assert hook_count(model) == self.hooks, f"{after}: a hook was left on the model"
        assert [m.training for m in model.modules()] == self.training, f"{after}: training flags changed"
        assert [p.requires_grad for p in model.parameters()] == self.requires_grad, f"{after}: requires_grad changed"
        assert all(p.grad is None for p in model.parameters()), f"{after}: a parameter gradient was computed"
        state = model.state_dict()
        assert state.keys() == self.state.keys(), after
        for k, v in self.state.items():
            assert state[k].dtype == v.dtype and torch.equal(state[k], v), f"{after}: {k} changed"
        assert torch._C._len_torch_function_stack() == 0, f"{after}: a TorchFunctionMode was left active"


@dataclass
class Subject:
    id: str
    net: cw.Network
    model: nn.Module  # what the user passed (the compiled object, or the bf16 / fp16 module)
    eager: nn.Module  # the module in the model's dtype that runs (model itself, or compiled._orig_mod)
    ref: nn.Module  # a float32 copy made before conversion
    dtype: torch.dtype
    size: int
    everything: bool  # every public call (small models) or the core ones (ResNet-18)
    compiled_runs: list | None = None  # graphs the counting backend was asked to compile


def build(kind: str, mode: str) -> Subject:
    torch.manual_seed(0)
    model, size = (small_cnn(), 32) if kind == "small" else (resnet18(), 64)
    ref = copy.deepcopy(model)
    preprocess = cw.imagenet_preprocess(size=size, resize=size)
    runs = None
    if mode == "compiled":
        runs = []

        def counting(graph, example_inputs):  # only called if dynamo ever compiles a frame
            runs.append(graph)
            return graph.forward

        eager, dtype = model, torch.float32
        model = torch.compile(model, backend=counting)
    else:
        dtype = getattr(torch, mode)
        model = eager = model.to(dtype)
    net = cw.Network(model, preprocess=preprocess, name=f"{kind}-{mode}")
    return Subject(f"{kind}-{mode}", net, model, eager, ref, dtype, size, kind == "small", runs)


IDS = ["small-bfloat16", "small-float16", "small-compiled", "resnet18-bfloat16", "resnet18-float16", "resnet18-compiled"]


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=IDS)
def subject(request) -> Subject:
    kind, mode = request.param.split("-")
    return build(kind, mode)


def photo(size: int):
    return cw.sample_image("cat").resize((size, size))


def the_calls(s: Subject) -> dict[str, Callable[[], object]]:
    """Every public call of a Network (the core ones on ResNet-18), by name."""
    net, image = s.net, photo(s.size)
    spatial = [layer.name for layer in net.layers if layer.is_spatial and layer.shape[1] > 1]
    mid = spatial[len(spatial) // 2]
    unit = cw.Unit(mid, 0)
    calls: dict[str, Callable[[], object]] = {
        "layers": lambda: net.layers,
        "predict": lambda: net.predict(image, k=3),
        "activations": lambda: net.activations(image),
        "filters": lambda: net.filters(net.layers[0].name),
        "display_image": lambda: net.display_image(image),
    }
    methods = [m for m, spec in METHODS.items() if getattr(spec, "applies", lambda n: True)(net)]
    if not s.everything:
        methods = [m for m in methods if m in ("gradient", "guided_backprop", "smoothgrad", "integrated_gradients",
                                               "grad_cam", "lrp")]
    for method in methods:
        calls[f"saliency {method}"] = lambda m=method: net.saliency(image, 0, m, **FAST.get(m, {}))
        if s.everything:
            calls[f"saliency {method} unit"] = lambda m=method: net.saliency(image, unit, m, **FAST.get(m, {}))
    half = s.size // 2
    calls["occlusion"] = lambda: net.occlusion(image, 0, window=half, stride=half)
    calls["contribution_tree"] = lambda: net.contribution_tree(image, 0, depth=1, k=2)
    if not s.everything:
        return calls
    images = [photo(s.size), cw.sample_image("coffee").resize((s.size, s.size)), cw.sample_image("rocket")]
    calls.update({
        "occlusion unit": lambda: net.occlusion(image, unit, window=half, stride=half),
        "contributions": lambda: net.contributions(image, 0, k=2),
        "contribution_tree lrp": lambda: net.contribution_tree(image, 0, depth=1, k=2, rule="lrp"),
        "relevance": lambda: net.relevance(image, 0),
        "scan": lambda: net.scan(images, layers=[mid], k=2, progress=False).top_images(unit),
        "scan embedding": lambda: net.scan(images, layers=[mid], k=1, progress=False).embedding(mid),
        "visualize": lambda: net.visualize(unit, steps=2, progress=False),
        "dream": lambda: net.dream(image, mid, octaves=1, steps=2, progress=False),
        "atlas": lambda: net.atlas(images, mid, grid=2, positions=2, steps=2, size=32, method="pca", progress=False),
        "sanity_check": lambda: net.sanity_check(image, 0, methods=["gradient"], progress=False),
        "faithfulness": lambda: net.faithfulness(image, 0, methods=["gradient"], steps=4, progress=False),
        "probe": lambda: net.probe(image, 0),
    })
    return calls


def test_every_public_call_runs_and_leaves_the_model_untouched(subject: Subject):
    s = subject
    before = Snapshot.of(s.model)
    failed = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, call in the_calls(s).items():
            try:
                call()
            except Exception as err:  # collect them all: one failure should not hide the next
                failed[name] = f"{type(err).__name__}: {err}"
            before.check(s.model, after=name)
    assert not failed, failed
    if s.compiled_runs is not None:
        assert s.compiled_runs == [], "the compiled graph was run"


@pytest.mark.parametrize("subject", [i for i in IDS if i.startswith("small")], indirect=True)
def test_the_explorer_opens_without_an_error(subject: Subject):
    """On the small models (on ResNet-18 the Explorer takes half a minute)."""
    before = Snapshot.of(subject.model)
    explorer = cw.Explorer(subject.net, photo(subject.size))
    explorer.compute()
    assert explorer.error == "" and explorer.status != "error", explorer.error
    assert explorer.predictions and explorer.predictions[0]["index"] == int(subject.net.logits(photo(subject.size)).argmax())
    before.check(subject.model, after="Explorer")


# ----------------------------------------------------------------------------- the numbers
def inputs(s: Subject) -> tuple[torch.Tensor, torch.Tensor]:
    """The model input in float32 and in the model's dtype, from the preprocessing (not from the engine)."""
    x32 = s.net.preprocess(photo(s.size)).unsqueeze(0)
    return x32, x32.to(s.dtype)


def test_predict_matches_a_plain_forward_pass_and_the_float32_model(subject: Subject):
    s = subject
    x32, x = inputs(s)
    with torch.no_grad():
        own = s.eager(x).float().softmax(1)[0]  # the same model, same dtype, no engine
        full = s.ref(x32).softmax(1)[0]
    top = s.net.predict(photo(s.size), k=5)
    got = torch.tensor([p.probability for p in top])
    idx = torch.tensor([p.index for p in top])
    torch.testing.assert_close(got, own[idx], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got, full[idx], rtol=2 * TOLERANCE[s.dtype], atol=1e-7)


def test_first_convolution_activations_match_float32(subject: Subject):
    s = subject
    x32, _ = inputs(s)
    first = s.net.layers[0]
    conv = dict(s.ref.named_modules())[first.name]
    expected = conv(x32)[0].detach()
    got = s.net.activations(photo(s.size), first.name)[first.name]
    assert got.dtype == s.dtype
    scale = float(expected.abs().max())
    assert float((got.float() - expected).abs().max()) <= 2 * TOLERANCE[s.dtype] * scale


def plain_gradient(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[0, target], x)  # autograd.grad: no parameter's .grad is written
    return grad[0].float()


def test_gradient_matches_torch_autograd_in_the_models_dtype_and_float32(subject: Subject):
    s = subject
    x32, x = inputs(s)
    top = int(s.net.logits(photo(s.size)).argmax())
    got = s.net.saliency(photo(s.size), top, "gradient")
    assert got.dtype == torch.float32  # a map handed back: float32 whatever the model's dtype
    own = plain_gradient(s.eager, x, top)
    scale = float(own.abs().max())
    assert scale > 0
    assert float((got - own).abs().max()) <= 1e-2 * scale
    full = plain_gradient(s.ref, x32, top)
    cosine = F.cosine_similarity(got.flatten().double(), full.flatten().double(), dim=0)
    assert cosine > (0.97 if s.dtype != torch.float32 else 1 - 1e-6), float(cosine)
    for param in s.eager.parameters():
        assert param.grad is None


def test_smoothgrad_and_integrated_gradients_are_float32_and_close_to_the_float32_model(subject: Subject):
    s = subject
    image = photo(s.size)
    ref = cw.Network(s.ref, preprocess=s.net.preprocess)
    for method, options in (("smoothgrad", {"n_samples": 4}), ("integrated_gradients", {"steps": 4})):
        got = s.net.saliency(image, 1, method, **options)
        full = ref.saliency(image, 1, method, **options)
        assert got.dtype == torch.float32
        cosine = F.cosine_similarity(got.flatten().double(), full.flatten().double(), dim=0)
        assert cosine > (0.95 if s.dtype != torch.float32 else 1 - 1e-6), (method, float(cosine))


def test_occlusion_drops_match_a_plain_computation(subject: Subject):
    """Zero-fill, four windows: each drop is ``f(x) - f(x with the window zeroed)`` of the model's own pass."""
    s = subject
    _, x = inputs(s)
    half = s.size // 2
    grid = s.net.occlusion(photo(s.size), 0, window=half, stride=half, fill="zero", quantity="logit", grid=True)
    assert grid.dtype == torch.float32 and grid.shape == (2, 2)
    copies = x.repeat(4, 1, 1, 1)
    for i, (top, left) in enumerate([(0, 0), (0, half), (half, 0), (half, half)]):
        copies[i, :, top : top + half, left : left + half] = 0
    with torch.no_grad():
        clean = s.eager(x)[0, 0].float()
        drops = clean - s.eager(copies)[:, 0].float()
    scale = float(drops.abs().max())
    assert scale > 0
    # the engine may batch differently (another kernel, another rounding): a few units in the last place of a logit
    assert float((grid.flatten() - drops).abs().max()) <= 4 * TOLERANCE[s.dtype] * max(scale, abs(float(clean)))


def test_tree_root_is_the_logit_of_the_float32_model(subject: Subject):
    s = subject
    x32, _ = inputs(s)
    with torch.no_grad():
        logit = float(s.ref(x32)[0, 2])
    tree = s.net.contribution_tree(photo(s.size), 2, depth=1, k=2)
    assert tree.score == pytest.approx(logit, rel=2 * TOLERANCE[s.dtype], abs=2 * TOLERANCE[s.dtype])
    assert tree.picture.dtype == torch.float32 and torch.isfinite(tree.raw_picture).all()


# ----------------------------------------------------------------------------- compiled models
def test_a_compiled_model_is_explored_through_its_original_module():
    s = build("small", "compiled")
    assert s.net.model is s.model._orig_mod and s.net.name == "small-compiled"
    eager = cw.Network(s.model._orig_mod, preprocess=s.net.preprocess)
    assert s.net.layer_names == eager.layer_names
    image = photo(32)
    assert torch.equal(s.net.logits(image), eager.logits(image))
    assert torch.equal(s.net.saliency(image, 1, "guided_backprop"), eager.saliency(image, 1, "guided_backprop"))
    assert cw.Network(torch.compile(small_cnn())).name == "Sequential"  # the module's class, not OptimizedModule
    assert s.compiled_runs == []


# ----------------------------------------------------------------------------- refused models
def scripted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in torch 2.x
        return torch.jit.script(small_cnn())


def traced():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(small_cnn(), torch.zeros(1, 3, 32, 32))


def scripted_inside():
    model = small_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model[5] = torch.jit.script(model[5])
    return model


def compiled_inside():
    model = small_cnn()
    model[3] = torch.compile(model[3])
    return model


def compiled_in_place():
    model = small_cnn()
    model.compile()
    return model


@pytest.mark.parametrize("make, match", [
    (scripted, r"RecursiveScriptModule of Sequential is a TorchScript module \(torch\.jit\.script / torch\.jit\.trace\); "
               r"cnn_widgets puts hooks and modified backward rules on the layers, which cannot run inside TorchScript\. "
               r"Pass the eager nn\.Module it was scripted or traced from"),
    (traced, r"TopLevelTracedModule of Sequential is a TorchScript module.*Pass the eager nn\.Module"),
    (scripted_inside, r"Sequential\.5 is a TorchScript module \(RecursiveScriptModule of Conv2d\).*eager module at '5'"),
    (compiled_inside, r"Sequential\.3 was compiled \(torch\.compile\).*compile the whole model with torch\.compile\(model\)"),
    (compiled_in_place, r"Sequential was compiled \(\.compile\(\) in place\).*pass the uncompiled model"),
], ids=["scripted", "traced", "scripted-submodule", "compiled-submodule", "compiled-in-place"])
def test_torchscript_and_compiled_parts_are_refused_clearly(make, match):
    model = make()
    before = Snapshot.of(model)
    with pytest.raises(cw.ModelError, match=match):
        cw.Network(model, preprocess=cw.imagenet_preprocess(size=32, resize=32))
    before.check(model, after="the refusal")
