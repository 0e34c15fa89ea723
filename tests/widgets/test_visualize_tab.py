"""The Visualise tab: runs in a worker thread, streams frames as bytes, stops, caches, leaves the model alone."""

import numpy as np
import pytest
import torch

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.pictures import pixels_to_uint8
from cnn_widgets.engine.visualize import ImageParam
from cnn_widgets.widgets import progress as progress_module
from cnn_widgets.widgets.panels.visualize import VisualizePanel
from cnn_widgets.widgets.progress import PUSHES_PER_S, Task


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
    monkeypatch.setattr(VisualizePanel, "pushes_per_s", 1e9)  # push every step
    shown = []
    explorer.observe(lambda change: shown.append(explorer.viz_info["step"]), "viz_info")
    explorer.start_visualization(wait=True)
    assert shown == [*range(16), 16]  # the start (step 0), every step, then the result
    assert explorer.progress["visualize"] == {"state": "done", "done": 16, "total": 16, "message": "", "unit": "steps"}


class FakeClock:
    """``time`` for progress.py: each step of a run takes ``step_s`` (a run's callback moves it on)."""

    def __init__(self, step_s: float):
        self.now, self.step_s = 1000.0, step_s

    def perf_counter(self) -> float:
        return self.now


def on_fake_clock(explorer, monkeypatch, step_s: float) -> list[dict]:
    """Run the visualisation with every step taking ``step_s`` of a fake clock; returns the pushed
    partial results' ``viz_info`` (the traits the front end receives while the run goes on)."""
    clock = FakeClock(step_s)
    monkeypatch.setattr(progress_module, "time", clock)
    visualize, start = explorer.net.visualize, clock.now

    def timed(*args, callback, **kwargs):
        def step_done(step, frame, value):
            clock.now = start + step * step_s  # step 0 (the start) at once, then step_s per step
            return callback(step, frame, value)
        return visualize(*args, callback=step_done, **kwargs)

    monkeypatch.setattr(explorer.net, "visualize", timed)
    pushed = []
    explorer.observe(lambda change: pushed.append(dict(explorer.viz_info)), "viz_info")
    explorer.start_visualization(wait=True)
    assert explorer.progress["visualize"]["state"] == "done"
    return [info for info in pushed if info["step"] < info["steps"]]


def test_the_run_pushes_frames_at_its_own_rate_not_the_panels_rate(explorer, monkeypatch):
    rate = VisualizePanel.pushes_per_s
    assert rate >= 10 and rate > PUSHES_PER_S  # the lecture goal: >= 10 frames a second can get through
    assert explorer._pushes_per_s(Task("occlusion", 0)) == PUSHES_PER_S  # partial maps keep theirs
    explorer.viz_steps = 64
    step_s = 1 / 64  # a fast model: 64 steps a second, more than are shown
    steps = [info["step"] for info in on_fake_clock(explorer, monkeypatch, step_s)]
    expected, last = [], None  # every step at least 1 / rate after the last one shown
    for step in range(64):
        if last is None or (step - last) * step_s >= 1 / rate:
            expected.append(step)
            last = step
    assert steps == expected and steps[0] == 0
    assert len(steps) / (64 * step_s) >= 10  # frames a second shown
    assert len(steps) > 64 * step_s * PUSHES_PER_S + 1  # more than the panels' cap would let through


def test_a_slower_model_has_every_step_shown(explorer, monkeypatch):
    explorer.viz_steps = 24
    infos = on_fake_clock(explorer, monkeypatch, 1 / 12)  # 12 steps a second: the default model at 128 px, one core
    assert [info["step"] for info in infos] == list(range(24))


def test_the_first_frame_is_the_starting_picture_before_the_ascent_runs_the_model(explorer, monkeypatch):
    from cnn_widgets.engine.visualize import ascent

    events = []
    forward_value, runs_at = ascent.forward_value, ascent.runs_at
    monkeypatch.setattr(ascent, "forward_value", lambda *a: (events.append("step"), forward_value(*a))[1])
    monkeypatch.setattr(ascent, "runs_at", lambda *a: (events.append("runs_at"), runs_at(*a))[1])
    explorer.viz_size = 24  # not the input size: the model's first pass at 24 px comes after the frame
    explorer.observe(lambda change: events.append((explorer.viz_frame.copy(), dict(explorer.viz_info),
                                                   explorer.viz_curve.copy())), "viz_info")  # (set last of the three)
    explorer.start_visualization(wait=True)
    frame, info, curve = events[0]
    # the model's first use (whether it runs at 24 px, then at the transformed sizes) comes after the frame
    assert events[1] == "runs_at" and set(events[2:events.index("step")]) <= {"runs_at"}
    assert info["step"] == 0 and info["steps"] == 16 and curve.shape == (0,)  # nothing measured yet
    start = ImageParam(1, 24, generator=torch.Generator().manual_seed(0))  # the run's seed
    with torch.no_grad():
        np.testing.assert_array_equal(frame, pixels_to_uint8(start()[0]))

    events.clear()
    explorer.viz_start, explorer.viz_size = "image", 16
    explorer.start_visualization(wait=True)
    frame, info, _ = events[0]
    assert events[1] in ("runs_at", "step") and "step" in events and info["step"] == 0
    assert np.abs(frame.astype(int) - explorer.net.display_image(explorer.image).astype(int)).max() <= 2


def test_the_run_uses_every_core_but_one_on_a_worker(explorer, monkeypatch):
    seen = []
    visualize = explorer.net.visualize
    monkeypatch.setattr(explorer.net, "visualize", lambda *a, callback, **k: visualize(
        *a, callback=lambda *c: (seen.append(torch.get_num_threads()), callback(*c))[1], **k))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr("cnn_widgets.widgets.cores.usable_cpus", lambda: 2)
        explorer.start_visualization(wait=True)  # outside a kernel: on this thread, every core
        assert set(seen) == {2}
        seen.clear()
        explorer.runner.threaded = True  # as in a kernel: on the runner's worker
        explorer.channel = 5  # (a new target: no cached run)
        explorer.start_visualization(wait=True)
        assert explorer.runner.wait(60)
        assert set(seen) == {1} and torch.get_num_threads() == 2  # one core left to the kernel and the browser
        seen.clear()
        monkeypatch.setattr("cnn_widgets.widgets.cores.usable_cpus", lambda: 8)
        explorer.channel = 4
        explorer.start_visualization(wait=True)
        assert explorer.runner.wait(60)
        assert set(seen) == {2}  # never more than torch was set to
    finally:
        explorer.runner.threaded = None
        torch.set_num_threads(before)


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
