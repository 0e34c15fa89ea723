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


# ---------------------------------------------------------------- the fast path (tree_walk) vs the plain one
def _same_tree(fast, slow):
    pairs = list(zip(fast.walk(), slow.walk()))
    assert len(pairs) == len(list(slow.walk())) == len(list(fast.walk()))
    for a, b in pairs:
        assert a.unit == b.unit and a.path == b.path and a.label == b.label
        assert a.score == pytest.approx(b.score, rel=1e-12, abs=1e-15)
        torch.testing.assert_close(a.raw_picture, b.raw_picture, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(a.picture, b.picture, rtol=1e-9, atol=1e-9)


def test_expansions_through_the_kept_walk_equal_fresh_computations(net, monkeypatch):
    """Root, then one click after another (each reusing the kept forward pass, path gradients and
    pictures, new pictures on two threads) equals each tree computed from scratch one picture at a time."""
    from cnn_widgets.engine import tree_walk

    monkeypatch.setattr(tree_walk, "WORKERS", 2)
    x = image(12)
    tree_walk.release(net)
    root = net.contribution_tree(x, 1, depth=1, k=3)
    kept = tree_walk._KEPT[net]
    child = root.children[2]
    expanded = net.contribution_tree(x, 1, depth=1, k=3, path=(child.unit,))
    grandchild = expanded.children[1]
    deeper = net.contribution_tree(x, 1, depth=1, k=3, path=(child.unit, grandchild.unit))
    whole = net.contribution_tree(x, 1, depth=3, k=2, rule="guided")
    assert tree_walk._KEPT[net] is kept  # one forward pass served all four
    # the node's own picture is the one drawn for it as a child (same tensor, not recomputed)
    assert expanded.raw_picture is child.raw_picture
    with tree_walk.reference_path():
        references = [net.contribution_tree(x, 1, depth=1, k=3), net.contribution_tree(x, 1, depth=1, k=3, path=(child.unit,)),
                      net.contribution_tree(x, 1, depth=1, k=3, path=(child.unit, grandchild.unit)),
                      net.contribution_tree(x, 1, depth=3, k=2)]
    assert tree_walk._KEPT[net] is kept  # the reference path keeps nothing
    for fast, slow in zip([root, expanded, deeper, whole], references):
        _same_tree(fast, slow)
    # and the kept pass agrees with the independent guided-backprop reference (captum)
    reference = GuidedBackprop(net.model).attribute(x[None].clone().requires_grad_(True), target=1)[0]
    torch.testing.assert_close(root.raw_picture, reference)


@pytest.mark.parametrize("change", ["weights", "image", "rule", "root", "buffer", "hook"])
def test_a_kept_walk_never_serves_a_changed_model_image_rule_or_root(change):
    from cnn_widgets.engine import tree_walk

    model = bias_free_relu_net()
    model[4] = nn.Sequential(nn.BatchNorm2d(8).double(), nn.MaxPool2d(2))  # a buffer to change
    model.eval()
    net = cw.Network(model, labels=["a", "b", "c", "d"])
    x = image(13)
    first = net.contribution_tree(x, 2, depth=2, k=2, rule="gradient")
    kept = tree_walk._KEPT[net]
    args = dict(unit=2, rule="gradient")
    if change == "weights":
        with torch.no_grad():
            model[2].weight.mul_(-1.5)  # in place: same storage, new version
    elif change == "buffer":
        with torch.no_grad():
            model[4][0].running_var.add_(3.0)
    elif change == "image":
        x = x.clone()
        x[0, 0, 0] += 1.0
    elif change == "rule":
        args["rule"] = "guided"
    elif change == "hook":
        model[2].register_forward_hook(lambda module, inputs, output: output * 3)
    else:
        args["unit"] = 3
    again = net.contribution_tree(x, depth=2, k=2, **args)
    assert tree_walk._KEPT[net] is not kept
    with tree_walk.reference_path():
        _same_tree(again, net.contribution_tree(x, depth=2, k=2, **args))
    if change != "rule":  # (the guided scores of this small net happen to equal its true-gradient ones)
        assert [c.score for c in again.walk()] != pytest.approx([c.score for c in first.walk()])


def test_scores_first_then_pictures(net):
    """pictures=False gives the same tree without pictures; the pictures follow from the kept pass."""
    from cnn_widgets.engine import tree_walk

    x = image(14)
    tree_walk.release(net)
    quick = net.contribution_tree(x, 0, depth=2, k=2, pictures=False)
    assert all(n.picture is None and n.raw_picture is None for n in quick.walk())
    full = net.contribution_tree(x, 0, depth=2, k=2)
    assert [(n.unit, n.score) for n in quick.walk()] == [(n.unit, n.score) for n in full.walk()]
    with tree_walk.reference_path():
        _same_tree(full, net.contribution_tree(x, 0, depth=2, k=2))
    with pytest.raises(cw.OptionError, match="pictures must be True or False"):
        net.contribution_tree(x, 0, pictures="no")
    tree_walk.release(net)
    assert net not in tree_walk._KEPT


@pytest.mark.slow
def test_default_model_expansion_equals_the_plain_computation(monkeypatch):
    """The offline default model (EfficientNet-Lite0: ReLU6, depthwise convs, residual joins): an
    expansion through the kept pass, its pictures on two threads, equals the plain computation."""
    from cnn_widgets.engine import tree_walk

    monkeypatch.setattr(tree_walk, "WORKERS", 2)
    net = cw.load_default()
    # the kept walk of this shared network may come from another test, computed with another thread
    # count (an Explorer's worker uses one): the same numbers up to float rounding, not bit for bit
    tree_walk.release(net)
    cat = cw.sample_image("cat")
    root = net.contribution_tree(cat, None, depth=1, k=3)
    expanded = net.contribution_tree(cat, None, depth=1, k=3, path=(root.children[0].unit,))
    with tree_walk.reference_path():
        slow = net.contribution_tree(cat, None, depth=1, k=3, path=(root.children[0].unit,))
    for a, b in zip(expanded.walk(), slow.walk()):
        assert a.unit == b.unit and a.score == b.score
        scale = float(b.raw_picture.abs().max())
        torch.testing.assert_close(a.raw_picture, b.raw_picture, rtol=0, atol=1e-5 * scale)
    tree_walk.release(net)
