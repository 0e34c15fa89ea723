"""Relevance maximisation in scans (``rank="relevance"``): each channel's top images by its relevance
for a class, checked against one LRP pass per image computed here; independent of the batch size;
saved with checksums, refused when damaged, resumed only with the same ranking; bad options refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnn_widgets as cw
from cnn_widgets.engine.digits_dataset import digits_split
from cnn_widgets.engine.scan import Scan, ScanError

LAYERS = ["relu1", "relu2"]
TARGET = 7


@pytest.fixture(scope="module")
def net():
    return cw.digits_cnn()


@pytest.fixture(scope="module")
def images():
    return [digits_split("test")[i][0] for i in range(14)]


def relevance_alone(net, image, layer: str) -> np.ndarray:
    """Every channel's relevance for TARGET on one image: one plain LRP pass, ``sum_p h * grad``."""
    x = net.prepare(image).requires_grad_(True)
    with net._session("lrp:epsilon_plus_flat"), torch.enable_grad():
        logits, outputs = net._forward(x, [layer])
        (grad,) = torch.autograd.grad(logits[0, TARGET], outputs[layer])
    return (outputs[layer] * grad)[0].flatten(1).sum(1).detach().numpy()


def test_the_relevance_ranking_is_each_channels_relevance_for_the_class(net, images):
    scan = net.scan(images, layers=LAYERS, k=4, rank="relevance", target=TARGET, batch_size=5, progress=False)
    assert scan.ranking.target == TARGET and scan.ranking.composite == "epsilon_plus_flat"
    for layer in LAYERS:
        table = np.stack([relevance_alone(net, image, layer) for image in images])  # [images, channels]
        top = scan.top(layer, by="relevance")
        for channel in range(table.shape[1]):
            order = np.argsort(-table[:, channel], kind="stable")[:4]
            np.testing.assert_allclose(top["values"][channel], table[order, channel], rtol=1e-4, atol=1e-6)  # float32, batch of 5 vs 1
            assert set(top["indices"][channel]) == set(order) or np.allclose(  # ties may swap equal values
                table[top["indices"][channel], channel], table[order, channel], atol=1e-6)
    # the activation ranking is kept as before, beside it
    plain = net.scan(images, layers=LAYERS, k=4, batch_size=5, progress=False)
    for layer in LAYERS:
        np.testing.assert_array_equal(scan.top(layer)["indices"], plain.top(layer)["indices"])
    # the same tables whatever the batch size
    whole = net.scan(images, layers=LAYERS, k=4, rank="relevance", target=TARGET, batch_size=14, progress=False)
    for layer in LAYERS:
        np.testing.assert_array_equal(whole.top(layer, by="relevance")["indices"], scan.top(layer, by="relevance")["indices"])
    # top images by relevance: the patch where the channel's relevance peaks
    tops = scan.top_images(cw.Unit("relu2", 3), method=None, by="relevance")
    assert [t.index for t in tops] == list(scan.top("relu2", by="relevance")["indices"][3])


def test_bad_ranking_options_are_refused(net, images):
    with pytest.raises(cw.OptionError, match="pass target=<class index or label>"):
        net.scan(images, layers=LAYERS, rank="relevance", progress=False)
    with pytest.raises(cw.OptionError, match="rank must be one of"):
        net.scan(images, layers=LAYERS, rank="relevant", target=3, progress=False)
    with pytest.raises(cw.OptionError, match="target is an option of rank='relevance'"):
        net.scan(images, layers=LAYERS, target=3, progress=False)
    with pytest.raises(cw.OptionError, match="composite is an option of rank='relevance'"):
        net.scan(images, layers=LAYERS, composite="zero", progress=False)
    with pytest.raises(cw.OptionError, match="local backend"):
        net.scan(images, layers=LAYERS, rank="relevance", target=3, backend="ray", progress=False)
    with pytest.raises(cw.OptionError, match="composite must be one of"):
        net.scan(images, layers=LAYERS, rank="relevance", target=3, composite="flat", progress=False)
    with pytest.raises(cw.TargetError):
        net.scan(images, layers=LAYERS, rank="relevance", target=10, progress=False)
    plain = net.scan(images, layers=LAYERS, k=2, progress=False)
    with pytest.raises(ScanError, match="ranked images by activation only"):
        plain.top_images(cw.Unit("relu2", 0), by="relevance")


def test_a_saved_relevance_scan_loads_checked_and_resumes_only_with_its_ranking(net, images, tmp_path):
    scan = net.scan(images, layers=LAYERS, k=3, rank="relevance", target=TARGET, batch_size=5, progress=False)
    path = tmp_path / "scan.pt"
    scan.save(path)
    loaded = Scan.load(path, net, images=images)
    assert loaded.ranking == scan.ranking
    for layer in LAYERS:
        for field in ("values", "indices", "positions"):
            np.testing.assert_array_equal(loaded.top(layer, by="relevance")[field], scan.top(layer, by="relevance")[field])
    # a changed relevance value, or its ranking's class, is refused: the checksums cover both
    payload = torch.load(path, weights_only=True)
    payload["relevance"]["state"]["relu2"]["top_values"][0, 0] += 1.0
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ScanError, match="relevance table of layer 'relu2' does not match its checksum"):
        Scan.load(tmp_path / "bad.pt", net, images=images)
    payload = torch.load(path, weights_only=True)
    payload["relevance"]["ranking"]["target"] = 3
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ScanError, match="relevance ranking does not match its checksum"):
        Scan.load(tmp_path / "bad.pt", net, images=images)
    # resuming keeps the ranking: another class, or none, is refused; the same one is accepted
    with pytest.raises(ScanError, match="resume keeps the original ranking"):
        net.scan(images, resume=loaded, rank="relevance", target=3, progress=False)
    with pytest.raises(ScanError, match="resume keeps the original ranking"):
        net.scan(images, resume=loaded, progress=False)
    again = net.scan(images, resume=loaded, rank="relevance", target=TARGET, progress=False)
    assert again.ranking == scan.ranking and again.count == len(images)
