"""Vision transformers as explorable layers: token maps on the patch grid, the extra tokens apart.

Every number is checked against the model's own raw outputs, read by a plain forward hook in an
independent pass and indexed by hand (token ``1 + i*w + j`` is position ``(i, j)``), in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.tokens import TokenLayout, token_layout

timm = pytest.importorskip("timm")


def tiny_vit(**kwargs) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    options = dict(img_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2, num_classes=5)
    return VisionTransformer(**(options | kwargs)).double().eval()


def network(model: nn.Module, size: int = 32) -> cw.Network:
    return cw.Network(model, preprocess=cw.imagenet_preprocess(size=size, resize=size), name=type(model).__name__)


def raw_output(model: nn.Module, module: nn.Module, x: torch.Tensor, grad: bool = False):
    """``(module's output, model's output)`` from a plain pass with a plain hook (no engine code)."""
    kept = {}
    handle = module.register_forward_hook(lambda _m, _i, out: kept.__setitem__("out", out) and None)
    try:
        with torch.set_grad_enabled(grad):
            logits = model(x)
    finally:
        handle.remove()
    return kept["out"], logits


@pytest.fixture(scope="module")
def vit():
    model = tiny_vit()
    return model, network(model), cw.sample_image("cat")


def test_layouts_read_tokens_like_a_loop():
    out = torch.randn(1, 2 + 3 * 4, 5)
    layout = TokenLayout((3, 4), prefix=2)
    got = layout.to_map(out)
    for c in range(5):
        for i in range(3):
            for j in range(4):
                assert got[0, c, i, j] == out[0, 2 + i * 4 + j, c]
    assert torch.equal(layout.from_map(got, out), out)
    extras = layout.extras()
    assert extras.grid == (1, 2) and extras.extra_only
    tokens = extras.to_map(out)
    assert tokens.shape == (1, 5, 1, 2) and all(tokens[0, c, 0, t] == out[0, t, c] for c in range(5) for t in range(2))
    assert torch.equal(extras.from_map(tokens, out), out)
    last = torch.randn(1, 3, 4, 5)
    channels_last = TokenLayout((3, 4), channels_last=True)
    assert torch.equal(channels_last.to_map(last), last.permute(0, 3, 1, 2))
    assert torch.equal(channels_last.from_map(channels_last.to_map(last), last), last)
    # a token count that is no grid plus a few extra tokens is not a token map
    assert token_layout(torch.randn(1, 12 + 40, 5), [(3, 4)], False) is None
    assert token_layout(torch.randn(1, 13, 5), [(3, 4)], False) == TokenLayout((3, 4), 1)


def test_blocks_and_their_class_token_are_layers(vit):
    model, net, image = vit
    names = net.layer_names
    assert names == ["patch_embed.proj", "patch_embed", "blocks.0", "blocks.0:tokens", "blocks.1", "blocks.1:tokens",
                     "blocks.2", "blocks.2:tokens", "head"]
    assert net.layer("blocks.1").shape == (16, 4, 4) and net.layer("blocks.1:tokens").shape == (16, 1, 1)
    assert net.layer("blocks.1").receptive_field.size == (8, 8) and net.layer("blocks.1").receptive_field.stride == (8, 8)
    assert net.layer("blocks.1:tokens").receptive_field.is_global
    # the head reads the class token, the tree walks blocks down
    assert net.layer("head").input_layer == "blocks.2:tokens" and net.logit_layer == "head"
    assert net.layer_below("head") == "blocks.2:tokens"
    assert net.layer_below("blocks.2:tokens") == "blocks.1" and net.layer_below("blocks.2") == "blocks.1"
    assert net.layer_below("blocks.0") == "patch_embed"


def test_activations_are_the_blocks_tokens(vit):
    model, net, image = vit
    x = net.prepare(image)
    acts = net.activations(image)
    for name in ("blocks.0", "blocks.2"):
        raw, _ = raw_output(model, model.get_submodule(name), x)
        got = acts[name]
        for c in (0, 7, 15):
            for i in range(4):
                for j in range(4):
                    assert got[c, i, j] == raw[0, 1 + i * 4 + j, c]
        assert torch.equal(acts[name + ":tokens"][:, 0, 0], raw[0, 0])
    raw, _ = raw_output(model, model.patch_embed, x)
    assert torch.equal(acts["patch_embed"], raw[0].T.reshape(16, 4, 4))
    assert hook_count(model) == 0


@pytest.mark.parametrize("unit, index", [(cw.Unit("blocks.1", 3, position=(1, 2)), (1 + 1 * 4 + 2, 3)),
                                         (cw.Unit("blocks.1:tokens", 5, position=(0, 0)), (0, 5))])
def test_gradient_of_a_token_unit(vit, unit, index):
    """The gradient of one token's channel reaches the input exactly as a plain autograd pass says."""
    model, net, image = vit
    got = net.saliency(image, unit, method="gradient")
    x = net.prepare(image).clone().requires_grad_(True)
    raw, _ = raw_output(model, model.get_submodule(unit.layer.removesuffix(":tokens")), x, grad=True)
    (expected,) = torch.autograd.grad(raw[0, index[0], index[1]], x)
    torch.testing.assert_close(got, expected[0], rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for p in model.parameters()) and hook_count(model) == 0


def test_grad_cam_on_a_block_is_pytorch_grad_cams_reshape(vit):
    """Grad-CAM on a block: the tokens reshaped to the grid (pytorch-grad-cam's ``reshape_transform``),
    channel weights the mean gradient, the positive part of the weighted sum, upsampled bilinearly."""
    model, net, image = vit
    got = net.saliency(image, 2, method="grad_cam", layer="blocks.1")
    x = net.prepare(image)
    raw, logits = raw_output(model, model.blocks[1], x, grad=True)
    (grad,) = torch.autograd.grad(logits[0, 2], raw)
    maps = raw[0, 1:].T.reshape(16, 4, 4)
    weights = grad[0, 1:].T.reshape(16, 4, 4).mean(dim=(1, 2))
    cam = F.relu((weights[:, None, None] * maps).sum(0))
    expected = F.interpolate(cam[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(got, expected.detach(), rtol=1e-10, atol=1e-12)


def test_class_tree_walks_the_class_token_then_blocks(vit):
    model, net, image = vit
    top = int(net.logits(image).argmax())
    tree = net.contribution_tree(image, top, depth=2, k=2)
    assert tree.score == pytest.approx(float(net.logits(image)[top]), rel=1e-12)
    assert [c.unit.layer for c in tree.children] == ["blocks.2:tokens"] * 2
    assert all(g.unit.layer == "blocks.1" for c in tree.children for g in c.children)
    # a child's score is gradient x activation of the class token's channel: logit = head(norm(token))
    raw, _ = raw_output(model, model.blocks[2], net.prepare(image))
    token = raw[0, 0].detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.head(model.norm(token))[top], token)
    expected = (grad * token).detach()
    assert [c.unit.channel for c in tree.children] == expected.topk(2).indices.tolist()
    for child in tree.children:
        assert child.score == pytest.approx(float(expected[child.unit.channel]), rel=1e-9)
    assert hook_count(model) == 0


def test_swin_stages_are_channels_last_maps():
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    model = SwinTransformer(img_size=32, patch_size=4, window_size=2, embed_dim=8, depths=(1, 1), num_heads=(1, 2),
                            num_classes=3).double().eval()
    net = network(model)
    blocks = [layer for layer in net.layers if layer.layout is not None]
    assert [b.name for b in blocks] == ["patch_embed", "layers.0.blocks.0", "layers.1.blocks.0"]
    assert [b.shape for b in blocks] == [(8, 8, 8), (8, 8, 8), (16, 4, 4)]
    assert all(b.layout.channels_last for b in blocks)
    image = cw.sample_image("coffee")
    x = net.prepare(image)
    raw, _ = raw_output(model, model.get_submodule("layers.1.blocks.0"), x)
    assert torch.equal(net.activations(image, "layers.1.blocks.0")["layers.1.blocks.0"], raw[0].permute(2, 0, 1))
    assert net.layer_below("layers.1.blocks.0") == "layers.0.blocks.0"
    tree = net.contribution_tree(image, 1, depth=2, k=2)
    assert tree.children and all(c.unit.layer == net.layer_below(net.logit_layer) for c in tree.children)
    assert hook_count(model) == 0


def test_torchvision_vit_reads_its_class_token():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=4).double().eval()
    net = network(model)
    blocks = [f"encoder.layers.encoder_layer_{i}" for i in range(2)]
    assert [n for n in net.layer_names if n.startswith("encoder")] == [blocks[0], blocks[0] + ":tokens",
                                                                       blocks[1], blocks[1] + ":tokens"]
    assert net.layer_below("heads.head") == blocks[1] + ":tokens"
    image = cw.sample_image("rocket")
    x = net.prepare(image)
    raw, _ = raw_output(model, model.encoder.layers[1], x)
    # (nn.MultiheadAttention may take its fused path in one pass and not in the other: rounding apart)
    torch.testing.assert_close(net.activations(image, blocks[1])[blocks[1]], raw[0, 1:].T.reshape(16, 4, 4),
                               rtol=1e-12, atol=1e-12)


def test_deit_distillation_token_and_bad_units():
    model = tiny_vit(class_token=True, reg_tokens=2)
    net = network(model)
    assert net.layer("blocks.0:tokens").shape == (16, 1, 3)  # the class token, then two registers
    image = cw.sample_image("cat")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(cw.TargetError, match=r"outside the 1x3 map"):
        net.saliency(image, cw.Unit("blocks.0:tokens", 0, position=(0, 3)))
    with pytest.raises(cw.LayerNotFoundError, match="blocks.0:tokens"):
        net.saliency(image, cw.Unit("blocks.0:token", 0))
    assert hook_count(model) == 0 and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not any(m.training for m in model.modules()) and all(p.requires_grad for p in model.parameters())


def test_occlusion_on_a_vit_says_why_it_runs_in_full(vit):
    model, net, image = vit
    result = net.occlusion(image, window=16, stride=16, result=True, progress=False)
    assert result.method == "full" and "self-attention" in result.reason


def test_a_users_thread_running_the_vit_meanwhile_is_never_touched(vit):
    """The hooks that hand the pass a block's output rebuilt from its map answer only the engine's
    thread: the user's own passes of the same model, all the while, give exactly their outputs."""
    import threading

    model, net, image = vit
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
    stop, seen, wrong = threading.Event(), [0], []

    def user():
        while not stop.is_set():
            try:
                with torch.no_grad():
                    out = model(x)
            except Exception as err:  # an engine hook cutting the user's pass short (StopForward) lands here
                wrong.append(repr(err))
                return
            seen[0] += 1
            if not torch.equal(out, expected):
                wrong.append(seen[0])

    thread = threading.Thread(target=user)
    thread.start()
    try:
        for layer in ("blocks.1", "blocks.2:tokens"):
            net.saliency(image, cw.Unit(layer, 1), method="guided_backprop")
            net.contribution_tree(image, cw.Unit(layer, 1), depth=1, k=2)
    finally:
        stop.set()
        thread.join()
    assert seen[0] > 0 and not wrong
    assert hook_count(model) == 0
