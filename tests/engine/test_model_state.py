"""One owner of a model's state across threads, no process-wide patching seen by other threads, and
caches that may forget but never break or go stale (issue 22, faults 1-4).

Each test fails on the code before the fix: two overlapping computations used to restore the flags
when the first one left; fx tracing on one thread broke module calls on every other; a contribution
tree of more than 64 nodes evicted the root's gradient (``KeyError: ()`` on every later tree); the
activation cache keyed on parameters only, so a batch norm's running statistics moving left
``logits`` / ``predict`` / ``activations`` stale.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine import tree_walk
from cnn_widgets.engine.hooks import hook_count, holders, inference_state


class SmallBnNet(nn.Module):
    """Conv-BN-ReLU twice, pooled, a linear head: small, with running statistics to protect."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def snapshot(model: nn.Module) -> dict:
    """Everything an engine call must leave exactly as it was (independent of the engine's own bookkeeping)."""
    return {"tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
            "training": [m.training for m in model.modules()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "grads": [p.grad is None for p in model.parameters()],
            "hooks": hook_count(model)}


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"] and after["requires_grad"] == before["requires_grad"]
    assert all(after["grads"]), "a parameter gained a .grad"
    assert after["hooks"] == before["hooks"]
    changed = [k for k, v in before["tensors"].items() if not torch.equal(v, after["tensors"][k])]
    assert not changed, f"changed: {changed}"


@pytest.fixture()
def bn_net():
    torch.manual_seed(0)
    model = SmallBnNet().train()  # the user's model left in train mode: the dangerous case
    return cw.Network(model, preprocess=lambda im: torch.from_numpy(__import__("numpy").asarray(im.resize((32, 32)),
                                                                                            dtype="float32") / 255).permute(2, 0, 1),
                      input_size=32, labels=[f"c{i}" for i in range(5)])


def test_overlapping_holders_share_one_state_and_the_last_restores_it():
    model = SmallBnNet().train()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def second():
        first_in.wait()
        with inference_state(model):
            second_in.set()
            first_out.wait()  # the first holder has left: this one still computes
            seen["training"] = any(m.training for m in model.modules())
            seen["requires_grad"] = any(p.requires_grad for p in model.parameters())

    thread = threading.Thread(target=second)
    thread.start()
    with inference_state(model):
        first_in.set()
        second_in.wait()
    assert holders(model) == 1
    first_out.set()
    thread.join()
    assert seen == {"training": False, "requires_grad": False}  # before the fix: train mode, trainable
    assert holders(model) == 0
    assert all(m.training for m in model.modules()) and all(p.requires_grad for p in model.parameters())


def test_a_visualisation_overlapping_occlusion_leaves_the_model_exactly_as_it_was(bn_net):
    """Fault 1 as the Explorer met it: two engine calls on two threads, the user's model in train mode."""
    model, image = bn_net.model, cw.sample_image("cat")
    before = snapshot(model)
    errors = []

    def visualise():
        try:
            for seed in range(3):
                bn_net.visualize(cw.Unit("conv2", 1), steps=24, size=32, seed=seed, progress=False)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=visualise)
    thread.start()
    while thread.is_alive():
        bn_net.occlusion(image, 1, window=4, stride=2, progress=False)
    thread.join()
    assert not errors
    assert_unchanged(model, before)


def test_fx_tracing_never_breaks_module_calls_on_other_threads(bn_net):
    """Fault 2: tracing for incremental occlusion patched nn.Module.__call__ for every thread."""
    from cnn_widgets.engine.incremental import executor

    stop, calls, failures = threading.Event(), [0], []

    def user():
        own = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        x = torch.rand(1, 3, 16, 16)
        while not stop.is_set():
            try:
                own(x)
                calls[0] += 1
            except Exception as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=user)
    thread.start()
    try:
        image = cw.sample_image("cat")
        for _ in range(6):
            for target in (cw.Unit("conv1", 0), cw.Unit("conv2", 0), 1):
                executor._PLANS.clear()  # trace again every time: the race is in the trace
                bn_net.occlusion(image, target, window=16, stride=16, progress=False)
    finally:
        stop.set()
        thread.join()
    assert calls[0] > 0 and failures == [], failures[:3]


def test_the_tracer_still_traces_math_calls_and_leaves_no_patch_behind():
    import math

    from cnn_widgets.engine.incremental.graph import trace

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x) / math.sqrt(x.shape[1])

    call, getattr_ = nn.Module.__call__, nn.Module.__getattr__
    graph = trace(Scaled())
    assert any(n.op == "call_module" and n.target == "conv" for n in graph.nodes)
    assert nn.Module.__call__ is call and nn.Module.__getattr__ is getattr_


def test_a_big_tree_then_a_small_one_on_the_same_image(monkeypatch):
    """Fault 3: the kept walk's cache evicted the root gradient; a miss must recompute, not raise."""
    monkeypatch.setattr(tree_walk, "MAX_KEPT", 6)  # what 64 nodes did to the default model, on a small net
    torch.manual_seed(1)
    net = cw.Network(nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 6, 3), nn.ReLU(), nn.Conv2d(6, 6, 3),
                                   nn.ReLU(), nn.Conv2d(6, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                   nn.Linear(6, 3)).double(), input_size=24,
                     preprocess=lambda im: torch.from_numpy(__import__("numpy").asarray(im.resize((24, 24)),
                                                                                       dtype="float64") / 255).permute(2, 0, 1))
    image = cw.sample_image("cat")
    net.contribution_tree(image, 1, depth=3, k=4, pictures=False)  # 1 + 4 + 16 + 64 nodes
    small = net.contribution_tree(image, 1, depth=1, k=3)
    with tree_walk.reference_path():
        fresh = net.contribution_tree(image, 1, depth=1, k=3)
    assert [c.unit for c in small.children] == [c.unit for c in fresh.children]
    assert [c.score for c in small.children] == pytest.approx([c.score for c in fresh.children], rel=1e-9)
    for a, b in zip(small.children, fresh.children):
        torch.testing.assert_close(a.raw_picture, b.raw_picture, rtol=1e-9, atol=1e-12)
    path = (small.children[0].unit,)  # expanding a node whose gradient was forgotten
    deep = net.contribution_tree(image, 1, depth=1, k=3, path=path)
    with tree_walk.reference_path():
        deep_fresh = net.contribution_tree(image, 1, depth=1, k=3, path=path)
    assert [c.score for c in deep.children] == pytest.approx([c.score for c in deep_fresh.children], rel=1e-9)


def test_a_buffer_changing_makes_every_cached_view_fresh(bn_net):
    """Fault 4: the activation cache keyed only on parameters; running statistics are buffers."""
    model, image = bn_net.model, cw.sample_image("cat")
    logits, acts = bn_net.logits(image), bn_net.activations(image, "conv2")["conv2"]
    with torch.no_grad():
        model.bn1.running_mean.add_(0.5)  # what one train-mode forward pass does, in place
        model.bn1.running_var.mul_(2.0)
    x = bn_net.prepare(image)
    was = model.training
    model.eval()
    with torch.no_grad():
        expected = model(x)[0]  # an independent forward pass of the changed model
    model.train(was)
    assert not torch.allclose(logits, expected)
    torch.testing.assert_close(bn_net.logits(image), expected)
    assert bn_net.predict(image, k=1)[0].index == int(expected.argmax())
    assert not torch.equal(bn_net.activations(image, "conv2")["conv2"], acts)  # conv2 reads bn1's output
