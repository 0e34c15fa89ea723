"""Attention of vision transformers: per layer and head, and attention rollout.

One forward pass records the attention probabilities ``[heads, N, N]`` of every transformer block
(an explorable layer with a :class:`~cnn_widgets.engine.tokens.TokenLayout`). Models compute
attention in different ways; a thread-local :class:`torch.overrides.TorchFunctionMode` sees each:

* ``F.scaled_dot_product_attention`` (timm's fused attention): recomputed explicitly,
  ``softmax(q k^T * scale + mask) @ v`` (the same values within float error), the probabilities kept;
* ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, torchvision's ``EncoderBlock``):
  called with ``need_weights=True, average_attn_weights=False``, the caller gets what it asked for;
* a softmax over the last axis of a ``[B, heads, N, M]`` tensor (timm's explicit attention,
  hand-written blocks).

A call made inside a handler is not seen again (the mode is not re-entered), so each attention is
recorded once. Forward pre / post hooks on the blocks (this thread only, removed on exit, also on
error) assign each recorded matrix to the innermost block running.

Windowed attention (Swin: ``[windows, heads, 49, 49]``) is refused: no token attends to the whole
image, so there is no class token's attention over the patch grid and no rollout of it.
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .checks import check_choice, check_int
from .errors import LayerNotFoundError, ModelError, OptionError
from .hooks import inference_state, this_thread_only
from .precision import as_result
from .targets import Direction, Unit

if TYPE_CHECKING:
    from .core import NetworkBase

__all__ = ["HEAD_FUSIONS", "attention", "attention_layers", "attention_rollout", "has_attention"]

#: how the heads of one layer are fused before the rollout (Abnar & Zuidema use the mean)
HEAD_FUSIONS = ("mean", "max", "min")

_SOFTMAX = {torch.Tensor.softmax, torch.softmax, F.softmax}
_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)
_VIT = ("a vision transformer (transformer blocks with global self-attention over patch tokens, "
              "e.g. timm's vit_* / deit_* or torchvision's vit_b_16)")


class _AttentionCapture(TorchFunctionMode):
    """Hands ``record`` the probabilities ``[B, heads, N, M]`` of every attention computed while active."""

    def __init__(self, record):
        super().__init__()
        self.record = record

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._sdpa(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            return self._mha(func, args, kwargs)
        out = func(*args, **kwargs)
        if func in _SOFTMAX and isinstance(out, torch.Tensor) and out.dim() == 4:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if dim in (-1, 3):
                self.record(out.detach())
        return out

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if enable_gqa and key.shape[-3] != query.shape[-3]:
            repeat = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
        work = torch.promote_types(query.dtype, torch.float32)  # bfloat16 / float16: softmax in float32
        scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
        scores = (query.to(work) @ key.to(work).transpose(-2, -1)) * scale
        if is_causal:
            keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
        probs = scores.softmax(dim=-1)
        self.record(probs.detach())
        if dropout_p > 0:  # as the fused kernel does (a model in eval mode passes 0)
            probs = F.dropout(probs, dropout_p)
        return (probs @ value.to(work)).to(query.dtype)

    def _mha(self, func, args, kwargs):
        bound = _MHA_SIGNATURE.bind(*args, **kwargs)
        bound.apply_defaults()
        wanted, average = bound.arguments["need_weights"], bound.arguments["average_attn_weights"]
        bound.arguments["need_weights"], bound.arguments["average_attn_weights"] = True, False
        out, weights = func(*bound.args, **bound.kwargs)
        self.record((weights if weights.dim() == 4 else weights.unsqueeze(0)).detach())
        if not wanted:
            return out, None
        return out, weights.mean(dim=-3) if average else weights


def _token_layers(net) -> list:
    """The layers on a patch grid (not a block's extra-token layer ``"<block>:tokens"``, same module)."""
    return [info for info in net.layers if info.layout is not None and not getattr(info.layout, "extra_only", False)]


def has_attention(net) -> bool:
    """Whether ``net`` looks like a vision transformer (for menus; costs no forward pass): a token
    layer (not a channels-last Swin stage) with an attention module inside."""
    for info in _token_layers(net):
        if not info.layout.channels_last and any(
            isinstance(m, nn.MultiheadAttention) or "attention" in type(m).__name__.lower() for m in info._module.modules()
        ):
            return True
    return False


def _refuse_without_attention(net, layers: list) -> None:
    if not layers:
        raise ModelError(f"{net.name} has no transformer blocks: attention maps and attention rollout need {_VIT}; "
                         "for a CNN use another saliency method (e.g. 'grad_cam', 'gradient')")
    if all(info.layout.channels_last for info in layers):
        raise ModelError(_windowed(net.name, layers[0].name))


def _windowed(model: str, layer: str) -> str:
    return (f"{model} computes windowed attention (layer {layer!r}, Swin-style): each token attends only to "
            "the tokens of its own window and there is no class token attending to the whole image, so there is "
            f"no attention map over the patch grid and no attention rollout; they need {_VIT}")


@contextmanager
def _capture(layers: list) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record, per token layer, the attention probabilities computed inside it (forward order)."""
    captured: dict[str, list[torch.Tensor]] = {}
    running: list[str] = []

    def record(probs: torch.Tensor) -> None:
        if running:
            captured.setdefault(running[-1], []).append(probs)

    def enter(name):
        return lambda _module, _inputs: running.append(name)

    def leave(_module, _inputs, _output):
        running.pop()

    handles = []
    try:
        for info in layers:
            handles.append(info._module.register_forward_pre_hook(this_thread_only(enter(info.name))))
            handles.append(info._module.register_forward_hook(this_thread_only(leave)))
        with _AttentionCapture(record):
            yield captured
    finally:
        for handle in handles:
            handle.remove()


def attention_layers(net: NetworkBase, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{layer: [heads, N, N]}``: the attention probabilities of every transformer block with global
    attention, in forward order, from one forward pass of the prepared input ``x`` ``[1, 3, H, W]``.

    ``N`` is the layer's token count (its extra tokens, then the patch grid row by row). Raises a
    ``ModelError`` when the model has none, or computes windowed (Swin) attention.
    """
    return _attention(net, x)[0]


def _attention(net, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`attention_layers` and the :class:`TokenLayout` of each of its layers."""
    layers = _token_layers(net)  # read once: each net.layers call checks the model's modules
    _refuse_without_attention(net, layers)
    # eval mode and frozen parameters only: no backward pass follows, so no rectifier rules (net._session's
    # rule mode would route every GELU through a Python function for nothing)
    with _capture(layers) as captured, inference_state(net.model), torch.no_grad():
        net._forward(x)
    infos = {info.name: info for info in layers}
    found: dict[str, torch.Tensor] = {}
    for name, calls in captured.items():
        info = infos[name]
        tokens = info.layout.prefix + info.layout.grid[0] * info.layout.grid[1]
        probs = calls[-1]
        if info.layout.channels_last or probs.shape[0] != x.shape[0]:
            raise ModelError(_windowed(net.name, name))
        if len(calls) > 1:
            raise ModelError(f"layer {name!r} of {net.name} computes attention {len(calls)} times in one pass; "
                             "attention maps need one self-attention per transformer block")
        if tuple(probs.shape[-2:]) != (tokens, tokens):
            raise ModelError(f"layer {name!r} of {net.name} attends from {probs.shape[-2]} to {probs.shape[-1]} tokens, "
                             f"not among its own {tokens} tokens ({info.layout}); attention maps and rollout need "
                             "global self-attention over every token")
        found[name] = probs[0]
    if not found:
        raise ModelError(f"{net.name} has token layers but no attention was seen in them; attention maps and "
                         f"attention rollout need {_VIT}")
    return found, {name: infos[name].layout for name in found}


def _query_row(probs: torch.Tensor, prefix: int) -> torch.Tensor:
    """The first extra token's row (the class token), or the mean over query tokens without one."""
    return probs[..., 0, :] if prefix else probs.mean(dim=-2)


def attention(net: NetworkBase, image, layer: str | None = None, head: int | str | None = None):
    """The class token's attention on the patch grid, per head, of one transformer block or of each.

    The query is the first extra token (the class token; DeiT's distillation token and register
    tokens come after it). A model without extra tokens (global average pooling) has no class
    token: its map is then the mean attention over all query tokens. The columns of the extra
    tokens are dropped, so a map need not sum to 1.

    Parameters
    ----------
    layer
        A transformer block of ``net.layers`` (e.g. ``"blocks.3"``); ``None``: every block.
    head
        ``None``: every head, ``[heads, h, w]``; an index: that head, ``[h, w]``; ``"mean"``: the
        mean over heads, ``[h, w]``.

    Returns
    -------
    A tensor on the patch grid ``(h, w)``, or for ``layer=None`` a dict ``{layer: tensor}`` in forward order.
    """
    if layer is not None:
        layer = net.layer(layer).name  # unknown names: LayerNotFoundError with close names
    if head is not None and head != "mean" and (isinstance(head, bool) or not isinstance(head, int)):
        raise OptionError(f"head must be None (every head), a head index or 'mean', got {head!r}")
    every, layouts = _attention(net, net.prepare(image))
    if layer is not None and layer not in every:
        raise LayerNotFoundError(f"layer {layer!r} of {net.name} is not a transformer block with attention; "
                                 f"use one of {', '.join(map(repr, every))}")
    maps = {}
    for name, probs in every.items():
        if layer is not None and name != layer:
            continue
        layout = layouts[name]
        grid = _query_row(probs, layout.prefix)[:, layout.prefix:].reshape(-1, *layout.grid)
        if head == "mean":
            grid = grid.mean(dim=0)
        elif head is not None:
            grid = grid[check_int("head", head, 0, grid.shape[0] - 1)]
        maps[name] = as_result(grid.clone())  # float32 for a bfloat16 / float16 model
    return maps[layer] if layer is not None else maps


def rollout_matrix(layers: list[torch.Tensor], head_fusion: str = "mean") -> torch.Tensor:
    """``Â_L ··· Â_1`` with ``Â = renormalised rows of 0.5 A + 0.5 I`` and ``A`` the heads fused (in float32,
    or float64 for a float64 model: products of row-stochastic matrices lose no precision to speak of)."""
    result = None
    for probs in layers:
        probs = probs.to(torch.promote_types(probs.dtype, torch.float32))
        fused = probs.amax(dim=0) if head_fusion == "max" else probs.amin(dim=0) if head_fusion == "min" else probs.mean(dim=0)
        a = 0.5 * fused + 0.5 * torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    return result


def _up_to_unit(net, unit: Unit, names: list[str]) -> tuple[list[str], int | None]:
    """The blocks up to ``unit``'s and the row of its token (``None``: the class token's row)."""
    layout = net.layer(unit.layer).layout
    extra = layout is not None and getattr(layout, "extra_only", False)  # "<block>:tokens": the block's extra tokens
    block = unit.layer.rpartition(":")[0] if extra else unit.layer
    if block not in names:
        raise OptionError(f"attention rollout to a unit needs a transformer block; {unit.layer!r} is not one "
                          f"(use one of {', '.join(map(repr, names))}, or a class target)")
    names = names[: names.index(block) + 1]
    if unit.position is None:
        return names, None
    y, x = unit.position
    return names, (x if extra else layout.prefix + y * layout.grid[1] + x)


def attention_rollout(net, x, target, head_fusion: str = "mean", quantity: str = "logit") -> torch.Tensor:
    """Attention rollout: how much each patch flows into the class token through all blocks, ``[H, W]``.

    Per block the heads are fused (``head_fusion``: ``"mean"``, the paper's choice, ``"max"`` or
    ``"min"``), the residual connection is accounted for as ``Â = 0.5 A + 0.5 I`` with rows
    renormalised, and the blocks are multiplied from the first to the last, ``Â_L ··· Â_1``. The
    class token's row over the patch tokens (the mean row for a model without extra tokens), on
    the patch grid, is upsampled bilinearly to the input size.

    Rollout is class-agnostic: a class ``target`` (or ``None``) is checked and gives the same map
    for every class, and ``quantity`` is ignored. A :class:`Unit` target on a transformer block
    rolls out up to that block and takes the row of the unit's token (its ``position``; the class
    token's row when it has none): the patches that flow into that token.

    Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020. Needs a vision
    transformer with global attention (refused on CNNs and on Swin's windowed attention).
    """
    check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    if isinstance(target, Direction):
        raise OptionError("attention rollout is class-agnostic and takes no Direction target")
    if target is not None:
        target = net._resolve_target(target)  # a bad class or unit is still an error
    every, layouts = _attention(net, x)
    names, row = list(every), None
    if isinstance(target, Unit):
        names, row = _up_to_unit(net, target, names)
    layout = layouts[names[-1]]
    rolled = rollout_matrix([every[n] for n in names], head_fusion)
    flow = rolled[row] if row is not None else _query_row(rolled, layout.prefix)
    grid = flow[layout.prefix:].reshape(1, 1, *layout.grid)
    return F.interpolate(grid, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, 0].to(x.dtype)
