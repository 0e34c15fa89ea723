"""net.probe: shuffled tiles, silhouette, grey, blur and texture probes against loop / library references,
and their probabilities against a plain softmax of the model, one image at a time."""

from __future__ import annotations

import copy
import hashlib
import math

import numpy as np
import pytest
import scipy.ndimage
import skimage.filters
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine.errors import OptionError
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.probe import BLUR_SIGMA, PROBES
from cnn_widgets.engine.targets import Direction

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/engine/conftest.py

ALL = tuple(PROBES)


def tiny_net(size=20, preprocess=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(16, 5))
    return cw.Network(model, preprocess=preprocess or T.Compose([T.Resize((size, size)), T.ToTensor()]))


@pytest.fixture(scope="module")
def default_net():
    return cw.load_default()  # shared and cached: only read here, never changed


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)  # left in train mode: probe must not write BN statistics
    model.layer1[0].conv1.weight.requires_grad_(False)  # a mixed set of flags to restore
    return cw.Network(model)


@pytest.fixture(scope="module")
def digits():
    net = cw.digits_cnn(epochs=1)  # the digits CNN's architecture and grayscale preprocess; 1 epoch trains in ~1 s
    return net, cw.datasets.digits().test.pil(0)


@pytest.fixture(scope="module")
def cat():
    return cw.sample_image("cat")


def model_state(model: nn.Module) -> tuple:
    """Weights and buffers as bytes, every module's training flag, every parameter's requires_grad, hooks."""
    weights = hashlib.blake2b(b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values())).hexdigest()
    return (weights, [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            hook_count(model))


def plain_probabilities(net, picture: Image.Image | None = None, image=None) -> torch.Tensor:
    """softmax(model(preprocess(image))) for one image, outside the engine. A probe picture (already at the
    input size) gets the preprocess without its resize and crop; the original image the whole preprocess."""
    if picture is not None:
        kept = [t for t in net.preprocess.transforms if not isinstance(t, (T.Resize, T.CenterCrop))]
        x = T.Compose(kept)(picture)
    else:
        x = net.preprocess(image)
    model = copy.deepcopy(net.model).eval() if net.model.training else net.model
    with torch.no_grad():
        return torch.softmax(model(x[None].to(net.dtype)).double(), dim=-1)[0]


def tiles(picture: np.ndarray, grid: int) -> list[np.ndarray]:
    h, w = picture.shape[0] // grid, picture.shape[1] // grid
    return [picture[r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(grid) for c in range(grid)]


def loop_shuffle(picture: np.ndarray, grid: int, order: list[int]) -> np.ndarray:
    out = picture.copy()
    pieces = tiles(picture, grid)
    h, w = pieces[0].shape[:2]
    for i, j in enumerate(order):
        r, c = divmod(i, grid)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = pieces[j]
    return out


@pytest.mark.parametrize("which, grid", [("default", 3), ("default", 4), ("digits", 3), ("digits", 2)])
def test_shuffle_is_a_derangement_of_the_tiles(which, grid, default_net, digits, cat):
    net, image = (default_net, cat) if which == "default" else digits
    result = net.probe(image, kinds=["shuffle"], grid=grid, seed=5)
    original, shuffled = result.images["original"], result.images["shuffle"]
    order = result.tile_order
    assert sorted(order) == list(range(grid * grid)) and all(i != j for i, j in enumerate(order))  # moves every tile
    np.testing.assert_array_equal(shuffled, loop_shuffle(original, grid, order))
    # without the order: every output tile is the input tile the order names (matched by content)
    before, after = tiles(original, grid), tiles(shuffled, grid)
    for i, piece in enumerate(after):
        assert np.array_equal(piece, before[order[i]])
    h, w = original.shape[0] // grid * grid, original.shape[1] // grid * grid  # what is left over stays
    np.testing.assert_array_equal(shuffled[h:], original[h:])
    np.testing.assert_array_equal(shuffled[:, w:], original[:, w:])
    assert not np.array_equal(shuffled, original)


def test_the_seed_reproduces_the_shuffle_and_another_seed_changes_it(digits):
    net, image = digits
    first, again = net.probe(image, kinds=["shuffle"], seed=3), net.probe(image, kinds=["shuffle"], seed=3)
    assert first.tile_order == again.tile_order and first.probability == again.probability
    np.testing.assert_array_equal(first.images["shuffle"], again.images["shuffle"])
    others = {tuple(net.probe(image, kinds=["shuffle"], seed=s).tile_order) for s in range(4, 8)}
    assert others - {tuple(first.tile_order)}
    one = net.probe(image, kinds=["shuffle", "texture"], grid=1)  # one tile: nothing to move or repeat
    assert one.tile_order == [0]
    np.testing.assert_array_equal(one.images["shuffle"], one.images["original"])
    np.testing.assert_array_equal(one.images["texture"], one.images["original"])


def test_grey_is_the_bt601_luma(default_net, cat):
    result = default_net.probe(cat, kinds=["grey"])
    r, g, b = (result.images["original"][..., c].astype(np.float64) for c in range(3))
    exact = 0.299 * r + 0.587 * g + 0.114 * b
    luma = np.floor(exact + 0.5 + 1e-9)  # rounded half up (a float sum can land just below an exact .5)
    grey = result.images["grey"]
    assert grey.dtype == np.uint8 and grey.shape == result.images["original"].shape
    for c in range(3):
        np.testing.assert_array_equal(grey[..., c], luma)


@pytest.mark.parametrize("which", ["default", "digits"])
def test_blur_equals_scipys_gaussian_filter(which, default_net, digits, cat):
    net, image = (default_net, cat) if which == "default" else digits
    result = net.probe(image, kinds=["blur"])
    original = result.images["original"].astype(np.float64)
    sigma = BLUR_SIGMA * min(original.shape[:2])
    if which == "default":
        assert sigma == pytest.approx(8.0)  # notebook 03's sigma on the 224-pixel cat
    radius = math.ceil(3 * sigma)
    reference = scipy.ndimage.gaussian_filter(original, sigma=(sigma, sigma, 0), mode="nearest", truncate=radius / sigma)
    reference = np.clip(np.round(reference), 0, 255)
    difference = np.abs(result.images["blur"].astype(np.float64) - reference)
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999  # only exact .5 ties may round apart
    assert np.abs(result.images["blur"].astype(np.float64) - original).mean() > 1  # it did blur


def test_silhouette_follows_its_rule():
    # a red disc on a blue ground with a little noise: the silhouette is the disc, black on white
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:20, :20]
    disc = (yy - 9.5) ** 2 + (xx - 11) ** 2 < 36
    picture = np.where(disc[..., None], [200, 30, 20], [20, 40, 180]).astype(np.int64)
    picture = np.clip(picture + rng.integers(-10, 11, picture.shape), 0, 255).astype(np.uint8)
    net = tiny_net()
    result = net.probe(picture, kinds=["silhouette"])
    np.testing.assert_array_equal(result.images["original"], picture)  # ToTensor alone: the pixels as they are
    np.testing.assert_array_equal(result.images["silhouette"], np.where(disc[..., None], 0, 255).repeat(3, -1))
    flat = net.probe(np.full((20, 20, 3), 90, np.uint8), kinds=["silhouette"])
    assert (flat.images["silhouette"] == 255).all()  # no object to find: all background


@pytest.mark.parametrize("which", ["default", "digits"])
def test_silhouette_thresholds_the_distance_from_the_border_colour_with_otsu(which, default_net, digits, cat):
    net, image = (default_net, cat) if which == "default" else digits
    result = net.probe(image, kinds=["silhouette"])
    picture = result.images["original"].astype(np.float64)
    frame = np.concatenate([picture[0], picture[-1], picture[1:-1, 0], picture[1:-1, -1]])
    distance = np.rint(np.linalg.norm(picture - np.median(frame, axis=0), axis=-1)).astype(np.int64)
    inside = distance > skimage.filters.threshold_otsu(distance)
    np.testing.assert_array_equal(result.images["silhouette"], np.where(inside[..., None], 0, 255).repeat(3, -1))


def test_texture_tiles_the_central_crop(default_net, cat):
    result = default_net.probe(cat, kinds=["texture"], grid=3)
    original, texture = result.images["original"], result.images["texture"]
    size = 224 // 3
    top = (224 - size) // 2
    patch = original[top:top + size, top:top + size]
    for y in range(0, 224, 37):
        for x in range(0, 224, 41):
            assert np.array_equal(texture[y, x], patch[y % size, x % size])


@pytest.mark.parametrize("which", ["default", "resnet", "digits"])
def test_probabilities_equal_a_plain_softmax_per_image(which, default_net, resnet, digits, cat):
    net, image = {"default": (default_net, cat), "resnet": (resnet, cat), "digits": digits}[which]
    before = model_state(net.model)
    result = net.probe(image, kinds=ALL, k=4)
    assert model_state(net.model) == before  # bytes, flags and hooks: also resnet's train mode and BN statistics
    assert result.kinds == ["original", *ALL]
    reference = {kind: plain_probabilities(net, Image.fromarray(result.images[kind])) for kind in ALL}
    reference["original"] = plain_probabilities(net, image=image)
    target = int(reference["original"].argmax())
    assert result.target.index == target and result.target.label == net.label(target)
    for kind in result.kinds:
        assert result.images[kind].shape == (*net.input_size, 3) and result.images[kind].dtype == np.uint8
        assert result.probability[kind] == pytest.approx(float(reference[kind][target]), abs=2e-5)
        values, indices = reference[kind].topk(4)
        top = result.top[kind]
        assert len(top) == 4
        np.testing.assert_allclose([p.probability for p in top], values.numpy(), atol=2e-5)
        ties = values[:-1] - values[1:] < 1e-5  # (near) ties may come in either order
        assert all(p.index == int(i) or tie for p, i, tie in zip(top, indices, [*ties.tolist(), False]))
        assert all(p.label == net.label(p.index) for p in top)
    assert [p.index for p in result.top["original"]] == [p.index for p in net.predict(image, k=4)]


def test_a_given_target_is_followed_by_label_and_by_index(digits):
    net, image = digits
    by_label, by_index = net.probe(image, "7", kinds=["grey", "blur"]), net.probe(image, 7, kinds=["grey", "blur"])
    assert by_label.target.index == by_index.target.index == 7
    assert by_label.probability == by_index.probability
    reference = plain_probabilities(net, image=image)
    assert by_label.probability["original"] == pytest.approx(float(reference[7]), abs=1e-6)
    assert by_label.change("blur") == pytest.approx(by_label.probability["blur"] - by_label.probability["original"])


def test_table_and_figure(digits):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net, image = digits
    result = net.probe(image, kinds=["shuffle", "grey"])
    lines = result.table().splitlines()
    assert len(lines) == 2 + 3 and [line.split()[0] for line in lines[2:]] == ["original", "shuffle", "grey"]
    for line, kind in zip(lines[2:], result.kinds):
        p, change = (float(v) for v in line.split()[1:3])
        assert p == pytest.approx(result.probability[kind], abs=1e-4)
        assert change == pytest.approx(result.change(kind), abs=1e-4)
        assert result.top[kind][0].label in line
    fig = result.figure()
    try:
        assert len(fig.axes) == 3 and "shuffle" in fig.axes[1].get_title()
    finally:
        plt.close(fig)


@pytest.mark.parametrize("options, match", [
    ({"kinds": ["shuffle", "colour"]}, "kind must be one of"),
    ({"kinds": ["grey", "grey"]}, "more than once"),
    ({"kinds": ["original"]}, "always the first"),
    ({"grid": 0}, "grid must be a positive integer"),
    ({"grid": 21}, "grid must be an integer between 1 and 20"),
    ({"grid": 2.5}, "grid"),
    ({"k": 0}, "k must be a positive integer"),
    ({"seed": -1}, "seed"),
    ({"grids": 4}, "no option 'grids'; did you mean 'grid'"),
    ({"target": cw.Unit("0", 1)}, "unit has none"),
    ({"target": Direction("0", torch.ones(4))}, "direction has none"),
])
def test_bad_options_raise_and_leave_the_model_alone(options, match):
    net = tiny_net()
    net.model.train()
    before = model_state(net.model)
    with pytest.raises(OptionError, match=match):
        net.probe(np.zeros((20, 20, 3), np.uint8), **options)
    assert model_state(net.model) == before


class FailsOnBatches(nn.Module):
    """Runs on one image (the layers are learned from one) and fails on the probes' batch."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 2, 3), nn.Linear(2, 3)

    def forward(self, x):
        if x.shape[0] > 1:
            raise RuntimeError("no batches here")
        return self.head(self.conv(x).mean((2, 3)))


def test_an_error_in_the_forward_pass_leaves_the_model_alone():
    net = cw.Network(FailsOnBatches(), preprocess=T.ToTensor())
    net.model.train()
    before = model_state(net.model)
    with pytest.raises(RuntimeError, match="no batches"):
        net.probe(np.zeros((12, 12, 3), np.uint8))
    assert model_state(net.model) == before and net.model.training
