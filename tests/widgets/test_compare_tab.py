"""The Explorer's Compare tab (panels/compare.py, compare_tab.py): the chosen methods side by side,
the image's probes, and a second network on the same image (``compare=other_net``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from traitlets import TraitError

import cnn_widgets as cw
from cnn_widgets.engine.digits_dataset import digits_split
from cnn_widgets.engine.sanity import randomized_copy
from test_progress import assert_untouched, fingerprint, front_end_update
from test_trust_tab import digit, digits  # noqa: F401 (module fixtures: the digits CNN and a test digit)


@pytest.fixture(scope="module")
def randomised(digits):
    labels = [digits.label(i) for i in range(digits.num_classes)]
    return cw.Network(randomized_copy(digits.model, ["fc", "conv2"]), preprocess=digits.preprocess, labels=labels,
                      name="randomised")


def softmax_of(net, image) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(net.model.eval()(net.prepare(image)).double(), dim=1)[0]


def test_a_second_network_is_shown_beside_the_first(digits, digit, randomised):
    before, before_other = fingerprint(digits.model), fingerprint(randomised.model)
    explorer = cw.Explorer(digits, digit, compare=randomised, layer="relu1", channel=3)
    assert explorer.tab == "compare" and explorer.error == ""
    other = explorer.compare_info["other"]
    assert other["name"] == "randomised" and other["layer"] == "relu1" and other["channels"] == list(range(3, 11))
    # its predictions are the other model's softmax, computed here without the engine
    probabilities = softmax_of(randomised, digit)
    best = torch.argsort(probabilities, descending=True)[:5]
    assert [p["index"] for p in other["predictions"]] == best.tolist()
    np.testing.assert_allclose([p["probability"] for p in other["predictions"]], probabilities[best].numpy(), atol=1e-6)
    # the feature maps are the selected layer's channels 3..10 of each network (relu1 is before the randomised stages:
    # the same values, so the same tiles)
    ours, theirs = explorer.compare_fmaps, explorer.compare_other_fmaps
    assert ours.shape[0] == theirs.shape[0] == 8
    np.testing.assert_array_equal(ours, theirs)
    with torch.no_grad():
        activation = digits.activations(digit, ["relu1"])["relu1"][3:11]
    expected = np.round(activation.numpy() / float(activation.max()) * 255)  # relu: min 0, shared scale
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1
    # the randomised classifier explains the same class with another map
    assert explorer.compare_other_saliency.shape == explorer.saliency.shape
    assert not np.array_equal(explorer.compare_other_saliency, explorer.saliency)
    assert_untouched(digits.model, before)
    assert_untouched(randomised.model, before_other)


def test_the_methods_row_shows_each_method_as_the_saliency_panel_does(digits, digit):
    explorer = cw.Explorer(digits, digit, tab="compare")
    info = explorer.compare_info
    assert info["methods"] == explorer.trust_methods and info["other"] == {}
    for i, method in enumerate(info["methods"]):
        explorer.method = method
        explorer.compute()
        np.testing.assert_array_equal(explorer.compare_maps[i], explorer.saliency)


def test_probes_report_the_softmax_of_each_probed_picture(digits, digit):
    explorer = cw.Explorer(digits, digit, tab="compare")
    probes = explorer.compare_info["probes"]
    target = digits.top_class(digit)
    assert [p["kind"] for p in probes] == ["original", "shuffle", "silhouette", "grey", "blur"]
    mean, std = digits.preprocess.transforms[-1].mean, digits.preprocess.transforms[-1].std  # Normalize
    for p, picture in zip(probes, explorer.compare_probes):
        pixels = torch.from_numpy(picture.astype(np.float64) / 255.0).permute(2, 0, 1)[None]  # the picture shown
        x = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            probability = torch.softmax(digits.model.eval()(x.float()).double(), dim=1)[0, target]
        assert p["probability"] == pytest.approx(float(probability), abs=2e-5)
        assert p["change"] == pytest.approx(p["probability"] - probes[0]["probability"], abs=1e-9)


def test_nothing_is_computed_while_the_tab_is_hidden(digits, digit):
    explorer = cw.Explorer(digits, digit)
    assert "compare" not in explorer.timings and explorer.compare_info == {}
    explorer.image = digits_split("test")[5][0]
    explorer.compute()
    assert "compare" not in explorer.timings
    explorer.tab = "compare"
    explorer.compute()
    assert "compare" in explorer.timings and explorer.compare_info["methods"]


def test_a_unit_target_and_a_missing_layer_are_notes_not_errors(digits, digit):
    tiny = cw.Network(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                          torch.nn.Flatten(), torch.nn.Linear(2, 10)), preprocess=digits.preprocess)
    explorer = cw.Explorer(digits, digit, compare=tiny, target="unit", layer="relu1", channel=0)
    info = explorer.compare_info
    assert explorer.error == "" and "class's probability" in info["probe_note"] and explorer.compare_probes is None
    assert "no unit relu1[0]" in info["other"]["note"] and "no layer relu1" in info["other"]["note"]
    assert explorer.compare_other_saliency is None and explorer.compare_fmaps is None


def test_a_bad_second_network_is_refused(digits, digit):
    explorer = cw.Explorer(digits, digit)
    with pytest.raises(TraitError, match="compare_net.*a Network or a Module"):
        explorer.compare_net = "resnet"
    with pytest.raises(cw.CnnWidgetsError, match="conv"):
        explorer.compare_net = torch.nn.Linear(3, 2)  # nothing to explore: no convolution
    assert explorer.compare_net is None
    front_end_update(explorer, tab="compare")
    assert explorer.compare_info["other"] == {}


def test_a_second_network_that_cannot_take_the_image_is_a_note(digits, digit):
    class Needs32(torch.nn.Module):  # runs on 32 x 32 inputs only
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4 * 30 * 30, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    import torchvision.transforms as T

    no_resize = T.Compose([T.Grayscale(3), T.ToTensor()])  # the 8 x 8 digit stays 8 x 8
    other = cw.Network(Needs32(), preprocess=no_resize, input_size=32, name="needs 32 px")
    explorer = cw.Explorer(digits, digit, compare=other)
    info = explorer.compare_info
    assert explorer.error == "" and info["other"]["name"] == "needs 32 px"
    assert info["other"]["note"].startswith("the other network:") and info["other"]["predictions"] == []
    assert info["methods"] == explorer.trust_methods and len(info["probes"]) == 5  # the rest of the tab is there
