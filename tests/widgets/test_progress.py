"""Progress, partial results and Cancel of the slow panels, computed in the worker thread as in a kernel.

The front end is simulated as in test_explorer.py (trait updates and custom messages through
``_handle_msg``); ``runner.threaded`` makes the slow panels go to the worker as they do in a kernel.
Results are set on the widget's thread when it drains what the worker handed over (``runner.wait``),
or, in the last test, by a running asyncio loop as in the kernel.
"""

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.occlusion import window_positions
from cnn_widgets.widgets import runner as scheduler
from cnn_widgets.widgets.panels.occlusion import batch_size, occlusion_display

WINDOW, STRIDE = 56, 28  # 7 x 7 = 49 windows on the 224 px input: the first pass (16), then batches of 16


def front_end_update(widget, **state):
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


def front_end_message(widget, content):
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def fingerprint(model):
    return (hook_count(model), [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [p.detach().clone() for p in model.parameters()])


def assert_untouched(model, before):
    after = fingerprint(model)
    assert after[:3] == before[:3]
    assert all(torch.equal(a, b) for a, b in zip(after[3], before[3]))


def as_in_a_kernel(explorer):
    """Front-end requests go to the worker; the debounce timer fires at once."""
    explorer.runner.threaded = True
    explorer.runner.defer = True
    explorer.runner.call_later = lambda delay, callback: callback()
    return explorer


def spy_occlusion(monkeypatch, net, on_batch=None):
    """Record what the engine hands the panel after each batch (and on which thread)."""
    seen = []
    real = net.occlusion

    def occlusion(*args, callback=None, **kwargs):
        if callback is None:  # the test's own direct call
            return real(*args, **kwargs)

        def spy(done, total, heat):
            seen.append((done, total, heat.clone(), threading.current_thread().name))
            if on_batch is not None:
                on_batch(done, total)
            return callback(done, total, heat)

        return real(*args, callback=spy, **kwargs)

    monkeypatch.setattr(net, "occlusion", occlusion)
    return seen


#: The first pass of a 56 / 28 map on 224 px: every other corner of 0, 28, ..., 168 along each side, and the
#: last one (a gap between two kept windows would be wider than the window): 4 x 4 = 16 of the 49 windows.
FIRST_SIDE = [0, 56, 112, 168]
FIRST = len(FIRST_SIDE) ** 2
STEP = batch_size(49, FIRST)


def engine_order(size, window=WINDOW, stride=STRIDE):
    """The corners in the order the engine runs them: the first pass row by row, then the others row by row."""
    tops, lefts = window_positions(size, window, stride)
    corners = [(t, l) for t in tops for l in lefts]
    first = [c for c in corners if c[0] in FIRST_SIDE and c[1] in FIRST_SIDE]
    return first + [c for c in corners if c not in first]


def mean_of_done(grid, corners, done, size, window=WINDOW, stride=STRIDE):
    """Loop reference of a partial map: each pixel's mean drop over the done windows covering it (NaN: none)."""
    total, count = np.zeros(size), np.zeros(size)
    for t, l in corners[:done]:
        total[t:t + window, l:l + window] += float(grid[t // stride, l // stride])
        count[t:t + window, l:l + window] += 1
    with np.errstate(invalid="ignore"):
        return torch.from_numpy(np.where(count > 0, total / np.maximum(count, 1), np.nan))


@pytest.fixture()
def explorer(net):
    return cw.Explorer(net, window=112, stride=112)


@pytest.fixture(autouse=True)
def every_push(monkeypatch):
    monkeypatch.setattr("cnn_widgets.widgets.progress.PUSHES_PER_S", 1e9)


def test_partial_maps_arrive_in_batch_order_and_the_last_equals_net_occlusion(explorer, net, monkeypatch):
    as_in_a_kernel(explorer)
    seen = spy_occlusion(monkeypatch, net)
    infos, progress, threads = [], [], []
    explorer.observe(lambda c: (infos.append(dict(c["new"])), threads.append(threading.current_thread())), "occlusion_info")
    explorer.observe(lambda c: progress.append(dict(c["new"].get("occlusion", {}))), "progress")
    pending_sums = []
    explorer.observe(lambda c: pending_sums.append(None if c["new"] is None else int(c["new"].sum())), "occlusion_pending")

    front_end_update(explorer, window=WINDOW, stride=STRIDE, request_seq=1)
    assert explorer.status == "busy" and explorer.runner.pending  # the worker computes; nothing is shown yet
    assert explorer.runner.wait(120)

    windows = 49
    step = batch_size(windows, FIRST)
    assert step == FIRST  # the first pass is one batch: its map is the first picture
    assert [s[0] for s in seen] == [FIRST] + list(range(FIRST + step, windows, step)) + [windows]
    assert {s[3] for s in seen} == {"cnn_widgets-panels"}  # off the kernel's thread
    assert all(t is threading.main_thread() for t in threads)  # ... but set on it
    # the first picture covers every pixel, then refines in place, then the exact map; never a grey pixel
    assert [i["done"] for i in infos] == [s[0] for s in seen]
    assert [i["stage"] for i in infos] == ["first"] + ["refining"] * (len(seen) - 2) + ["exact"]
    assert all(i["total"] == windows for i in infos) and infos[-1]["method"] == "incremental"
    assert set(pending_sums) <= {None} and explorer.occlusion_pending is None
    # progress: fractions never go back, end at 1, then "done"
    running = [p for p in progress if p.get("state") == "running"]
    fractions = [p["done"] / p["total"] for p in running if p["total"]]
    assert fractions == sorted(fractions) and 0 < fractions[0] < 1 and len(fractions) == len(seen) - 1
    assert progress[-1] == {"state": "done", "done": windows, "total": windows, "message": "", "unit": "windows"}
    assert explorer.status == "idle" and explorer.result_seq == 1

    # the last map equals net.occlusion computed directly, to float rounding (~1e-5 of the largest drop:
    # the incremental engine's exactness; a partial or shifted map differs by far more)
    target = net.top_class(explorer.image)
    direct = net.occlusion(explorer.image, target, window=WINDOW, stride=STRIDE, fill="mean")
    grid = net.occlusion(explorer.image, target, window=WINDOW, stride=STRIDE, fill="mean", grid=True)
    shown = explorer.panels["occlusion"].heat
    tolerance = 5e-5 * float(direct.abs().max())
    torch.testing.assert_close(shown, direct, rtol=0, atol=tolerance)
    expected, extent = occlusion_display(direct)
    assert np.abs(explorer.occlusion.astype(int) - expected.astype(int)).max() <= 1
    assert explorer.occlusion_info["extent"] == pytest.approx(extent, rel=1e-5)
    # each picture on the way is the mean, at every pixel, of the windows done so far (a loop over
    # them, in the engine's order): whole from the first one on
    size = tuple(direct.shape)
    order = engine_order(size)
    for done, total, heat, _ in seen:
        reference = mean_of_done(grid.double().numpy(), order, done, size).to(heat.dtype)
        assert not torch.isnan(reference).any()
        torch.testing.assert_close(heat, reference, rtol=0, atol=tolerance)
    assert not torch.allclose(seen[0][2], direct, rtol=0, atol=100 * tolerance)  # the first picture is coarse


def test_cancel_mid_way_ends_the_busy_state_and_leaves_everything_else_alone(explorer, net, monkeypatch):
    as_in_a_kernel(explorer)
    halfway, cancel_sent = threading.Event(), threading.Event()

    def on_batch(done, total):
        if done >= 2 * STEP:  # a slow batch: the Cancel click arrives while it runs
            halfway.set()
            cancel_sent.wait(30)

    seen = spy_occlusion(monkeypatch, net, on_batch)
    explorer.compute()
    before_model = fingerprint(net.model)
    before_state = {k: v for k, v in explorer.get_state().items()
                    if k not in ("occlusion", "occlusion_info", "occlusion_pending", "progress", "status", "working",
                                 "timings", "window", "stride", "request_seq", "result_seq")}

    front_end_update(explorer, window=WINDOW, stride=STRIDE, request_seq=1)
    assert halfway.wait(60)
    front_end_message(explorer, {"type": "cancel", "panel": "occlusion"})
    cancel_sent.set()
    assert explorer.runner.wait(60)

    assert seen[-1][0] == 2 * STEP  # stopped at the batch where Cancel came in
    assert explorer.progress["occlusion"] == {"state": "cancelled", "done": 2 * STEP, "total": 49,
                                              "message": f"cancelled after {2 * STEP} of 49 windows", "unit": "windows"}
    assert explorer.status == "idle" and explorer.error == "" and explorer.result_seq == explorer.request_seq == 1
    assert not explorer.runner.pending and not explorer.runner.busy
    # what was drawn stays: the coarse map of the windows done (every pixel covered), as the message says
    assert explorer.occlusion_info["done"] == 2 * STEP and explorer.occlusion_info["stage"] == "refining"
    assert explorer.occlusion_pending is None
    assert_untouched(net.model, before_model)
    after_state = {k: v for k, v in explorer.get_state().items() if k in before_state}
    assert after_state.keys() == before_state.keys()
    for key, value in before_state.items():
        if isinstance(value, dict) and "data" in value:
            assert bytes(value["data"]) == bytes(after_state[key]["data"]), key
        else:
            assert after_state[key] == value, key

    # the next request computes normally
    seen.clear()
    cancel_sent.set()
    front_end_update(explorer, fill="zero", request_seq=2)
    assert explorer.runner.wait(120)
    assert seen[-1][:2] == (49, 49) and explorer.progress["occlusion"]["state"] == "done"
    direct = net.occlusion(explorer.image, net.top_class(explorer.image), window=WINDOW, stride=STRIDE, fill="zero")
    torch.testing.assert_close(explorer.panels["occlusion"].heat, direct, rtol=0, atol=5e-5 * float(direct.abs().max()))
    assert explorer.occlusion_pending is None and explorer.status == "idle" and explorer.result_seq == 2
    assert_untouched(net.model, before_model)


def test_recompute_after_cancel_and_cancel_of_a_queued_panel(explorer, net, monkeypatch):
    as_in_a_kernel(explorer)
    started = threading.Event()
    release = threading.Event()
    spy_occlusion(monkeypatch, net, lambda done, total: (started.set(), release.wait(30)))
    front_end_update(explorer, target="unit", request_seq=1)  # saliency, tree and occlusion, in that order
    front_end_message(explorer, {"type": "cancel", "panel": "occlusion"})  # still queued behind the tree
    release.set()
    assert explorer.runner.wait(120)
    assert not started.is_set()  # never started
    assert explorer.progress["occlusion"]["state"] == "cancelled"
    assert explorer.progress["occlusion"]["message"] == "cancelled before it started"
    assert explorer.progress["tree"]["state"] == "done" and explorer.status == "idle"
    assert explorer.occlusion_info["target"].startswith("class")  # the old map stays

    front_end_message(explorer, {"type": "recompute", "panel": "occlusion"})
    assert explorer.runner.wait(120)
    assert started.is_set() and explorer.progress["occlusion"]["state"] == "done"
    assert explorer.occlusion_info["target"] == f"unit {explorer.layer}[{explorer.channel}]"
    front_end_message(explorer, {"type": "cancel", "panel": "nope"})
    assert "panel must be one of" in explorer.error and "got 'nope'" in explorer.error


def test_an_error_in_the_worker_ends_the_busy_state_with_one_line(explorer, net, monkeypatch):
    as_in_a_kernel(explorer)

    def broken(done, total):
        if done >= 10:
            raise RuntimeError("out of memory\nsecond line")

    spy_occlusion(monkeypatch, net, broken)
    before = fingerprint(net.model)
    front_end_update(explorer, window=WINDOW, stride=STRIDE, request_seq=1)
    assert explorer.runner.wait(120)
    assert explorer.progress["occlusion"]["state"] == "error"
    assert explorer.progress["occlusion"]["message"] == "RuntimeError: out of memory"
    assert explorer.status == "error" and "occlusion: RuntimeError: out of memory" in explorer.error
    assert explorer.result_seq == 1
    assert_untouched(net.model, before)
    monkeypatch.undo()
    monkeypatch.setattr("cnn_widgets.widgets.progress.PUSHES_PER_S", 1e9)
    front_end_update(explorer, window=112, stride=112, request_seq=2)
    assert explorer.runner.wait(120)
    assert explorer.progress["occlusion"]["state"] == "done" and explorer.error == "" and explorer.status == "idle"


def test_a_layer_click_is_computed_between_two_occlusion_batches(explorer, net, monkeypatch):
    as_in_a_kernel(explorer)
    halfway = threading.Event()

    def on_batch(done, total):
        if done >= STEP:
            halfway.set()
            time.sleep(0.5)  # slow batches: the click comes in while occlusion runs

    spy_occlusion(monkeypatch, net, on_batch)
    front_end_update(explorer, window=WINDOW, stride=STRIDE, request_seq=1)
    assert halfway.wait(60)
    layer = net.layer_names[3]
    front_end_update(explorer, layer=layer, request_seq=2)  # the feature maps need the model the worker holds
    assert explorer.fmap_info["layer"] == layer and explorer.runner.current.get("panels") == "occlusion"
    assert explorer.runner.wait(120)
    assert explorer.occlusion_info["done"] == 49 and explorer.result_seq == 2 and explorer.status == "idle"


def test_first_paint_does_not_wait_for_the_slow_panels(net, monkeypatch):
    monkeypatch.setattr(scheduler, "in_kernel", lambda: True)
    explorer = cw.Explorer(net, window=112, stride=112)
    monkeypatch.setattr(scheduler, "in_kernel", lambda: False)
    # the constructor returned with the quick panels computed; the slow ones are still on their way
    assert explorer.image_data is not None and explorer.predictions and explorer.fmap is not None
    assert explorer.saliency is None and explorer.occlusion is None and explorer.tree == {}
    assert explorer.status == "busy"
    explorer.compute()
    assert explorer.status == "idle" and explorer.error == ""
    reference = cw.Explorer(net, window=112, stride=112)  # not in a kernel: all computed in the constructor
    np.testing.assert_array_equal(explorer.saliency, reference.saliency)
    np.testing.assert_array_equal(explorer.occlusion, reference.occlusion)
    assert explorer.tree["levels"] == reference.tree["levels"]
    assert {explorer.progress[p]["state"] for p in ("saliency", "tree", "occlusion")} == {"done"}


def test_in_an_event_loop_results_are_set_by_the_loop(explorer, net, monkeypatch):
    """As in the kernel: the worker hands results to the running loop, which sets them on its thread."""
    explorer.runner.threaded = True
    explorer.runner.defer = True  # a real timer on the running loop (call_later left alone)
    threads = []
    explorer.observe(lambda c: threads.append(threading.current_thread()), "occlusion_info")
    seen = spy_occlusion(monkeypatch, net)

    async def scenario():
        front_end_update(explorer, window=WINDOW, stride=STRIDE, request_seq=1)
        for _ in range(2400):
            if explorer.result_seq == 1 and explorer.status == "idle":
                return True
            await asyncio.sleep(0.05)
        return False

    # the loop runs on a thread of its own: in the full suite Playwright's sync API may already hold
    # a running loop on the main thread (asyncio.run refuses to nest)
    outcome = {}
    loop_thread = threading.Thread(target=lambda: outcome.setdefault("ok", asyncio.run(scenario())), name="kernel-loop")
    loop_thread.start()
    loop_thread.join(150)
    assert outcome.get("ok")
    assert seen and {s[3] for s in seen} == {"cnn_widgets-panels"}
    assert threads and all(t is loop_thread for t in threads)
    assert explorer.occlusion_info["done"] == 49 and explorer.result_seq == 1


def test_the_bar_s_cancel_stops_every_slow_panel(explorer, net, monkeypatch):
    as_in_a_kernel(explorer)
    started, release = threading.Event(), threading.Event()
    real = net.saliency

    def slow_saliency(*args, **kwargs):  # the first slow panel; it has no progress calls: cancelled at its end
        started.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(net, "saliency", slow_saliency)
    before_model, before_saliency = fingerprint(net.model), explorer.saliency.copy()
    front_end_update(explorer, target="unit", request_seq=1)
    assert started.wait(60)
    front_end_message(explorer, {"type": "cancel"})  # the status line's Cancel: no panel named
    release.set()
    assert explorer.runner.wait(120)
    states = {p: explorer.progress[p]["state"] for p in ("saliency", "tree", "occlusion")}
    assert states == {"saliency": "cancelled", "tree": "cancelled", "occlusion": "cancelled"}
    assert explorer.progress["tree"]["message"] == "cancelled before it started"
    np.testing.assert_array_equal(explorer.saliency, before_saliency)  # the finished but cancelled result is dropped
    assert explorer.status == "idle" and explorer.result_seq == 1 and explorer.error == ""
    assert_untouched(net.model, before_model)


def test_one_name_and_one_error_type_per_panel(explorer, tmp_path):
    """recompute, cancel and save_figure name the panels alike and refuse a wrong name alike (OptionError)."""
    from cnn_widgets.export.figures import PANELS as FIGURE_PANELS

    assert set(FIGURE_PANELS) - {"all"} <= set(explorer.panels)  # a figure of a panel has the panel's name
    for call in (explorer.recompute, explorer.cancel, lambda name: explorer.save_figure(name, tmp_path / "f.png")):
        with pytest.raises(cw.OptionError, match="fmap"):
            call("fmap")  # the old Python name of the feature maps panel
    explorer.recompute("feature_maps")
    assert "feature_maps" in explorer.timings


def test_background_panels_leave_a_core_free_and_other_threads_keep_their_count(explorer, net, monkeypatch):
    """The slow panels run on every usable core but one (cores.py); the kernel's thread and a user's
    thread running beside them keep their own intra-op thread count throughout."""
    from cnn_widgets.widgets import cores

    monkeypatch.setattr(cores, "usable_cpus", lambda: 2)
    as_in_a_kernel(explorer)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    counts, stop = [], threading.Event()
    user_counts = []

    def user():  # the user's own thread, running its own model meanwhile
        torch.set_num_threads(2)
        layer = torch.nn.Conv2d(3, 4, 3)
        while not stop.is_set():
            with torch.no_grad():
                layer(torch.randn(1, 3, 16, 16))
            user_counts.append(torch.get_num_threads())

    mine = threading.Thread(target=user)
    mine.start()
    try:
        spy_occlusion(monkeypatch, net, on_batch=lambda done, total: counts.append(torch.get_num_threads()))
        front_end_update(explorer, window=56, stride=28)
        explorer.runner.wait()
        assert counts and set(counts) == {1}  # on the worker: one core left
        assert torch.get_num_threads() == 2  # the kernel's thread
    finally:
        stop.set()
        mine.join()
        torch.set_num_threads(before)
    assert user_counts and set(user_counts) == {2}
