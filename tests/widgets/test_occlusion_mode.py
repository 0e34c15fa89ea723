"""The occlusion panel's "fast" mode: Krypton's adaptive drill-down, approximate and saying so."""

import math

import numpy as np
import pytest
import torch
from traitlets import TraitError

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.occlusion import window_positions
from cnn_widgets.widgets.panels.occlusion import FAST_DRILL_DOWN, OCCLUSION_MODES

WINDOW, STRIDE = 56, 28  # 7 x 7 windows on the 224 px input; the first pass at stride 56 runs 4 x 4


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_fast_mode_runs_fewer_windows_and_stays_close_to_the_exact_map(net):
    explorer = cw.Explorer(net, window=WINDOW, stride=STRIDE)
    explorer.compute()
    exact_info = dict(explorer.occlusion_info)
    target = net.top_class(explorer.image)
    # the exact map, by the whole network per occluded copy: independent of the incremental engine
    full = net.occlusion(explorer.image, target, window=WINDOW, stride=STRIDE, fill="mean", execution="full")
    torch.testing.assert_close(explorer.panels["occlusion"].heat, full, rtol=0, atol=5e-5 * float(full.abs().max()))
    assert exact_info["mode"] == "exact" and exact_info["done"] == exact_info["total"] == 49

    explorer.occlusion_mode = "fast"
    explorer.compute()
    info = explorer.occlusion_info
    coarse = [len(p) for p in window_positions((224, 224), WINDOW, 2 * STRIDE)]
    shared = 16  # the first pass's corners 0, 56, 112, 168 are corners of the stride-28 grid too
    assert coarse == [4, 4]
    expected_runs = coarse[0] * coarse[1] + min(math.ceil(FAST_DRILL_DOWN * 49), 49 - shared)
    assert info["mode"] == "fast" and info["done"] == info["total"] == expected_runs < 49
    fast = explorer.panels["occlusion"].heat
    assert not torch.allclose(fast, full)  # approximate ...
    # ... but near the exact map: 0.70 here, where only 5 of 49 windows are refined (0.81-0.97 on
    # the benchmark's grids of 169 and 729 windows)
    assert correlation(fast, full) > 0.6

    explorer.occlusion_mode = "exact"  # back to every window: the exact map again
    explorer.compute()
    torch.testing.assert_close(explorer.panels["occlusion"].heat, full, rtol=0, atol=5e-5 * float(full.abs().max()))
    assert hook_count(net.model) == 0


def test_the_modes_reach_the_front_end_and_a_bad_one_is_refused(net):
    explorer = cw.Explorer(net, window=112, stride=112)
    menu = dict(map(tuple, explorer.choices["options"]["occlusion_mode"]))
    assert menu == OCCLUSION_MODES
    with pytest.raises(TraitError, match="occlusion_mode"):
        explorer.occlusion_mode = "fastest"
    assert explorer.occlusion_mode == "exact"
    assert np.asarray(explorer.occlusion).shape == (224, 224)


class _SqueezeExcite(torch.nn.Module):
    """A convolution, a squeeze-and-excitation gate (global pooling), then a larger convolution."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.squeeze, self.excite = torch.nn.Linear(4, 2), torch.nn.Linear(2, 4)
        self.body = torch.nn.Conv2d(4, 32, 3, padding=1)
        self.head = torch.nn.Linear(32, 5)

    def forward(self, x):
        x = self.stem(x).relu()
        gate = torch.sigmoid(self.excite(self.squeeze(x.mean((2, 3))).relu()))
        return self.head(self.body(x * gate[:, :, None, None]).relu().mean((2, 3)))


def test_the_panel_runs_every_window_in_full_where_incremental_inference_saves_nothing():
    """Behind a squeeze-and-excitation gate the panel's occlusion runs the whole network per window
    (method "auto") and draws the same map as ``method="full"``."""
    torch.manual_seed(3)

    def preprocess(image):
        array = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.float32) / 255
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    se = cw.Network(_SqueezeExcite().eval(), preprocess=preprocess)
    explorer = cw.Explorer(se, window=8, stride=4)
    explorer.compute()
    assert explorer.occlusion_info["method"] == "full" and explorer.occlusion_info["total"] == 49
    full = se.occlusion(explorer.image, se.top_class(explorer.image), window=8, stride=4, fill="mean", execution="full")
    torch.testing.assert_close(explorer.panels["occlusion"].heat, full, rtol=0, atol=1e-6 * float(full.abs().max()))
    assert hook_count(se.model) == 0
