"""Contribution scores and trees (Cogswell, "Why is this a cat?") against independent computations."""

from __future__ import annotations

import pytest
import torch
from captum.attr import GuidedBackprop
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count

torch.manual_seed(0)


def bias_free_relu_net() -> nn.Sequential:
    """A small bias-free ReLU CNN in float64: every layer is positively homogeneous."""
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 7, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(7, 4, bias=False),
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5 + 0.05)
    return model


def image(seed: int = 0, size: int = 12) -> torch.Tensor:
    return torch.randn(3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture()
def net():
    return cw.Network(bias_free_relu_net(), labels=["a", "b", "c", "d"])


def test_layer_below_steps_over_channelwise_layers(net):
    # unit after conv3 -> relu: explained in relu2 output passed through the pool (input of conv3 is pool)
    assert net.layer_below("6") == "4"  # relu(conv3) -> conv3 mixes -> its input is the pool "4"
    assert net.layer_below("5") == "4"
    assert net.layer_below("4") == "1"  # pool -> relu -> conv2 -> its input relu1 "1"
    assert net.layer_below("1") is None  # conv1 has no explorable input layer
    assert net.layer_below("9") == "7"  # linear -> its input, the global pool


def test_euler_scores_sum_to_f_with_true_gradient_and_sum(net):
    x = image()
    unit = cw.Unit("6", 3)
    channels = net.layer("4").channels
    scores = net.contributions(x, unit, k=channels, rule="gradient", reduce="sum")
    h6 = net.activations(x, ["6"])["6"]
    f = h6[3].sum().item()
    assert f > 0
    assert sum(c.score for c in scores) == pytest.approx(f, rel=1e-10, abs=1e-12)
    # and for a class logit through the linear layer (bias-free: logit is homogeneous in the pool)
    logit = net.logits(x)[2].item()
    scores = net.contributions(x, 2, k=7, rule="gradient", reduce="sum")
    assert sum(c.score for c in scores) == pytest.approx(logit, rel=1e-10, abs=1e-12)


def _finite_difference_scores(model: nn.Sequential, x: torch.Tensor, split: int, top: int, channel: int, reduce: str):
    """s_j = d/dt f(h + t * h_j e_j) at t = 0, by central differences (no autograd)."""
    with torch.no_grad():
        h = model[: split + 1](x[None])
        upper = model[split + 1 : top + 1]

        def f(hh):
            out = upper(hh)[0, channel]
            return out.sum() if reduce == "sum" else out.max()

        eps = 1e-6
        scores = []
        for j in range(h.shape[1]):
            direction = torch.zeros_like(h)
            direction[:, j] = h[:, j]
            scores.append(((f(h + eps * direction) - f(h - eps * direction)) / (2 * eps)).item())
    return torch.tensor(scores, dtype=torch.float64)


@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_topk_equals_brute_force_ranking(net, reduce):
    x = image(3)
    reference = _finite_difference_scores(net.model, x, split=4, top=6, channel=5, reduce=reduce)
    got = net.contributions(x, cw.Unit("6", 5), k=4, rule="gradient", reduce=reduce)
    expected_order = torch.argsort(reference, descending=True)[:4].tolist()
    assert [c.channel for c in got] == expected_order
    for c in got:
        assert c.unit.layer == "4"
        assert c.score == pytest.approx(reference[c.channel].item(), rel=1e-5, abs=1e-8)


def test_into_overrides_layer_below(net):
    x = image(4)
    got = net.contributions(x, cw.Unit("6", 1), k=3, into="1", rule="gradient", reduce="sum")
    reference = _finite_difference_scores(net.model, x, split=1, top=6, channel=1, reduce="sum")
    assert [c.channel for c in got] == torch.argsort(reference, descending=True)[:3].tolist()


class UnitScalar(nn.Module):
    """Wraps a slice of a Sequential so captum sees the unit's scalar f as a one-output model."""

    def __init__(self, head: nn.Module, channel: int, weight: torch.Tensor | None = None):
        super().__init__()
        self.head, self.channel, self.weight = head, channel, weight

    def forward(self, x):
        h = self.head(x)
        if self.weight is not None:
            return (h * self.weight).flatten(1).sum(1, keepdim=True)
        return h[:, self.channel].flatten(1).sum(1, keepdim=True)


def test_root_picture_is_guided_backprop_of_the_unit(net):
    x = image(5)
    tree = net.contribution_tree(x, cw.Unit("6", 2), depth=0, reduce="sum")
    reference = GuidedBackprop(UnitScalar(net.model[:7], 2)).attribute(x[None].clone().requires_grad_(True), target=0)[0]
    torch.testing.assert_close(tree.raw_picture, reference)
    assert 0.0 <= tree.picture.min() and tree.picture.max() <= 1.0


def test_child_picture_is_guided_backprop_of_the_masked_path_gradient(net):
    """rule="gradient": a child's picture = GBP to the image of <h_j, (df/dh)_j> with df/dh the true gradient."""
    x = image(6)
    tree = net.contribution_tree(x, cw.Unit("6", 0), depth=2, k=2, rule="gradient", reduce="sum")
    child = tree.children[0]
    # independent: true gradient of f w.r.t. h at layer "4" with plain autograd on the split model
    h = net.model[:5](x[None]).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(net.model[5:7](h)[0, 0].sum(), h)
    mask = torch.zeros_like(grad)
    mask[:, child.channel] = grad[:, child.channel]
    expected_score = (h.detach() * mask).sum().item()
    assert child.score == pytest.approx(expected_score, rel=1e-10)
    reference = GuidedBackprop(UnitScalar(net.model[:5], 0, weight=mask)).attribute(
        x[None].clone().requires_grad_(True), target=0
    )[0]
    torch.testing.assert_close(child.raw_picture, reference)
    # grandchild scores are conditioned on the path: they use the masked gradient, not the full one
    h1 = net.model[:2](x[None]).detach().requires_grad_(True)
    (grad1,) = torch.autograd.grad((net.model[2:5](h1) * mask).sum(), h1)
    expected = (h1.detach() * grad1)[0].flatten(1).sum(1)
    for grandchild in child.children:
        assert grandchild.unit.layer == "1"
        assert grandchild.score == pytest.approx(expected[grandchild.channel].item(), rel=1e-10)
    assert [g.channel for g in child.children] == torch.argsort(expected, descending=True)[:2].tolist()


def test_expanding_by_path_equals_the_full_tree(net):
    x = image(7)
    full = net.contribution_tree(x, "c", depth=3, k=2)
    leaf_parent = full.children[1].children[0]
    expanded = net.contribution_tree(x, "c", depth=1, k=2, path=leaf_parent.path)
    assert expanded.unit == leaf_parent.unit
    assert expanded.score == pytest.approx(leaf_parent.score)
    assert [c.unit for c in expanded.children] == [c.unit for c in leaf_parent.children]
    torch.testing.assert_close(expanded.raw_picture, leaf_parent.raw_picture)
    assert full.label == "c" and full.unit.layer == "9"
    # the tree reaches the first layer: conv1's ReLU "1" has no layer below, so its nodes are leaves
    assert all(node.layer == "1" and not node.children for node in full.walk() if len(node.path) == 3)


def test_guided_rule_scores_use_rectified_gradients(net):
    x = image(8)
    guided = net.contributions(x, cw.Unit("6", 4), k=8, rule="guided", reduce="sum")
    # independent guided backward on the split model: relu backward passes only positive gradients
    h = net.model[:5](x[None]).detach().requires_grad_(True)
    z = net.model[5](h)
    grad_z = torch.ones_like(z) * (z > 0)  # relu(conv3) channel 4 sum: d/dz, positive anyway
    mask = torch.zeros_like(grad_z)
    mask[:, 4] = grad_z[:, 4]
    (grad_h,) = torch.autograd.grad(z, h, grad_outputs=mask)
    expected = (h.detach() * grad_h)[0].flatten(1).sum(1)
    assert {c.channel: round(c.score, 9) for c in guided} == {
        int(j): round(expected[j].item(), 9) for j in torch.argsort(expected, descending=True)[:8]
    }


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda n, x: n.contributions(x, cw.Unit("6", 99)), "out of range"),
        (lambda n, x: n.contributions(x, cw.Unit("conv9", 0)), "no explorable layer"),
        (lambda n, x: n.contributions(x, cw.Unit("1", 0)), "first layer"),
        (lambda n, x: n.contributions(x, cw.Unit("6", 0), k=0), "positive integer"),
        (lambda n, x: n.contributions(x, cw.Unit("6", 0), rule="deconv"), "rule must be"),
        (lambda n, x: n.contributions(x, cw.Unit("6", 0), reduce="mean"), "reduce must be"),
        (lambda n, x: n.contributions(x, cw.Unit("4", 0), into="6"), "must be a layer below"),
        (lambda n, x: n.contribution_tree(x, 0, path=(cw.Unit("1", 0),)), "one layer down per step"),
        (lambda n, x: n.contribution_tree(x, 0, path=(cw.Unit("7", 70),)), "out of range"),
        (lambda n, x: n.contribution_tree(x, "zebra"), "no class is labelled"),
    ],
)
def test_errors_name_the_problem_and_leave_the_model_untouched(net, call, message):
    x = image(9)
    net.model.train()
    flags = [p.requires_grad for p in net.model.parameters()]
    weights = [p.detach().clone() for p in net.model.parameters()]
    with pytest.raises(cw.CnnWidgetsError, match=message):
        call(net, x)
    assert hook_count(net.model) == 0
    assert net.model.training and all(m.training for m in net.model.modules())
    assert [p.requires_grad for p in net.model.parameters()] == flags
    assert all(torch.equal(a, b) for a, b in zip(weights, net.model.parameters()))


def test_error_inside_the_backward_leaves_no_hooks(net, monkeypatch):
    from cnn_widgets.engine import contributions as module

    def explode(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(module, "_channel_scores", explode)
    net.model.train()
    with pytest.raises(RuntimeError, match="injected"):
        net.contribution_tree(image(10), 1, depth=2, k=2)
    assert hook_count(net.model) == 0
    assert net.model.training
    assert all(p.requires_grad for p in net.model.parameters())
    # and the rectifier mode is gone from torch's function-mode stack
    assert torch._C._len_torch_function_stack() == 0
    out = net.model(image(10)[None])
    assert out.grad_fn is not None


def test_follow_grows_one_child_per_level_and_matches_the_full_tree(net):
    x = image(11)
    full = net.contribution_tree(x, 0, depth=3, k=2)
    path = net.contribution_tree(x, 0, depth=3, k=2, follow=[1, 0])
    assert len(list(path.walk())) == 1 + 2 + 2 + 2
    followed, reference = path.children[1].children[0], full.children[1].children[0]
    assert followed.unit == reference.unit
    assert [c.unit for c in followed.children] == [c.unit for c in reference.children]
    assert [c.score for c in followed.children] == pytest.approx([c.score for c in reference.children])
    assert not path.children[0].children  # not followed: a leaf
    with pytest.raises(cw.OptionError, match="follow must be"):
        net.contribution_tree(x, 0, depth=2, k=2, follow=[5])
