"""Attention maps and attention rollout of vision transformers (``net.attention``, saliency method
``"attention_rollout"``), against an independent float64 forward pass written from the weights, and
an independent rollout and bilinear upsampling in numpy.

Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.attention import has_attention
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.saliency import METHODS

timm = pytest.importorskip("timm")
from timm.models.deit import VisionTransformerDistilled  # noqa: E402
from timm.models.swin_transformer import SwinTransformer  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT  # noqa: E402

SIZE, PATCH, GRID = 32, 8, 4
TOL = 1e-10


def preprocess():
    return cw.imagenet_preprocess(size=SIZE, resize=SIZE)


def vit(seed: int = 0, cls=VisionTransformer, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    model = cls(img_size=SIZE, patch_size=PATCH, embed_dim=16, depth=3, num_heads=2, num_classes=5, **kwargs).double().eval()
    with torch.no_grad():  # timm starts class / position embeddings near zero and attention near uniform:
        for name, p in model.named_parameters():  # make every token distinct and the attention peaked
            if "token" in name or "pos_embed" in name or "qkv.weight" in name:
                p.normal_(0, 0.5)
    return model


def torchvision_vit(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = TorchvisionViT(image_size=SIZE, patch_size=PATCH, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                           num_classes=5).double().eval()
    with torch.no_grad():
        model.class_token.normal_(0, 0.5)
        for layer in model.encoder.layers:
            layer.self_attention.in_proj_weight.normal_(0, 0.5)
    return model


def image(seed: int = 1) -> torch.Tensor:
    return torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def snapshot(model: nn.Module):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            {k: v.clone() for k, v in model.state_dict().items()})


def assert_untouched(model: nn.Module, before) -> None:
    training, grads, state = before
    assert hook_count(model) == 0
    assert torch._C._len_torch_function_stack() == 0  # no torch-function mode left active
    assert [m.training for m in model.modules()] == training
    assert [p.requires_grad for p in model.parameters()] == grads
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- independent forward passes


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _layer_norm(x: np.ndarray, norm: nn.LayerNorm) -> np.ndarray:
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + norm.eps) * _np(norm.weight) + _np(norm.bias)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _patches(x: np.ndarray, conv: nn.Conv2d) -> np.ndarray:
    """The patch embedding as a matrix product: [tokens, C], row-major on the grid."""
    c, h, w = x.shape
    blocks = x.reshape(c, h // PATCH, PATCH, w // PATCH, PATCH).transpose(1, 3, 0, 2, 4).reshape(-1, c * PATCH * PATCH)
    return blocks @ _np(conv.weight).reshape(conv.out_channels, -1).T + _np(conv.bias)


def _self_attention(h: np.ndarray, w_qkv, b_qkv, heads: int) -> tuple[np.ndarray, np.ndarray]:
    n, c = h.shape
    qkv = h @ w_qkv.T + b_qkv
    q, k, v = (qkv[:, i * c:(i + 1) * c].reshape(n, heads, c // heads).transpose(1, 0, 2) for i in range(3))
    probs = _softmax(q @ k.transpose(0, 2, 1) / math.sqrt(c // heads))
    return probs, (probs @ v).transpose(1, 0, 2).reshape(n, c)


def manual_timm(model, x: torch.Tensor) -> list[np.ndarray]:
    """Attention probabilities [heads, N, N] per block of a timm ViT / DeiT, from its weights."""
    t = _patches(_np(x), model.patch_embed.proj)
    extra = [_np(getattr(model, name)[0]) for name in ("cls_token", "dist_token") if getattr(model, name, None) is not None]
    t = np.concatenate(extra + [t]) + _np(model.pos_embed[0])
    found = []
    for block in model.blocks:
        attn = block.attn
        probs, mixed = _self_attention(_layer_norm(t, block.norm1), _np(attn.qkv.weight), _np(attn.qkv.bias), attn.num_heads)
        found.append(probs)
        t = t + mixed @ _np(attn.proj.weight).T + _np(attn.proj.bias)
        hidden = _gelu(_layer_norm(t, block.norm2) @ _np(block.mlp.fc1.weight).T + _np(block.mlp.fc1.bias))
        t = t + hidden @ _np(block.mlp.fc2.weight).T + _np(block.mlp.fc2.bias)
    return found


def manual_torchvision(model, x: torch.Tensor) -> list[np.ndarray]:
    """The same for torchvision's ViT (nn.MultiheadAttention), from its weights."""
    t = _patches(_np(x), model.conv_proj)
    t = np.concatenate([_np(model.class_token[0]), t]) + _np(model.encoder.pos_embedding[0])
    found = []
    for block in model.encoder.layers:
        mha = block.self_attention
        probs, mixed = _self_attention(_layer_norm(t, block.ln_1), _np(mha.in_proj_weight), _np(mha.in_proj_bias), mha.num_heads)
        found.append(probs)
        t = t + mixed @ _np(mha.out_proj.weight).T + _np(mha.out_proj.bias)
        hidden = _gelu(_layer_norm(t, block.ln_2) @ _np(block.mlp[0].weight).T + _np(block.mlp[0].bias))
        t = t + hidden @ _np(block.mlp[3].weight).T + _np(block.mlp[3].bias)
    return found


def manual_rollout(layers: list[np.ndarray], row, prefix: int, fusion: str = "mean") -> np.ndarray:
    """Abnar & Zuidema's rollout, the given row (None: the mean row) over the patch tokens, upsampled."""
    n = layers[0].shape[-1]
    result = np.eye(n)
    for probs in layers:
        fused = {"mean": np.mean, "max": np.max, "min": np.min}[fusion](probs, axis=0)
        a = 0.5 * fused + 0.5 * np.eye(n)
        a /= a.sum(axis=1, keepdims=True)
        result = a @ result
    flow = result.mean(axis=0) if row is None else result[row]
    return bilinear(flow[prefix:].reshape(GRID, GRID), SIZE)


def bilinear(grid: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centred bilinear upsampling with edge clamping (align_corners=False), written out."""
    def axis(n_in: int):
        src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0)
        low = np.minimum(np.floor(src).astype(int), n_in - 1)
        return low, np.minimum(low + 1, n_in - 1), src - low

    y0, y1, fy = axis(grid.shape[0])
    x0, x1, fx = axis(grid.shape[1])
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


# ----------------------------------------------------------------------------- per layer and head


@pytest.mark.parametrize("fused", [True, False])
def test_timm_attention_per_layer_and_head_matches_the_weights(fused):
    model = vit()
    for block in model.blocks:  # timm's fused kernel (scaled_dot_product_attention) or its explicit softmax
        block.attn.fused_attn = fused
    net, img = cw.Network(model, preprocess()), image()
    before = snapshot(model)
    x = net.prepare(img)
    expected = manual_timm(model, x[0])
    every = net.attention(img)
    assert list(every) == ["blocks.0", "blocks.1", "blocks.2"]
    for (name, maps), probs in zip(every.items(), expected):
        assert maps.shape == (2, GRID, GRID) and maps.dtype == torch.float64
        want = probs[:, 0, 1:].reshape(2, GRID, GRID)  # the class token's row over the patches
        np.testing.assert_allclose(maps.numpy(), want, atol=TOL, rtol=0)
        np.testing.assert_allclose(net.attention(img, name, head=1).numpy(), want[1], atol=TOL, rtol=0)
        np.testing.assert_allclose(net.attention(img, name, head="mean").numpy(), want.mean(0), atol=TOL, rtol=0)
    assert_untouched(model, before)


def test_torchvision_multihead_attention_matches_the_weights():
    model = torchvision_vit()
    model.train()  # must come back in training mode
    net, img = cw.Network(model, preprocess()), image(2)
    before = snapshot(model)
    x = net.prepare(img)
    expected = manual_torchvision(model.eval(), x[0])
    model.train()
    every = net.attention(img)
    assert list(every) == ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]
    for maps, probs in zip(every.values(), expected):
        np.testing.assert_allclose(maps.numpy(), probs[:, 0, 1:].reshape(2, GRID, GRID), atol=TOL, rtol=0)
    rollout = net.saliency(img, None, "attention_rollout")
    np.testing.assert_allclose(rollout.numpy(), manual_rollout(expected, 0, 1), atol=TOL, rtol=0)
    # the model's own outputs are unchanged by the capture (need_weights asked for, not returned)
    with torch.no_grad():
        model.eval()
        plain = model(x)
        model.train()
    assert torch.allclose(net.logits(img), plain[0], atol=1e-12)
    assert_untouched(model, before)


def test_distilled_model_uses_the_class_token_and_drops_both_extra_tokens():
    model = vit(cls=VisionTransformerDistilled)
    net, img = cw.Network(model, preprocess()), image(3)
    assert net.layer("blocks.0").layout.prefix == 2
    expected = manual_timm(model, net.prepare(img)[0])
    for maps, probs in zip(net.attention(img).values(), expected):
        np.testing.assert_allclose(maps.numpy(), probs[:, 0, 2:].reshape(2, GRID, GRID), atol=TOL, rtol=0)
    np.testing.assert_allclose(net.saliency(img, method="attention_rollout").numpy(), manual_rollout(expected, 0, 2),
                               atol=TOL, rtol=0)


def test_without_a_class_token_the_map_is_the_mean_over_queries():
    model = vit(class_token=False, global_pool="avg")
    net, img = cw.Network(model, preprocess()), image(4)
    model_layers = manual_timm(model, net.prepare(img)[0])
    for maps, probs in zip(net.attention(img).values(), model_layers):
        np.testing.assert_allclose(maps.numpy(), probs.mean(axis=1).reshape(2, GRID, GRID), atol=TOL, rtol=0)
    np.testing.assert_allclose(net.saliency(img, method="attention_rollout").numpy(),
                               manual_rollout(model_layers, None, 0), atol=TOL, rtol=0)


# ----------------------------------------------------------------------------- rollout


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_matches_an_independent_float64_computation(fusion):
    model = vit(seed=5)
    net, img = cw.Network(model, preprocess()), image(5)
    before = snapshot(model)
    expected = manual_rollout(manual_timm(model, net.prepare(img)[0]), 0, 1, fusion)
    rollout = net.saliency(img, None, "attention_rollout", head_fusion=fusion)
    assert rollout.shape == (SIZE, SIZE) and not rollout.requires_grad
    np.testing.assert_allclose(rollout.numpy(), expected, atol=TOL, rtol=0)
    # class-agnostic: every class gives the same map
    assert torch.equal(net.saliency(img, 3, "attention_rollout", head_fusion=fusion), rollout)
    assert_untouched(model, before)


def test_rollout_to_a_unit_stops_at_its_block_and_takes_its_token():
    model = vit(seed=6)
    net, img = cw.Network(model, preprocess()), image(6)
    layers = manual_timm(model, net.prepare(img)[0])
    got = net.saliency(img, cw.Unit("blocks.1", 3, position=(1, 2)), "attention_rollout")
    np.testing.assert_allclose(got.numpy(), manual_rollout(layers[:2], 1 + 1 * GRID + 2, 1), atol=TOL, rtol=0)
    whole = net.saliency(img, cw.Unit("blocks.0", 0), "attention_rollout")  # no position: the class token's row
    np.testing.assert_allclose(whole.numpy(), manual_rollout(layers[:1], 0, 1), atol=TOL, rtol=0)
    token = net.saliency(img, cw.Unit("blocks.1:tokens", 0, position=(0, 0)), "attention_rollout")  # the class token
    np.testing.assert_allclose(token.numpy(), manual_rollout(layers[:2], 0, 1), atol=TOL, rtol=0)
    with pytest.raises(cw.OptionError, match="blocks.0"):
        net.saliency(img, cw.Unit("patch_embed.proj", 0), "attention_rollout")


# ----------------------------------------------------------------------------- refusals and model state


def test_bad_layer_head_and_options_are_clear_errors():
    model = vit()
    net, img = cw.Network(model, preprocess()), image()
    before = snapshot(model)
    with pytest.raises(cw.LayerNotFoundError, match="blocks.1"):
        net.attention(img, "blocks.11")
    with pytest.raises(cw.LayerNotFoundError, match="not a transformer block.*'blocks.0', 'blocks.1', 'blocks.2'"):
        net.attention(img, "patch_embed.proj")
    with pytest.raises(cw.OptionError, match=r"head must be an integer between 0 and 1"):
        net.attention(img, "blocks.0", head=2)
    with pytest.raises(cw.OptionError, match="head must be None"):
        net.attention(img, "blocks.0", head="max")
    with pytest.raises(cw.OptionError, match="head_fusion.*mean"):
        net.saliency(img, None, "attention_rollout", head_fusion="median")
    with pytest.raises(cw.TargetError):
        net.saliency(img, 99, "attention_rollout")
    with pytest.raises(cw.OptionError, match="Direction"):
        net.saliency(img, cw.engine.targets.Direction("blocks.0", torch.ones(16)), "attention_rollout")
    assert_untouched(model, before)


def test_a_cnn_is_refused_and_not_offered():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).double()
    net, img = cw.Network(model, preprocess()), image()
    before = snapshot(model)
    assert not has_attention(net) and not METHODS["attention_rollout"].applies(net)
    with pytest.raises(cw.ModelError, match="no transformer blocks.*vision transformer"):
        net.attention(img)
    with pytest.raises(cw.ModelError, match="vision transformer"):
        net.saliency(img, None, "attention_rollout")
    assert_untouched(model, before)
    assert has_attention(cw.Network(vit(), preprocess())) and has_attention(cw.Network(torchvision_vit(), preprocess()))


def test_swin_windowed_attention_is_refused():
    torch.manual_seed(0)
    model = SwinTransformer(img_size=SIZE, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
                            num_classes=5).double().eval()
    net, img = cw.Network(model, preprocess()), image()
    before = snapshot(model)
    assert not has_attention(net)
    for call in (lambda: net.attention(img), lambda: net.saliency(img, None, "attention_rollout")):
        with pytest.raises(cw.ModelError, match="windowed attention.*no class token attending to the whole image"):
            call()
    assert_untouched(model, before)


class Exploding(nn.Module):
    """A block that raises after its attention ran (an error in the middle of the captured pass)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.explode = inner, False

    def forward(self, x):
        out = self.inner(x)
        if self.explode:
            raise RuntimeError("injected")
        return out


def test_an_error_in_the_pass_leaves_the_model_untouched():
    model = vit()
    model.blocks[1] = Exploding(model.blocks[1])
    model.train()
    net, img = cw.Network(model, preprocess()), image()
    net.layers  # discover while it still works
    before = snapshot(model)
    model.blocks[1].explode = True
    for call in (lambda: net.attention(img), lambda: net.saliency(img, None, "attention_rollout")):
        with pytest.raises(RuntimeError, match="injected"):
            call()
        assert_untouched(model, before)
    model.blocks[1].explode = False
    assert len(net.attention(img)) == 3


def test_another_threads_passes_are_neither_seen_nor_changed():
    model = vit()
    net, img = cw.Network(model, preprocess()), image()
    x = net.prepare(img)
    alone = net.attention(img)
    with torch.no_grad():
        plain = model(x)
    results, errors = [], []

    def background():
        try:
            for _ in range(10):
                results.append(net.attention(img))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=background)
    thread.start()
    with torch.no_grad():
        while thread.is_alive():
            assert torch.equal(model(x), plain)  # this thread's passes are plain model passes
    thread.join()
    assert not errors and len(results) == 10
    for found in results:
        assert all(torch.equal(found[n], alone[n]) for n in alone)
    assert hook_count(model) == 0
