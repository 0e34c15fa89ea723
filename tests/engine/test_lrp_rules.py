"""Each LRP rule against an independent float64 reference written from the formulas (zennit's
rules.py: Epsilon, ZPlus, Gamma, AlphaBeta, Flat, WSquare, ZBox; stabiliser ``z + eps * sign(z)``
with ``sign(0) = +1``), batch-norm merging against a hand-folded copy, and single rules against
zennit itself.

The references never run the engine: a convolution becomes its dense matrix (the convolution
applied to every basis image), and each rule is a sum over explicit contribution matrices
``c[j, i]`` (output ``j``, input ``i``), or plain Python loops for the fully connected network.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 1e-6  # zennit's default epsilon and stabiliser, which the composites use
GAMMA, ALPHA, BETA = 0.25, 2.0, 1.0
MEAN, STD = (0.2, 0.5, 0.7), (0.3, 0.25, 0.2)

# zennit's composites, written out from zennit/composites.py (first layer, other convs, linear layers)
ZENNIT_COMPOSITES = {
    "epsilon_plus_flat": ("flat", "zplus", "epsilon"),
    "epsilon_plus": ("zplus", "zplus", "epsilon"),
    "epsilon_gamma_box": ("zbox", "gamma", "epsilon"),
    "epsilon_alpha2_beta1": ("alpha_beta", "alpha_beta", "epsilon"),
    "epsilon_alpha2_beta1_flat": ("flat", "alpha_beta", "epsilon"),
    "epsilon_plus_w_square": ("w_square", "zplus", "epsilon"),
    "zero": ("zero", "zero", "zero"),
}


# ------------------------------------------------------------------------------ the reference
def stab(d: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    return d + eps * torch.where(d >= 0, 1.0, -1.0).to(d.dtype)


def spread(c: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """``R_i = sum_j c[j, i] * share[j]``."""
    return (c * share[:, None]).sum(0)


def dense_rule(rule: str, a, W, b, R, low=None, high=None) -> torch.Tensor:
    """Relevance at the input ``a`` (n) of ``z = W a + b`` (W: m x n) for the relevance ``R`` (m) at ``z``."""
    ap, an = a.clamp(min=0), a.clamp(max=0)
    Wp, Wn, bp, bn = W.clamp(min=0), W.clamp(max=0), b.clamp(min=0), b.clamp(max=0)
    z = W @ a + b
    if rule == "zero":
        c = W * a
        return spread(c, torch.where(z != 0, R / torch.where(z != 0, z, 1.0), 0.0))
    if rule == "epsilon":
        return spread(W * a, R / stab(z))
    if rule == "zplus":
        c = Wp * ap + Wn * an
        return spread(c, R / stab(c.sum(1) + bp))
    if rule == "alpha_beta":
        cp, cn = Wp * ap + Wn * an, Wn * ap + Wp * an
        return ALPHA * spread(cp, R / stab(cp.sum(1) + bp)) - BETA * spread(cn, R / stab(cn.sum(1) + bn))
    if rule == "gamma":
        Wg_p, Wg_n = W + GAMMA * Wp, W + GAMMA * Wn
        cpos, cneg = Wg_p * ap + Wg_n * an, Wg_n * ap + Wg_p * an
        dpos, dneg = cpos.sum(1) + b + GAMMA * bp, cneg.sum(1) + b + GAMMA * bn
        return (spread(cpos, torch.where(z > 0, R / stab(dpos), 0.0))
                + spread(cneg, torch.where(z < 0, R / stab(dneg), 0.0)))
    if rule == "flat":
        c = (W != 0).to(W.dtype)  # the connections: every kernel tap that lands inside the image
        return spread(c, R / stab(c.sum(1)))
    if rule == "w_square":
        c = W * W
        return spread(c, R / stab(c.sum(1) + b * b))
    if rule == "zbox":
        c = W * a - Wp * low - Wn * high
        return spread(c, R / stab(c.sum(1)))
    raise AssertionError(rule)


def as_dense(layer: nn.Module, in_shape: tuple) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """``(W, b, out_shape)`` of a convolution or linear layer acting on flattened inputs of ``in_shape``."""
    n = int(torch.tensor(in_shape).prod())
    basis = torch.eye(n, dtype=torch.float64).view(n, *in_shape)
    with torch.no_grad():
        if isinstance(layer, nn.Conv2d):
            out = F.conv2d(basis, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
            bias = layer.bias[:, None, None].expand(out.shape[1:])
        else:
            out = F.linear(basis, layer.weight)
            bias = layer.bias
        return out.reshape(n, -1).T.clone(), bias.reshape(-1).clone(), tuple(out.shape[1:])


def rule_net() -> nn.Sequential:
    """conv (first) -> leaky ReLU (negative inputs for the second conv) -> strided conv -> ReLU -> two linear layers."""
    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1)),
        ("act1", nn.LeakyReLU(0.1)),
        ("conv2", nn.Conv2d(4, 5, 3, stride=2, padding=1)),
        ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(5 * 3 * 3, 6)),
        ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(6, 3)),
    ])).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * (0.3 if "bias" in name else 0.5))
    return model


def normalize() -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])


def box_image(seed: int = 0, size: int = 6) -> torch.Tensor:
    """Pixels in [0, 1] through the normalisation: inside the z-B rule's box."""
    u = torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (u - torch.tensor(MEAN, dtype=torch.float64).view(3, 1, 1)) / torch.tensor(STD, dtype=torch.float64).view(3, 1, 1)


def reference_relevance(model: nn.Sequential, x: torch.Tensor, target: int, composite: str):
    """Input relevance and the relevance at fc2's, fc1's and conv2's input of ``rule_net`` (flattened)."""
    first, conv, linear = ZENNIT_COMPOSITES[composite]
    W1, b1, s1 = as_dense(model.conv1, tuple(x.shape))
    W2, b2, _ = as_dense(model.conv2, s1)
    W3, b3, _ = as_dense(model.fc1, (W2.shape[0],))
    W4, b4, _ = as_dense(model.fc2, (W3.shape[0],))
    a0 = x.reshape(-1)
    a1 = F.leaky_relu(W1 @ a0 + b1, 0.1)
    a2 = torch.relu(W2 @ a1 + b2)
    a3 = torch.relu(W3 @ a2 + b3)
    z4 = W4 @ a3 + b4
    R4 = torch.zeros_like(z4)
    R4[target] = z4[target]
    # rectifiers pass the relevance unchanged: R at a layer's output is R at its activation
    R3 = dense_rule(linear, a3, W4, b4, R4)
    R2 = dense_rule(linear, a2, W3, b3, R3)
    R1 = dense_rule(conv, a1, W2, b2, R2)
    low = ((0 - torch.tensor(MEAN, dtype=torch.float64)) / torch.tensor(STD, dtype=torch.float64)).view(3, 1, 1)
    high = ((1 - torch.tensor(MEAN, dtype=torch.float64)) / torch.tensor(STD, dtype=torch.float64)).view(3, 1, 1)
    R0 = dense_rule(first, a0, W1, b1, R1, low.expand(x.shape).reshape(-1), high.expand(x.shape).reshape(-1))
    return float(z4[target]), R0.view(x.shape), {"relu3": R3, "relu2": R2, "act1": R1}


@pytest.mark.parametrize("composite", list(ZENNIT_COMPOSITES))
def test_every_rule_matches_the_dense_reference(composite):
    model = rule_net()
    net = cw.Network(model, preprocess=normalize(), input_size=6)
    x = box_image()
    target = 1
    value, R0, inner = reference_relevance(model, x, target, composite)
    r = net.relevance(x, target, composite=composite)
    assert r.value == pytest.approx(value, rel=1e-12)
    scale = float(R0.abs().max())
    assert scale > 1e-3
    assert float((r.map - R0).abs().max()) <= 1e-9 * scale, composite
    assert [name for name, _ in r.layers] == ["fc2", "relu3", "relu2", "act1", "input"]
    totals = dict(r.layers)
    assert totals["fc2"] == pytest.approx(value, rel=1e-12)
    assert totals["input"] == pytest.approx(float(R0.sum()), rel=1e-9, abs=1e-12)
    for layer, R in inner.items():  # the relevance at each cut of the chain
        assert totals[layer] == pytest.approx(float(R.sum()), rel=1e-9, abs=1e-12), (composite, layer)
    # the rules that ran are the composite's
    assert set(ZENNIT_COMPOSITES[composite]) <= set(r.rules)


def test_the_reference_sees_negative_inputs_and_both_output_signs():
    # guard: the rules' two-sided branches are exercised (negative inputs at both convolutions,
    # outputs of both signs for gamma's masks), so the comparisons above can fail there
    model, x = rule_net(), box_image()
    with torch.no_grad():
        z1 = model.conv1(x[None])
        z2 = model.conv2(model.act1(z1))
    assert (x < 0).any() and (x > 0).any()
    assert (model.act1(z1) < 0).any()
    assert (z2 > 0).any() and (z2 < 0).any()


# ------------------------------------------------------------------ loops: a fully connected net
def mlp() -> nn.Sequential:
    """A 1x1 convolution of weight 1 (the engine explores CNNs), then Linear(4, 3) -> ReLU -> Linear(3, 2)."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.Flatten(), nn.Linear(4, 3), nn.ReLU(),
                          nn.Linear(3, 2)).double().eval()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[2].weight.copy_(torch.tensor([[0.5, -1.0, 0.25, 2.0], [-0.75, 0.5, 1.5, -0.5], [1.0, 1.0, -2.0, 0.5]]))
        model[2].bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        model[4].weight.copy_(torch.tensor([[1.0, -0.5, 2.0], [-1.5, 0.75, 0.5]]))
        model[4].bias.copy_(torch.tensor([-0.05, 0.2]))
    return model


def loop_layer(a: list, W: list, b: list, R: list, eps: float) -> list:
    """LRP-epsilon (LRP-0 for ``eps == 0``, 0 / 0 = 0) with explicit loops over inputs and outputs."""
    out = [0.0] * len(a)
    for j in range(len(W)):
        z = sum(a[i] * W[j][i] for i in range(len(a))) + b[j]
        d = z + eps * (1.0 if z >= 0 else -1.0)
        if d == 0:
            continue
        for i in range(len(a)):
            out[i] += a[i] * W[j][i] / d * R[j]
    return out


def loop_unit_conv(rule: str, a: list, R: list) -> list:
    """The 1x1 convolution of weight 1 (no bias) on positive inputs, per position."""
    out = []
    for ai, Ri in zip(a, R):
        if rule == "zero":
            out.append(ai / ai * Ri)
        elif rule == "zplus":  # positive part a * w+, no negative part
            out.append(ai / (ai + EPS) * Ri)
        else:  # alpha_beta: alpha * (a w+) / stab(a w+) - beta * 0 / stab(0): alpha times the relevance
            out.append(ALPHA * ai / (ai + EPS) * Ri - BETA * 0.0 / (0.0 + EPS) * Ri)
    return out


@pytest.mark.parametrize("composite", ["zero", "epsilon_plus", "epsilon_alpha2_beta1"])
def test_fully_connected_rules_match_loops(composite):
    _, conv_rule, linear_rule = ZENNIT_COMPOSITES[composite]
    eps = 0.0 if linear_rule == "zero" else EPS
    model = mlp()
    net = cw.Network(model, preprocess=lambda image: torch.zeros(1, 2, 2, dtype=torch.float64), input_size=2)
    x = torch.tensor([[[0.8, 0.3], [0.5, 1.2]]], dtype=torch.float64)
    W1, b1 = model[2].weight.tolist(), model[2].bias.tolist()
    W2, b2 = model[4].weight.tolist(), model[4].bias.tolist()
    a0 = x.reshape(-1).tolist()
    a1 = [max(0.0, sum(a0[i] * W1[j][i] for i in range(4)) + b1[j]) for j in range(3)]
    z1 = [sum(a0[i] * W1[j][i] for i in range(4)) + b1[j] for j in range(3)]
    assert min(z1) < 0 < max(z1)  # a dead unit and live ones
    for target in (0, 1):
        logit = sum(a1[i] * W2[target][i] for i in range(3)) + b2[target]
        R2 = [logit if j == target else 0.0 for j in range(2)]
        R1 = loop_layer(a1, W2, b2, R2, eps)
        R0 = loop_unit_conv(conv_rule, a0, loop_layer(a0, W1, b1, R1, eps))
        r = net.relevance(x, target, composite=composite)
        assert r.value == pytest.approx(logit, rel=1e-12)
        torch.testing.assert_close(r.map.reshape(-1), torch.tensor(R0, dtype=torch.float64), rtol=1e-10, atol=1e-12)
        assert r.layers[-1][1] == pytest.approx(sum(R0), rel=1e-10)
        assert r.layers[0][1] == pytest.approx(logit, rel=1e-12)


# --------------------------------------------------------------------------- batch norm merging
def bn_net(fold: bool) -> nn.Sequential:
    """conv -> BN -> ReLU -> conv -> BN -> ReLU -> linear; with ``fold`` the BNs merged by hand."""
    g = torch.Generator().manual_seed(5)
    convs = [nn.Conv2d(3, 4, 3, padding=1).double(), nn.Conv2d(4, 5, 3, padding=1).double()]
    norms = [nn.BatchNorm2d(4).double(), nn.BatchNorm2d(5).double()]
    fc = nn.Linear(5 * 6 * 6, 3).double()
    with torch.no_grad():
        for p in (*[q for conv in convs for q in conv.parameters()], *fc.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3)
        for bn in norms:
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 0.5)
            bn.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) * 2 + 0.3)
            # negative scales flip their layer's weights' signs when merged (the rules' clamps see merged weights)
            signs = torch.tensor([-1.0, 1.0] * c, dtype=torch.float64)[:c]
            bn.weight.copy_(torch.randn(c, generator=g, dtype=torch.float64).abs() * signs + 0.1 * signs)
            bn.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 0.3)
            bn.eps = 1e-3
    layers = []
    for conv, bn in zip(convs, norms):
        if fold:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            merged = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1).double()
            with torch.no_grad():
                merged.weight.copy_(conv.weight * scale[:, None, None, None])
                merged.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
            layers += [merged, nn.ReLU()]
        else:
            layers += [conv, bn, nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), fc).double().eval()


@pytest.mark.parametrize("composite", list(ZENNIT_COMPOSITES))
def test_batch_norm_is_merged_into_the_convolution_before_it(composite):
    with_bn = cw.Network(bn_net(False), preprocess=normalize(), input_size=6)
    folded = cw.Network(bn_net(True), preprocess=normalize(), input_size=6)
    x = box_image(1)
    assert float(with_bn.logits(x)[2]) == pytest.approx(float(folded.logits(x)[2]), rel=1e-12)
    r, ref = with_bn.relevance(x, 2, composite=composite), folded.relevance(x, 2, composite=composite)
    assert "merged batch_norm" in r.rules and "pass:batch_norm" not in r.rules
    scale = float(ref.map.abs().max())
    assert scale > 1e-3
    assert float((r.map - ref.map).abs().max()) <= 1e-9 * scale
    assert r.layers[-1][1] == pytest.approx(ref.layers[-1][1], rel=1e-9)


def test_batch_norm_not_after_a_layer_passes_the_relevance():
    # ReLU -> BN -> conv: the BN is no layer's to merge; it passes the relevance (g_x = g_y * y / x, 0 where
    # x == 0), so LRP-0 equals gradient x input of the network whose BN has that ratio as its derivative
    g = torch.Generator().manual_seed(9)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(3, generator=g))
        bn.running_var.copy_(torch.rand(3, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(3, generator=g))
        bn.bias.copy_(torch.randn(3, generator=g))
    model = nn.Sequential(nn.ReLU(), bn, nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3)).double().eval()
    net = cw.Network(model, preprocess=normalize(), input_size=6)
    x = box_image(2)
    r = net.relevance(x, 0, composite="zero")
    assert "pass:batch_norm" in r.rules and "merged batch_norm" not in r.rules
    leaf = x[None].clone().requires_grad_(True)
    h = model[0](leaf)
    y = model[1](h)
    ratio = torch.where(h != 0, y / torch.where(h != 0, h, 1.0), 0.0).detach()
    logit = model[2:](y.detach() + ratio * (h - h.detach()))[0, 0]  # value y, derivative ratio
    (grad,) = torch.autograd.grad(logit, leaf)
    expected = (leaf * grad).detach()[0]
    assert float(expected.abs().max()) > 1e-3
    torch.testing.assert_close(r.map, expected, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------ single rules vs zennit
def zennit_single(model, x, target, rule_name):
    """zennit with one rule on every conv / linear layer (ReLU and LeakyReLU pass)."""
    from zennit.attribution import Gradient
    from zennit.composites import LayerMapComposite
    from zennit.rules import AlphaBeta, Epsilon, Gamma, Pass, ZPlus
    from zennit.types import Activation, Convolution

    rules = {"epsilon": Epsilon(), "zplus": ZPlus(), "gamma": Gamma(), "alpha_beta": AlphaBeta()}
    composite = LayerMapComposite([(Activation, Pass()), (Convolution, rules[rule_name]), (nn.Linear, Epsilon())])
    with Gradient(model, composite) as attributor:
        _, rel = attributor(x[None], lambda out: F.one_hot(torch.tensor([target]), out.shape[1]).to(out) * out)
    return rel[0]


@pytest.mark.parametrize("composite,rule", [("epsilon_plus", "zplus"), ("epsilon_alpha2_beta1", "alpha_beta")])
def test_single_rules_equal_zennit(composite, rule):
    model = rule_net()
    net = cw.Network(model, preprocess=normalize(), input_size=6)
    x = box_image(4)
    ours = net.relevance(x, 2, composite=composite).map
    hooks = hook_count(model)
    theirs = zennit_single(model, x, 2, rule)
    assert hook_count(model) == hooks
    assert float(theirs.abs().max()) > 1e-3
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12 * float(theirs.abs().max()))


def test_the_reference_gamma_equals_zennit_with_negative_inputs():
    # the reference itself checked: zennit's Gamma on every convolution (the first one reads negative
    # inputs) equals dense_rule("gamma"), so the dense comparison above holds the engine to zennit's rule
    model = rule_net()
    x = box_image(6)
    theirs = zennit_single(copy.deepcopy(model), x, 0, "gamma")
    W1, b1, s1 = as_dense(model.conv1, tuple(x.shape))
    W2, b2, _ = as_dense(model.conv2, s1)
    W3, b3, _ = as_dense(model.fc1, (W2.shape[0],))
    W4, b4, _ = as_dense(model.fc2, (W3.shape[0],))
    a0 = x.reshape(-1)
    a1 = F.leaky_relu(W1 @ a0 + b1, 0.1)
    a2 = torch.relu(W2 @ a1 + b2)
    a3 = torch.relu(W3 @ a2 + b3)
    z4 = W4 @ a3 + b4
    R = torch.zeros_like(z4)
    R[0] = z4[0]
    for rule, a, W, b in (("epsilon", a3, W4, b4), ("epsilon", a2, W3, b3), ("gamma", a1, W2, b2), ("gamma", a0, W1, b1)):
        R = dense_rule(rule, a, W, b, R)
    assert float(R.abs().max()) > 1e-3
    torch.testing.assert_close(theirs.reshape(-1), R, rtol=1e-9, atol=1e-12)
