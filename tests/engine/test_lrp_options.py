"""LRP's refusals: unknown composites, probabilities, operations without a rule (named, with the
module they were called from), first-layer rules on a computed input, and ``cw.Composite`` objects;
after every error and every call the model is untouched and no hook or mode is left behind."""

from __future__ import annotations

import copy

import pytest
import torch
from test_lrp import assert_untouched, image, odd_flags, snapshot, tiny, tiny_net
from torch import nn

import cnn_widgets as cw

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------- bad options
class Gram(nn.Module):
    """A product of two activations as attention scores are (``q @ k.transpose(-2, -1)``)."""

    def forward(self, x):
        return torch.matmul(x, x.transpose(-2, -1))


class Square(nn.Module):
    def forward(self, x):
        return x * x


class Ratio(nn.Module):
    def forward(self, x):
        return x / (torch.relu(x) + 1)


class Softmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x, 1)


class Shift(nn.Module):
    def forward(self, x):
        return x * 2 - 1


class Wrapped(nn.Module):
    """``before`` -> conv -> ``body`` -> relu -> linear."""

    def __init__(self, body: nn.Module, before: nn.Module | None = None):
        super().__init__()
        self.before = before or nn.Identity()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.body = body
        self.relu = nn.ReLU()
        self.conv2b = nn.Conv2d(4, 4, 1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.flatten(self.relu(self.conv2b(self.body(self.conv1(self.before(x)))))))


def wrapped(body: nn.Module, before: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(4)
    return odd_flags(Wrapped(body, before).double())


def entry_points(net, x, composite):
    return {
        "relevance": lambda: net.relevance(x, 1, composite=composite),
        "saliency": lambda: net.saliency(x, 1, method="lrp", composite=composite),
        "tree": lambda: net.contribution_tree(x, 1, rule="lrp", composite=composite, depth=1, k=2),
        "contributions": lambda: net.contributions(x, 1, rule="lrp", composite=composite, k=2),
    }


def test_an_unknown_composite_is_an_option_error_naming_the_choices():
    model = wrapped(nn.Identity())
    before = snapshot(model)
    net = tiny_net(model)
    for where, call in entry_points(net, image(), "epsilon_pluss").items():
        with pytest.raises(cw.OptionError) as error:
            call()
        for name in cw.COMPOSITES:
            assert name in str(error.value), (where, name)
        assert_untouched(model, before)


def test_lrp_explains_logits_not_probabilities():
    model = wrapped(nn.Identity())
    before = snapshot(model)
    net = tiny_net(model)
    with pytest.raises(cw.OptionError, match="logit"):
        net.saliency(image(), 1, method="lrp", quantity="probability", composite="epsilon_plus")
    assert_untouched(model, before)


@pytest.mark.parametrize("body,operation,module", [
    (Gram(), "matmul", "Gram 'body'"),  # (a layer norm has a rule: tests/engine/test_lrp_transformers.py)
    (Square(), "mul", "Square 'body'"),
    (Ratio(), "div", "Ratio 'body'"),
    (Softmax(), "softmax", "Softmax 'body'"),
])
def test_an_operation_without_a_rule_is_refused_by_name(body, operation, module):
    model = wrapped(body)
    before = snapshot(model)
    net = tiny_net(model)
    x = image(5)
    leaf = x[None].clone().requires_grad_(True)
    (true_grad,) = torch.autograd.grad(copy.deepcopy(model).eval()(leaf)[0, 1], leaf)
    for composite in ("epsilon_plus_flat", "epsilon_plus", "zero"):
        for where, call in entry_points(net, x, composite).items():
            with pytest.raises(cw.UnsupportedLayerError) as error:
                call()
            assert repr(operation) in str(error.value) and module in str(error.value), (where, str(error.value))
            assert_untouched(model, before)
    # and this thread's autograd is the plain one again
    leaf = x[None].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(copy.deepcopy(model).eval()(leaf)[0, 1], leaf)
    assert torch.equal(grad, true_grad)


def test_a_first_layer_rule_needs_the_input_itself():
    model = wrapped(nn.Identity(), before=Shift())
    before = snapshot(model)
    net = tiny_net(model)
    x = image(6)
    for composite, rule in (("epsilon_plus_flat", "flat"), ("epsilon_plus_w_square", "w_square"),
                            ("epsilon_gamma_box", "zbox"), ("epsilon_alpha2_beta1_flat", "flat")):
        with pytest.raises(cw.UnsupportedLayerError) as error:
            net.relevance(x, 1, composite=composite)
        assert repr(rule) in str(error.value) and "conv1" in str(error.value)
        assert_untouched(model, before)
    # a composite without a first-layer rule works: the shift 2x - 1 is linear, so the relevance of
    # x is 2x * g where g = R' / x' is the modified gradient at x' = 2x - 1 (the bare model's input)
    r = net.relevance(x, 1, composite="epsilon_plus")
    bare = copy.deepcopy(model)
    bare.before = nn.Identity()
    shifted = x * 2 - 1
    r_bare = tiny_net(bare).relevance(shifted, 1, composite="epsilon_plus")
    assert r.value == pytest.approx(r_bare.value, rel=1e-12)
    torch.testing.assert_close(r.map, 2 * x * r_bare.map / shifted, rtol=1e-9, atol=1e-12)
    assert_untouched(model, before)


def test_a_composite_object_is_used_as_given():
    # cw.Composite is public and the error text offers it ("... (or a cw.Composite)"); every entry
    # point must use its rules and parameters, whatever its name
    model = tiny(bias=False)
    before = snapshot(model)
    net = tiny_net(model)
    x = image(7)
    builtin = net.relevance(x, 2, composite="epsilon_plus")
    mine = cw.Composite("my_epsilon_plus", "z+ and epsilon", conv="zplus", linear="epsilon")
    r = net.relevance(x, 2, composite=mine)
    torch.testing.assert_close(r.map, builtin.map, rtol=1e-12, atol=0)
    torch.testing.assert_close(net.saliency(x, 2, method="lrp", composite=mine), builtin.map, rtol=1e-12, atol=0)
    tree = net.contribution_tree(x, 2, rule="lrp", composite=mine, depth=1, k=8)
    torch.testing.assert_close(tree.raw_picture, builtin.map, rtol=1e-12, atol=0)
    assert tree.children_total == pytest.approx(builtin.layers[1][1], rel=1e-12)
    # the same name with another epsilon is another composite: at the bias-free linear layer the
    # relevance below is z * z / (z + eps * sign(z)) with its own eps (kept graphs not mixed up)
    wide = cw.Composite("my_epsilon_plus", "z+ and epsilon 0.5", conv="zplus", linear="epsilon", epsilon=0.5)
    r_wide = net.relevance(x, 2, composite=wide)
    z = r_wide.value
    assert r_wide.layers[1][1] == pytest.approx(z * z / (z + 0.5 * (1 if z >= 0 else -1)), rel=1e-12)
    assert r.layers[1][1] == pytest.approx(z * z / (z + 1e-6 * (1 if z >= 0 else -1)), rel=1e-12)
    kept = net.saliency(x, 2, method="lrp", composite=wide)
    torch.testing.assert_close(kept, r_wide.map, rtol=1e-12, atol=0)
    assert float((kept - r.map).abs().max()) > 1e-3 * float(r.map.abs().max())
    assert_untouched(model, before)


def test_a_composite_object_named_like_a_builtin_is_not_swapped_for_it():
    # same name as the registry's LRP-0, other rules: the caller's rules must run, not the registry's
    model = tiny(bias=False)
    net = tiny_net(model)
    x = image(7)
    builtin = net.relevance(x, 2, composite="epsilon_plus")
    assert float((builtin.map - net.relevance(x, 2, composite="zero").map).abs().max()) > 1e-3
    mine = cw.Composite("zero", "z+ and epsilon, named zero", conv="zplus", linear="epsilon")
    r = net.relevance(x, 2, composite=mine)
    assert set(r.rules) == {"zplus", "epsilon"}
    torch.testing.assert_close(r.map, builtin.map, rtol=1e-12, atol=0)
