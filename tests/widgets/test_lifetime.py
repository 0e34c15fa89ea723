"""A closed Explorer is freed, and so are its network and model once the user drops them.

Before, anywidget tied every Explorer to a class-level file object (``_esm`` was the bundle's path)
with a strong reference: no Explorer was ever freed, each keeping its images, arrays and caches.
"""

from __future__ import annotations

import gc
import weakref

import cnn_widgets as cw


def test_a_closed_explorer_its_network_and_model_are_freed(tiny):
    model = type(tiny.model)()
    net = cw.Network(model, labels=["a", "b", "c"])
    explorer = cw.Explorer(net, window=112, stride=112)
    explorer.runner.wait(60)
    explorer.layer = explorer.layer  # a change, and the panels it runs
    explorer.runner.wait(60)
    gone = [weakref.ref(explorer), weakref.ref(net), weakref.ref(model)]
    explorer.close()
    del explorer, net, model
    gc.collect()
    assert [ref() is None for ref in gone] == [True, True, True]
