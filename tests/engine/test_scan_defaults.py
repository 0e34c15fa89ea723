"""The default layers of a scan leave out the layers whose top images another scanned layer shows.

The claim is proven here against a plain forward pass with test-local hooks and torch / numpy
reductions, not the scan's own folds: a convolution read only by a ReLU has, wherever a channel
fires, the ReLU's top images at the same positions; a max pool whose windows cover its input has
its input's per-channel maxima; an identity pool has its input's output. The scan's tables then
agree with that brute force, and so with each other.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine import datasets
from cnn_widgets.engine.digits_model import digits_architecture, digits_preprocess
from cnn_widgets.engine.errors import ImageError
from cnn_widgets.engine.hooks import hook_count, inference_state
from cnn_widgets.engine.images import model_input
from cnn_widgets.engine.scan import default_scan_layers, scan
from cnn_widgets.engine.scan.model import scan_stand_in, stand_ins

pytestmark = pytest.mark.usefixtures("one_thread")

ALEXNET_DEFAULT = ["features.1", "features.4", "features.7", "features.9", "features.11",
                   "classifier.2", "classifier.5", "classifier.6"]


def sized(size: int):
    return T.Compose([T.Resize((size, size)), T.ToTensor()])


def outputs_of(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, np.ndarray]:
    """Each named module's output on ``x``, copied the moment it is made (an in-place ReLU later
    overwrites a convolution's output), from a plain forward pass with test-local hooks."""
    modules = dict(model.named_modules())
    box: dict[str, np.ndarray] = {}

    def keep(name):
        def hook(_module, _inputs, output):
            box[name] = output.detach().clone().numpy()  # returns None: the output goes on unchanged
        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    try:
        with inference_state(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return box


def brute_top(maps: np.ndarray, k: int):
    """Per channel: the k images with the largest maximum (ties: lower index first), each with the
    first position of its maximum in row-major order. ``maps`` is ``[N, C, ...]``."""
    flat = maps.reshape(maps.shape[0], maps.shape[1], -1)
    peaks, where = flat.max(axis=2), flat.argmax(axis=2)  # argmax: the first maximum
    width = maps.shape[-1] if maps.ndim == 4 else 1
    table = []
    for c in range(maps.shape[1]):
        order = sorted(range(maps.shape[0]), key=lambda i: (-peaks[i, c], i))[:k]
        table.append([(float(peaks[i, c]), i, divmod(int(where[i, c]), width)) for i in order])
    return table


# ------------------------------------------------------------------------------------------
# which layers
# ------------------------------------------------------------------------------------------


def test_default_sets_of_alexnet_digits_vgg_and_resnet():
    alexnet = cw.Network(torchvision.models.alexnet(weights=None))
    assert default_scan_layers(alexnet) == ALEXNET_DEFAULT
    assert hook_count(alexnet.model) == 0
    links = stand_ins(alexnet)
    assert {name: s.layer for name, s in links.items()} == {
        "features.0": "features.1", "features.2": "features.1", "features.3": "features.4", "features.5": "features.4",
        "features.6": "features.7", "features.8": "features.9", "features.10": "features.11",
        "features.12": "features.11", "avgpool": "features.12", "classifier.1": "classifier.2",
        "classifier.4": "classifier.5"}
    # every layer is either scanned or shown by one that is
    for name in alexnet.layer_names:
        assert name in ALEXNET_DEFAULT or scan_stand_in(alexnet, name).layer in ALEXNET_DEFAULT
    assert scan_stand_in(alexnet, "avgpool").layer == "features.11"
    assert scan_stand_in(alexnet, "avgpool", scanned=["features.12"]).layer == "features.12"
    assert scan_stand_in(alexnet, "features.1") is None and scan_stand_in(alexnet, "features.0", scanned=[]) is None

    digits = cw.Network(digits_architecture(), preprocess=digits_preprocess())  # 16 px: 16 -> 8 -> 4
    assert default_scan_layers(digits) == ["relu1", "relu2", "fc"]
    # large networks keep their rules: VGG's rectifiers, ResNet's stem, blocks and last spatial layer
    vgg = cw.Network(torchvision.models.vgg11(weights=None))
    assert default_scan_layers(vgg) == [f"features.{i}" for i in (1, 4, 7, 9, 12, 14, 17, 19)]
    resnet = cw.Network(torchvision.models.resnet18(weights=None))
    assert default_scan_layers(resnet) == [
        "relu", "layer1.0", "layer1.1", "layer2.0.downsample", "layer2.0", "layer2.1", "layer3.0.downsample",
        "layer3.0", "layer3.1", "layer4.0.downsample", "layer4.0", "layer4.1"]
    # ResNet's conv1 reaches its ReLU through a batch norm: not a stand-in; its 3x3/2 max pool covers the map
    assert "conv1" not in stand_ins(resnet) and stand_ins(resnet)["maxpool"].layer == "relu"


class SkipNet(nn.Module):
    """conv1 feeds its ReLU and, past conv2, a residual add; conv3's ReLU is fed after an in-place
    negation; conv4 goes through a batch norm; a GELU follows conv5 and a ReLU6 conv6."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.relu1 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.conv3, self.relu3 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.conv4, self.bn4, self.relu4 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.conv5, self.gelu5 = nn.Conv2d(4, 4, 3, padding=1), nn.GELU()
        self.conv6, self.relu6 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU6()
        self.conv7, self.relu7 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        a = self.conv1(x)
        x = self.relu2(self.conv2(self.relu1(a)) + a)  # conv1's output also joins the residual add
        x = self.relu3(self.conv3(x).neg_())  # changed in place on its way: the ReLU does not see conv3's output
        x = self.relu4(self.bn4(self.conv4(x)))
        x = self.relu6(self.conv6(self.gelu5(self.conv5(x))))
        x = self.relu7(self.conv7(x))  # the only plain conv -> ReLU
        return self.fc(x.mean(dim=(2, 3)))


def test_a_network_made_inside_inference_mode_has_the_same_layers_and_stand_ins():
    """Inference tensors keep no version counter; the pass that finds the layers runs outside
    inference mode, so which layer reads which output unchanged (``fed_by``), the default set and
    the stand-ins are those of a network made outside it."""
    outside = cw.Network(torchvision.models.alexnet(weights=None))
    with torch.inference_mode():
        inside = cw.Network(torchvision.models.alexnet(weights=None))
        assert [(l.name, l.fed_by) for l in inside.layers] == [(l.name, l.fed_by) for l in outside.layers]
        assert default_scan_layers(inside) == ALEXNET_DEFAULT
        assert stand_ins(inside) == stand_ins(outside)
    assert hook_count(inside.model) == 0


def test_a_conv_stays_unless_a_monotone_rectifier_alone_reads_its_very_output():
    net = cw.Network(SkipNet(), preprocess=sized(12))
    chosen = default_scan_layers(net)
    assert chosen == ["conv1", "relu1", "conv2", "relu2", "conv3", "relu3", "conv4", "relu4", "conv5", "gelu5",
                      "conv6", "relu6", "relu7", "fc"]
    assert list(stand_ins(net)) == ["conv7"]
    assert hook_count(net.model) == 0


@pytest.mark.parametrize("kernel, stride, padding, ceil_mode, size, covers", [
    (2, 2, 0, False, 8, True),   # the digits CNN's pools on even maps
    (2, 2, 0, False, 7, False),  # an odd map: the last row and column are in no window
    (2, 2, 0, True, 7, True),    # ceil_mode adds the window that covers them
    (3, 2, 0, False, 13, True),  # AlexNet's overlapping pools
    (2, 3, 0, False, 9, False),  # stride past the kernel: gaps
    (3, 2, 1, False, 8, True),   # ResNet's stem pool (padding is -inf, never the maximum)
])
def test_a_max_pool_stands_in_only_when_its_windows_cover_its_input(kernel, stride, padding, ceil_mode, size, covers):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 4, 3, padding=1), bn=nn.BatchNorm2d(4), relu=nn.ReLU(),
        pool=nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode), flat=nn.Flatten(), fc=nn.LazyLinear(2)))
    model(torch.zeros(1, 3, size, size))  # materialise the lazy layer
    net = cw.Network(model, preprocess=sized(size))
    assert ("pool" in stand_ins(net)) == covers
    assert ("pool" in default_scan_layers(net)) != covers
    # the brute-force meaning of "covers": each channel's maximum over the pooled map is its input's
    x = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(1))
    out = outputs_of(model, ["relu", "pool"], x)
    assert np.array_equal(out["relu"].max(axis=(2, 3)), out["pool"].max(axis=(2, 3))) == covers


def test_adaptive_pools_identity_only_at_their_own_size():
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(6),
                                      flat=nn.Flatten(), fc=nn.Linear(4 * 36, 2)))
    at_size = cw.Network(model, preprocess=sized(8))  # 6x6 into the pool: the identity
    assert stand_ins(at_size)["pool"].layer == "relu" and "pool" not in default_scan_layers(at_size)
    smaller = cw.Network(model, preprocess=sized(6))  # 4x4 into the pool, 6x6 out: it is scanned
    assert "pool" not in stand_ins(smaller) and "pool" in default_scan_layers(smaller)


# ------------------------------------------------------------------------------------------
# the reason, numerically
# ------------------------------------------------------------------------------------------


def test_alexnet_skipped_layers_have_their_stand_ins_top_images():
    """Random AlexNet on 16 photos at 224 px, every layer scanned by name: the brute force says the
    relation holds, the scan's tables equal the brute force, so the default loses no top image."""
    net = cw.Network(torchvision.models.alexnet(weights=None))
    photos = datasets.augmented_photos(n=16, seed=0)
    k = 5
    result = scan(net, photos, layers=net.layer_names, k=k, batch_size=16, progress=False)
    x = torch.stack([net.prepare(photos[i])[0] for i in range(16)])
    maps = outputs_of(net.model, net.layer_names, x)
    links = stand_ins(net)
    checked = {"rectifier": 0, "pool": 0, "identity": 0}
    for name in net.layer_names:  # the scan's tables are the brute force's (independent of the folds)
        table = result.top(name)
        expected = brute_top(maps[name], k)
        for c in range(0, maps[name].shape[1], 7):
            assert [int(i) for i in table["indices"][c]] == [i for _, i, _ in expected[c]], (name, c)
            np.testing.assert_array_equal(table["values"][c], [v for v, _, _ in expected[c]])
            if maps[name].ndim == 4:
                assert [tuple(map(int, p)) for p in table["positions"][c]] == [p for _, _, p in expected[c]], (name, c)
    for name, link in links.items():
        mine, theirs = maps[name], maps[link.layer]
        if net.layer(name).kind in ("conv", "linear"):
            # a conv / linear and its ReLU: the ReLU's map is max(conv, 0) elementwise, so per
            # image and channel its maximum is max(conv maximum, 0), at the conv's first maximum
            # wherever that is positive; the scan's tables then agree on every positive entry
            np.testing.assert_array_equal(theirs, np.maximum(mine, 0))
            flat_m, flat_t = mine.reshape(*mine.shape[:2], -1), theirs.reshape(*theirs.shape[:2], -1)
            fires = flat_m.max(axis=2) > 0
            np.testing.assert_array_equal(flat_m.argmax(axis=2)[fires], flat_t.argmax(axis=2)[fires])
            a, b = result.top(name), result.top(link.layer)
            positive = b["values"] > 0
            assert positive.sum() > 0.3 * positive.size, name  # the claim is not vacuous
            for key in ("values", "indices") + (("positions",) if mine.ndim == 4 else ()):
                np.testing.assert_array_equal(a[key][positive], b[key][positive])
            checked["rectifier"] += 1
        elif link.same_positions:  # an identity pool: the same output, the same table
            np.testing.assert_array_equal(mine, theirs)
            for key in ("values", "indices", "positions"):
                np.testing.assert_array_equal(result.top(name)[key], result.top(link.layer)[key])
            checked["identity"] += 1
        else:  # a covering max pool: per image and channel the same maximum, so the same images
            np.testing.assert_array_equal(mine.max(axis=(2, 3)), theirs.max(axis=(2, 3)))
            for key in ("values", "indices"):
                np.testing.assert_array_equal(result.top(name)[key], result.top(link.layer)[key])
            checked["pool"] += 1
    assert checked == {"rectifier": 7, "pool": 3, "identity": 1}


def test_the_default_scan_of_alexnet_covers_the_default_layers_only():
    net = cw.Network(torchvision.models.alexnet(weights=None))
    result = scan(net, datasets.augmented_photos(n=2, seed=0), k=2, progress=False)
    assert result.layers == ALEXNET_DEFAULT
    assert hook_count(net.model) == 0


# ------------------------------------------------------------------------------------------
# the image check the scan runs on every tensor
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_tensor_images_with_nan_or_inf_anywhere_are_refused(dtype):
    preprocess = sized(8)
    for bad in (math.nan, math.inf, -math.inf):
        for where in [(0, 0, 0), (1, 3, 4), (2, 7, 7)]:
            x = torch.rand(3, 8, 8).to(dtype)
            x[where] = bad
            for image in (x, x[None], x.permute(0, 2, 1).contiguous().permute(0, 2, 1)):  # also strided
                with pytest.raises(ImageError, match=r"^the image tensor contains NaN or infinite values; clean it "
                                                     r"with torch.nan_to_num first$"):
                    model_input(image, preprocess)
    extreme = torch.full((3, 8, 8), torch.finfo(dtype).max, dtype=dtype)
    extreme[0, 0, 0] = torch.finfo(dtype).min  # finite, however large: accepted
    assert model_input(extreme, preprocess) is not None
