"""The engine never keeps a model alive: once the user drops the network and the model, both are
freed, whatever was computed on them (the caches are per model and weak).

Before, every model occluded incrementally stayed in memory for the process's life (its cached
plan held it strongly inside a weak-key table): a notebook trying a few large models grew by their
weights each time, and the test suite's process to ~6 GB.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torchvision

import cnn_widgets as cw

pytestmark = pytest.mark.usefixtures("one_thread")


CALLS = {
    "occlusion (incremental)": lambda net, img: net.occlusion(img, window=96, stride=64),
    "occlusion (full)": lambda net, img: net.occlusion(img, window=96, stride=64, execution="full"),
    "saliency": lambda net, img: net.saliency(img, method="guided_backprop"),
    "grad_cam": lambda net, img: net.saliency(img, method="grad_cam"),
    "contribution tree": lambda net, img: net.contribution_tree(img, depth=2, k=2),
    "visualize": lambda net, img: net.visualize(cw.Unit("layer1.1", 0), steps=2, size=32, progress=False),
    "scan": lambda net, img: net.scan([img] * 3, progress=False),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_the_model_is_freed_after_the_network_is_dropped(name):
    model = torchvision.models.resnet18(weights=None)
    gone = weakref.ref(model)
    weight = weakref.ref(model.conv1.weight)
    net = cw.Network(model)
    image = cw.sample_image("coffee").resize((160, 160))
    result = CALLS[name](net, image)
    del net, model, result
    gc.collect()
    assert gone() is None, f"after {name}, the model is still referenced by {gc.get_referrers(gone())[:3]}"
    assert weight() is None
