"""The unit a worker thread reads is always a real one: between a new layer and its channel reset
(the layer's observer), the pair (new layer, old channel) may not exist on the new layer. The kernel
soak hit it: a Visualise run started then failed with "channel 12 is out of range for layer '2'"."""

from __future__ import annotations

import cnn_widgets as cw


def test_the_unit_read_mid_layer_change_is_the_one_the_change_leads_to(explorer):
    wide = max(explorer.net.layers, key=lambda info: info.channels if info.is_spatial else 0)
    narrow = min((info for info in explorer.net.layers if info.is_spatial), key=lambda info: info.channels)
    explorer.layer, explorer.target = wide.name, "unit"
    explorer.channel = narrow.channels + 1  # exists on the wide layer, not on the narrow one
    with explorer.hold_trait_notifications():  # the layer is new, its observer has not run yet
        explorer.layer = narrow.name
        assert explorer.channel == narrow.channels + 1
        assert explorer.resolved_target() == cw.Unit(narrow.name, 0)
    assert (explorer.layer, explorer.channel) == (narrow.name, 0)
