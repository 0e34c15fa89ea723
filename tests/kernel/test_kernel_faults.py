"""Faults that only show in a real kernel, with the widget driven by its own comm messages.

(a) two jobs overlapping (occlusion in the panel worker, the Visualise run in its thread) must leave
    a train-mode batch-norm model exactly as it was: weights, running statistics, every flag,
    no ``.grad``, no hook;
(b) a torch.fx trace for incremental occlusion must not touch the user's own model called on
    another thread meanwhile (in the kernel, and in the engine alone);
(c) a contribution tree with more nodes than the walk keeps, then a small one on the same walk.
"""

from __future__ import annotations

import inspect
import random
import threading
import time

import torch
import torchvision

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.occlusion import occlusion

from .conftest import overlaps
from .driver import CountTraces, UserLoop


def test_overlapping_jobs_leave_a_train_mode_model_exactly_as_it_was(kernel, model_in):
    start = time.monotonic()
    print(model_in("resnet18", 64))
    kernel.execute('ex = cw.Explorer(net, image="cat")')
    cid = kernel.comm_id("ex")
    kernel.wait_idle("ex")
    # a visualisation (~0.1 s a step here) and occlusion slow enough (441 windows, ~4 s) to overlap it
    kernel.update(cid, {"viz_steps": 64, "viz_size": 32, "tab": "visualize"})
    kernel.update(cid, {"window": 6, "stride": 3})
    time.sleep(0.5)
    kernel.job(cid, "recompute", "visualize")
    time.sleep(1.0)
    kernel.job(cid, "cancel", "occlusion")  # occlusion ends while the visualisation runs
    time.sleep(0.5)
    kernel.job(cid, "recompute", "occlusion")  # ... and starts again under it
    time.sleep(0.7)
    kernel.job(cid, "cancel", "visualize")  # the visualisation ends while occlusion runs
    time.sleep(0.3)
    kernel.update(cid, {"viz_lr": 0.1})  # another run (an interrupted one is not cached anyway)
    kernel.job(cid, "recompute", "visualize")
    time.sleep(0.5)
    kernel.update(cid, {"target": "unit", "layer": "layer2.0", "channel": 3})  # saliency, tree, occlusion again
    time.sleep(0.5)
    kernel.job(cid, "cancel", "tree")
    kernel.job(cid, "recompute", "tree")
    kernel.update(cid, {"window": 8, "stride": 4})
    kernel.wait_idle("ex", timeout=180)

    differences = kernel.value("model_differences(model, snap)")
    grads = kernel.value("[n for n, p in model.named_parameters() if p.grad is not None]")
    hooks = kernel.value("hook_count(model)")
    calls = kernel.value("engine_calls")
    print(f"engine calls: {[(c[0], round(c[2] - c[1], 2)) for c in calls]}")
    print(f"error: {kernel.value('ex.error')!r}; {time.monotonic() - start:.1f} s")
    # the test did make the jobs overlap (else it proves nothing)
    assert overlaps(calls, "occlusion", "visualize") >= 1, calls
    assert differences == [], differences
    assert grads == []
    assert hooks == kernel.value("snap['hooks']")


LAYERS = ["layer1.0", "layer1.1.conv1", "layer2.0", "layer2.1", "layer3.0.conv2", "layer3.1", "layer4.0"]


def test_fx_tracing_leaves_the_users_model_alone_in_the_kernel(kernel, model_in):
    start = time.monotonic()
    print(model_in("resnet18", 64))
    kernel.execute('ex = cw.Explorer(net, image="cat", window=32, stride=32, target="unit")')
    cid = kernel.comm_id("ex")
    kernel.wait_idle("ex")
    kernel.execute("user = UserLoop(); traces = CountTraces()")
    rng = random.Random(1)
    images = kernel.value("list(cw.SAMPLE_IMAGES)")
    for i, layer in enumerate(LAYERS * 2):  # more layers than the plan cache keeps: every one is traced again
        kernel.update(cid, {"layer": layer, "channel": rng.randrange(8)})
        time.sleep(0.2)
        kernel.job(cid, "recompute", "occlusion")
        if i % 2:
            time.sleep(0.1)
            kernel.update(cid, {"image_name": rng.choice(images)})  # while the panels compute
        kernel.wait_idle("ex", timeout=120)  # each layer's occlusion runs (is not coalesced with the next one)
    user = kernel.value("user.stop()")
    traces = kernel.value("traces.undo()")
    occlusions = kernel.value("sum(1 for c in engine_calls if c[0] == 'occlusion')")
    print(f"user loop: {user}; fx traces: {traces}; occlusion calls: {occlusions}; {time.monotonic() - start:.1f} s")
    assert traces >= len(LAYERS)  # the race was there to be lost
    assert user["calls"] > 100
    assert user["failures"] == 0, user["errors"]


def test_fx_tracing_leaves_the_users_model_alone_in_the_engine():
    start = time.monotonic()
    torch.manual_seed(0)
    net = cw.Network(torchvision.models.resnet18(num_classes=10).eval(),
                     preprocess=cw.imagenet_preprocess(size=64, resize=64), input_size=64)
    image = cw.sample_image("cat")
    # incremental occlusion traces the model with torch.fx (the keyword was ``method`` before ``execution``)
    keyword = "execution" if "execution" in inspect.signature(occlusion).parameters else "method"
    strategy = {keyword: "incremental"}
    traces = CountTraces()
    user = UserLoop()
    try:
        for layer in LAYERS * 2:
            net.occlusion(image, cw.Unit(layer, 0), window=32, stride=32, progress=False, **strategy)
    finally:
        result = user.stop()
        count = traces.undo()
    print(f"user loop: {result}; fx traces: {count}; {time.monotonic() - start:.1f} s")
    assert count >= len(LAYERS)
    assert result["calls"] > 100
    assert result["failures"] == 0, result["errors"]
    assert hook_count(net.model) == 0
    assert not any(t.name == "user-loop" and t.is_alive() for t in threading.enumerate())


def test_a_tree_larger_than_the_kept_walk_then_a_small_one(kernel, model_in):
    start = time.monotonic()
    print(model_in("resnet18", 64, record=False))
    kernel.execute('ex = cw.Explorer(net, image="cat")')
    cid = kernel.comm_id("ex")
    kernel.wait_idle("ex")
    kernel.update(cid, {"depth": 3, "k": 5})  # 1 + 5 + 25 + 125 nodes: more than the walk keeps (64)
    kernel.wait_idle("ex", timeout=180)
    big = kernel.value("[ex.error, len(ex.tree.get('levels', [{}])[0].get('children', []))]")
    kernel.update(cid, {"depth": 1, "k": 3})
    kernel.wait_idle("ex", timeout=180)
    error, tree = kernel.value("ex.error"), kernel.value("ex.tree")
    print(f"depth 3: {big}; {time.monotonic() - start:.1f} s")
    assert big[0] == "", big[0]
    assert error == "", error
    assert tree and len(tree["levels"][0]["children"]) == 3
