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
    assert info["request"] == explorer.viz_request == 1 and not info["running"] and info["step"] == info["steps"] == 16
    assert info["target"] == "unit relu2[3]" and not info["interrupted"]
    assert explorer.viz_frame.dtype == np.uint8 and explorer.viz_frame.shape == (16, 16, 3)
    assert explorer.viz_curve.dtype == np.float32 and explorer.viz_curve.shape == (16,)
    state = explorer.get_state()["viz_frame"]
    assert isinstance(state["data"], (bytes, memoryview)) and state["shape"] == [16, 16, 3]
    after = fingerprint(digits.model)
    assert after[:3] == before[:3] and all(torch.equal(a, b) for a, b in zip(after[3], before[3]))


def test_frames_are_pushed_while_running(explorer, monkeypatch):
    pushed = []
    push = explorer.visualizer.push
    monkeypatch.setattr("cnn_widgets.widgets.visualize_run.FPS", 1e9)  # push every step
    explorer.visualizer.push = lambda request, frame, curve, info: (pushed.append((frame is not None, info["running"])),
                                                                     push(request, frame, curve, info))
    explorer.start_visualization(wait=True)
    assert pushed.count((True, True)) >= 8 and pushed[-1] == (True, False)


def test_stop_and_a_new_request_cancel_the_run(explorer):
    explorer.viz_steps = 512
    explorer.start_visualization()
    explorer.stop_visualization()
    explorer.visualizer.wait(60)
    assert explorer.viz_info["interrupted"] and explorer.viz_info["step"] < 512 and not explorer.viz_info["running"]
    explorer.start_visualization()  # the stopped run was not cached: this one runs
    first = explorer.visualizer.current
    explorer.channel = 5
    explorer.viz_steps = 16
    explorer.start_visualization(wait=True)
    assert first.cancelled.is_set()
    assert explorer.viz_info["target"] == "unit relu2[5]" and explorer.viz_info["request"] == explorer.viz_request
    assert explorer.viz_info["step"] == 16


def test_panels_compute_while_a_run_goes_on(explorer):
    explorer.viz_steps = 512
    explorer.start_visualization()
    explorer.layer = "conv1"  # computed now, between two steps of the run
    assert explorer.error == "" and explorer.fmap.shape[0] == 16
    explorer.stop_visualization()
    explorer.visualizer.wait(60)
    assert explorer.error == ""


def test_going_back_is_served_from_the_cache(explorer):
    explorer.start_visualization(wait=True)
    frame, thread = explorer.viz_frame.copy(), explorer.visualizer.thread
    explorer.channel = 4
    assert explorer.viz_info.get("request") == explorer.viz_request  # nothing cached for channel 4: the old one stays
    explorer.channel = 3  # back: shown at once from the cache
    assert explorer.viz_info["cached"] and explorer.visualizer.thread is thread  # no new run
    np.testing.assert_array_equal(explorer.viz_frame, frame)


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
