"""A new target on the same image reuses the kept forward graph: same numbers as a fresh pass, one
forward pass in all, nothing left on the model, and a fresh pass whenever the image, the model
or the rule changes (engine/graph_cache.py)."""

from __future__ import annotations

import gc

import pytest
import torch
import torchvision
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine import graph_cache
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.targets import Direction

torch.set_num_threads(min(torch.get_num_threads(), 2))

METHODS = ("gradient", "guided_backprop", "deconvnet", "input_x_gradient")


class Forwards:
    """Counts the model's forward passes (a pre-hook, removed on exit)."""

    def __init__(self, model: nn.Module):
        self.model, self.count = model, 0

    def __enter__(self):
        self.handle = self.model.register_forward_pre_hook(lambda *_: setattr(self, "count", self.count + 1))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def fresh(net, image, target, method):
    graph_cache.release(net)
    return net.saliency(image, target, method)


def snapshot(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            {k: v.clone() for k, v in model.state_dict().items()})


def assert_unchanged(model, before):
    training, grads, state = before
    assert hook_count(model) == 0
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.train()  # must come back in training mode
    net = cw.Network(model, preprocess=lambda img: torch.zeros(3, 64, 64))
    return net


def second_targets(net, unit_layer):
    return [((3, 7), "class"), ((cw.Unit(unit_layer, 2), cw.Unit(unit_layer, 5)), "unit"),
            ((cw.Unit(unit_layer, 1), Direction(unit_layer, torch.linspace(-1, 1, net.layer(unit_layer).channels))), "direction")]


@pytest.mark.parametrize("method", METHODS)
def test_second_target_on_resnet18_equals_a_fresh_computation_exactly_with_one_forward(resnet, method):
    net = resnet
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))
    net.prepare(x)  # the structure is learned (traced passes) before counting
    before = snapshot(net.model)
    for (first, second), kind in second_targets(net, "layer2.1"):
        graph_cache.release(net)
        with Forwards(net.model) as forwards:
            net.saliency(x, first, method)
            reused = net.saliency(x.clone(), second, method)  # equal values, another tensor
            assert forwards.count == 1, kind
        expected = fresh(net, x, second, method)
        assert reused.dtype == expected.dtype == torch.float32
        assert torch.equal(reused, expected), (kind, float((reused - expected).abs().max()))
        assert not torch.equal(reused, net.saliency(x, first, method))  # the targets differ
    assert_unchanged(net.model, before)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_second_target_on_the_default_model_equals_a_fresh_computation_exactly(method, no_network):
    net = cw.load_default()
    cat = cw.sample_image("cat")
    layer = "blocks.3.1"
    net.prepare(cat)  # the structure is learned (traced passes) before counting
    before = snapshot(net.model)
    for (first, second), kind in [((285, 281), "class"), ((None, 282), "top then class"),
                                  ((cw.Unit(layer, 0), cw.Unit(layer, 9)), "unit")]:
        graph_cache.release(net)
        with Forwards(net.model) as forwards:
            net.saliency(cat, first, method)
            reused = net.saliency(cat, second, method)
            assert forwards.count == 1, kind
        expected = fresh(net, cat, second, method)
        assert torch.equal(reused, expected), kind
    assert_unchanged(net.model, before)
    graph_cache.release(net)


def small_net():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True), nn.Conv2d(6, 8, 3),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).double().eval()
    net = cw.Network(model, preprocess=lambda img: torch.zeros(3, 12, 12))
    net.layers  # the structure is learned (traced passes) before any forward is counted
    return net


def test_a_new_image_model_state_or_rule_runs_a_fresh_pass_and_the_answer_is_never_stale():
    net = small_net()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(3, 12, 12, generator=g, dtype=torch.float64), torch.randn(3, 12, 12, generator=g, dtype=torch.float64)
    with Forwards(net.model) as forwards:
        net.saliency(x, 0, "gradient")
        net.saliency(x, 1, "gradient")
        assert forwards.count == 1
        net.saliency(y, 1, "gradient")  # another image
        assert forwards.count == 2 and torch.equal(graph_cache.kept(net).x.detach(), net.prepare(y))
        net.saliency(y, 1, "guided_backprop")  # another rule
        assert forwards.count == 3
        net.saliency(y, 2, "guided_backprop")
        assert forwards.count == 3
        net.saliency(y, cw.Unit("3", 1), "guided_backprop")  # a pass stopped at layer 3 after a full one
        assert forwards.count == 4
        net.saliency(y, 2, "guided_backprop")  # a class needs the logits: the early-stopped pass cannot give them
        assert forwards.count == 5
        # in-place weight and buffer writes (an optimiser step, load_state_dict, BN statistics)
        old = net.saliency(y, 0, "guided_backprop")
        with torch.no_grad():
            net.model[3].weight.mul_(-1.5)
        new = net.saliency(y, 0, "guided_backprop")
        assert forwards.count == 6 and not torch.equal(old, new)
        assert torch.equal(new, fresh(net, y, 0, "guided_backprop"))
        with torch.no_grad():
            net.model[1].running_mean.add_(0.5)
        assert torch.equal(net.saliency(y, 0, "guided_backprop"), fresh(net, y, 0, "guided_backprop"))
        net.model[3].weight.data = net.model[3].weight.data.clone() * 2  # .data swaps the storage, no version bump
        assert torch.equal(net.saliency(y, 0, "guided_backprop"), fresh(net, y, 0, "guided_backprop"))
        net.model[7] = nn.Linear(8, 4).double()  # a replaced module
        assert torch.equal(net.saliency(y, 0, "guided_backprop"), fresh(net, y, 0, "guided_backprop"))
        # a forward hook the user adds (and removes) between two calls changes what the model computes
        before = net.saliency(y, 0, "gradient")
        handle = net.model[3].register_forward_hook(lambda module, args, out: out * 3.0)
        hooked = net.saliency(y, 0, "gradient")
        handle.remove()
        torch.testing.assert_close(hooked, 3.0 * before, rtol=1e-12, atol=0)
        assert torch.equal(net.saliency(y, 0, "gradient"), before)


def test_one_graph_at_most_released_with_the_network_and_methods_over_many_inputs_keep_none():
    net = small_net()
    x = torch.randn(3, 12, 12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    net.saliency(x, 0, "gradient")
    assert graph_cache.kept(net) is not None and len(graph_cache._KEPT) >= 1
    graph_cache.release(net)
    net.saliency(x, 0, "smoothgrad", n_samples=4)  # many noisy inputs: nothing kept
    net.saliency(x, 0, "integrated_gradients", steps=4)
    net.saliency(x, 0, "grad_cam")
    assert graph_cache.kept(net) is None
    net.saliency(x, 0, "gradient")
    gc.collect()
    count = len(graph_cache._KEPT)
    del net
    gc.collect()
    assert len(graph_cache._KEPT) == count - 1  # the graph goes with its network


def test_a_refused_target_leaves_the_kept_graph_and_the_model_alone():
    net = small_net()
    x = torch.randn(3, 12, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    before = snapshot(net.model)
    with Forwards(net.model) as forwards:  # its hook is part of the graph's key: there from the start
        first = net.saliency(x, 0, "gradient")
        kept = graph_cache.kept(net)
        with pytest.raises(cw.TargetError):
            net.saliency(x, 9, "gradient")
        with pytest.raises(cw.TargetError):
            net.saliency(x, Direction("3", torch.ones(3)), "gradient")
        assert graph_cache.kept(net) is kept
        assert torch.equal(net.saliency(x, 0, "gradient"), first) and forwards.count == 1
    assert_unchanged(net.model, before)
