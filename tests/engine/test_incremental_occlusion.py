"""Incremental occlusion (Krypton, SIGMOD 2019) against full recomputation, its fallbacks and options."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.errors import OptionError
from cnn_widgets.engine.hooks import hook_count
from occlusion_loop import loop_reference



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small float64 inputs: one intra-op thread is about as fast on an idle machine, and never
    stalls on a loaded one (two OpenMP threads waiting on each other made these tests 100x slower
    under a load of 10 on 2 cores). What the tests compare is unchanged."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def network(model: nn.Module, size: int) -> cw.Network:
    return cw.Network(model.double().eval(), preprocess=lambda img: torch.zeros(3, size, size))


def image(size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def both(net, x, target=1, **options):
    """(incremental result, grid of full recomputation) for the same options."""
    options = {"quantity": "logit", "progress": False, **options}
    full = net.occlusion(x, target, grid=True, execution="full", **options)
    return net.occlusion(x, target, result=True, **{"execution": "incremental", **options}), full


def assert_exact(result, full):
    assert result.method == "incremental" and result.reason is None and result.exact
    scale = full.abs().max()
    assert scale > 0
    torch.testing.assert_close(result.grid, full, rtol=1e-5, atol=1e-5 * float(scale))


class Geometry(nn.Module):
    """Every local rule at once: odd kernels, strides, padding, dilation, pools, a residual add,
    a concatenation, a depthwise conv, an in-place ReLU, then global pooling and a linear head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5, stride=2, padding=3)
        self.relu = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.dilated = nn.Conv2d(6, 6, 3, padding=2, dilation=2)
        self.bn = nn.BatchNorm2d(6)
        self.depthwise = nn.Conv2d(6, 6, 3, padding="same", groups=6)
        self.skip = nn.Conv2d(6, 4, 1, stride=2)
        self.branch = nn.Conv2d(6, 4, (3, 5), stride=2, padding=(1, 2))
        self.avg = nn.AvgPool2d(3, stride=1, padding=1)
        self.wide = nn.Conv2d(8, 5, 2, stride=1)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        x = self.pool1(self.relu(self.conv1(x)))
        x = x + F.relu6(self.bn(self.dilated(x)))
        x = torch.sigmoid(self.depthwise(x)) * x
        x = torch.cat([self.skip(x), self.avg(self.branch(x))], dim=1)
        x = self.wide(x).relu_()
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize(
    "size, window, stride, fill",
    [(31, 5, 3, "zero"), (29, 7, 7, "mean"), (32, 8, 5, "blur"), (31, 6, 4, "mean"), (16, 2, 1, "zero")],
)
def test_every_local_rule_equals_full_recomputation(size, window, stride, fill):
    torch.manual_seed(0)
    model = Geometry()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    result, full = both(network(model, size), image(size), window=window, stride=stride, fill=fill,
                        batch_size=7 if stride > 1 else 64)
    assert_exact(result, full)
    assert result.work < 1


def test_folded_batch_norms_follow_the_models_current_tensors():
    """A convolution read only by an eval batch norm runs with the norm folded into its weights (the
    norm module is then never called); the plan is cached, so after the weights and statistics
    change in place, or a statistic is replaced, the next map must use the new values."""
    torch.manual_seed(2)
    model = Geometry()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    net, x = network(model, 31), image(31, 2)
    calls = []
    handle = model.bn.register_forward_hook(lambda *a: calls.append(1))
    try:
        result, full = both(net, x, window=6, stride=4)
        assert_exact(result, full)
        calls.clear()
        net.occlusion(x, 1, window=6, stride=4, quantity="logit", progress=False)
        assert not calls, "the norm after the dilated convolution was not folded"
        with torch.no_grad():
            model.bn.running_var.mul_(3.0)
            model.dilated.weight.add_(0.05)
            model.bn.weight.mul_(-1.5)
        model.bn.running_mean = torch.randn(6, dtype=torch.float64)
        changed, changed_full = both(net, x, window=6, stride=4)
        assert_exact(changed, changed_full)
        assert float((changed_full - full).abs().max()) > 1e-3 * float(full.abs().max())  # the change shows
    finally:
        handle.remove()


def test_clean_activations_survive_in_place_ops():
    """ReLU(inplace) and ``relu_`` run out of place: a second call, from the cached plan, is the same."""
    torch.manual_seed(1)
    net, x = network(Geometry(), 31), image(31, 1)
    first = net.occlusion(x, 0, window=6, stride=4, grid=True, progress=False)
    torch.testing.assert_close(net.occlusion(x, 0, window=6, stride=4, grid=True, progress=False), first)


def torchvision_model(name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None)


@pytest.mark.parametrize(
    "name, size, fill, window, stride",
    [
        ("alexnet", 96, "mean", 32, 24),
        ("resnet18", 64, "zero", 24, 20),
        ("resnet18", 48, "blur", 16, 11),
        pytest.param("vgg16", 64, "blur", 24, 20, marks=pytest.mark.slow),
        pytest.param("alexnet", 80, "zero", 16, 13, marks=pytest.mark.slow),
    ],
)
def test_torchvision_models_equal_full_recomputation(name, size, fill, window, stride):
    result, full = both(network(torchvision_model(name), size), image(size), fill=fill, window=window,
                        stride=stride, batch_size=9)
    assert_exact(result, full)


@pytest.mark.slow
@pytest.mark.parametrize("fill", ["mean", "blur"])
def test_default_model_equals_full_recomputation(fill):
    model = cw.load_default().model
    result, full = both(network(model, 64), image(64, 2), fill=fill, window=24, stride=20, batch_size=9)
    assert_exact(result, full)


def test_float32_default_dtype_within_tolerance():
    net = cw.Network(torchvision_model("resnet18").eval(), preprocess=lambda img: torch.zeros(3, 64, 64))
    x = image(64, 3).float()
    result = net.occlusion(x, 1, window=32, stride=16, quantity="logit", result=True, progress=False)
    full = net.occlusion(x, 1, window=32, stride=16, quantity="logit", grid=True, execution="full", progress=False)
    torch.testing.assert_close(result.grid, full, rtol=1e-4, atol=1e-4 * float(full.abs().max()))


@pytest.mark.parametrize("unit", [cw.Unit("layer2.0.conv1", 3), cw.Unit("layer1.0", 5, reduce="max"),
                                  cw.Unit("layer1.1.conv2", 2, position=(4, 5))])
def test_unit_targets_equal_full_recomputation(unit):
    """A unit inside a residual block that tracing steps into (``layer1.0``) is made a leaf."""
    result, full = both(network(torchvision_model("resnet18"), 48), image(48, 4), target=unit, window=12, stride=9)
    assert_exact(result, full)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = x.relu()
        return self.fc(x.mean((2, 3)))


class Unknown(nn.Module):
    """Ops with no local rule in the middle of the network (upsampling, a roll): run on whole maps."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16, 2)

    def forward(self, x):
        x = F.interpolate(self.a(x), scale_factor=0.5, mode="bilinear")
        x = torch.roll(self.b(x), 1, dims=-1)
        return self.fc(F.adaptive_max_pool2d(x, 4).flatten(1))


class InPlaceShared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        y = x.relu_()  # x is read again below, after it was rectified in place
        return self.fc((x + y).mean((2, 3)))


class SqueezeExcite(nn.Module):
    """A small convolution, then a squeeze-and-excitation gate (global pooling: every position of
    the gated map depends on every pixel) in front of a convolution eight times its size."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.squeeze, self.excite = nn.Linear(4, 2), nn.Linear(2, 4)
        self.body = nn.Conv2d(4, 32, 3, padding=1)
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        x = self.stem(x).relu()
        gate = torch.sigmoid(self.excite(self.squeeze(x.mean((2, 3))).relu()))
        x = self.body(x * gate[:, :, None, None]).relu()
        return self.head(x.mean((2, 3)))


def logit(model, index):
    """``f(image) = model(image)[index]``, one image ``[C, H, W]``, for :func:`loop_reference`."""
    def f(x):
        with torch.no_grad():
            return float(model(x[None])[0, index])

    return f


def test_auto_runs_the_rest_in_full_when_incremental_saves_too_little():
    """Behind a squeeze-and-excitation gate every position changes, so incremental inference redoes
    nearly the whole network per window; "auto" finds that out from one window before the map,
    runs every window in full, says so, and equals the hand-written loop. "incremental" stays
    incremental, with the same numbers; a tau threshold (approximate) keeps the runner it needs."""
    from cnn_widgets.engine.occlusion_runs import FULL_WORK

    torch.manual_seed(11)
    model = SqueezeExcite().double().eval()
    net, x = network(model, 24), image(24, 3)
    options = {"window": 8, "stride": 4, "fill": "zero", "quantity": "logit", "progress": False, "batch_size": 4}
    reference = loop_reference(logit(model, 1), x, torch.zeros_like(x), 8, 4)[0]
    auto = net.occlusion(x, 1, result=True, **options)
    assert auto.method == "full" and "would recompute" in auto.reason and auto.exact
    assert auto.work == 1.0 and auto.windows == 25
    torch.testing.assert_close(auto.grid, reference, rtol=0, atol=1e-12 * float(reference.abs().max()))
    forced = net.occlusion(x, 1, result=True, execution="incremental", **options)
    assert forced.method == "incremental" and forced.reason is None and forced.work >= FULL_WORK
    torch.testing.assert_close(forced.grid, reference, rtol=0, atol=1e-12 * float(reference.abs().max()))
    cut = net.occlusion(x, 1, result=True, approx=0.5, **options)
    assert cut.method == "incremental" and not cut.exact
    assert hook_count(model) == 0


def test_auto_stays_incremental_where_it_saves_work():
    """A plain convolution chain with a window a tenth of the image: the first batch recomputes
    far less than the network, so every window runs incrementally (and equals the loop)."""
    torch.manual_seed(12)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).double().eval()
    net, x = network(model, 40), image(40, 4)
    result = net.occlusion(x, 2, window=4, stride=4, fill="zero", quantity="logit", progress=False, result=True,
                           batch_size=8)
    assert result.method == "incremental" and result.reason is None and result.work < 0.5
    reference = loop_reference(logit(model, 2), x, torch.zeros_like(x), 4, 4)[0]
    torch.testing.assert_close(result.grid, reference, rtol=0, atol=1e-12 * float(reference.abs().max()))


@pytest.mark.parametrize("cls, method", [(Untraceable, "full"), (Unknown, "incremental"), (InPlaceShared, "full")])
def test_fallbacks_are_exact_and_say_so(cls, method):
    torch.manual_seed(5)
    model = cls()
    net, x = network(model, 20), image(20, 5)
    result, full = both(net, x, window=6, stride=4)
    assert result.method == method
    assert (result.reason is None) == (method == "incremental")
    torch.testing.assert_close(result.grid, full, rtol=1e-9, atol=1e-12)
    assert hook_count(model) == 0


def test_approximate_modes_report_their_error_and_save_work():
    net, x = network(torchvision_model("resnet18"), 48), image(48, 6)
    options = {"window": 16, "stride": 8, "quantity": "logit", "progress": False}
    exact = net.occlusion(x, 1, result=True, **options)
    approx = net.occlusion(x, 1, result=True, approx=0.5, compare=True, **options)
    assert not approx.exact and approx.work < exact.work
    assert set(approx.error) == {"max_abs", "relative", "correlation"}
    assert approx.error["max_abs"] == pytest.approx(float((approx.heat - exact.heat).abs().max()), rel=1e-9)
    drilled = net.occlusion(x, 1, result=True, drill_down=0.25, compare=True, **options)
    assert drilled.windows < exact.windows and not drilled.exact and drilled.error["correlation"] > 0.5
    # the first pass ran at stride 16, the even corners of the stride-8 grid: those windows are exact
    # and never run twice; the drilled ones are exact too
    torch.testing.assert_close(drilled.grid[::2, ::2], exact.grid[::2, ::2])
    coarse = exact.grid[::2, ::2].numel()
    assert drilled.windows == coarse + math.ceil(0.25 * exact.windows)
    ran = (drilled.grid - exact.grid).abs() <= 1e-9 * float(exact.grid.abs().max())
    assert int(ran.sum()) >= drilled.windows  # shared + drilled windows are exact (others estimated)
    # drilling into every window is the exact map, with each window run once
    everything = net.occlusion(x, 1, result=True, drill_down=1.0, **options)
    torch.testing.assert_close(everything.grid, exact.grid)
    assert everything.windows == exact.windows
    # tau = 1 cuts nothing
    torch.testing.assert_close(net.occlusion(x, 1, result=True, approx=1.0, **options).grid, exact.grid)


def test_drill_down_runs_the_windows_whose_neighbours_disagree_most():
    net, x = network(torchvision_model("resnet18"), 48), image(48, 8)  # 48 - 12 = 36: the first pass lands on fine corners
    options = {"window": 12, "stride": 6, "quantity": "logit", "progress": False, "result": True}
    exact = net.occlusion(x, 2, **options).grid.double()
    drilled = net.occlusion(x, 2, drill_down=0.2, **options).grid.double()
    nh, nw = exact.shape
    # loop reference: the first pass (stride 12) holds the even corners; a window's neighbours are
    # the first-pass windows less than 12 pixels away along both axes
    spread = {}
    for i in range(nh):
        for j in range(nw):
            if i % 2 == 0 and j % 2 == 0:
                continue
            near = [exact[a, b] for a in range(0, nh, 2) for b in range(0, nw, 2)
                    if abs(a - i) * 6 < 12 and abs(b - j) * 6 < 12]
            spread[(i, j)] = float(max(near) - min(near))
    keep = math.ceil(0.2 * exact.numel())
    cut = sorted(spread.values())[-keep]  # windows sharing their neighbours' extremes can tie at the cut
    ran = {c for c in spread if abs(drilled[c].item() - exact[c].item()) <= 1e-9 * float(exact.abs().max())}
    assert len(ran) == keep  # the estimates of the others are not the exact values on this input
    assert {c for c in spread if spread[c] > cut} <= ran  # every window above the cut was run ...
    assert all(spread[c] >= cut for c in ran)  # ... and none below it


def test_callback_sees_every_batch_and_partial_maps():
    net, x = network(Geometry(), 31), image(31, 7)
    seen = []
    heat = net.occlusion(x, 0, window=5, stride=3, batch_size=20, progress=False,
                         callback=lambda done, total, partial: seen.append((done, total, partial.clone())))
    assert [s[0] for s in seen] == [20, 40, 60, 80, 100] and {s[1] for s in seen} == {100}
    assert torch.isnan(seen[0][2]).any() and not torch.isnan(seen[-1][2]).any()
    torch.testing.assert_close(seen[-1][2], heat)


def test_callback_can_stop_and_model_is_unchanged():
    model = Geometry()
    model.train()
    net, x = network(model, 31), image(31, 8)
    model.train()
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def stop(done, total, partial):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.occlusion(x, 0, window=5, stride=3, batch_size=20, callback=stop)
    assert hook_count(model) == 0 and [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert model.relu.inplace


@pytest.mark.parametrize(
    "options, match",
    [
        ({"approx": 0}, "approx"), ({"approx": 1.5}, "approx"), ({"approx": "half"}, "approx"),
        ({"drill_down": 0}, "drill_down"), ({"drill_down": 2}, "drill_down"),
        ({"execution": "fast"}, "incremental"), ({"callback": 3}, "callback"),
        ({"result": "yes"}, "result"), ({"compare": 1}, "compare"), ({"grid": None}, "grid"),
    ],
)
def test_bad_options_raise_option_error(options, match):
    model = Geometry()
    net, x = network(model, 31), image(31, 9)
    with pytest.raises(OptionError, match=match):
        net.occlusion(x, 0, window=5, stride=3, **options)
    assert hook_count(model) == 0
