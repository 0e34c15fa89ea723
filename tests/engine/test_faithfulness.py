"""net.faithfulness: deletion and insertion curves (RISE) against loop references and a closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.errors import OptionError
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.targets import Direction

SIZE = 6


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/engine/conftest.py


def linear_net():
    torch.manual_seed(0)
    identity = nn.Conv2d(3, 3, 1, bias=False)  # (the engine explores CNNs: a convolution that changes nothing)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    model = nn.Sequential(identity, nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 3)).double().eval()
    return cw.Network(model, preprocess=lambda img: torch.zeros(3, SIZE, SIZE, dtype=torch.float64))


def conv_net():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).double().eval()
    return cw.Network(model, preprocess=lambda img: torch.zeros(3, SIZE, SIZE, dtype=torch.float64))


def image(seed=2):
    return torch.randn(3, SIZE, SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def order_of(values: np.ndarray) -> np.ndarray:
    """Most important first, ties in raster order (numpy's stable sort of the negated values)."""
    return np.argsort(-values.ravel(), kind="stable")


def test_deletion_of_a_linear_model_follows_the_closed_form():
    """logit_c(x) = w_c . x + b_c: deleting pixel set S to a zero baseline leaves b_c + sum over the
    kept pixels of w_c x; input x gradient's importance of a pixel is sum_channels |w_c x|."""
    net, x = linear_net(), image()
    target = 1
    result = net.faithfulness(x, target, methods=["input_x_gradient"], steps=9, baseline="zero", quantity="logit")
    w = net.model[2].weight.detach()[target].view(3, SIZE, SIZE).numpy()
    b = float(net.model[2].bias.detach()[target])
    terms = (w * x.numpy())  # [3, H, W]
    order = order_of(np.abs(terms).sum(0))
    pixels = SIZE * SIZE
    expected = []
    for i in range(10):
        gone = order[: round(i * pixels / 9)]
        kept = np.ones(pixels, bool)
        kept[gone] = False
        expected.append(b + terms.reshape(3, -1)[:, kept].sum())
    np.testing.assert_allclose(result.curves["input_x_gradient"].double().numpy(), expected, rtol=1e-5, atol=1e-5)
    fractions = np.array([round(i * pixels / 9) / pixels for i in range(10)])
    np.testing.assert_allclose(result.fractions.numpy(), fractions)
    assert result.auc["input_x_gradient"] == pytest.approx(np.trapezoid(expected, fractions), rel=1e-5)
    assert expected[-1] == pytest.approx(b)  # everything deleted: the bias alone


@pytest.mark.parametrize("metric, baseline", [("insertion", "mean"), ("deletion", "blur"), ("insertion", "zero")])
def test_curves_equal_a_loop_over_steps_on_a_convnet(metric, baseline):
    net, x = conv_net(), image(3)
    result = net.faithfulness(x, None, methods=["gradient", "grad_cam"], metric=metric, steps=7, baseline=baseline,
                              batch_size=3)
    top = int(net.model(x[None]).argmax())
    assert result.target.index == top
    base = cw.engine.occlusion.occlusion_fill(x[None], baseline, window=20)[0]
    for method in ("gradient", "grad_cam"):
        attribution = net.saliency(x, top, method=method)
        values = attribution.abs().sum(0) if attribution.dim() == 3 else attribution
        order = order_of(values.numpy())
        expected = []
        for i in range(8):
            chosen = np.zeros(SIZE * SIZE, bool)
            chosen[order[: round(i * SIZE * SIZE / 7)]] = True
            mask = torch.from_numpy(chosen.reshape(SIZE, SIZE))
            step = torch.where(mask, x, base) if metric == "insertion" else torch.where(mask, base, x)
            with torch.no_grad():
                expected.append(float(net.model(step[None]).softmax(1)[0, top]))
        np.testing.assert_allclose(result.curves[method].double().numpy(), expected, rtol=1e-5, atol=1e-6)
        assert 0 <= result.auc[method] <= 1


def test_batches_do_not_change_the_curve_and_a_unit_target_works():
    net, x = conv_net(), image(4)
    a = net.faithfulness(x, cw.Unit("2", 1), methods=["guided_backprop"], steps=5, batch_size=1)
    b = net.faithfulness(x, cw.Unit("2", 1), methods=["guided_backprop"], steps=5, batch_size=16)
    torch.testing.assert_close(a.curves["guided_backprop"], b.curves["guided_backprop"])
    assert a.quantity == "unit value"
    order = order_of(net.saliency(x, cw.Unit("2", 1), method="guided_backprop").abs().sum(0).numpy())
    base = cw.engine.occlusion.occlusion_fill(x[None], "blur", window=20)[0]
    mask = torch.zeros(SIZE * SIZE, dtype=torch.bool)
    mask[torch.from_numpy(order[: round(2 * SIZE * SIZE / 5)].copy())] = True
    with torch.no_grad():
        unit = net.model[:3](torch.where(mask.view(SIZE, SIZE), base, x)[None])[0, 1].sum()
    assert float(a.curves["guided_backprop"][2]) == pytest.approx(float(unit), rel=1e-5)
    assert "deletion AUC" in a.table()


@pytest.mark.parametrize("options, match", [
    ({"metric": "delete"}, "metric"), ({"steps": 0}, "steps"), ({"baseline": "noise"}, "baseline"),
    ({"methods": ["deeplift"]}, "method"), ({"methods": []}, "empty"), ({"quantity": "odds"}, "quantity"),
    ({"batch_size": 0}, "batch_size"), ({"step": 3}, "did you mean 'steps'"),
])
def test_bad_options_raise_option_error_and_change_nothing(options, match):
    net = conv_net()
    state = {k: v.clone() for k, v in net.model.state_dict().items()}
    with pytest.raises(OptionError, match=match):
        net.faithfulness(image(), **options)
    assert all(torch.equal(state[k], v) for k, v in net.model.state_dict().items())
    assert hook_count(net.model) == 0 and not net.model.training


def test_a_direction_target_is_refused():
    net = conv_net()
    with pytest.raises(OptionError, match="direction"):
        net.faithfulness(image(), Direction("2", torch.ones(4, dtype=torch.float64)), methods=["gradient"])


# --------------------------------------------------------------------------------------------
# ROAD: noisy linear imputation (Rong et al. 2022)
# --------------------------------------------------------------------------------------------

def dense_imputation(x: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The paper's equations written out pixel by pixel and solved densely: each removed pixel is
    the mean of its neighbours inside the image, edges weighted 1/6 and diagonals 1/12."""
    c, h, w = x.shape
    unknown = [(r, q) for r in range(h) for q in range(w) if removed[r, q]]
    if len(unknown) == h * w:
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).copy()
    number = {p: i for i, p in enumerate(unknown)}
    a, b = np.zeros((len(unknown), len(unknown))), np.zeros((len(unknown), c))
    for i, (r, q) in enumerate(unknown):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                rr, qq = r + dy, q + dx
                if (dy, dx) == (0, 0) or not (0 <= rr < h and 0 <= qq < w):
                    continue
                weight = 1 / 12 if dy and dx else 1 / 6
                a[i, i] += weight
                if removed[rr, qq]:
                    a[i, number[(rr, qq)]] -= weight
                else:
                    b[i] += weight * x[:, rr, qq]
    out = x.copy()
    solution = np.linalg.solve(a, b)
    for i, (r, q) in enumerate(unknown):
        out[:, r, q] = solution[i]
    return out


@pytest.mark.parametrize("share", [0.1, 0.5, 0.95, 1.0])
def test_noisy_linear_imputation_solves_the_neighbour_equations(share):
    from cnn_widgets.engine.road import noisy_linear_imputation

    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7, 6))
    removed = np.zeros(42, bool)
    removed[rng.permutation(42)[: round(share * 42)]] = True
    removed = removed.reshape(7, 6)
    removed[0, 0] = removed[6, 3] = True  # a corner and an edge pixel: weights renormalised inside
    ours = noisy_linear_imputation(torch.from_numpy(x), torch.from_numpy(removed), noise=0.0).numpy()
    np.testing.assert_allclose(ours, dense_imputation(x, removed), rtol=0, atol=1e-12)
    assert np.array_equal(ours[:, ~removed], x[:, ~removed])  # kept pixels bit for bit


def test_imputation_noise_is_seeded_gaussian_on_removed_pixels_only():
    from cnn_widgets.engine.road import noisy_linear_imputation

    x = torch.randn(3, 48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    removed = torch.rand(48, 48, generator=torch.Generator().manual_seed(7)) < 0.5
    clean = noisy_linear_imputation(x, removed, noise=0.0)
    noisy = noisy_linear_imputation(x, removed, noise=0.01, generator=torch.Generator().manual_seed(3))
    again = noisy_linear_imputation(x, removed, noise=0.01, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again) and torch.equal(noisy[:, ~removed], x[:, ~removed])
    drawn = (noisy - clean)[:, removed]
    assert drawn.numel() > 3000
    assert float(drawn.std()) == pytest.approx(0.01, rel=0.05) and abs(float(drawn.mean())) < 1e-3


def removal_order(values: np.ndarray, least_first: bool) -> np.ndarray:
    """Raster-order ties either way (a stable sort of the values or of their negation)."""
    return np.argsort(values.ravel() if least_first else -values.ravel(), kind="stable")


@pytest.mark.parametrize("metric", ["road", "road_lerf"])
def test_road_curves_equal_a_loop_of_dense_imputations(metric):
    net, x = conv_net(), image(8)
    state = {k: v.clone() for k, v in net.model.state_dict().items()}
    result = net.faithfulness(x, None, methods=["gradient", "grad_cam"], metric=metric, steps=6, noise=0.0,
                              batch_size=4)
    assert all(torch.equal(state[k], v) for k, v in net.model.state_dict().items())
    assert hook_count(net.model) == 0 and not net.model.training
    top = int(net.model(x[None]).argmax())
    assert result.baseline == "noisy linear imputation" and result.target.index == top
    for method in ("gradient", "grad_cam"):
        attribution = net.saliency(x, top, method=method)
        values = (attribution.abs().sum(0) if attribution.dim() == 3 else attribution).numpy()
        order = removal_order(values, metric == "road_lerf")
        expected = []
        for i in range(7):
            removed = np.zeros(SIZE * SIZE, bool)
            removed[order[: round(i * SIZE * SIZE / 6)]] = True
            step = torch.from_numpy(dense_imputation(x.numpy(), removed.reshape(SIZE, SIZE)))
            with torch.no_grad():
                expected.append(float(net.model(step[None]).softmax(1)[0, top]))
        np.testing.assert_allclose(result.curves[method].double().numpy(), expected, rtol=1e-6, atol=1e-7)  # float32 curves
    assert ("lower" in result.table()) == (metric == "road")


def test_road_noise_is_reproducible_and_does_not_depend_on_batches():
    net, x = conv_net(), image(9)
    one = net.faithfulness(x, 0, methods=["gradient"], metric="road", steps=5, batch_size=1, seed=4)
    many = net.faithfulness(x, 0, methods=["gradient"], metric="road", steps=5, batch_size=16, seed=4)
    other = net.faithfulness(x, 0, methods=["gradient"], metric="road", steps=5, seed=5)
    clean = net.faithfulness(x, 0, methods=["gradient"], metric="road", steps=5, noise=0.0)
    torch.testing.assert_close(one.curves["gradient"], many.curves["gradient"], rtol=0, atol=0)
    assert not torch.equal(one.curves["gradient"], other.curves["gradient"])
    assert float(one.curves["gradient"][0]) == float(clean.curves["gradient"][0])  # nothing removed: no noise
    # noise of 0.01 moves a probability of this smooth model only a little
    torch.testing.assert_close(one.curves["gradient"], clean.curves["gradient"], rtol=0, atol=0.02)


@pytest.mark.parametrize("options, match", [
    ({"metric": "road_morf"}, "did you mean 'road_lerf', 'road'"), ({"metric": "road", "noise": -0.1}, "noise"),
    ({"metric": "road", "seed": -1}, "seed"), ({"metric": "road", "noise": float("nan")}, "noise"),
])
def test_bad_road_options_raise_option_error_and_change_nothing(options, match):
    net = conv_net()
    state = {k: v.clone() for k, v in net.model.state_dict().items()}
    with pytest.raises(OptionError, match=match):
        net.faithfulness(image(), methods=["gradient"], **options)
    assert all(torch.equal(state[k], v) for k, v in net.model.state_dict().items())
    assert hook_count(net.model) == 0 and not net.model.training


def test_ctrl_c_keeps_the_whole_curves_and_a_callback_sees_each_method():
    net, x = conv_net(), image()
    seen = []

    def callback(done, total, partial):
        seen.append((done, total, list(partial.methods)))
        if done == 2:
            raise KeyboardInterrupt

    methods = ["gradient", "input_x_gradient", "guided_backprop"]
    got = net.faithfulness(x, 0, methods=methods, steps=6, baseline="zero", callback=callback, progress=False)
    assert seen == [(1, 3, ["gradient"]), (2, 3, ["gradient", "input_x_gradient"])]
    assert got.interrupted and got.methods == ["gradient", "input_x_gradient"] and set(got.curves) == set(got.methods)
    whole = net.faithfulness(x, 0, methods=methods[:2], steps=6, baseline="zero")
    for method in got.methods:  # the curves kept are the whole ones
        assert torch.equal(got.curves[method], whole.curves[method]) and got.auc[method] == whole.auc[method]
    assert not whole.interrupted and hook_count(net.model) == 0
