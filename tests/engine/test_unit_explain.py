"""net.explain_unit: the arithmetic of one number, checked against independent computations.

- a float64 model with every kind of source (strided / dilated / padded / grouped / depthwise / 1x1 /
  'same' convolutions, max pool with ceil mode, average pool without the padding, adaptive pool with
  uneven windows, a residual sum, a concatenation, group norm, a linear layer): the parts add up to
  the model's number to 1e-12 at every position of every layer;
- each part against PyTorch computing it another way (one input channel convolved alone,
  ``max_pool2d``'s own indices, ``softmax``, ``F.linear``), on the float32 default model;
- bad units and unsupported operations: a clear error, the model as it was, no hook left;
- a user thread running the same model throughout is neither recorded nor changed.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.errors import LayerNotFoundError, TargetError, UnsupportedLayerError
from cnn_widgets.engine.hooks import hook_count


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 5, padding=2, groups=channels, bias=False)

    def forward(self, x):
        return x + self.dw(x)


class Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(6, 4, 3, padding="same", groups=2)
        self.pw = nn.Conv2d(4, 6, 1)
        self.mp = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.ap = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)

    def forward(self, x):
        return torch.cat([self.mp(self.pw(self.grouped(x))), self.ap(x)], 1)


class Every(nn.Module):
    """Every kind of source and step explain_unit takes apart."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2)
        self.bn1 = nn.BatchNorm2d(6)
        self.act1 = nn.ReLU(inplace=True)
        self.res = Residual(6)
        self.branches = Branches()
        self.gn = nn.GroupNorm(3, 12)
        self.act2 = nn.SiLU()
        self.pool = nn.AdaptiveAvgPool2d((2, 3))
        self.fc = nn.Linear(12 * 2 * 3, 7)

    def forward(self, x):
        x = self.act1(self.bn1(self.c1(x)))
        x = self.branches(self.res(x))
        return self.fc(self.pool(self.act2(self.gn(x))).flatten(1))


def every_model(dtype=torch.float64) -> cw.Network:
    torch.manual_seed(0)
    model = Every()
    with torch.no_grad():  # batch norm statistics that change the numbers
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.5, 1.5)
        model.bn1.bias.uniform_(-0.2, 0.2)
    model = model.to(dtype).eval()
    return cw.Network(model, preprocess=lambda im: torch.as_tensor(np.asarray(im.resize((19, 19)), dtype=np.float64)
                                                                   ).permute(2, 0, 1).to(dtype) / 255.0 - 0.5,
                      input_size=(19, 19), name="every")


@pytest.fixture(scope="module")
def every(one_thread):
    return every_model()


@pytest.fixture(scope="module")
def default(one_thread):
    return cw.load_default()


def close(result, tol: float) -> bool:
    return abs(result.total - result.value) <= tol * max(abs(result.value), result.magnitude)


def test_every_position_of_every_layer_adds_up_in_float64(every):
    image = cw.sample_image("cat")
    acts = every.activations(image)
    kinds = set()
    for layer in every.layers:
        act = acts[layer.name]
        positions = [(c, None) for c in range(act.shape[0])] if act.dim() == 1 else \
            [(c, (y, x)) for c in range(0, act.shape[0], 2) for y in range(act.shape[1]) for x in range(act.shape[2])]
        for c, pos in positions:
            r = every.explain_unit(image, cw.Unit(layer.name, c, pos))
            expected = float(act[c] if pos is None else act[c][pos])
            assert r.value == expected
            assert close(r, 1e-12), (layer.name, c, pos, r.total, r.value)
            kinds.add((r.kind, getattr(r.source, "op", None), tuple(s.name for s in r.steps)))
    # every source and step was met (the test is not vacuous)
    assert {k[0] for k in kinds} == {"conv", "pool", "combine", "linear"}
    assert {k[1] for k in kinds} >= {"max", "average", "add", "concat"}
    assert {s for k in kinds for s in k[2]} >= {"batch_norm", "relu"}


def test_group_norm_and_activation_steps(every):
    """A unit of act2 is group norm (scale, shift from its group's statistics) then SiLU of a concatenation."""
    image = cw.sample_image("rocket")
    r = every.explain_unit(image, cw.Unit("act2", 7, (1, 2)))
    assert r.source.op == "concat" and r.source.part == 1 and r.source.channel == 1  # channel 7 = ap's channel 1
    norm, silu = r.steps
    assert (norm.name, silu.name) == ("group_norm", "silu")
    captured = {}
    handle = every.model.gn.register_forward_hook(lambda m, i, o: captured.update(x=i[0], y=o))  # update: None
    with torch.no_grad():
        every.model(every.prepare(image))
    handle.remove()
    captured = {k: v.detach() for k, v in captured.items()}
    group = captured["x"][0, 4:8]  # GroupNorm(3, 12): groups of 4 channels, channel 7 in the second
    mean, var = group.mean(), group.var(unbiased=False)
    expected = (captured["x"][0, 7, 1, 2] - mean) / torch.sqrt(var + 1e-5) * every.model.gn.weight[7] + every.model.gn.bias[7]
    expected = expected.detach()
    assert norm.output == pytest.approx(float(expected), rel=1e-12)
    assert silu.output == pytest.approx(float(F.silu(expected)), rel=1e-12)


def layer_input(net: cw.Network, module: nn.Module, image) -> torch.Tensor:
    seen = {}

    def hook(_module, inputs, _output):  # returns None: the pass goes on unchanged
        seen.setdefault("x", inputs[0].detach().clone())

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            net.model(net.prepare(image))
    finally:
        handle.remove()
    return seen["x"]


@pytest.mark.parametrize("layer", ["conv_stem", "blocks.1.0.conv_dw", "blocks.3.0.conv_pw"])
def test_convolution_parts_against_one_channel_convolutions(default, layer):
    image = cw.sample_image("cat")
    conv = dict(default.model.named_modules())[layer]
    x = layer_input(default, conv, image)
    channel = 5
    r = default.explain_unit(image, cw.Unit(layer, channel, (3, 4)))
    src = r.source
    per_group = conv.out_channels // conv.groups
    first = (channel // per_group) * conv.in_channels // conv.groups
    assert src.channels == tuple(range(first, first + conv.in_channels // conv.groups))
    assert src.groups == conv.groups and src.stride == conv.stride and src.pad == conv.padding
    for i, ch in enumerate(src.channels):  # each input channel convolved alone with its kernel slice
        alone = F.conv2d(x[:, ch:ch + 1].double(), conv.weight[channel:channel + 1, i:i + 1].detach().double(), None,
                         conv.stride, conv.padding, conv.dilation)
        assert src.channel_sums[i] == pytest.approx(float(alone[0, 0, 3, 4]), rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(src.products, src.patch * src.kernel)
    assert src.bias is None and r.bias is None  # timm folds nothing: the conv has no bias, its BN follows
    assert r.pre_activation == pytest.approx(float(default.activations(image, layer)[layer][channel, 3, 4]), rel=1e-5)
    # the batch norm and ReLU6 after it: the number the next layer (bn*.act) shows
    bn, act = r.then
    assert (bn.name, act.name) == ("batch_norm", "hardtanh")
    bn_name = {"conv_stem": "bn1", "blocks.1.0.conv_dw": "blocks.1.0.bn2", "blocks.3.0.conv_pw": "blocks.3.0.bn1"}[layer]
    bn_module = dict(default.model.named_modules())[bn_name]
    scale = float(bn_module.weight[channel].detach() / torch.sqrt(bn_module.running_var[channel] + bn_module.eps))
    assert bn.scale == pytest.approx(scale, rel=1e-6)
    after = default.activations(image, f"{bn_name}.act")[f"{bn_name}.act"]  # timm's BatchNormAct2d: its ReLU6
    assert act.output == pytest.approx(float(after[channel, 3, 4]), rel=1e-5, abs=1e-6)


def test_padding_is_shown_as_padding(default):
    image = cw.sample_image("cat")
    r = default.explain_unit(image, cw.Unit("conv_stem", 0, (0, 0)))
    src = r.source  # 3x3 stride 2: timm pads the first row and column
    assert src.window == (-src.pad[0], -src.pad[1])
    assert src.padding[0].all() and src.padding[:, 0].all() and not src.padding[1:, 1:].any()
    assert (src.patch[:, src.padding] == 0).all()


def test_max_pool_winner_is_pytorchs(every):
    image = cw.sample_image("coffee")
    mp = every.model.branches.mp
    x = layer_input(every, mp, image)
    out, indices = F.max_pool2d(x, mp.kernel_size, mp.stride, mp.padding, mp.dilation, mp.ceil_mode, return_indices=True)
    checked = 0
    for c in range(x.shape[1]):
        for y in range(out.shape[2]):
            for xx in range(out.shape[3]):
                r = every.explain_unit(image, cw.Unit("branches.mp", c, (y, xx)))
                src = r.source
                wy, wx = src.window[0] + src.winner[0], src.window[1] + src.winner[1]
                assert wy * x.shape[3] + wx == int(indices[0, c, y, xx])
                assert r.value == float(out[0, c, y, xx])
                checked += 1
    assert checked == 6 * 6 * 6  # ceil mode: a 10x10 map pooled to 6x6, the last windows cut by the edge


def test_average_pool_divisor_leaves_out_the_padding(every):
    image = cw.sample_image("coffee")
    r = every.explain_unit(image, cw.Unit("branches.ap", 0, (0, 0)))
    assert r.source.op == "average" and r.source.divisor == 4  # a corner: 2x2 of the 3x3 window is on the map
    assert np.isnan(r.source.values[0]).all() and not np.isnan(r.source.values[1:, 1:]).any()


def test_softmax_and_linear(default):
    image = cw.sample_image("cat")
    logits = default.logits(image).double()
    r = default.explain_unit(image, cw.Unit(default.logit_layer, 281))
    sm = r.softmax
    probs = torch.softmax(logits, 0)
    assert list(sm.classes[:5]) == [int(i) for i in logits.topk(5).indices]
    np.testing.assert_allclose(sm.probabilities, probs[list(sm.classes)].numpy(), rtol=1e-12)
    assert sm.exp_sum == pytest.approx(float(torch.exp(logits - logits.max()).sum()), rel=1e-12)
    assert sm.labels[0] == default.predict(image, 1)[0].label
    lin = r.source
    x = layer_input(default, default.model.classifier, image)[0].double()
    w = default.model.classifier.weight[281].detach().double()
    products = x * w
    assert float(products.sum() + default.model.classifier.bias[281]) == pytest.approx(lin.total, rel=1e-9)
    np.testing.assert_allclose(np.sort(np.abs(lin.products))[::-1], products.abs().sort(descending=True).values[:10].numpy())
    assert lin.rest_count == x.numel() - 10


def test_no_position_explains_the_maximum(default):
    image = cw.sample_image("cat")
    act = default.activations(image, "blocks.2.0.conv_dw")["blocks.2.0.conv_dw"][4]
    r = default.explain_unit(image, cw.Unit("blocks.2.0.conv_dw", 4))
    assert r.value == float(act.max()) and act[r.unit.position] == act.max()


class Cumulative(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.odd = nn.Sequential(nn.Conv2d(4, 4, 1), Cumsum())
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.odd(self.conv(x)).mean((2, 3)))


class Cumsum(nn.Module):
    def forward(self, x):
        return x.cumsum(1)


def test_bad_units_leave_the_model_as_it_was(default):
    image = cw.sample_image("cat")
    model = default.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    hooks = hook_count(model)
    cases = [
        (cw.Unit("conv_stem", 0, (500, 0)), TargetError, "outside the 112x112 map"),
        (cw.Unit("classifier", 0, (0, 0)), TargetError, "no spatial map"),
        (cw.Unit("conv_stem", 99), TargetError, "out of range"),
        (cw.Unit("nope", 0), LayerNotFoundError, "nope"),
        ("conv_stem", TargetError, "cw.Unit"),
    ]
    for unit, error, text in cases:
        with pytest.raises(error, match=text):
            default.explain_unit(image, unit)
    assert hook_count(model) == hooks and [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch._C._len_torch_function_stack() == 0

    torch.manual_seed(0)
    odd = cw.Network(Cumulative(), preprocess=lambda im: torch.rand(3, 12, 12), input_size=(12, 12), name="odd")
    with pytest.raises(UnsupportedLayerError, match=r"'cumsum' in module 'odd.1'.*it shows convolutions"):
        odd.explain_unit(image, cw.Unit("odd", 1, (2, 2)))
    assert hook_count(odd.model) == 0 and torch._C._len_torch_function_stack() == 0
    assert odd.explain_unit(image, cw.Unit("conv", 1, (2, 2))).kind == "conv"  # the rest still works


def test_a_user_thread_is_neither_recorded_nor_changed(every):
    image = cw.sample_image("cat")
    x = every.prepare(cw.sample_image("rocket"))
    with torch.no_grad():
        reference = every.model(x)
    expected = {layer.name: every.explain_unit(image, cw.Unit(layer.name, 1)) for layer in every.layers}
    stop, wrong, runs = threading.Event(), [], [0]

    def user():
        while not stop.is_set():
            with torch.no_grad():
                out = every.model(x)
            if not torch.equal(out, reference):
                wrong.append(out)
            runs[0] += 1

    thread = threading.Thread(target=user)
    thread.start()
    try:
        for _ in range(3):
            for name, before in expected.items():
                r = every.explain_unit(image, cw.Unit(name, 1))
                assert (r.value, r.total, r.unit) == (before.value, before.total, before.unit)
    finally:
        stop.set()
        thread.join()
    assert runs[0] > 0 and not wrong
    assert hook_count(every.model) == 0


def test_windows_and_activation_arguments_for_sliding(every, default):
    """A pool says how all its windows lie (the view slides them); ReLU6 says its bounds."""
    image = cw.sample_image("cat")
    mp = every.explain_unit(image, cw.Unit("branches.mp", 0, (1, 1))).source
    module = every.model.branches.mp
    assert (mp.kernel, mp.stride, mp.pad, mp.dilation) == ((3, 3), (2, 2), (1, 1), (1, 1)) == (
        (module.kernel_size,) * 2, (module.stride,) * 2, (module.padding,) * 2, (module.dilation,) * 2)
    assert mp.window == (1 * 2 - 1, 1 * 2 - 1)
    assert every.explain_unit(image, cw.Unit("pool", 0, (1, 2))).source.adaptive
    relu6 = default.explain_unit(image, cw.Unit("bn1.act", 0, (5, 5))).steps[-1]
    assert relu6.name == "hardtanh" and relu6.params == (0.0, 6.0)


@pytest.mark.parametrize("dtype, eps", [(torch.bfloat16, 2.0 ** -8), (torch.float16, 2.0 ** -11)])
def test_low_precision_models_differ_by_their_own_rounding(dtype, eps):
    """The parts are read in the model's precision and summed in float64: the model's own number
    differs from that sum by its rounding, a few units of its epsilon (and float32 agrees to 1e-6)."""
    net32 = every_model(torch.float32)
    low = cw.Network(every_model(torch.float64).model.to(dtype), preprocess=lambda im: net32.preprocess(im).to(dtype),
                     input_size=(19, 19), name=str(dtype))
    image = cw.sample_image("cat")
    for layer in ("c1", "act1", "res", "branches", "fc"):
        r = low.explain_unit(image, cw.Unit(layer, 1))
        assert r.dtype == str(dtype).replace("torch.", "")
        assert abs(r.total - r.value) <= 8 * eps * max(abs(r.value), r.magnitude), (layer, r.total, r.value)
        r32 = net32.explain_unit(image, cw.Unit(layer, 1))
        assert r32.dtype == "float32" and close(r32, 1e-6)


def test_the_source_says_where_its_input_came_from(every):
    """The input map's producer, for the view's caption: the network's input for the first conv, the
    module before otherwise (an in-place ReLU is the module that last wrote the tensor)."""
    image = cw.sample_image("cat")
    assert every.explain_unit(image, cw.Unit("c1", 0, (1, 1))).source.input_from == "input"
    assert every.explain_unit(image, cw.Unit("res.dw", 0, (1, 1))).source.input_from == "act1"
    assert every.explain_unit(image, cw.Unit("branches.mp", 0, (1, 1))).source.input_from == "branches.pw"
    assert every.explain_unit(image, cw.Unit("branches.ap", 0, (1, 1))).source.input_from == "res"


class KeywordOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3), ReluByKeyword())
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.block(x).mean((2, 3)))


class ReluByKeyword(nn.Module):
    def forward(self, x):
        return torch.relu(input=x)


def test_an_operation_given_its_tensor_by_keyword_is_named_in_the_error():
    torch.manual_seed(0)
    net = cw.Network(KeywordOnly(), preprocess=lambda im: torch.rand(3, 12, 12), input_size=(12, 12), name="kw")
    image = cw.sample_image("cat")
    with pytest.raises(UnsupportedLayerError, match=r"cannot follow 'relu' in module 'block.1'.*first positional"):
        net.explain_unit(image, cw.Unit("block", 1, (2, 2)))
    assert hook_count(net.model) == 0 and torch._C._len_torch_function_stack() == 0
    # the rest of the engine runs on it: the rectifier rules took the keyword tensor too (they raised
    # IndexError on it, so no method could explore such a model)
    assert net.explain_unit(image, cw.Unit("block.0", 1, (2, 2))).kind == "conv"
    net.saliency(image, 0, method="guided_backprop")
    assert net.last_rule == ("guided", ("relu",))
