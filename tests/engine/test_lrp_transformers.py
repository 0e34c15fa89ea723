"""LRP on vision transformers: CP-LRP / AttnLRP simplified (layer norms pass the relevance, attention
probabilities are constants), on a tiny timm ViT and a tiny torchvision ViT in float64.

Conservation, in closed form: with every bias, the position embedding and the class token zero and
the layer norms' affine parameters 1 / 0, every step of the backward pass conserves the relevance --
a linear layer's epsilon / LRP-0 rule with a vanishing epsilon and no bias (``sum_i R_i = sum_j z_j g_j``),
the flat first layer, GELU and layer norm passing it elementwise (``R_x = R_y``), residual additions
splitting it by contribution, and ``probs @ v`` with constant probabilities whose rows sum to 1
(``sum_j R_vj = sum_i g_i sum_j p_ij v_j = sum_i R_out_i``); the zero class token and position
embedding take nothing (a zero term of a sum carries zero relevance). So the input relevance sums
to the target logit.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from test_lrp import assert_untouched, snapshot
from torch import nn

import cnn_widgets as cw

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_EPS = cw.Composite("tiny_eps", "ε+♭ with a vanishing epsilon", conv="zplus", first="flat",
                        epsilon=1e-12, stabilizer=1e-12)


def timm_vit(seed: int = 0) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=5).double().eval()


def torchvision_vit(seed: int = 0) -> nn.Module:
    from torchvision.models import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=4)
    nn.init.normal_(model.heads.head.weight, std=0.5)  # it starts at zero: every logit 0
    return model.double().eval()


def conservative(model: nn.Module) -> nn.Module:
    """Zero biases, position embedding and class token; layer norms' weight 1 and bias 0."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or name.split(".")[-1] in ("pos_embed", "cls_token", "pos_embedding", "class_token"):
                p.zero_()
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
    return model


def net_of(model: nn.Module) -> cw.Network:
    return cw.Network(model, preprocess=lambda image: torch.zeros(3, 32, 32, dtype=torch.float64), input_size=32)


def image(seed: int = 0) -> torch.Tensor:
    return torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def logit(model: nn.Module, x: torch.Tensor, target: int) -> float:
    with torch.no_grad():
        return float(model(x[None])[0, target])


@pytest.mark.parametrize("build", [timm_vit, torchvision_vit], ids=["timm", "torchvision"])
def test_conservation_without_biases(build):
    model = conservative(build())
    before = snapshot(model)
    net = net_of(model)
    x = image(1)
    for target in range(3):
        value = logit(model, x, target)
        assert abs(value) > 1e-3
        for composite in (TINY_EPS, "zero"):
            r = net.relevance(x, target, composite=composite)
            assert r.value == pytest.approx(value, rel=1e-12)
            # relevance lost to the epsilons: relative eps / z, ~1e-8 here (LRP-0: rounding only)
            assert float(r.map.sum()) == pytest.approx(value, rel=1e-6 if composite is TINY_EPS else 1e-10), composite
            assert {"pass:layer_norm", "pass:gelu", "attention as constant"} <= set(r.rules)
        saliency = net.saliency(x, target, method="lrp", composite=TINY_EPS)
        torch.testing.assert_close(saliency, net.relevance(x, target, composite=TINY_EPS).map, rtol=1e-10, atol=1e-14)
    assert_untouched(model, before)


# ------------------------------------------------------------------------- an independent reference
def _pass(f, x):
    """``f(x)`` whose gradient passes the relevance through: ``x * (f(x) / x)`` with the ratio constant."""
    return x * (f(x) / x).detach()


def cp_lrp0_timm(model, x: torch.Tensor, target: int) -> torch.Tensor:
    """CP-LRP-0 of a timm ViT written out with plain autograd: layer norms and GELU pass the relevance,
    attention probabilities are detached; the input relevance is ``x * gradient``."""
    x = x[None].clone().requires_grad_(True)
    t = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
    t = torch.cat([model.cls_token.expand(1, -1, -1), t], 1) + model.pos_embed
    for block in model.blocks:
        attn = block.attn
        h = _pass(block.norm1, t)
        b, n, c = h.shape
        qkv = F.linear(h, attn.qkv.weight, attn.qkv.bias).reshape(b, n, 3, attn.num_heads, c // attn.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        probs = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1).detach()
        h = (probs @ v).transpose(1, 2).reshape(b, n, c)
        t = t + attn.proj(h)
        h = _pass(F.gelu, block.mlp.fc1(_pass(block.norm2, t)))
        t = t + block.mlp.fc2(h)
    score = model.head(_pass(model.norm, t)[:, 0])[0, target]
    (grad,) = torch.autograd.grad(score, x)
    return (x * grad)[0].detach()


def cp_lrp0_torchvision(model, x: torch.Tensor, target: int) -> torch.Tensor:
    """The same for torchvision's ViT (``nn.MultiheadAttention`` with a packed in-projection)."""
    x = x[None].clone().requires_grad_(True)
    t = model.conv_proj(x).flatten(2).transpose(1, 2)
    t = torch.cat([model.class_token.expand(1, -1, -1), t], 1) + model.encoder.pos_embedding
    for block in model.encoder.layers:
        mha = block.self_attention
        h = _pass(block.ln_1, t)
        b, n, c = h.shape
        heads = mha.num_heads
        q, k, v = (F.linear(h, w, bb).reshape(b, n, heads, c // heads).transpose(1, 2)
                   for w, bb in zip(mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)))
        probs = ((q @ k.transpose(-2, -1)) / (c // heads) ** 0.5).softmax(-1).detach()
        t = t + mha.out_proj((probs @ v).transpose(1, 2).reshape(b, n, c))
        t = t + block.mlp[3](_pass(F.gelu, block.mlp[0](_pass(block.ln_2, t))))
    score = model.heads.head(_pass(model.encoder.ln, t)[:, 0])[0, target]
    (grad,) = torch.autograd.grad(score, x)
    return (x * grad)[0].detach()


@pytest.mark.parametrize("build,reference", [(timm_vit, cp_lrp0_timm), (torchvision_vit, cp_lrp0_torchvision)],
                         ids=["timm", "torchvision"])
def test_lrp0_is_cp_lrp_written_out_by_hand(build, reference):
    model = build(3)  # random biases, layer norm parameters and embeddings: the rules, not conservation
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    before = snapshot(model)
    net = net_of(model)
    x = image(2)
    for target in (0, 2):
        expected = reference(copy.deepcopy(model), x, target)
        assert expected.abs().max() > 1e-3
        got = net.saliency(x, target, method="lrp", composite="zero")
        scale = float(expected.abs().max())
        assert float((got - expected).abs().max()) < 1e-8 * scale
        r = net.relevance(x, target, composite="zero")
        assert float((r.map - expected).abs().max()) < 1e-8 * scale
    assert_untouched(model, before)


# ------------------------------------------------------------------------- the model left as it was
def test_trees_run_and_the_model_is_untouched():
    model = timm_vit(4)
    before = snapshot(model)
    net = net_of(model)
    x = image(3)
    tree = net.contribution_tree(x, 1, rule="lrp", depth=1, k=2)
    assert tree is not None
    net.contributions(x, 1, rule="lrp", k=2)
    assert_untouched(model, before)


def test_an_attention_written_out_has_the_fused_attentions_relevance():
    model = timm_vit(5)
    before = snapshot(model)
    net = net_of(model)
    x = image(5)
    fused = {c: net.relevance(x, 1, composite=c) for c in ("zero", "epsilon_plus_flat")}
    for block in model.blocks:
        block.attn.fused_attn = False  # q @ k.transpose(-2, -1), softmax, @ v
    try:
        for composite, expected in fused.items():
            r = net.relevance(x, 1, composite=composite)
            assert r.value == pytest.approx(expected.value, rel=1e-12)
            torch.testing.assert_close(r.map, expected.map, rtol=1e-9, atol=1e-12 * float(expected.map.abs().max()))
            assert "attention as constant" in r.rules
    finally:
        for block in model.blocks:
            block.attn.fused_attn = True
    assert_untouched(model, before)


class Scores(nn.Module):
    """Attention scores that reach something other than a softmax (here: a linear layer)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 8, stride=8)
        self.head = nn.Linear(16 * 16, 3)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        return self.head((t @ t.transpose(-2, -1) * 0.5).flatten(1))


def test_scores_that_reach_anything_but_a_softmax_are_refused_and_nothing_is_left_behind():
    torch.manual_seed(9)
    model = Scores().double().eval()
    before = snapshot(model)
    net = net_of(model)
    with pytest.raises(cw.UnsupportedLayerError, match=r"'matmul' in Scores.*reaches 'linear'"):
        net.saliency(image(), 1, method="lrp")
    assert_untouched(model, before)
    assert torch._C._len_torch_function_stack() == 0
    x = image()[None].requires_grad_(True)  # this thread's autograd is the plain one again
    (grad,) = torch.autograd.grad(model(x)[0, 1], x)
    assert grad.abs().sum() > 0


class Tokens(nn.Module):
    """A patch embedding, one attention (``kind``) with a residual, and a linear head on the mean token."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.embed = nn.Conv2d(3, 8, 8, stride=8)
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=kind == "bias_kv")
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        if self.kind == "dropout":
            q = t.unflatten(-1, (2, 4)).transpose(1, 2)
            h = F.scaled_dot_product_attention(q, q, q, dropout_p=0.1).transpose(1, 2).flatten(2)
        elif self.kind == "masked":  # a causal SDPA and an MHA with a key padding mask
            q = t.unflatten(-1, (2, 4)).transpose(1, 2)
            h = F.scaled_dot_product_attention(q, q, q, is_causal=True).transpose(1, 2).flatten(2)
            padding = torch.zeros(t.shape[:2], dtype=torch.bool)
            padding[:, -3:] = True
            h = h + self.mha(t, t, t, key_padding_mask=padding)[0]
        else:
            h = self.mha(t, t, t)[0]
        return self.head((t + h).mean(1))


@pytest.mark.parametrize("kind,match", [("dropout", "scaled_dot_product_attention.*dropout"),
                                        ("bias_kv", "multi_head_attention_forward.*MultiheadAttention 'mha'.*key bias")])
def test_attention_outside_the_supported_case_is_refused(kind, match):
    torch.manual_seed(7)
    model = Tokens(kind).double().eval()
    before = snapshot(model)
    with pytest.raises(cw.UnsupportedLayerError, match=match):
        net_of(model).relevance(image(), 1)
    assert_untouched(model, before)


def test_masks_are_constants_of_the_probabilities():
    torch.manual_seed(8)
    model = Tokens("masked").double().eval()
    net = net_of(model)
    x = image(4)
    r = net.relevance(x, 1, composite="zero")
    assert r.value == pytest.approx(logit(model, x, 1), rel=1e-12)
    # masked probabilities: the relevance of the masked keys' values is zero, every map finite
    assert torch.isfinite(r.map).all() and float(r.map.abs().sum()) > 0
