"""Dataset scans: top-k against brute force (ties included), receptive-field crops against input
gradients, resume == uninterrupted, save/load, PCA against numpy SVD, dead channels, cleanliness.

Oracles are independent of the scan code: plain ``nn.Sequential`` slicing or a test-local forward
hook for activations, ``torch.autograd.grad`` for gradient supports, ``numpy.linalg.svd`` for PCA.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine import datasets
from cnn_widgets.engine.errors import LayerNotFoundError, OptionError, TargetError
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.scan import Scan, ScanError, default_scan_layers, reconstruct, scan
from scan_checks import assert_same_scan


pytestmark = pytest.mark.usefixtures("one_thread")


def sized_preprocess(size: int):
    return T.Compose([T.Resize((size, size)), T.ToTensor()])


def layer_output(model: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """Output of submodule ``name`` (test-local hook, removed at once)."""
    module = dict(model.named_modules())[name]
    box = {}
    handle = module.register_forward_hook(lambda m, i, o: box.setdefault("out", o))
    try:
        model(x)
    finally:
        handle.remove()
    return box["out"]


def brute_force_top(model, name, images, k):
    """Top-k (value desc, index asc) of each channel's spatial max, first max in row-major order."""
    maps = [layer_output(model, name, x[None])[0].detach().numpy() for x in images]  # each [C, H, W]
    channels = maps[0].shape[0]
    table = []
    for c in range(channels):
        entries = []
        for i, m in enumerate(maps):
            flat = m[c].reshape(-1)
            p = int(np.argmax(flat))  # first occurrence
            entries.append((-float(flat[p]), i, divmod(p, m.shape[-1])))
        entries.sort(key=lambda e: (e[0], e[1]))
        table.append([(-v, i, pos) for v, i, pos in entries[:k]])
    return table


# ------------------------------------------------------------------------------------------
# exact top-k with ties
# ------------------------------------------------------------------------------------------


def integer_net():
    """float64 CNN with small integer weights: every activation is an exact integer (no rounding
    anywhere, whatever the batch), and ReLUs / equal images make many ties."""
    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3), nn.ReLU()
    ).double()
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randint(-1, 2, m.weight.shape, generator=g).double())
                m.bias.copy_(torch.randint(-1, 2, m.bias.shape, generator=g).double())
    return cw.Network(model, preprocess=sized_preprocess(10))


def integer_images(n=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 3, (3, 10, 10), generator=g).double() for _ in range(n)]
    images[7] = images[3].clone()  # identical images: ties across images
    images[15] = images[3].clone()
    images[5] = torch.zeros(3, 10, 10, dtype=torch.float64)  # constant maps: ties inside one map
    images[11] = torch.ones(3, 10, 10, dtype=torch.float64)
    return images


@pytest.mark.parametrize("batch_size", [1, 4, 7, 64])
def test_top_k_equals_brute_force_with_ties(batch_size):
    net = integer_net()
    images = integer_images()
    k = 6
    result = net_scan(net, images, layers=net.layer_names, k=k, batch_size=batch_size)
    assert result.complete and result.count == len(images)
    ties = 0
    for name in ["0", "1", "2", "3", "4"]:
        expected = brute_force_top(net.model, name, images, k)
        table = result.top(name)
        for c, rows in enumerate(expected):
            assert [int(i) for i in table["indices"][c]] == [i for _, i, _ in rows], (name, c)
            assert [tuple(map(int, p)) for p in table["positions"][c]] == [p for _, _, p in rows], (name, c)
            np.testing.assert_array_equal(table["values"][c], [v for v, _, _ in rows])
            values = [v for v, _, _ in rows]
            ties += len(values) - len(set(values))
    assert ties > 10  # the data really exercise tie-breaking


def net_scan(net, images, **kw):
    kw.setdefault("progress", False)
    return scan(net, images, **kw)


def test_batch_size_does_not_change_anything():
    net = integer_net()
    images = integer_images()
    a, b = net_scan(net, images, k=4, batch_size=3), net_scan(net, images, k=4, batch_size=23)
    assert_same_scan(a, b, exact_mean=False)  # summation order of the means differs by batch



def test_stats_and_codes_match_brute_force():
    net = integer_net()
    images = integer_images()
    result = net_scan(net, images, batch_size=5)
    for name in ["1", "4"]:
        maps = np.stack([layer_output(net.model, name, x[None])[0].detach().numpy() for x in images])
        st = result.stats(name)
        np.testing.assert_allclose(result.codes(name), maps.mean(axis=(2, 3)), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(st.mean, maps.mean(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(st.max, maps.max(axis=(0, 2, 3)))
        np.testing.assert_allclose(st.fraction_zero, (maps == 0).mean(axis=(0, 2, 3)))
        np.testing.assert_allclose(st.fraction_images_firing, (maps.max(axis=(2, 3)) > 0).mean(axis=0))


# ------------------------------------------------------------------------------------------
# receptive-field crops contain the support of the unit's input gradient
# ------------------------------------------------------------------------------------------


def alexnet_like(linear: bool = False):
    """AlexNet's conv/pool chain in miniature. ``linear``: ReLUs -> identity, max -> average pools,
    so the gradient of a unit reaches every pixel of its field (the RF box must then be tight)."""
    act = nn.Identity if linear else nn.ReLU
    pool = (lambda: nn.AvgPool2d(3, 2)) if linear else (lambda: nn.MaxPool2d(3, 2))
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 11, stride=4, padding=2), act(), pool(),
        nn.Conv2d(6, 6, 5, padding=2), act(), pool(),
        nn.Conv2d(6, 6, 3, padding=1), act(),
        nn.Flatten(), nn.Linear(6 * 5 * 5, 4),
    ).double()
    return cw.Network(model, preprocess=sized_preprocess(99))


class Block(nn.Module):
    def __init__(self, cin, cout, stride, act):
        super().__init__()
        self.act = act
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv2(self.act(self.conv1(x))) + skip)


class TinyResNet(nn.Module):
    def __init__(self, linear: bool = False):
        super().__init__()
        act = (lambda t: t) if linear else F.relu
        self.stem = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.act = act
        self.block1 = Block(6, 6, 1, act)
        self.block2 = Block(6, 8, 2, act)
        self.block3 = Block(8, 8, 2, act)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.act(self.stem(x)))))
        return self.fc(x.mean(dim=(2, 3)))


def tiny_resnet(linear: bool = False):
    torch.manual_seed(1)
    return cw.Network(TinyResNet(linear).double(), preprocess=sized_preprocess(40))


def gradient_support(net, layer, channel, position, inputs):
    """Union over inputs of the pixels where d unit / d input is non-zero (any colour channel)."""
    support = None
    for x in inputs:
        x = x[None].clone().requires_grad_(True)
        out = layer_output(net.model, layer, x)
        (grad,) = torch.autograd.grad(out[0, channel, position[0], position[1]], x)
        nz = (grad[0] != 0).any(dim=0).numpy()
        support = nz if support is None else support | nz
    return support


def bounding_box(mask):
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


# Rule under test (layers.py): a conv/pool with kernel k, stride s, padding p, dilation d maps an
# axis field (size, jump, start) to (size + (k-1) d jump, jump s, start - p jump); a residual sum
# takes the union (bounding interval) of its branches; position (y, x) sees rows
# [start + y jump, start + y jump + size) clipped to the image. Where the unclipped box lies inside
# the image it is exact; on a clipped side it may be larger than the true field (a strided layer
# that drops its last rows, as AlexNet's pools do, shrinks the field at the far border).
def check_box(support, rf, position, image_size):
    box = rf.box(*position, image_size=image_size)
    raw = rf.box(*position)
    found = bounding_box(support)
    inside = [raw[0] >= 0, raw[1] >= 0, raw[2] <= image_size[0], raw[3] <= image_size[1]]
    for side in range(4):
        if inside[side]:
            assert found[side] == box[side], (side, found, box, raw)
    assert found[0] >= box[0] and found[1] >= box[1] and found[2] <= box[2] and found[3] <= box[3]
    return all(inside)


@pytest.mark.parametrize("make, layers, size", [
    (alexnet_like, ["0", "2", "3", "5", "6"], 99),
    (tiny_resnet, ["stem", "block1", "block2", "block3"], 40),
])
def test_receptive_field_box_is_tight_on_linear_twins(make, layers, size):
    net = make(linear=True)
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g, dtype=torch.float64) for _ in range(6)]
    result = net_scan(net, images, layers=layers, k=3, batch_size=4)
    checked = unclipped = 0
    for layer in layers:
        rf = net.layer(layer).receptive_field
        h, w = layer_output(net.model, layer, images[0][None]).shape[-2:]
        positions = {(0, 0), (h - 1, w - 1), (h // 2, w // 2), (1, w - 2)}
        for channel in (0, 3):
            tops = result.top_images(cw.Unit(layer, channel), method=None)
            for top in tops:
                assert top.box == rf.box(*top.position, image_size=(size, size))
            for position in positions | {t.position for t in tops}:
                support = gradient_support(net, layer, channel, position, images[:1])
                unclipped += check_box(support, rf, position, (size, size))
                checked += 1
    assert checked >= 30 and unclipped >= 5


@pytest.mark.parametrize("make, layers, size", [
    (alexnet_like, ["1", "2", "4", "5", "7"], 99),
    (tiny_resnet, ["stem", "block1", "block2", "block3"], 40),
])
def test_receptive_field_crop_contains_gradient_support(make, layers, size):
    net = make(linear=False)
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, size, size, generator=g, dtype=torch.float64) for _ in range(12)]
    result = net_scan(net, images, layers=layers, k=4, batch_size=5)
    nonempty = 0
    for layer in layers:
        for channel in range(0, 6, 2):
            for top in result.top_images(cw.Unit(layer, channel), method="deconvnet"):
                # union over several random inputs: max-pool switches and ReLU masks move around
                support = gradient_support(net, layer, channel, top.position, images)
                top_, left, bottom, right = top.box
                inside = np.zeros_like(support)
                inside[top_:bottom, left:right] = True
                assert not (support & ~inside).any(), (layer, channel, top.position)
                nonempty += bool(support.any())
                # the crop is the box of the displayed image; the reconstruction is cropped alike
                np.testing.assert_array_equal(top.crop, top.image[top_:bottom, left:right])
                assert top.reconstruction.shape == top.crop.shape and top.reconstruction.dtype == np.uint8
                full = reconstruct(net, [net.prepare(images[top.index])], layer, channel, [top.position])[0]
                outside = np.abs(full).sum(axis=2) * ~inside
                assert outside.max() == 0  # deconvnet keeps the switches: nothing outside the field
    assert nonempty >= 30


def test_top_image_matches_the_activation_it_reports():
    net = alexnet_like()
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(3, 99, 99, generator=g, dtype=torch.float64) for _ in range(9)]
    result = net_scan(net, images, layers=["4"], k=3)
    tops = result.top_images(("4", 2), method="guided_backprop")
    assert [t.value for t in tops] == sorted([t.value for t in tops], reverse=True)
    for t in tops:
        out = layer_output(net.model, "4", images[t.index][None])[0, 2].detach()
        assert t.value == float(out.max()) == float(out[t.position])


# ------------------------------------------------------------------------------------------
# interruption, resume, save / load, cleanliness
# ------------------------------------------------------------------------------------------


class PhotoDataset(Dataset):
    """Small real photos (PIL) with labels; optionally raises KeyboardInterrupt at item ``stop_at``."""

    def __init__(self, n=26, stop_at=None):
        self.photos = datasets.augmented_photos(n=n, seed=5, size=48)
        self.stop_at = stop_at

    def __len__(self):
        return len(self.photos)

    def __getitem__(self, i):
        if self.stop_at is not None and i == self.stop_at:
            raise KeyboardInterrupt  # what Ctrl-C does inside a data loader
        return self.photos[i], self.photos.targets[i]


def small_cnn():
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(12, 5),
    )
    with torch.no_grad():  # non-trivial running statistics, so eval vs train mode would differ
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return cw.Network(model, preprocess=sized_preprocess(32))


def model_flags(model):
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize("stop_at", [9, 12, 25])
def test_resume_after_interrupt_equals_one_scan(stop_at, tmp_path):
    net = small_cnn()
    net.model.train()  # odd flags the scan must restore
    net.model[4].weight.requires_grad_(False)
    flags = model_flags(net.model)
    full = net_scan(net, PhotoDataset(), k=5, batch_size=4)

    with pytest.warns(UserWarning, match="interrupted"):
        partial = net_scan(net, PhotoDataset(stop_at=stop_at), k=5, batch_size=4, save_to=tmp_path / "p.pt")
    assert partial.interrupted and not partial.complete
    assert partial.count == (stop_at // 4) * 4  # only whole batches are kept
    assert hook_count(net.model) == 0 and model_flags(net.model) == flags

    resumed = net_scan(net, PhotoDataset(), resume=partial)
    assert resumed.complete and not resumed.interrupted
    assert_same_scan(resumed, full)

    from_file = net_scan(net, PhotoDataset(), resume=tmp_path / "p.pt")
    assert_same_scan(from_file, full)
    assert hook_count(net.model) == 0 and model_flags(net.model) == flags
    np.testing.assert_array_equal(full.labels, PhotoDataset().photos.targets)


def test_interrupt_inside_the_forward_pass_keeps_whole_batches():
    net = small_cnn()
    net.layers  # layer discovery runs a forward pass of its own: do it before counting
    default_scan_layers(net)  # so does the default layer set (which layer reads which output unchanged)
    calls = {"n": 0}

    def hook(module, inputs, output):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    handle = net.model[4].register_forward_hook(hook)
    try:
        with pytest.warns(UserWarning):
            partial = net_scan(net, PhotoDataset(), batch_size=5)
    finally:
        handle.remove()
    assert partial.count == 10 and partial.interrupted
    assert hook_count(net.model) == 0
    assert_same_scan(net_scan(net, PhotoDataset(), resume=partial), net_scan(net, PhotoDataset(), batch_size=5))


def test_no_hooks_left_and_flags_restored_after_a_scan_and_an_error():
    net = small_cnn()
    net.model.train()
    flags = model_flags(net.model)
    result = net_scan(net, PhotoDataset(n=6), batch_size=4)
    result.top_images(("5", 1))
    assert hook_count(net.model) == 0 and model_flags(net.model) == flags
    # finite input whose activations overflow to inf: the error is raised inside the forward pass
    overflowing = [torch.full((3, 32, 32), 3e38)]
    with pytest.raises(cw.NonFiniteError):
        net_scan(net, overflowing)
    assert hook_count(net.model) == 0 and model_flags(net.model) == flags
    with pytest.raises(cw.ImageError, match="NaN"):  # a NaN input is refused before the model
        net_scan(net, [torch.full((3, 32, 32), math.nan)])
    assert hook_count(net.model) == 0 and model_flags(net.model) == flags


def test_save_load_round_trip_folder_source(tmp_path):
    net = small_cnn()
    photos = datasets.augmented_photos(n=10, seed=1, size=40)
    for i in range(10):
        folder = tmp_path / "imgs" / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        photos[i].save(folder / f"{i:02d}.png")
    result = net_scan(net, tmp_path / "imgs", k=3, batch_size=4)
    assert result.class_names == ["even", "odd"]
    assert list(result.labels) == ["even"] * 5 + ["odd"] * 5  # sorted paths: even/00..08, odd/01..09
    result.save(tmp_path / "scan.pt")
    loaded = Scan.load(tmp_path / "scan.pt", net)  # file paths are kept: no images needed
    assert_same_scan(result, loaded)
    assert loaded.class_names == result.class_names
    a, b = result.top_images(("2", 3)), loaded.top_images(("2", 3))
    for x, y in zip(a, b):
        assert (x.index, x.value, x.position, x.box) == (y.index, y.value, y.position, y.box)
        np.testing.assert_array_equal(x.crop, y.crop)
        np.testing.assert_array_equal(x.reconstruction, y.reconstruction)


def test_save_load_list_source_needs_the_images_again(tmp_path):
    net = small_cnn()
    images = [datasets.augmented_photos(n=7, seed=2, size=40)[i] for i in range(7)]
    result = net_scan(net, images, k=2)
    result.save(tmp_path / "s.pt")
    loaded = Scan.load(tmp_path / "s.pt", net)
    assert_same_scan(result, loaded)
    with pytest.raises(ScanError, match="images="):
        loaded.top_images(("5", 0))
    again = Scan.load(tmp_path / "s.pt", net, images=images)
    assert again.top_images(("5", 0))[0].index == result.top_images(("5", 0))[0].index
    with pytest.raises(ScanError, match="7"):
        Scan.load(tmp_path / "s.pt", net, images=images[:3])


def test_dataset_with_recipe_is_recreated_on_load(tmp_path):
    net = small_cnn()
    photos = datasets.augmented_photos(n=5, seed=3, size=40)
    result = net_scan(net, photos, k=2)
    result.save(tmp_path / "r.pt")
    loaded = Scan.load(tmp_path / "r.pt", net)
    np.testing.assert_array_equal(loaded.top_images(("2", 0))[0].image, result.top_images(("2", 0))[0].image)


# ------------------------------------------------------------------------------------------
# scan files are data: loading one never runs code
# ------------------------------------------------------------------------------------------

SIDE_EFFECT_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

def run(**kwargs):
    pathlib.Path({marker!r}).write_text("called")
    return list(range(5))
"""


def saved_scan(tmp_path):
    """A real scan file (5 augmented photos, a package dataset) and its payload."""
    result = net_scan(small_cnn(), datasets.augmented_photos(n=5, seed=3, size=40), k=2)
    result.save(tmp_path / "good.pt")
    return result, torch.load(tmp_path / "good.pt", weights_only=True)


def rewrite(tmp_path, payload, name, **changes):
    """The payload with ``changes`` (``source=...``, ``version=...``) written to ``name``; a file of
    version 1 or 2 (which had no checksums) is written without them."""
    path = tmp_path / name
    payload = {**payload, **changes}
    if payload.get("version") in (1, 2):
        payload.pop("checksums", None)
    torch.save(payload, path)
    return path


@pytest.fixture()
def side_effect(tmp_path, monkeypatch):
    """A module of the test's own whose import or call writes a marker file."""
    marker = tmp_path / "ran"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "scan_side_effect.py").write_text(SIDE_EFFECT_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    yield marker
    assert "scan_side_effect" not in __import__("sys").modules


def test_a_scan_file_naming_code_is_refused_and_nothing_runs(tmp_path, side_effect):
    result, payload = saved_scan(tmp_path)
    assert payload["source"]["kind"] == "dataset" and "module" not in payload["source"]
    marker = side_effect
    crafted = {
        # format-1 records named a module and a function: any of them used to be imported and called
        "own_module": {"kind": "recipe", "module": "scan_side_effect", "function": "run", "kwargs": {}, "length": 5},
        "os_system": {"kind": "recipe", "module": "os", "function": "system",
                      "kwargs": {"command": f"touch {marker}"}, "length": 5},
        "subprocess": {"kind": "recipe", "module": "subprocess", "function": "run",
                       "kwargs": {"args": ["touch", str(marker)]}, "length": 5},
        "private_helper": {"kind": "recipe", "module": "cnn_widgets.engine.datasets", "function": "_load_photo",
                           "kwargs": {"name": "chelsea"}, "length": 5},
        # format 2: a name from the registry only, no module, plain keyword arguments the factory takes
        "unknown_name": {"kind": "dataset", "name": "scan_side_effect", "kwargs": {}, "length": 5},
        "module_key": {"kind": "dataset", "name": "augmented_photos", "module": "scan_side_effect",
                       "kwargs": {"n": 5}, "length": 5},
        "transform": {"kind": "dataset", "name": "augmented_photos",
                      "kwargs": {"n": 5, "transform": "scan_side_effect.run"}, "length": 5},
        "not_plain": {"kind": "dataset", "name": "augmented_photos", "kwargs": {"n": torch.tensor(5)}, "length": 5},
        "other_kind": {"kind": "import", "module": "scan_side_effect", "length": 5},
    }
    for case, record in crafted.items():
        for version in (1, 2):
            path = rewrite(tmp_path, payload, f"{case}.pt", source=record, version=version)
            with pytest.raises(ScanError, match="images=") as error:
                Scan.load(path, small_cnn())
            assert "refused" in str(error.value) or "unknown kind" in str(error.value), case
            assert not marker.exists(), case
    # the way on that the message gives: pass the images, the record is not used
    loaded = Scan.load(tmp_path / "own_module.pt", small_cnn(), images=datasets.augmented_photos(n=5, seed=3, size=40))
    assert_same_scan(loaded, result)
    assert not marker.exists()


def test_a_scan_file_holding_objects_is_refused(tmp_path, side_effect):
    class RunsOnUnpickle:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {side_effect}",))

    _, payload = saved_scan(tmp_path)
    path = rewrite(tmp_path, payload, "pickled.pt", labels=[RunsOnUnpickle()] * 5)
    with pytest.raises(ScanError, match="refused"):
        Scan.load(path, small_cnn())
    assert not side_effect.exists()
    with pytest.raises(ScanError, match="version 99"):
        Scan.load(rewrite(tmp_path, payload, "future.pt", version=99), small_cnn())


@pytest.mark.parametrize("make", [
    lambda: datasets.augmented_photos(n=6, seed=1, size=36),
    lambda: datasets.photos(names=["chelsea", "coffee", "camera"]),
    lambda: datasets.faces(),
    lambda: datasets.digits().test,
], ids=["augmented_photos", "photos", "faces", "digits_split"])
def test_every_package_dataset_round_trips_by_name(make, tmp_path):
    net = small_cnn()
    images = make()
    result = net_scan(net, images, layers=["5"], k=2, batch_size=64)
    result.save(tmp_path / "d.pt")
    record = torch.load(tmp_path / "d.pt", weights_only=True)["source"]
    assert record["kind"] == "dataset" and record["name"] in datasets.DATASETS and "module" not in record
    loaded = Scan.load(tmp_path / "d.pt", net)
    assert_same_scan(loaded, result)
    for i in (0, len(images) - 1):
        np.testing.assert_array_equal(np.asarray(loaded.image(i)), np.asarray(result.image(i)))


def test_format_1_files_of_package_datasets_still_load(tmp_path):
    result, payload = saved_scan(tmp_path)
    legacy = {"kind": "recipe", "module": "cnn_widgets.engine.datasets", "function": "augmented_photos",
              "kwargs": payload["source"]["kwargs"], "length": 5}
    loaded = Scan.load(rewrite(tmp_path, payload, "v1.pt", source=legacy, version=1), small_cnn())
    assert_same_scan(loaded, result)
    np.testing.assert_array_equal(loaded.top_images(("2", 0))[0].image, result.top_images(("2", 0))[0].image)


def test_bad_options_raise_option_error():
    net = small_cnn()
    result = net_scan(net, PhotoDataset(n=4), layers=["2"], k=2)
    for kwargs, text in [({"k": 1.5}, "k must"), ({"batch_size": 0}, "batch_size must"),
                         ({"num_workers": -1}, "num_workers must"), ({"progress": "no"}, "progress must")]:
        with pytest.raises(OptionError, match=text):
            net_scan(net, PhotoDataset(n=4), **kwargs)
    with pytest.raises(OptionError, match="deconvnet"):
        result.top_images(("2", 0), method="deconv")
    with pytest.raises(OptionError, match="k must"):
        result.top_images(("2", 0), k=0)
    with pytest.raises(OptionError, match="deconvnet"):
        reconstruct(net, [net.prepare(PhotoDataset(n=1)[0][0])], "2", 0, [None], method="occlusion")
    with pytest.raises(OptionError, match="threshold"):
        result.dead_channels("2", threshold=2)
    with pytest.raises(OptionError, match="seed"):
        result.embedding("2", seed=-1)


def test_loading_on_another_network_fails(tmp_path):
    result = net_scan(small_cnn(), PhotoDataset(n=4))
    result.save(tmp_path / "s.pt")
    with pytest.raises(ScanError, match="another network"):
        Scan.load(tmp_path / "s.pt", integer_net())
    other = small_cnn()
    with torch.no_grad():
        other.model[0].weight.add_(1.0)
    with pytest.warns(UserWarning, match="other weights"):
        Scan.load(tmp_path / "s.pt", other, images=PhotoDataset(n=4))
    with pytest.raises(ScanError, match="weights changed"):
        scan(other, PhotoDataset(n=4), resume=result, progress=False)


def test_dataloader_source_equals_dataset_source():
    net = small_cnn()
    tensors = datasets.augmented_photos(n=11, seed=4, size=40, transform=sized_preprocess(32))
    labelled = [(tensors[i], i % 3) for i in range(11)]
    via_loader = net_scan(net, DataLoader(labelled, batch_size=4, shuffle=False), k=3)
    via_list = net_scan(net, labelled, k=3, batch_size=4)
    assert_same_scan(via_loader, via_list)
    assert list(via_loader.labels) == [i % 3 for i in range(11)]
    with pytest.raises(ScanError, match="shuffle=False"):
        net_scan(net, DataLoader(labelled, batch_size=4, shuffle=True))


def test_num_workers_gives_the_same_scan():
    net = small_cnn()
    assert_same_scan(net_scan(net, PhotoDataset(n=10), batch_size=3, num_workers=2),
                     net_scan(net, PhotoDataset(n=10), batch_size=3))


# ------------------------------------------------------------------------------------------
# embeddings and dead channels
# ------------------------------------------------------------------------------------------


def test_pca_equals_numpy_svd_reference():
    net = small_cnn()
    result = net_scan(net, PhotoDataset(n=26), batch_size=8)
    for layer in ["2", "5", "8"]:
        codes = result.codes(layer).astype(np.float64)
        assert codes.shape == (26, net.layer(layer).channels)
        centred = codes - codes.mean(axis=0)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        reference = u[:, :2] * s[:2]
        coords = result.embedding(layer, method="pca")
        assert coords.shape == (26, 2)
        for axis in range(2):
            sign = np.sign(coords[:, axis] @ reference[:, axis])
            np.testing.assert_allclose(coords[:, axis], sign * reference[:, axis], rtol=1e-6, atol=1e-8)


def test_tsne_is_deterministic_for_a_seed():
    result = net_scan(small_cnn(), PhotoDataset(n=20), batch_size=10)
    a = result.embedding("5", method="tsne", seed=0)
    b = result.embedding("5", method="tsne", seed=0)
    assert a.shape == (20, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_dead_channels_zeroed_filters_with_negative_bias():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    with torch.no_grad():
        model[0].bias.fill_(0.5)
        for c in (2, 5):  # dead: no weights, negative bias => never positive
            model[0].weight[c].zero_()
            model[0].bias[c] = -1.0
        # channel 3 fires only where a 3x3x3 window averages above 0.9: on the one white image
        model[0].weight[3].fill_(1.0 / 27.0)
        model[0].bias[3] = -0.9
    net = cw.Network(model, preprocess=sized_preprocess(12))
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 12, 12, generator=g) * 0.8 for _ in range(149)] + [torch.ones(3, 12, 12)]
    result = net_scan(net, images, layers=["0", "1"], batch_size=32)
    assert result.dead_channels("1") == [2, 3, 5]  # default: fires on <= 1% of images
    assert result.dead_channels("1", threshold=0) == [2, 5]
    assert result.dead_channels("0", threshold=0) == [2, 5]  # pre-activation: never positive
    st = result.stats("1")
    np.testing.assert_array_equal(st.fraction_zero[[2, 5]], [1.0, 1.0])
    assert st.fraction_images_firing[3] == pytest.approx(1 / 150)
    assert (st.fraction_images_firing[[0, 1, 4]] > 0.5).all()


# ------------------------------------------------------------------------------------------
# defaults, real models, errors
# ------------------------------------------------------------------------------------------


def test_default_layers():
    import torchvision

    alexnet = cw.Network(torchvision.models.alexnet(weights=None))
    # small: every layer but those whose top images another scanned layer shows (the convolutions
    # and linear layers before their ReLUs, the max pools, the identity avgpool at 224 px)
    assert default_scan_layers(alexnet) == [
        "features.1", "features.4", "features.7", "features.9", "features.11", "classifier.2", "classifier.5", "classifier.6"]
    small = cw.Network(torchvision.models.alexnet(weights=None), preprocess=sized_preprocess(128))
    # at 128 px the avgpool makes 6x6 of pool5's 3x3: not the identity, so it is scanned
    assert default_scan_layers(small) == [
        "features.1", "features.4", "features.7", "features.9", "features.11", "avgpool", "classifier.2", "classifier.5",
        "classifier.6"]
    resnet = cw.Network(torchvision.models.resnet18(weights=None))
    chosen = default_scan_layers(resnet)
    assert chosen[0] == "relu" and "layer1.0" in chosen and chosen[-1] == "layer4.1"
    assert all(resnet.layer(n).is_spatial for n in chosen)
    vgg = cw.Network(torchvision.models.vgg11(weights=None))
    assert default_scan_layers(vgg) == [f"features.{i}" for i in (1, 4, 7, 9, 12, 14, 17, 19)]


def test_default_model_on_augmented_photos():
    net = cw.load_default()
    photos = datasets.augmented_photos(n=4, seed=0)
    result = net_scan(net, photos, k=2, batch_size=4)
    assert "blocks.3.0" in result.layers and "bn2.act" in result.layers
    assert result.class_names == photos.classes and list(result.labels) == photos.targets[:4]
    tops = result.top_images(cw.Unit("blocks.3.0", 5))
    assert len(tops) == 2 and tops[0].value >= tops[1].value
    assert tops[0].image.shape == (224, 224, 3) and tops[0].reconstruction.shape == tops[0].crop.shape
    assert result.embedding("bn2.act").shape == (4, 2)


def test_errors_name_the_fix():
    net = small_cnn()
    result = net_scan(net, PhotoDataset(n=3), layers=["2"])
    with pytest.raises(LayerNotFoundError, match="not scanned"):
        result.top_images(("4", 0))
    with pytest.raises(LayerNotFoundError, match="no explorable layer 'nope'"):
        result.stats("nope")
    with pytest.raises(TargetError, match="out of range"):
        result.top_images(("2", 99))
    with pytest.raises(ScanError, match="no image files"):
        net_scan(net, _empty_dir())
    with pytest.raises(OptionError, match="k must"):
        net_scan(net, PhotoDataset(n=3), k=0)
    with pytest.raises(OptionError, match="pca"):
        result.embedding("2", method="umap")


def _empty_dir():
    import tempfile

    return tempfile.mkdtemp()


@pytest.mark.parametrize("chunk", [1, 150, 1 << 16])
def test_chunked_reductions_equal_whole_tensor_reductions(chunk, monkeypatch):
    """The fold reduces a layer's rows a cache-sized chunk at a time; with chunks of one row, a few
    rows or everything, top-k (ties included), statistics and codes equal the brute force."""
    from cnn_widgets.engine.scan import state

    monkeypatch.setattr(state, "CHUNK_ELEMENTS", chunk)
    net = integer_net()
    images = integer_images()
    result = net_scan(net, images, layers=net.layer_names, k=5, batch_size=6)
    for name in ["0", "1", "2", "3", "4"]:
        expected = brute_force_top(net.model, name, images, 5)
        table = result.top(name)
        for c, rows in enumerate(expected):
            assert [int(i) for i in table["indices"][c]] == [i for _, i, _ in rows], (name, c)
            assert [tuple(map(int, p)) for p in table["positions"][c]] == [p for _, _, p in rows], (name, c)
        maps = np.stack([layer_output(net.model, name, x[None])[0].detach().numpy() for x in images])
        maps = maps.reshape(maps.shape[0], maps.shape[1], -1)
        np.testing.assert_allclose(result.codes(name), maps.mean(axis=2), rtol=1e-12, atol=1e-12)
        st = result.stats(name)
        np.testing.assert_array_equal(st.max, maps.max(axis=(0, 2)))
        np.testing.assert_allclose(st.fraction_zero, (maps == 0).mean(axis=(0, 2)))


def test_row_statistics_are_bit_identical_to_whole_tensor_ops():
    from cnn_widgets.engine.scan import state

    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(5, 7, 9, 11, generator=g, dtype=dtype)
        x[0, 1] = 0.0  # a flat map: its maximum is at position 0
        x[1, 2, 3:5] = x[1, 2].max() + 1  # a tied maximum: the first in row-major order
        x[2] = x[2].relu()
        x = x.transpose(2, 3)  # not contiguous
        whole = x.reshape(5, 7, -1)
        for flat, positions in [(f, p) for f in (whole, whole[:, 2:5]) for p in (True, False)]:  # contiguous or not
            values, means, nonzero, where = state.row_statistics(flat, positions)
            assert torch.equal(values, flat.amax(dim=2)) and torch.equal(means, flat.mean(dim=2))
            assert torch.equal(nonzero, (flat != 0).sum(dim=2).to(torch.float32))
            if positions:
                assert torch.equal(where, flat.argmax(dim=2))
    candidates = torch.tensor([[1.0, 0.0, -0.0, 2.0, 0.0, -math.inf, 2.0], [-math.inf] * 3 + [5.0, 5.0, -1.0, 5.0]])
    assert torch.equal(state._stable_descending(candidates),
                       torch.sort(candidates, dim=1, descending=True, stable=True).indices)
    assert state._stable_descending(candidates)[0].tolist() == [3, 6, 0, 1, 2, 4, 5]


def test_folding_row_blocks_on_threads_equals_one_fold(monkeypatch):
    """On several threads, large outputs are reduced by one worker per thread, each a block of the
    ``[B * C, P]`` rows; forced here for every layer (2 and 3 threads), the scan equals the
    one-thread fold bit for bit."""
    from cnn_widgets.engine.scan import batch

    net = integer_net()
    images = integer_images()
    monkeypatch.setattr(batch, "PARALLEL_ELEMENTS", 1 << 60)
    one = net_scan(net, images, k=4, batch_size=5)
    monkeypatch.setattr(batch, "PARALLEL_ELEMENTS", 1)
    threads = torch.get_num_threads()
    try:
        for count in (2, 3):
            torch.set_num_threads(count)
            assert_same_scan(net_scan(net, images, k=4, batch_size=5), one)
    finally:
        torch.set_num_threads(threads)
