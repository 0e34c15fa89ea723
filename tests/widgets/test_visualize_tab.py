"""The Visualise tab: runs in a worker thread, streams frames as bytes, stops, caches, leaves the model alone."""

import numpy as np
import pytest
import torch

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count


@pytest.fixture(scope="module")
def digits():
    return cw.digits_cnn()


@pytest.fixture()
def explorer(digits):
    explorer = cw.Explorer(digits, target="unit", layer="relu2", channel=3, tab="visualize")
    explorer.viz_steps = 16
    return explorer


def fingerprint(model):
    return (hook_count(model), [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [p.detach().clone() for p in model.parameters()])


def test_a_run_streams_frames_as_bytes_and_leaves_the_model_untouched(explorer, digits):
    before = fingerprint(digits.model)
    explorer.start_visualization(wait=True)
    info = explorer.viz_info
    assert info["step"] == info["steps"] == 16 and not info["interrupted"] and not info["cached"]
    assert explorer.progress["visualize"]["state"] == "done"
    assert info["target"] == "unit relu2[3]"
    assert explorer.viz_frame.dtype == np.uint8 and explorer.viz_frame.shape == (16, 16, 3)
    assert explorer.viz_curve.dtype == np.float32 and explorer.viz_curve.shape == (16,)
    state = explorer.get_state()["viz_frame"]
    assert isinstance(state["data"], (bytes, memoryview)) and state["shape"] == [16, 16, 3]
    after = fingerprint(digits.model)
    assert after[:3] == before[:3] and all(torch.equal(a, b) for a, b in zip(after[3], before[3]))


def test_frames_are_pushed_while_running(explorer, monkeypatch):
    monkeypatch.setattr("cnn_widgets.widgets.progress.PUSHES_PER_S", 1e9)  # push every step
    shown = []
    explorer.observe(lambda change: shown.append((explorer.progress.get("visualize", {}).get("state"),
                                                  explorer.progress.get("visualize", {}).get("done"))), "viz_frame")
    explorer.start_visualization(wait=True)
    running = [done for state, done in shown if state == "running"]
    assert len(running) >= 8 and running == sorted(running)  # partial frames, in step order
    assert explorer.progress["visualize"] == {"state": "done", "done": 16, "total": 16, "message": "", "unit": "steps"}


@pytest.fixture()
def threaded(explorer):
    explorer.runner.threaded = True  # the jobs go to the runner's workers, as in a kernel
    yield explorer
    explorer.cancel()
    explorer.cancel("visualize")
    assert explorer.runner.wait(60)


def test_stop_keeps_what_was_reached_and_a_new_request_supersedes_the_run(threaded):
    explorer = threaded
    explorer.viz_steps = 512
    explorer.start_visualization()
    assert explorer.runner.running("visualize")
    explorer.stop_visualization()
    assert explorer.runner.wait(60)
    progress = explorer.progress["visualize"]
    assert progress["state"] == "cancelled" and progress["done"] < 512 and "cancelled" in progress["message"]
    assert not explorer.panels["visualize"].cache  # a stopped run is not cached
    explorer.start_visualization()  # 512 steps again ...
    explorer.channel = 5
    explorer.viz_steps = 16
    explorer.start_visualization()  # ... superseded by this one: never shown
    assert explorer.runner.wait(60)
    assert explorer.viz_info["target"] == "unit relu2[5]" and explorer.viz_info["step"] == 16
    assert explorer.progress["visualize"]["state"] == "done" and explorer.error == ""


def test_panels_compute_while_a_run_goes_on(threaded):
    explorer = threaded
    explorer.viz_steps = 512
    explorer.start_visualization()
    explorer.layer = "conv1"  # computed now, between two steps of the run
    assert explorer.error == "" and explorer.fmap.shape[0] == 16
    assert explorer.runner.running("visualize")
    explorer.stop_visualization()
    assert explorer.runner.wait(60)
    assert explorer.error == "" and explorer.progress["visualize"]["state"] == "cancelled"


def test_going_back_is_served_from_the_cache(explorer, monkeypatch):
    explorer.start_visualization(wait=True)
    frame = explorer.viz_frame.copy()
    runs = []
    visualize = explorer.net.visualize
    monkeypatch.setattr(explorer.net, "visualize", lambda *a, **k: (runs.append(1), visualize(*a, **k))[1])
    explorer.channel = 4
    assert explorer.viz_info["target"] == "unit relu2[3]"  # nothing cached for channel 4: the old one stays
    explorer.channel = 3  # back: shown at once from the cache
    assert explorer.viz_info["cached"] and not runs  # no new run
    np.testing.assert_array_equal(explorer.viz_frame, frame)
    with torch.no_grad():
        explorer.net.model.conv1.weight.mul_(2)  # a changed model never shows an old run
    explorer.start_visualization(wait=True)
    assert runs == [1] and not explorer.viz_info["cached"]


def test_deepdream_on_the_image(explorer):
    explorer.viz_mode = "dream"
    explorer.start_visualization(wait=True)
    info = explorer.viz_info
    assert info["target"] == "DeepDream of layer relu2" and info["step"] == info["steps"] == 4
    assert explorer.viz_frame.shape == (16, 16, 3)


def test_the_settings_ranges_follow_the_input(explorer):
    ranges = explorer.choices["ranges"]
    assert ranges["viz_size"]["max"] <= 32 and ranges["viz_steps"]["max"] == 512
    assert explorer.viz_size == 16 and "visualize" in dict(explorer.choices["options"]["tab"])
