"""Explorer panels over a dataset scan (top images, embedding, dead channels) and the contribution-tree crops.

The traits must carry exactly what the scan says: ``scan.top_images(unit)`` crops and
reconstructions byte for byte, ``scan.embedding(layer, "pca")``, ``scan.dead_channels(layer)``.
"""

import numpy as np
import pytest
import torch
from torch import nn

import cnn_widgets as cw
from cnn_widgets.widgets.panels import scan_layer, tree as tree_panel
from cnn_widgets.widgets.panels.top_images import DEFAULT_RECONSTRUCTION, RECONSTRUCTION_NOTES

PHOTOS = ("cat", "coffee", "rocket", "astronaut", "horse", "coins")


def scan_of(net, images, layers, k=3):
    return net.scan(images, layers=layers, k=k, progress=False)


# ------------------------------------------------------------------ energy crop of tree pictures
def picture_with_blob(size=224, top=150, left=30, side=20, value=1.0):
    p = torch.full((3, size, size), 0.5)
    p[:, top:top + side, left:left + side] = value
    return p


def test_energy_box_is_a_square_around_the_energy_at_least_a_quarter_of_the_side():
    p = picture_with_blob()
    top, left, bottom, right = tree_panel.energy_box(p)
    assert bottom - top == right - left, "square"
    assert bottom - top >= 224 // 4
    assert 0 <= top and 0 <= left and bottom <= 224 and right <= 224
    assert top <= 150 and bottom >= 170 and left <= 30 and right >= 50, "the blob is inside"
    assert bottom - top < 224 // 2, "a small blob gives a small crop"


def test_energy_box_holds_the_mass_and_ignores_a_faint_far_speck():
    p = picture_with_blob(top=100, left=100, side=40)
    p[:, 5, 5] = 0.52  # a faint speck far away: < 1% of the energy
    top, left, bottom, right = tree_panel.energy_box(p, pad=0.0, min_fraction=0.0)
    energy = (p - 0.5).abs().sum(0)
    inside = float(energy[top:bottom, left:right].sum() / energy.sum())
    assert inside >= 0.9
    assert top >= 90 and left >= 90, (top, left)


def test_energy_box_of_a_flat_picture_is_the_whole_picture_and_corners_are_clamped():
    assert tree_panel.energy_box(torch.full((3, 224, 224), 0.5)) == (0, 0, 224, 224)
    assert tree_panel.energy_box(torch.full((3, 100, 160), 0.5)) == (0, 30, 100, 130)
    corner = tree_panel.energy_box(picture_with_blob(top=0, left=214, side=10))
    assert corner[0] == 0 and corner[3] == 224 and corner[2] - corner[0] == corner[3] - corner[1] >= 56
    # uint8 H x W x 3 pictures (grey 128) give the same box as [3, H, W] floats
    p = picture_with_blob(top=60, left=120, side=30)
    as_uint8 = (p.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert tree_panel.energy_box(as_uint8) == tree_panel.energy_box(p)


def test_tree_sends_cropped_pictures_the_whole_pictures_and_each_crop_box(explorer):
    levels = explorer.tree["levels"]
    nodes = [levels[0], *levels[0]["children"]]
    n = explorer.tree_pictures.shape[0]
    assert explorer.tree_pictures.shape == (n, tree_panel.THUMBNAIL, tree_panel.THUMBNAIL, 3) and tree_panel.THUMBNAIL >= 112
    assert explorer.tree_full.shape == (n, tree_panel.FULL_THUMBNAIL, tree_panel.FULL_THUMBNAIL, 3)
    for node in nodes:
        top, left, bottom, right = node["box"]
        height, width = node["size"]
        assert bottom - top == right - left >= min(height, width) // 4
        assert 0 <= top < bottom <= height and 0 <= left < right <= width
    # the crop is the energy box of the picture the engine returns
    root = explorer.net.contribution_tree(explorer.image, explorer.resolved_target(), depth=1, k=explorer.k,
                                          rule=explorer.rule, reduce=explorer.reduce)
    assert list(tree_panel.energy_box(root.picture)) == levels[0]["box"]
    np.testing.assert_array_equal(explorer.tree_pictures[levels[0]["picture"]],
                                  tree_panel.thumbnail(root.picture, tree_panel.THUMBNAIL, tree_panel.energy_box(root.picture)))


# ------------------------------------------------------------------ the default model with a scan
@pytest.fixture(scope="module")
def scanned(net):
    explorer = cw.Explorer(net, window=112, stride=112)
    layer = explorer.layer
    scan = scan_of(net, [cw.sample_image(n) for n in PHOTOS], [layer], k=3)
    explorer.channel = 9
    explorer.scan = scan
    return explorer, scan, layer


def assert_top_images_are_the_scans(explorer, scan, layer, channel, method=DEFAULT_RECONSTRUCTION):
    expected = scan.top_images(cw.Unit(layer, channel), method=method)
    info = explorer.top_info
    assert info["unit"] == f"{layer}[{channel}]" == str(cw.Unit(layer, channel)) and info["message"] == "" and info["method"] == method
    assert [item["index"] for item in info["items"]] == [t.index for t in expected]
    assert [item["value"] for item in info["items"]] == [t.value for t in expected]
    assert [item["box"] for item in info["items"]] == [list(t.box) for t in expected]
    assert len(expected) == min(scan.k, scan.count)
    for i, (item, t) in enumerate(zip(info["items"], expected)):
        h, w = item["height"], item["width"]
        assert (h, w) == t.crop.shape[:2]
        np.testing.assert_array_equal(explorer.top_crops[i, :h, :w], t.crop)
        np.testing.assert_array_equal(explorer.top_reconstructions[i, :h, :w], t.reconstruction)
    assert explorer.top_crops.dtype == np.uint8 and explorer.top_reconstructions.dtype == np.uint8


def test_top_images_trait_carries_exactly_the_scans_top_images(scanned):
    explorer, scan, layer = scanned
    assert explorer.scan_info["count"] == len(PHOTOS) and explorer.scan_info["layers"] == [layer]
    assert_top_images_are_the_scans(explorer, scan, layer, 9)


def test_top_images_follow_the_channel_and_the_reconstruction_method(scanned):
    explorer, scan, layer = scanned
    explorer.channel = 4
    assert_top_images_are_the_scans(explorer, scan, layer, 4)
    assert explorer.top_info["note"] == RECONSTRUCTION_NOTES.get(DEFAULT_RECONSTRUCTION, "")
    explorer.reconstruction = "deconvnet"
    try:
        assert_top_images_are_the_scans(explorer, scan, layer, 4, method="deconvnet")
        # the caption says why deconvnet pictures look alike (Python writes it, the JS only draws it)
        assert explorer.top_info["note"] == RECONSTRUCTION_NOTES["deconvnet"]
        assert "ReLU masks" in RECONSTRUCTION_NOTES["deconvnet"] and "Adebayo" in RECONSTRUCTION_NOTES["deconvnet"]
    finally:
        explorer.reconstruction = DEFAULT_RECONSTRUCTION
        explorer.channel = 9
    with pytest.raises(Exception, match="reconstruction must be one of"):
        explorer.reconstruction = "magic"


def mean_pairwise_correlation(pictures) -> float:
    """Mean Pearson correlation over the pairs of pictures of the same shape (crops clipped at a border differ)."""
    flat = [np.asarray(p, np.float64) for p in pictures]
    values = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for i, a in enumerate(flat) for b in flat[i + 1:] if a.shape == b.shape]
    assert values, "no two pictures of the same shape"
    return float(np.mean(values))


@pytest.mark.slow
def test_the_default_reconstruction_differs_from_image_to_image(net):
    # The top patches' reconstructions must show what in each image drives the unit. The deconvnet's
    # barely depend on the image (it ignores the forward ReLU masks): its nine pictures are nearly one.
    scan = net.scan(cw.datasets.augmented_photos(n=24, seed=0), layers=["blocks.4.2", "blocks.5.3"], k=9, progress=False)
    table = {}
    for unit in (cw.Unit("blocks.4.2", 5), cw.Unit("blocks.5.3", 0)):  # the Explorer's default layer; a deep one
        tops = {m: scan.top_images(unit, method=m) for m in ("deconvnet", DEFAULT_RECONSTRUCTION)}
        table[str(unit)] = {"crops": mean_pairwise_correlation([t.crop for t in tops["deconvnet"]]),
                            **{m: mean_pairwise_correlation([t.raw_reconstruction for t in tops[m]]) for m in tops}}
    print("mean pairwise correlation of the top-9 reconstructions:", table)
    assert DEFAULT_RECONSTRUCTION != "deconvnet"
    for unit, row in table.items():
        assert row["deconvnet"] > 0.5, (unit, row)  # measured 1.00 (blocks.4.2[5]) and 0.95 (blocks.5.3[0]): nearly one picture
        assert row[DEFAULT_RECONSTRUCTION] < 0.5 * row["deconvnet"], (unit, row)  # guided backprop: 0.17 and 0.05 (the patches: 0.14 and 0.07)


def test_embedding_and_dead_channels_are_the_scans(scanned):
    explorer, scan, layer = scanned
    info = explorer.scan_layer_info
    assert info["layer"] == layer and info["in_scan"] and info["message"] == ""
    np.testing.assert_allclose(explorer.embedding, scan.embedding(layer, "pca").astype(np.float32), rtol=0, atol=0)
    assert explorer.embedding.dtype == np.float32 and explorer.embedding.shape == (len(PHOTOS), 2)
    assert explorer.embedding_labels is None and info["label_names"] == []  # photos without labels
    assert explorer.embedding_thumbs.shape[0] == len(PHOTOS) and info["thumb_step"] == 1
    dead = np.zeros(net_channels(explorer, layer), np.uint8)
    dead[scan.dead_channels(layer)] = 1
    np.testing.assert_array_equal(explorer.scan_dead, dead)


def net_channels(explorer, layer):
    return explorer.net.layer(layer).channels


def test_a_layer_outside_the_scan_says_so_and_back(scanned):
    explorer, scan, layer = scanned
    other = next(info.name for info in explorer.net.layers if info.name != layer and info.is_spatial)
    explorer.layer = other
    try:
        for message in (explorer.top_info["message"], explorer.scan_layer_info["message"]):
            assert f"layer {other} is not in this scan" in message and "net.scan(images, layers=" in message
        assert explorer.top_info["items"] == [] and explorer.top_crops is None
        assert explorer.scan_dead is None and explorer.embedding is None
        assert explorer.error == ""  # not an error of the widget: the panels explain it
    finally:
        explorer.layer = layer
        explorer.channel = 9
    assert_top_images_are_the_scans(explorer, scan, layer, 9)


def test_clicking_a_scanned_image_loads_it(scanned):
    explorer, scan, layer = scanned
    explorer._on_custom_message(explorer, {"type": "scan_image", "index": 2}, [])
    try:
        assert explorer.scan_index == 2 and explorer.image_name == "custom"
        np.testing.assert_array_equal(explorer.image_data, explorer.net.display_image(cw.sample_image(PHOTOS[2])))
        assert explorer.predictions[0]["index"] == explorer.net.predict(cw.sample_image(PHOTOS[2]))[0].index
        explorer._on_custom_message(explorer, {"type": "scan_image", "index": 99}, [])
        assert "out of range" in explorer.error and explorer.scan_index == 2
    finally:
        explorer.image_name = "cat"
    assert explorer.scan_index == -1 and explorer.error == ""


def test_detaching_the_scan_clears_the_panels(net):
    explorer = cw.Explorer(net, window=112, stride=112)
    assert explorer.scan is None and explorer.scan_info == {} and explorer.top_info == {}
    assert explorer.tab == "tree"
    scan = scan_of(net, [cw.sample_image(n) for n in PHOTOS[:3]], [explorer.layer], k=2)
    explorer.scan = scan
    assert explorer.tab == "top_images"  # a scan just attached is shown
    assert len(explorer.top_info["items"]) == 2 and explorer.embedding.shape == (3, 2)
    explorer.tab = "embedding"
    explorer.scan = None
    assert explorer.tab == "tree"  # the scan tabs are gone
    assert explorer.scan_info == {} and explorer.top_info == {} and explorer.scan_layer_info == {}
    assert explorer.top_crops is None and explorer.embedding is None and explorer.scan_dead is None
    with pytest.raises(Exception, match="net.scan"):
        explorer.scan = "not a scan"


# ------------------------------------------------------------------ a tiny model: labels and dead filters
class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 5, stride=4)
        self.conv2 = nn.Conv2d(6, 5, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3)
        with torch.no_grad():  # filter 2 of conv2 can never fire: zero weights, negative bias
            self.conv2.weight[2] = 0
            self.conv2.bias[2] = -1.0

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv2(torch.relu(self.conv1(x))))).flatten(1))


def test_labels_colour_the_embedding_and_dead_filters_are_flagged():
    net = cw.Network(TinyNet(), labels=["a", "b", "c"])
    layer = next(info.name for info in net.layers if info.name.startswith("conv2"))
    images = [(cw.sample_image(n), label) for n, label in zip(PHOTOS, ["dog", "cat", "dog", "bird", "cat", "dog"])]
    scan = scan_of(net, images, [layer], k=2)
    explorer = cw.Explorer(net, window=112, stride=112, scan=scan)
    explorer.layer = layer
    assert explorer.scan_info["labels"] is True
    assert explorer.scan_layer_info["label_names"] == ["bird", "cat", "dog"]
    np.testing.assert_array_equal(explorer.embedding_labels, np.array([2, 1, 2, 0, 1, 2], np.float32))
    assert 2 in scan.dead_channels(layer)
    assert explorer.scan_dead[2] == 1 and explorer.scan_layer_info["dead"] == len(scan.dead_channels(layer))
    np.testing.assert_array_equal(np.flatnonzero(explorer.scan_dead), scan.dead_channels(layer))
    explorer.channel = 1
    assert_top_images_are_the_scans(explorer, scan, layer, 1)
    assert [item["label"] for item in explorer.top_info["items"]] == [str(t.label) for t in scan.top_images(cw.Unit(layer, 1))]
    # image i back from the scan: the picture itself, not its label
    assert scan.image(3) is images[3][0]


def test_label_codes_name_integer_labels_by_class_names():
    codes, names = scan_layer.label_codes(np.array([3, 1, 3, 0]), ["zero", "one", "two", "three"])
    np.testing.assert_array_equal(codes, [2, 1, 2, 0])
    assert names == ["zero", "one", "three"]
    codes, names = scan_layer.label_codes([None, "x", None])
    np.testing.assert_array_equal(codes, [-1, 0, -1])
    assert names == ["x"]
    assert scan_layer.label_codes(None)[1] == []
