"""Occlusion against a plain loop, captum's Occlusion and the closed form of a linear model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.errors import CnnWidgetsError
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.occlusion import occlusion_fill
from cnn_widgets.engine.saliency import OptionError
from occlusion_loop import loop_reference



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small inputs: one intra-op thread is about as fast on an idle machine, and never stalls on a
    loaded one (two OpenMP threads waiting on each other). What the tests compare is unchanged."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

SIZE = 20


class TinyNet(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)  # reused, in place
        self.conv2 = nn.Conv2d(5, 6, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)
        self.interrupt_after: int | None = None
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


class LinearNet(nn.Module):
    """logits = W x + b: one convolution whose kernel covers the whole image."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, classes, SIZE)

    def forward(self, x):
        return self.conv(x).flatten(1)


def make(cls, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls().double().eval()


def wrap(model: nn.Module) -> cw.Network:
    return cw.Network(model, preprocess=lambda img: torch.zeros(3, SIZE, SIZE))


def image(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, SIZE, SIZE, generator=g, dtype=torch.float64)


def probability(model, index):
    def f(x):
        with torch.no_grad():
            return float(model(x[None]).softmax(1)[0, index])

    return f


def snapshot(model):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def assert_unchanged(model, before):
    training, grads, state = before
    assert hook_count(model) == 0
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


# ------------------------------------------------------------------------------------------ references


@pytest.mark.parametrize("fill", ["zero", "mean", "blur"])
@pytest.mark.parametrize("window, stride", [(6, 3), (5, 5), (8, 5), (4, 4), (9, 9)])  # (6, 3), (8, 5), (9, 9): a border left over
def test_equals_loop_reference(fill, window, stride):
    model = make(TinyNet)
    net, x = wrap(model), image()
    if fill == "zero":
        fill_image = torch.zeros_like(x)
    elif fill == "mean":
        fill_image = x.mean(dim=(1, 2), keepdim=True).expand_as(x)
    else:
        from scipy.ndimage import gaussian_filter

        # independent blur: scipy, sigma = window / 4 per channel, edge pixels repeated
        fill_image = torch.from_numpy(
            np.stack([gaussian_filter(c.numpy(), sigma=window / 4, mode="nearest", truncate=3.0) for c in x])
        )
    grid_ref, heat_ref = loop_reference(probability(model, 2), x, fill_image, window, stride)
    grid = net.occlusion(x, 2, window=window, stride=stride, fill=fill, grid=True, batch_size=4)
    heat = net.occlusion(x, 2, window=window, stride=stride, fill=fill, batch_size=5)
    assert grid.shape == grid_ref.shape and heat.shape == (SIZE, SIZE)
    assert grid.abs().max() > 0
    torch.testing.assert_close(grid, grid_ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(heat, heat_ref, rtol=1e-9, atol=1e-12)


def test_blur_fill_equals_scipy():
    from scipy.ndimage import gaussian_filter

    x = image(2)
    for window in (4, 8, 12):
        ours = occlusion_fill(x[None], "blur", window)[0]
        theirs = np.stack([gaussian_filter(c.numpy(), sigma=window / 4, mode="nearest", truncate=3.0) for c in x])
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fill", ["zero", "mean"])
@pytest.mark.parametrize("quantity", ["probability", "logit"])
@pytest.mark.parametrize("window, stride", [(6, 2), (6, 4), (7, 5), (3, 3)])  # all but the first leave a border
def test_equals_captum_occlusion(fill, quantity, window, stride):
    captum_attr = pytest.importorskip("captum.attr")
    model = make(TinyNet)
    net, x = wrap(model), image(3)
    baseline = torch.zeros_like(x) if fill == "zero" else x.mean(dim=(1, 2), keepdim=True).expand_as(x).contiguous()

    def forward(batch):
        out = model(batch)
        return out.softmax(1) if quantity == "probability" else out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum_attr.Occlusion(forward).attribute(
            x[None], sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=baseline[None],
            target=1, perturbations_per_eval=8,
        )[0]
    ours = net.occlusion(x, 1, window=window, stride=stride, fill=fill, quantity=quantity, batch_size=8)
    # captum spreads the drop over all 3 channels equally and returns float32
    torch.testing.assert_close(theirs[0].double(), theirs[2].double())
    torch.testing.assert_close(ours, theirs[0].to(ours.dtype), rtol=1e-5, atol=1e-7)


def test_linear_model_disjoint_windows_give_w_dot_x_pieces():
    model = make(LinearNet)
    net, x = wrap(model), image(4)
    w = model.conv.weight[1].detach()  # [3, SIZE, SIZE]
    grid = net.occlusion(x, 1, window=5, stride=5, fill="zero", quantity="logit", grid=True)
    pieces = (w * x).view(3, 4, 5, 4, 5).sum(dim=(0, 2, 4))
    torch.testing.assert_close(grid, pieces, rtol=1e-12, atol=1e-12)
    assert torch.isclose(grid.sum(), (w * x).sum())  # disjoint windows tile the image
    # mean fill: the drop is w . (x - mean) over the window
    mean = x.mean(dim=(1, 2), keepdim=True)
    grid = net.occlusion(x, 1, window=10, stride=10, fill="mean", quantity="logit", grid=True)
    pieces = (w * (x - mean)).view(3, 2, 10, 2, 10).sum(dim=(0, 2, 4))
    torch.testing.assert_close(grid, pieces, rtol=1e-12, atol=1e-12)
    # heat map of disjoint windows: each pixel holds its own window's drop
    heat = net.occlusion(x, 1, window=10, stride=10, fill="mean", quantity="logit")
    torch.testing.assert_close(heat, pieces.repeat_interleave(10, 0).repeat_interleave(10, 1))


@pytest.mark.parametrize("size", [(20, 20), (23, 17), (31, 29)])
@pytest.mark.parametrize("window, stride", [(4, 3), (6, 4), (7, 7), (5, 1), (8, 5)])
def test_every_pixel_is_covered(size, window, stride):
    """Each pixel lies in a window, the border ones too, whatever (size - window) % stride is."""
    height, width = size
    net = cw.Network(make(TinyNet), preprocess=lambda img: torch.zeros(3, height, width))
    x = torch.randn(3, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    grid = net.occlusion(x, 0, window=window, stride=stride, fill="zero", grid=True)
    count = torch.zeros(size, dtype=torch.int64)
    top_count, left_count = grid.shape
    for i in range(top_count):
        for j in range(left_count):
            count[i * stride : i * stride + window, j * stride : j * stride + window] += 1
    assert count.min() >= 1, f"uncovered pixels: {(count == 0).nonzero().tolist()[:5]}"
    assert (top_count - 1) * stride < height <= (top_count - 1) * stride + window  # the last one reaches the border
    heat = net.occlusion(x, 0, window=window, stride=stride, fill="zero")
    assert heat.shape == size and torch.isfinite(heat).all()
    # the bottom-right corner pixel holds exactly the last window's drop (it lies in no other window)
    if (height - window) % stride and (width - window) % stride:
        torch.testing.assert_close(heat[-1, -1], grid[-1, -1])


def test_stride_larger_than_window_is_refused():
    model = make(TinyNet)
    net, x = wrap(model), image(5)
    before = snapshot(model)
    with pytest.raises(OptionError, match="stride 7 is larger than the window 4"):
        net.occlusion(x, 0, window=4, stride=7)
    assert_unchanged(model, before)
    # one window spanning the whole input has nowhere to step: any stride is fine
    assert net.occlusion(x, 0, window=SIZE, stride=SIZE + 5, grid=True).shape == (1, 1)


# ------------------------------------------------------------------------------------------ targets


def test_unit_target_is_the_drop_of_the_unit():
    model = make(TinyNet)
    net, x = wrap(model), image(6)
    for reduce in ("sum", "max"):
        unit = cw.Unit("conv2", 4, reduce=reduce)

        def f(img):
            with torch.no_grad():
                fmap = model.conv2(torch.relu(model.conv1(img[None])))[0, 4]
            return float(fmap.sum() if reduce == "sum" else fmap.max())

        grid_ref, heat_ref = loop_reference(f, x, torch.zeros_like(x), 6, 4)
        grid = net.occlusion(x, unit, window=6, stride=4, fill="zero", grid=True)
        torch.testing.assert_close(grid, grid_ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(net.occlusion(x, unit, window=6, stride=4, fill="zero"), heat_ref, rtol=1e-9, atol=1e-12)


def test_target_none_is_top_class():
    model = make(TinyNet)
    net, x = wrap(model), image(7)
    top = int(model(x[None]).argmax())
    torch.testing.assert_close(net.occlusion(x, None, window=6, stride=4), net.occlusion(x, top, window=6, stride=4))


# ------------------------------------------------------------------------------------------ state, errors, progress


def test_model_unchanged_and_progress_bar(capsys):
    model = make(TinyNet)
    model.train()
    model.fc.bias.requires_grad_(False)
    net, x = wrap(model), image(8)
    before = snapshot(model)
    heat = net.occlusion(x, 0, window=3, stride=1, batch_size=64, progress=True)  # 324 windows
    assert heat.shape == (SIZE, SIZE) and not heat.requires_grad
    assert "occlusion" in capsys.readouterr().err
    assert_unchanged(model, before)


def test_keyboard_interrupt_propagates_and_restores():
    model = make(TinyNet)
    model.train()
    net, x = wrap(model), image(9)
    net.layers, net.num_classes  # discovery runs forward passes too
    before = snapshot(model)
    model.calls, model.interrupt_after = 0, 1  # the second batch is interrupted
    with pytest.raises(KeyboardInterrupt):
        net.occlusion(x, 0, window=4, stride=2, batch_size=10, progress=True, execution="full")  # one model call per batch
    assert model.calls == 2
    assert_unchanged(model, before)
    model.interrupt_after = None
    assert net.occlusion(x, 0, window=4, stride=2).abs().max() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 0}, "window must be a positive integer"),
        ({"window": 2.5}, "window must be a positive integer"),
        ({"stride": 0}, "stride must be a positive integer"),
        ({"window": SIZE + 1}, f"at most {SIZE}"),
        ({"fill": "grey"}, "zero"),
        ({"quantity": "prob"}, "logit"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options(kwargs, match):
    model = make(TinyNet)
    net, x = wrap(model), image(10)
    before = snapshot(model)
    options = {"window": 4, "stride": 4, **kwargs}
    with pytest.raises(OptionError, match=match) as info:
        net.occlusion(x, 0, **options)
    assert isinstance(info.value, CnnWidgetsError)
    assert_unchanged(model, before)


def test_window_equal_to_image():
    model = make(TinyNet)
    net, x = wrap(model), image(11)
    grid = net.occlusion(x, 3, window=SIZE, stride=1, fill="zero", quantity="logit", grid=True)
    with torch.no_grad():
        expected = model(x[None])[0, 3] - model(torch.zeros_like(x)[None])[0, 3]
    assert grid.shape == (1, 1)
    torch.testing.assert_close(grid[0, 0], expected)


def test_the_old_method_keyword_still_works_with_a_deprecation_warning():
    """``method`` means the explanation method everywhere else; occlusion's execution strategy is ``execution``."""
    torch.manual_seed(0)
    net = cw.Network(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                         torch.nn.Flatten(), torch.nn.Linear(4, 3)), input_size=16,
                     preprocess=lambda im: torch.from_numpy(np.asarray(im.resize((16, 16)), dtype=np.float32) / 255).permute(2, 0, 1))
    image = cw.sample_image("cat")
    new = net.occlusion(image, 1, window=4, stride=4, execution="full")
    with pytest.warns(DeprecationWarning, match="execution="):
        old = net.occlusion(image, 1, window=4, stride=4, method="full")
    torch.testing.assert_close(old, new, rtol=0, atol=0)
    with pytest.raises(cw.OptionError, match="execution"):
        net.occlusion(image, 1, window=4, stride=4, execution="fast")
