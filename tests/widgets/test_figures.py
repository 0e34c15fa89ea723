"""explorer.save_figure and plotting's *_figure: sizes, pixels against an independent blend, SVG text, errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

import cnn_widgets as cw
from cnn_widgets import plotting
from cnn_widgets.engine.errors import OptionError
from cnn_widgets.engine.saliency import METHODS
from cnn_widgets.widgets.colormaps import lut
from cnn_widgets.widgets.sizes import occlusion_defaults


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _region(png: np.ndarray, box, scale: int) -> np.ndarray:
    x, y, w, h = box
    return png[y:y + h:scale, x:x + w:scale]


def _blend(image, heat, table, opacity, alpha):
    """The renderer's blend written out in float64: image + (lut[v] - image) * clip(alpha(v) * opacity)."""
    H, W = image.shape[:2]
    v = heat[np.arange(H) * heat.shape[0] // H][:, np.arange(W) * heat.shape[1] // W]
    a = np.clip(alpha(v.astype(np.float64)) * opacity, 0, 1)[..., None]
    return image.astype(np.float64) + (table[v].astype(np.float64) - image) * a


def test_twice_the_pixels_at_scale_two(explorer, tmp_path):
    one = explorer.save_figure("saliency", tmp_path / "one.png", scale=1)
    two = explorer.save_figure("saliency", tmp_path / "two.png", scale=2)
    w1, h1 = Image.open(tmp_path / "one.png").size
    w2, h2 = Image.open(tmp_path / "two.png").size
    assert (w2, h2) == (2 * w1, 2 * h1)
    assert one["size"] == (w1, h1) and two["size"] == (w2, h2)


@pytest.mark.parametrize("scale", [1, 2])
def test_saliency_pixels_are_the_panel_array_through_inferno(explorer, tmp_path, scale):
    out = explorer.save_figure("saliency", tmp_path / "s.png", scale=scale)
    png = _png(tmp_path / "s.png")
    x, y, w, h = out["regions"]["saliency"]
    assert (w, h) == (explorer.image_data.shape[1] * scale, explorer.image_data.shape[0] * scale)
    expected = _blend(explorer.image_data, explorer.saliency, lut("inferno"), explorer.opacity, lambda v: np.sqrt(v / 255))
    shown = _region(png, out["regions"]["saliency"], scale).astype(np.float64)
    assert np.abs(shown - expected).max() <= 1.0
    # every pixel is a scale x scale block (no resampling)
    block = png[y:y + h, x:x + w]
    np.testing.assert_array_equal(block, np.repeat(np.repeat(block[::scale, ::scale], scale, 0), scale, 1))


def test_occlusion_pixels_follow_the_diverging_map(explorer, tmp_path):
    out = explorer.save_figure("occlusion", tmp_path / "o.png", scale=2)
    expected = _blend(explorer.image_data, explorer.occlusion, lut("coolwarm"), 1.0, lambda v: 0.2 + 0.65 * np.abs(v - 128) / 127)
    shown = _region(_png(tmp_path / "o.png"), out["regions"]["occlusion"], 2).astype(np.float64)
    assert np.abs(shown - expected).max() <= 1.0


def test_feature_map_tiles_use_the_chosen_colormap(explorer, tmp_path):
    explorer.colormap = "magma"
    C = explorer.fmap.shape[0]
    explorer.channel = C - 1  # the selection frame away from tile 0
    out = explorer.save_figure("feature_maps", tmp_path / "f.png", scale=2)
    png = _png(tmp_path / "f.png")
    x, y, _, _ = out["regions"]["feature_maps"]
    # tile 0 starts after a 2 px gap (4 px at 2x); its first pixel is map 0 at (0, 0) through magma
    np.testing.assert_array_equal(png[y + 4, x + 4], lut("magma")[explorer.fmap[0, 0, 0]])
    np.testing.assert_array_equal(png[y + 1, x + 1], [255, 255, 255])  # the gap


def test_svg_is_xml_with_the_caption_as_text(explorer, tmp_path, net):
    explorer.save_figure("saliency", tmp_path / "s.svg")
    root = ET.parse(tmp_path / "s.svg").getroot()
    texts = " ".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    top = net.predict(cw.sample_image("cat"), k=1)[0]
    assert f"{METHODS['guided_backprop'].label} for class {top.label}" in texts
    assert "Saliency" in texts


def test_predictions_svg_has_vector_bars_with_the_labels(explorer, tmp_path, net):
    explorer.save_figure("predictions", tmp_path / "p.svg")
    svg = (tmp_path / "p.svg").read_text()
    root = ET.fromstring(svg)
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for p in net.predict(cw.sample_image("cat"), k=5):
        assert p.label in texts and f"{100 * p.probability:.1f}%" in texts
    assert len(list(root.iter("{http://www.w3.org/2000/svg}path"))) >= 5  # the bars are paths, not pixels


def test_all_panels_in_one_figure(explorer, tmp_path):
    out = explorer.save_figure("all", tmp_path / "all.png", scale=1)
    assert {"image", "saliency", "occlusion", "feature_maps"} <= set(out["regions"])
    assert any(name.startswith("tree_") for name in out["regions"])
    png = _png(tmp_path / "all.png")
    np.testing.assert_array_equal(_region(png, out["regions"]["image"], 1), explorer.image_data)


def test_bad_requests_are_refused_and_change_nothing(explorer, tmp_path):
    before = {name: getattr(explorer, name) for name in ("colormap", "layer", "channel", "opacity", "request_seq")}
    with pytest.raises(OptionError, match="'predictions', 'saliency', 'occlusion', 'feature_maps', 'tree', 'all'.*did you mean 'saliency'"):
        explorer.save_figure("saliencyy", tmp_path / "x.png")
    with pytest.raises(OptionError, match="scale"):
        explorer.save_figure("saliency", tmp_path / "x.png", scale=0)
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.pdf"):
        explorer.save_figure("saliency", tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())
    assert before == {name: getattr(explorer, name) for name in before}


def test_engine_figure_matches_the_explorer_figure(explorer, net, tmp_path):
    out = explorer.save_figure("saliency", tmp_path / "w.png", scale=2)
    fig = plotting.saliency_figure(net, cw.sample_image("cat"), path=tmp_path / "e.png", scale=2)
    assert tuple(int(v) for v in fig.get_size_inches() * fig.dpi) == out["size"]
    np.testing.assert_array_equal(_png(tmp_path / "e.png"), _png(tmp_path / "w.png"))


# ------------------------------------------------------------------ plotting's defaults are the Explorer's
class Cifar(torch.nn.Module):
    """A 32 x 32 input model (CIFAR-sized), where a 48-pixel window cannot exist."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def small():
    import torchvision

    net = cw.Network(Cifar().eval(), preprocess=torchvision.transforms.ToTensor(), input_size=32)
    image = Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))
    return net, image


def test_occlusion_figure_on_a_32_pixel_model_is_the_explorers(small, tmp_path):
    # occlusion_figure used to hard-code window 48: "window 48 is larger than the 32x32 model input"
    net, image = small
    explorer = cw.Explorer(net, image)
    assert (explorer.window, explorer.stride) == tuple(occlusion_defaults(net.input_size).values()) == (7, 4)
    out = explorer.save_figure("occlusion", tmp_path / "w.png", scale=2)
    fig = plotting.occlusion_figure(net, image, path=tmp_path / "e.png", scale=2)
    assert tuple(int(v) for v in fig.get_size_inches() * fig.dpi) == out["size"]
    np.testing.assert_array_equal(_png(tmp_path / "e.png"), _png(tmp_path / "w.png"))


def test_occlusion_figure_defaults_follow_the_input_size(net, small, monkeypatch):
    seen = []
    for network in (net, small[0]):
        monkeypatch.setattr(network, "occlusion", lambda image, target, **options: seen.append(options) or torch.zeros(network.input_size))
        monkeypatch.setattr(network, "top_class", lambda image: 0)
        plotting.occlusion_figure(network, small[1])
        monkeypatch.undo()
    explorer_fill = cw.Explorer.class_traits()["fill"].default_value
    assert [(o["window"], o["stride"], o["fill"]) for o in seen] == [(48, 24, explorer_fill), (7, 4, explorer_fill)]


def test_figure_defaults_are_the_explorers(small, tmp_path):
    net, image = small
    explorer = cw.Explorer(net, image)
    for name, make in (("predictions", plotting.predictions_figure), ("saliency", plotting.saliency_figure)):
        explorer.save_figure(name, tmp_path / f"w_{name}.png", scale=1)
        make(net, image, path=tmp_path / f"e_{name}.png", scale=1)
        np.testing.assert_array_equal(_png(tmp_path / f"e_{name}.png"), _png(tmp_path / f"w_{name}.png"), err_msg=name)


@pytest.fixture()
def digits_explorer():
    return cw.Explorer(cw.digits_cnn())


def test_small_inputs_are_drawn_large_enough_to_read(digits_explorer, tmp_path):
    ex = digits_explorer
    side = ex.image_data.shape[0]
    assert side == 16  # the premise: the digits model's pictures are 16 px
    k = -(-224 // side)  # the least whole factor giving at least 224 px: 14
    out = ex.save_figure("saliency", tmp_path / "s.png", scale=2)
    x, y, w, h = out["regions"]["saliency"]
    assert (w, h) == (side * k * 2, side * k * 2)
    png = _png(tmp_path / "s.png")
    expected = _blend(ex.image_data, ex.saliency, lut("inferno"), ex.opacity, lambda v: np.sqrt(v / 255))
    shown = png[y:y + h:2 * k, x:x + w:2 * k].astype(np.float64)  # one pixel of each k x k block
    assert np.abs(shown - expected).max() <= 1.0
    block = png[y:y + h, x:x + w]  # every image pixel is a (2k) x (2k) block: enlarged, not resampled
    np.testing.assert_array_equal(block, np.repeat(np.repeat(block[::2 * k, ::2 * k], 2 * k, 0), 2 * k, 1))


def test_small_input_prediction_rows_do_not_overprint(digits_explorer, tmp_path):
    ex = digits_explorer
    ex.save_figure("predictions", tmp_path / "p.svg")
    root = ET.parse(tmp_path / "p.svg").getroot()
    labels = {p["label"] for p in ex.predictions}
    rows = [t for t in root.iter("{http://www.w3.org/2000/svg}text") if "".join(t.itertext()) in labels]
    assert len(rows) == 5
    ys = sorted(float(t.get("y")) for t in rows)
    size = float(rows[0].get("style").split("font-size: ")[1].split("px")[0])
    assert min(b - a for a, b in zip(ys, ys[1:])) >= 1.5 * size  # a line of text and some air between rows


@pytest.mark.parametrize("path_of, match", [
    (lambda d: None, r"save_figure needs a file path \(a str or pathlib\.Path such as 'figure\.png'\), not NoneType None"),
    (lambda d: 3.5, r"needs a file path.*not float 3\.5"),
    (lambda d: d / "missing" / "f.png", r"cannot write 'f\.png': the folder '.*missing' does not exist; create it first"),
    (lambda d: d / "file.png" / "f.png", r"'.*file\.png' is a file, not a folder"),
    (lambda d: d, r"is a folder; give save_figure a file in it, e\.g\. '.*figure\.png'"),
    (lambda d: d / "f.gif", r"cannot save a figure as 'f\.gif': use a \.png, \.svg or \.pdf file name"),
])
def test_bad_figure_paths_are_refused_before_anything_is_computed_or_written(explorer, tmp_path, path_of, match):
    (tmp_path / "file.png").write_bytes(b"")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    calls = []
    explorer.compute = lambda: calls.append(1)  # refused before the pending panels are computed
    with pytest.raises(OptionError, match=match):
        explorer.save_figure("all", path_of(tmp_path))
    assert calls == [] and sorted(p.name for p in tmp_path.rglob("*")) == before
