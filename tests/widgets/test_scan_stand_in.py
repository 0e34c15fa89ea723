"""A layer that a default scan leaves out because another scanned layer shows its top images: the
dataset panels name that layer and why, and still say how to scan the one asked for."""

from collections import OrderedDict

import torch
from torch import nn

import cnn_widgets as cw


def small_net():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 5, stride=4), relu1=nn.ReLU(inplace=True), pool1=nn.MaxPool2d(3, 2),  # 55 -> 27: covered
        conv2=nn.Conv2d(4, 6, 3, padding=1), relu2=nn.ReLU(), gap=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
        fc=nn.Linear(6, 3)))
    return cw.Network(model, labels=["a", "b", "c"])


def messages(explorer):
    return explorer.top_info["message"], explorer.scan_layer_info["message"]


def test_a_layer_the_default_left_out_names_its_stand_in_and_the_fix():
    net = small_net()
    images = [cw.sample_image(n) for n in ("cat", "coffee", "rocket")]
    scan = net.scan(images, k=2, progress=False)
    assert scan.layers == ["relu1", "relu2", "gap", "fc"]
    explorer = cw.Explorer(net, window=112, stride=112)
    explorer.scan = scan
    explorer.layer, explorer.channel = "conv1", 1
    for message in messages(explorer):
        assert message == ("layer conv1 is not in this scan: its top images are relu1's (the ReLU right after it is "
                           "monotone: same images, same positions wherever a channel fires); pick relu1, or scan it "
                           "with net.scan(images, layers=['conv1'])")
    assert explorer.top_info["items"] == [] and explorer.error == ""
    explorer.layer = "pool1"
    for message in messages(explorer):
        assert message.startswith("layer pool1 is not in this scan: its top images are relu1's (the max-pool windows "
                                  "of pool1 cover all of relu1: each channel keeps its maximum)")
    explorer.layer = "relu1"  # the stand-in itself: the scan's top images
    assert messages(explorer) == ("", "") and len(explorer.top_info["items"]) == 2
    # a scan without the stand-in: the plain message
    explorer.scan = net.scan(images, layers=["relu2"], k=2, progress=False)
    explorer.layer = "conv1"
    for message in messages(explorer):
        assert message.startswith("layer conv1 is not in this scan (it covers relu2)") and "layers=['conv1']" in message
