"""Occlusion at lecture speed: what is kept and shown again at once, and what a superseded request may draw.

Every exact run keeps the drops of every class (a class target) or every channel of the unit's layer
(``panels/occlusion.py``): another class, another channel of the layer, or going back to an earlier
window on the same image is shown without running the model. Each map shown that way is compared
with one the engine computes afresh by running the whole network per occluded copy
(``execution="full"``), an independent path; a kept map must never outlive the image or the weights
it was computed with.
"""

import threading

import numpy as np
import pytest
import torch

import cnn_widgets as cw
from cnn_widgets.widgets.panels.occlusion import occlusion_display
from test_progress import as_in_a_kernel, front_end_update

WINDOW, STRIDE = 112, 56  # 3 x 3 windows on the 224 px input: quick
LAYER = "blocks.4.2"


def count_engine_runs(monkeypatch, net, on_batch=None):
    """Count the panel's calls of net.occlusion (a kept map needs none); ``on_batch(window)`` after each batch."""
    calls = []
    real = net.occlusion

    def occlusion(*args, callback=None, **kwargs):
        if callback is None:  # the test's own direct call
            return real(*args, **kwargs)
        calls.append(kwargs["window"])

        def spy(done, total, heat):
            if on_batch is not None:
                on_batch(kwargs["window"])
            return callback(done, total, heat)

        return real(*args, callback=spy, **kwargs)

    monkeypatch.setattr(net, "occlusion", occlusion)
    return calls


def fresh(net, image, target, window=WINDOW, stride=STRIDE, fill="mean"):
    """The map computed again from scratch, by the whole network per occluded copy."""
    return net.occlusion(image, target, window=window, stride=stride, fill=fill, execution="full", progress=False)


def assert_shows(explorer, expected):
    tolerance = 5e-5 * float(expected.abs().max())
    torch.testing.assert_close(explorer.panels["occlusion"].heat, expected, rtol=0, atol=tolerance)
    picture, extent = occlusion_display(expected)
    assert np.abs(explorer.occlusion.astype(int) - picture.astype(int)).max() <= 1
    assert explorer.occlusion_info["extent"] == pytest.approx(extent, rel=1e-4)


def test_another_channel_another_class_and_going_back_are_shown_at_once(net, monkeypatch):
    explorer = cw.Explorer(net, window=WINDOW, stride=STRIDE, layer=LAYER, channel=3, target="unit")
    calls = count_engine_runs(monkeypatch, net)
    cat = explorer.image

    explorer.channel = 5  # another channel of the same layer: the kept table of the first run
    assert calls == [] and explorer.occlusion_info["cached"] and explorer.occlusion_info["stage"] == "exact"
    assert explorer.occlusion_info["target"] == f"unit {LAYER}[5]"
    assert_shows(explorer, fresh(net, cat, cw.Unit(LAYER, 5)))

    explorer.window = 96  # a new window runs the model ...
    assert calls == [96] and not explorer.occlusion_info["cached"]
    assert_shows(explorer, fresh(net, cat, cw.Unit(LAYER, 5), window=96))
    explorer.window = WINDOW  # ... going back does not
    assert calls == [96] and explorer.occlusion_info["cached"]
    assert_shows(explorer, fresh(net, cat, cw.Unit(LAYER, 5)))

    explorer.target = 281  # a class: one run keeps every class's drops
    assert calls == [96, WINDOW]
    assert_shows(explorer, fresh(net, cat, 281))
    explorer.target = 7
    assert calls == [96, WINDOW] and explorer.occlusion_info["cached"]
    assert_shows(explorer, fresh(net, cat, 7))
    explorer.close()


def test_a_kept_map_never_outlives_its_weights_or_its_image(net, monkeypatch):
    model = net.model
    explorer = cw.Explorer(net, window=WINDOW, stride=STRIDE, layer=LAYER, channel=3, target="unit")
    calls = count_engine_runs(monkeypatch, net)
    weight = dict(model.named_parameters())["blocks.4.2.conv_pwl.weight"]
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(-1.5)  # an in-place change, as an optimiser step makes
        before = explorer.panels["occlusion"].heat.clone()
        explorer.channel = 4  # the table of channel 3's run was computed with the old weights
        assert calls == [WINDOW] and not explorer.occlusion_info["cached"]
        assert_shows(explorer, fresh(net, explorer.image, cw.Unit(LAYER, 4)))
        explorer.channel = 3
        assert calls == [WINDOW] and explorer.occlusion_info["cached"]  # kept from the new weights' run
        assert_shows(explorer, fresh(net, explorer.image, cw.Unit(LAYER, 3)))
        assert not torch.allclose(explorer.panels["occlusion"].heat, before, atol=1e-3)  # the weights do matter
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    explorer.recompute("occlusion")  # the restored weights: a new version, never the kept table
    assert calls == [WINDOW, WINDOW]
    explorer.image_name = "coffee"  # another image: nothing kept applies
    assert calls == [WINDOW, WINDOW, WINDOW] and not explorer.occlusion_info["cached"]
    assert_shows(explorer, fresh(net, explorer.image, cw.Unit(LAYER, 3)))
    explorer.close()


def test_a_superseded_request_never_draws(net, monkeypatch):
    explorer = as_in_a_kernel(cw.Explorer(net, window=WINDOW, stride=STRIDE))  # the slow panels run on the worker
    in_first_batch, newer_sent = threading.Event(), threading.Event()

    def on_batch(window):
        if window == 56:  # the request the slider leaves behind: the next value comes during its first batch
            in_first_batch.set()
            assert newer_sent.wait(60)

    calls = count_engine_runs(monkeypatch, net, on_batch)
    shown = []
    explorer.observe(lambda c: shown.append(("info", c["new"].get("window"))), "occlusion_info")
    explorer.observe(lambda c: shown.append(("map", None)), "occlusion")  # (set with its info, before it)

    front_end_update(explorer, window=56, stride=28, request_seq=1)
    assert in_first_batch.wait(60)
    front_end_update(explorer, window=64, stride=32, request_seq=2)
    newer_sent.set()
    assert explorer.runner.wait(120)

    assert calls == [56, 64]
    infos = [window for kind, window in shown if kind == "info"]
    assert infos and set(infos) == {64}, shown  # nothing of the window-56 run, ever ...
    assert len(shown) == 2 * len(infos)  # ... and every map came with its (window-64) caption
    assert explorer.occlusion_info["stage"] == "exact" and explorer.result_seq == 2
    assert_shows(explorer, fresh(net, explorer.image, net.top_class(explorer.image), window=64, stride=32))
    explorer.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_panel_shows_what_the_cpu_computes():
    cpu = cw.load_default()
    gpu = cw.Network(cw.load_default(fresh=True).model.cuda(), name="default on cuda")  # (not the shared one's model)
    explorer = cw.Explorer(gpu, window=WINDOW, stride=STRIDE)
    target = cpu.top_class(explorer.image)
    expected = fresh(cpu, explorer.image, target)
    torch.testing.assert_close(explorer.panels["occlusion"].heat.cpu(), expected, rtol=0, atol=1e-3 * float(expected.abs().max()))
    explorer.close()
