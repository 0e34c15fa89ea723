"""Activation atlas against independent references: binning and averaging against a loop over the
points, cell directions against ``net.activations`` at the sampled positions, icons against a
closed-form optimum, and the class filter against finite differences through the rest of the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms as T

import cnn_widgets as cw
from cnn_widgets.engine.atlas import atlas, bin_points, cell_means, direction_icons, direction_values, layout
from cnn_widgets.engine.errors import LayerNotFoundError, OptionError
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.visualize.objectives import Direction, objective_value

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net(dtype=torch.float32, seed=0) -> cw.Network:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.4)
    return cw.Network(model.to(dtype), preprocess=T.Compose([T.Resize((16, 16)), T.ToTensor()]), labels=list("abcd"))


def images(n=8, seed=1, side=16):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(side, side, 3, generator=g).numpy() * 255).astype(np.uint8) for _ in range(n)]


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()], hook_count(model))


# ---------------------------------------------------------------- binning and averaging
def test_binning_and_cell_means_match_a_loop_over_the_points():
    rng = np.random.default_rng(0)
    coords = rng.random((500, 2)).astype(np.float32)
    coords[:3] = [[0, 0], [1, 1], [1, 0]]  # the edges land in the first and last cells
    vectors = rng.normal(size=(500, 7)).astype(np.float32)
    grid = 5
    rows, cols = bin_points(coords, grid)
    counts, means = cell_means(vectors, rows, cols, grid)
    ref_counts = np.zeros((grid, grid), int)
    ref_sums = np.zeros((grid, grid, 7))
    for (x, y), v in zip(coords.astype(np.float64), vectors.astype(np.float64)):
        r, c = min(int(y * grid), grid - 1), min(int(x * grid), grid - 1)
        ref_counts[r, c] += 1
        ref_sums[r, c] += v
    np.testing.assert_array_equal(counts, ref_counts)
    assert counts.sum() == len(vectors)
    np.testing.assert_allclose(means, ref_sums / np.maximum(ref_counts, 1)[..., None], rtol=1e-5, atol=1e-6)
    assert (rows[1], cols[1]) == (grid - 1, grid - 1) and (rows[2], cols[2]) == (0, grid - 1)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_layout_is_normalised_and_deterministic(method):
    vectors = np.random.default_rng(0).normal(size=(60, 5))
    a, b = layout(vectors, method, seed=3), layout(vectors, method, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (60, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a.min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(a.max(axis=0), 1, atol=1e-6)


def test_cells_average_the_activations_measured_at_the_sampled_positions():
    net, pictures = tiny_net(), images(6)
    result = atlas(net, pictures, "3", grid=3, positions=5, method="pca", visualize=False, size=8, progress=False)
    m = len(result.coordinates)
    assert m == 6 * 5 == len(result.image_index) == len(result.positions)
    assert sum(c.count for c in result.cells) == m == result.counts.sum()
    rows, cols = bin_points(result.coordinates, 3)
    for cell in result.cells:
        members = np.flatnonzero((rows == cell.row) & (cols == cell.col))
        np.testing.assert_array_equal(np.sort(cell.samples), members)
        measured = [net.activations(pictures[result.image_index[s]], ["3"])["3"][:, y, x].numpy()
                    for s, (y, x) in zip(members, result.positions[members])]
        np.testing.assert_allclose(cell.direction, np.mean(measured, axis=0), rtol=1e-5, atol=1e-6)
        assert 1 <= len(cell.top) <= min(9, cell.count) and cell.icon.dtype == np.uint8 and cell.icon.shape == (8, 8, 3)
        assert all((i, y, x) in {(int(result.image_index[s]), *map(int, result.positions[s])) for s in members}
                   for i, y, x in cell.top)
    # positions in one image are distinct, and within the 8x8 map of layer "3"
    for i in range(6):
        yx = result.positions[result.image_index == i]
        assert len({tuple(p) for p in yx}) == 5 and yx.min() >= 0 and yx.max() < 8
    assert result.image.size == (24, 24)


# ---------------------------------------------------------------- icons against a closed form
def linear_net() -> cw.Network:
    """Layer "0" is a 1x1 convolution of the pixels: ``h = W x + b`` at every position."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[2.0, -1.5, 1.0], [-1.0, 2.0, 1.5], [1.0, 1.0, -2.0], [0.5, -2.0, 1.0]])[:, :, None, None])
        model[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    return cw.Network(model, preprocess=T.Compose([T.Resize((24, 24)), T.ToTensor()]))


def test_batched_direction_values_equal_the_direction_objective_row_by_row():
    h = torch.randn(3, 5, 4, 4, dtype=torch.float64)
    v = torch.randn(3, 5, dtype=torch.float64)
    for p in (0.0, 1.0, 2.0):
        batched = direction_values(h, v, p)
        single = [objective_value(Direction("l", v[i], p), None, {"l": h[i:i + 1]})[0] for i in range(3)]
        torch.testing.assert_close(batched, torch.stack(single))


def test_direction_icons_approach_the_closed_form_optimum_of_a_linear_layer():
    """max over pixels in [0, 1] of mean <W x + b, v> is reached at x_c = [(W^T v)_c > 0], worth
    sum_c max(0, (W^T v)_c) + <b, v>. Every icon of the batch must climb towards its own direction's
    optimum and score best on its own direction."""
    net = linear_net()
    w, b = net.model[0].weight[:, :, 0, 0].detach(), net.model[0].bias.detach()
    v = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.3, -1.0, 0.2, 1.0]])
    optimum = torch.stack([(w.T @ vi).clamp_min(0).sum() + b @ vi for vi in v])

    def reached(icons):  # [icon, direction] / optimum, measured again through the network
        x = torch.from_numpy(icons).permute(0, 3, 1, 2).float() / 255
        h = torch.stack([net.activations(xi, ["0"])["0"] for xi in x])
        return torch.einsum("nchw,dc->nd", h, v) / h[0, 0].numel() / optimum

    # plain pixels, no colour mixing: Adam walks every pixel to its corner
    plain, _ = direction_icons(net, "0", v, steps=60, size=24, seed=0, cossim_power=0.0, progress=False,
                               param="pixel", decorrelate=False, transforms="none", lr=0.2)
    assert (reached(plain).diagonal() > 0.97).all()
    # the default (decorrelated Fourier basis, Lucid's transforms) climbs more slowly: the colour
    # differences are the weak directions of the decorrelated basis; it must still climb
    short, _ = direction_icons(net, "0", v, steps=20, size=24, seed=0, cossim_power=0.0, progress=False)
    icons, interrupted = direction_icons(net, "0", v, steps=150, size=24, seed=0, cossim_power=0.0, progress=False)
    assert not interrupted and icons.shape == (4, 24, 24, 3) and icons.dtype == np.uint8
    ratio, before = reached(icons), reached(short)
    assert (ratio.diagonal() > 0.5).all() and (ratio.diagonal() > before.diagonal()).all()
    assert (ratio.argmax(dim=0) == torch.arange(4)).all()  # icon i is the one that best drives direction i
    for icon, vi in zip(icons, v):
        gain = w.T @ vi
        main = int(gain.abs().argmax())
        assert (icon[..., main].mean() / 255 > 0.5) == bool(gain[main] > 0)


def test_patch_icons_of_a_one_pixel_receptive_field_are_the_mean_sampled_colour():
    net, pictures = linear_net(), images(5, side=24)
    result = atlas(net, pictures, "0", grid=2, positions=6, method="pca", visualize=False, size=8, progress=False)
    for cell in result.cells:
        colours = [pictures[result.image_index[s]][y, x] for s, (y, x) in zip(cell.samples, result.positions[cell.samples])]
        np.testing.assert_allclose(cell.icon.reshape(-1, 3).astype(float), np.mean(colours, axis=0)[None].repeat(64, 0),
                                   atol=1.0)


# ---------------------------------------------------------------- class filter: exact directional derivative
def test_class_filter_ranks_cells_by_the_directional_derivative_of_the_logit_finite_differences():
    net, pictures = tiny_net(torch.float64), images(5)
    result = atlas(net, pictures, "1", grid=3, positions=4, method="pca", visualize=False, size=8, progress=False)
    head = net.model[2:]  # everything after layer "1"
    target = 2
    eps = 1e-6
    expected = []
    for cell in result.cells:
        d = torch.from_numpy(cell.direction).double()
        values = []
        for s in cell.samples:
            h = net.activations(pictures[result.image_index[s]], ["1"])["1"][None].double()
            y, x = result.positions[s]
            bump = torch.zeros_like(h)
            bump[0, :, y, x] = d
            with torch.no_grad():
                values.append(float((head(h + eps * bump)[0, target] - head(h - eps * bump)[0, target]) / (2 * eps)))
        expected.append(np.mean(values))
    scores = result.attributions(target, progress=False)
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-9)
    filtered = result.class_filter("c", k=3, progress=False)
    order = np.argsort(-np.asarray(expected), kind="stable")[:3]
    assert [(c.row, c.col) for c in filtered.cells] == [(result.cells[i].row, result.cells[i].col) for i in order]
    assert [c.score for c in filtered.cells] == pytest.approx([expected[i] for i in order], rel=1e-6)
    assert filtered.image.size == result.image.size and len(result.cells) >= 3  # the original is unchanged


# ---------------------------------------------------------------- determinism, model untouched, options
def test_same_seed_same_atlas_and_the_model_is_untouched():
    net, pictures = tiny_net(), images(6)
    net.model.train()  # must come back in train mode
    before = snapshot(net.model)
    kwargs = dict(grid=3, positions=3, method="tsne", steps=5, size=16, progress=False)
    a, b = atlas(net, pictures, "3", seed=4, **kwargs), atlas(net, pictures, "3", seed=4, **kwargs)
    a.class_filter(1, k=2, progress=False)
    np.testing.assert_array_equal(a.coordinates, b.coordinates)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert [(c.row, c.col, c.count, c.top) for c in a.cells] == [(c.row, c.col, c.count, c.top) for c in b.cells]
    assert all(np.array_equal(c.icon, d.icon) for c, d in zip(a.cells, b.cells))
    other = atlas(net, pictures, "3", seed=5, **kwargs)
    assert not np.array_equal(other.positions, a.positions)
    state, training, grads, hooks = before
    assert all(torch.equal(state[k], v) for k, v in net.model.state_dict().items())
    assert [m.training for m in net.model.modules()] == training
    assert [p.requires_grad for p in net.model.parameters()] == grads
    assert hook_count(net.model) == hooks and all(p.grad is None for p in net.model.parameters())


@pytest.mark.parametrize("options", [dict(grid=0), dict(grid=2.5), dict(positions=0), dict(method="umapp"),
                                     dict(visualize=1), dict(steps=-1), dict(size=4), dict(seed=-1),
                                     dict(cossim_power=-1.0), dict(progress="yes")])
def test_bad_options_raise_option_error(options):
    with pytest.raises(OptionError):
        atlas(tiny_net(), images(2), "3", **options)


def test_bad_layer_and_bad_class_filter_options():
    net = tiny_net()
    with pytest.raises(LayerNotFoundError):
        atlas(net, images(2), "nope", progress=False)
    result = atlas(net, images(3), "3", grid=2, positions=2, method="pca", visualize=False, size=8, progress=False)
    with pytest.raises(OptionError):
        result.class_filter(0, k=0)
    with pytest.raises(OptionError):
        result.class_filter(cw.Unit("1", 0))  # a unit below the atlas layer cannot be raised by it
    assert hook_count(net.model) == 0


def test_a_pooled_layer_gives_one_vector_per_image_and_a_scan_gives_its_images():
    net, pictures = tiny_net(), images(6)
    pooled = atlas(net, pictures, "4", grid=2, positions=4, method="pca", visualize=False, size=8, progress=False)
    assert len(pooled.coordinates) == 6 and (pooled.positions == 0).all()
    assert pooled.patches(pooled.cells[0])[0].shape == (16, 16, 3)  # a global field: the whole image
    scan = net.scan(pictures, layers=["3"], progress=False)
    from_scan = atlas(net, scan, "3", grid=2, positions=2, method="pca", visualize=False, size=8, progress=False)
    direct = atlas(net, pictures, "3", grid=2, positions=2, method="pca", visualize=False, size=8, progress=False)
    np.testing.assert_array_equal(from_scan.coordinates, direct.coordinates)


def test_ctrl_c_during_sampling_keeps_the_whole_batches_covered():
    class Interrupting(torch.utils.data.Dataset):
        def __init__(self, items):
            self.items = items

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            if i == 6:
                raise KeyboardInterrupt
            return self.items[i]

    net = tiny_net()
    with pytest.warns(UserWarning, match="interrupted"):
        result = atlas(net, Interrupting(images(10)), "3", grid=2, positions=2, method="pca", visualize=False,
                       size=8, batch_size=3, progress=False)
    assert result.interrupted and sorted(set(result.image_index.tolist())) == list(range(6))
    assert hook_count(net.model) == 0 and not net.model.training


def test_umap_needs_its_optional_package():
    pytest.importorskip  # umap-learn is optional; without it the error names the fix
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(OptionError, match="umap-learn"):
            layout(np.random.default_rng(0).normal(size=(20, 4)), "umap")
    else:
        assert layout(np.random.default_rng(0).normal(size=(20, 4)), "umap").shape == (20, 2)


@pytest.mark.slow
def test_default_model_atlas_with_icons(no_network):
    net = cw.load_default()
    photos = [photo for photo, _ in zip(cw.datasets.photos(), range(4))]
    photos = [p[0] if isinstance(p, tuple) else p for p in photos]
    before = snapshot(net.model)
    result = atlas(net, photos, "blocks.4.2", grid=3, positions=4, steps=3, size=64, progress=False)
    assert sum(c.count for c in result.cells) == 16 and result.image.size == (192, 192)
    assert all(c.icon.shape == (64, 64, 3) and c.direction.shape == (112,) for c in result.cells)
    cats = result.class_filter("tabby", k=2, progress=False)
    assert len(cats.cells) == 2 and cats.cells[0].score >= cats.cells[1].score
    assert hook_count(net.model) == before[3]


def test_an_icon_is_the_feature_visualisation_of_its_direction_one_ascent_loop():
    """Icons and net.visualize share one ascent loop: a batch of one direction (seed 0 -> generator
    seed 0 for batch 0), without transforms, gives exactly visualize's picture of that Direction."""
    from cnn_widgets.engine.visualize import visualize

    net = linear_net()
    v = torch.tensor([0.3, -1.0, 0.2, 1.0])
    for p, param in ((0.0, "fourier"), (1.0, "fourier"), (1.0, "pixel")):
        icons, _ = direction_icons(net, "0", v[None], steps=15, size=24, seed=0, cossim_power=p, progress=False,
                                   transforms="none", batch=1, param=param)
        picture = visualize(net, Direction("0", v, p), steps=15, size=24, seed=0, transforms="none", param=param,
                            progress=False)
        np.testing.assert_array_equal(icons[0], np.asarray(picture.image))
        assert picture.objective[-1] > picture.objective[0]
