"""An exact occlusion run's first pass (every pixel covered, then refined in place), its table of
every class's or channel's drops, and the clean pass kept between runs (never stale)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.occlusion import first_pass, window_positions
from test_incremental_occlusion import Geometry, image, network


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/engine/conftest.py


def fewest_covering(starts: list[int], window: int, n: int) -> int:
    """Brute force: the fewest of ``starts`` whose windows cover pixels ``0..n-1``."""
    for k in range(1, len(starts) + 1):
        for chosen in itertools.combinations(starts, k):
            if all(any(s <= p < s + window for s in chosen) for p in range(n)):
                return k
    raise AssertionError("the windows do not cover the side")


@pytest.mark.parametrize("n, window, stride", [(224, 48, 24), (224, 32, 16), (31, 5, 3), (40, 8, 2), (50, 9, 4),
                                               (17, 17, 1), (29, 6, 5), (64, 16, 16)])
def test_first_pass_covers_every_pixel_with_the_fewest_windows(n, window, stride):
    tops, lefts = first_pass((n, n), window, stride)
    starts = window_positions((n, n), window, stride)[0]
    assert tops == lefts and set(tops) <= set(starts) and tops == sorted(tops)
    assert all(any(s <= p < s + window for s in tops) for p in range(n))
    assert len(tops) == fewest_covering(starts, window, n)


def test_first_pass_of_the_explorers_default_is_every_other_window():
    assert first_pass((224, 224), 48, 24) == ([0, 48, 96, 144, 192], [0, 48, 96, 144, 192])


def mean_of_done(grid: torch.Tensor, done: torch.Tensor, window: int, stride: int, size: int) -> torch.Tensor:
    """Loop reference: every pixel's mean drop over the windows done that cover it (NaN where none)."""
    total, count = torch.zeros(size, size, dtype=grid.dtype), torch.zeros(size, size, dtype=grid.dtype)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if done[i, j]:
                total[i * stride:i * stride + window, j * stride:j * stride + window] += grid[i, j]
                count[i * stride:i * stride + window, j * stride:j * stride + window] += 1
    return torch.where(count > 0, total / count, torch.nan)


@pytest.mark.parametrize("execution", ["incremental", "full"])
def test_an_exact_run_is_whole_after_its_first_pass_and_ends_on_the_exact_map(execution):
    size, window, stride = 40, 8, 2  # 17 x 17 windows; first pass 5 x 5
    net, x = network(Geometry(), size), image(size, 3)
    full = net.occlusion(x, 1, window=window, stride=stride, grid=True, execution="full", progress=False)
    seen = []
    result = net.occlusion(x, 1, window=window, stride=stride, batch_size=7, execution=execution, progress=False,
                           result=True, callback=lambda done, total, heat: seen.append((done, heat.clone())))
    tops, lefts = first_pass((size, size), window, stride)
    assert result.first_pass == len(tops) * len(lefts) == 25
    starts = window_positions((size, size), window, stride)[0]
    first = torch.zeros(len(starts), len(starts), dtype=torch.bool)
    first[[starts.index(t) for t in tops], :] = True
    first[:, [i for i, s in enumerate(starts) if s not in lefts]] = False
    order = [i for i in range(first.numel()) if first.view(-1)[i]] + [i for i in range(first.numel()) if not first.view(-1)[i]]
    dones = [done for done, _ in seen]
    assert 25 in dones and dones[-1] == first.numel() and dones == sorted(dones)
    for done, heat in seen:
        mask = torch.zeros(first.numel(), dtype=torch.bool)
        mask[order[:done]] = True
        torch.testing.assert_close(heat, mean_of_done(full, mask.view_as(first), window, stride, size), equal_nan=True)
        assert torch.isnan(heat).any() == (done < 25)  # a whole picture from the first pass on
    torch.testing.assert_close(seen[-1][1], result.heat)
    torch.testing.assert_close(result.grid, full, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("target, quantity", [(2, "logit"), (0, "probability"), (cw.Unit("wide", 3), "logit"),
                                              (cw.Unit("wide", 1, reduce="max"), "logit"),
                                              (cw.Unit("conv1", 4, (5, 7)), "logit")])
def test_the_table_holds_every_class_or_channel_as_its_own_run_would(target, quantity):
    size = 24
    net, x = network(Geometry(), size), image(size, 5)
    result = net.occlusion(x, target, window=6, stride=3, quantity=quantity, table=True, result=True, progress=False)
    columns = net.num_classes if isinstance(target, int) else net.layer(target.layer).channels
    assert result.table.shape == (*result.grid.shape, columns)
    for c in range(columns):
        other = c if isinstance(target, int) else cw.Unit(target.layer, c, target.position, reduce=target.reduce)
        alone = net.occlusion(x, other, window=6, stride=3, quantity=quantity, grid=True, execution="full", progress=False)
        torch.testing.assert_close(result.table[..., c], alone, rtol=1e-9, atol=1e-12)
    own = target if isinstance(target, int) else target.channel
    torch.testing.assert_close(result.table[..., own], result.grid, rtol=0, atol=0)


def test_no_table_with_drill_down():
    net, x = network(Geometry(), 24), image(24, 5)
    result = net.occlusion(x, 1, window=6, stride=3, drill_down=0.5, table=True, result=True, progress=False)
    assert result.table is None


def test_the_kept_clean_pass_follows_the_image_and_the_weights():
    size = 24
    model = Geometry()
    net = network(model, size)
    x, y = image(size, 1), image(size, 2)

    def both(z):
        incremental = net.occlusion(z, 0, window=6, stride=3, result=True, execution="incremental", progress=False)
        full = net.occlusion(z, 0, window=6, stride=3, grid=True, execution="full", progress=False)
        assert incremental.method == "incremental"
        torch.testing.assert_close(incremental.grid, full, rtol=1e-9, atol=1e-12)
        return full

    first = both(x)
    both(x)  # the same image: the kept clean pass
    assert not torch.allclose(both(y), first)  # another image
    with torch.no_grad():
        model.wide.weight.mul_(-2.0)  # in place: same storage, new version
        model.bn.running_mean.add_(0.5)
    assert not torch.allclose(both(y), first)
    z = y.clone()
    z[0, 3, 4] += 1.0  # same shape, one value differs
    both(z)
    both(y.float().double())  # equal values in a new tensor: reuses, and must still be exact


def test_a_failed_run_leaves_no_hook_and_the_model_as_it_was():
    net, x = network(Geometry(), 24), image(24, 5)
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    with pytest.raises(RuntimeError, match="stop"):
        net.occlusion(x, 1, window=6, stride=3, table=True, progress=False,
                      callback=lambda *a: (_ for _ in ()).throw(RuntimeError("stop")))
    assert not net.model.training and all(torch.equal(before[k], v) for k, v in net.model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.model.modules())
    assert isinstance(net.model, nn.Module)
