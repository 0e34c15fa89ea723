"""LRP through vision transformers: layer norms and attention (used by :class:`.lrp_mode.LrpMode`).

The rules of CP-LRP (Ali et al. 2022, "XAI for Transformers: Better Explanations through
Conservative Propagation") and AttnLRP (Achtibat et al. 2024), simplified:

* a layer norm (group norm, RMS norm) passes the relevance through elementwise, as an unmerged
  batch norm does (:class:`.lrp_rules._Pass`, ``g_x = g_y * y / x``): its statistics are constants;
* an attention's probabilities ``softmax(q k^T * scale + mask)`` are computed from detached
  queries and keys and are a constant, so ``probs @ v`` is linear in the values and its gradient
  is LRP-0 (every row of probabilities sums to 1: conservative); no relevance reaches q and k;
* ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, torchvision's ViT) is computed
  again here: the value and output projections are linear layers with the composite's rule, the
  query and key projections feed the constant probabilities only.

A matrix product with one operand on the relevance path is linear in it (its gradient, LRP-0). An
attention written out (``q @ k.transpose(-2, -1)``, a softmax, ``@ v``: timm's Swin, ``fused_attn=False``)
gets the same rule: the product of two activations is computed from detached operands, marked as
scores, and only a softmax (after scaling, masks, reshapes) may read it: its output is the constant
probabilities. Scores reaching anything else are refused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ATTENTION", "NORMS"]

NORMS = frozenset(f for f in (F.layer_norm, F.group_norm, getattr(F, "rms_norm", None)) if f is not None)


def _bound(names: tuple[str, ...], args, kwargs) -> dict:
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


def _additive(mask: torch.Tensor | None, like: torch.Tensor, masked_when: bool) -> torch.Tensor | None:
    """An attention mask as an additive float mask (``-inf`` where a bool mask equals ``masked_when``)."""
    if mask is None:
        return None
    mask = mask.detach()
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill_(mask == masked_when, -math.inf)
    return mask.to(like.dtype)


def _probs(q: torch.Tensor, k: torch.Tensor, scale: float, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """``softmax(q k^T * scale + mask)`` of detached ``q`` and ``k``: the constant attention probabilities."""
    scores = (q.detach() @ k.detach().transpose(-2, -1)) * scale
    if causal:
        length, source = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(length, source, dtype=torch.bool, device=q.device).tril().logical_not(),
                                    -math.inf)
    if mask is not None:
        scores = scores + mask
    return scores.softmax(-1)


def _sdpa(mode, func, args, kwargs):
    b = _bound(("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"), args, kwargs)
    q, k, v = b["query"], b["key"], b["value"]
    if b.get("dropout_p", 0.0):
        mode._unsupported("scaled_dot_product_attention", "attention dropout (train mode)")
    if b.get("enable_gqa") and k.shape[-3] != q.shape[-3]:
        repeat = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(repeat, -3), v.repeat_interleave(repeat, -3)
    scale = b.get("scale")
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    probs = _probs(q, k, scale, _additive(b.get("attn_mask"), q, masked_when=False), bool(b.get("is_causal")))
    mode.state.applied.add("attention as constant")
    return probs.to(v.dtype) @ v


_MHA = ("query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias", "bias_k",
        "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias", "training", "key_padding_mask",
        "need_weights", "attn_mask", "use_separate_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
        "static_k", "static_v", "average_attn_weights", "is_causal")


def _mha(mode, func, args, kwargs):
    b = _bound(_MHA, args, kwargs)
    name = "multi_head_attention_forward"
    for option, why in (("bias_k", "a key bias (add_bias_kv=True)"), ("bias_v", "a value bias (add_bias_kv=True)"),
                        ("static_k", "static keys"), ("static_v", "static values")):
        if b.get(option) is not None:
            mode._unsupported(name, why)
    if b.get("add_zero_attn"):
        mode._unsupported(name, "add_zero_attn=True")
    if b.get("training", True) and b.get("dropout_p", 0.0):
        mode._unsupported(name, "attention dropout (train mode)")
    query, key, value = b["query"], b["key"], b["value"]
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    length, batch, dim = query.shape
    source, heads = key.shape[0], b["num_heads"]
    head_dim = dim // heads
    if b.get("use_separate_proj_weight"):
        weights = (b["q_proj_weight"], b["k_proj_weight"], b["v_proj_weight"])
    else:
        weights = b["in_proj_weight"].chunk(3)
    bias = b.get("in_proj_bias")
    biases = (None,) * 3 if bias is None else bias.chunk(3)
    # queries and keys feed the constant probabilities only; the values are a linear layer with the composite's rule
    q = F.linear(query.detach(), weights[0].detach(), None if biases[0] is None else biases[0].detach())
    k = F.linear(key.detach(), weights[1].detach(), None if biases[1] is None else biases[1].detach())
    v = mode._affine(F.linear, None, (value, weights[2], biases[2]), {})

    def split(t, n):  # [n, batch, dim] -> [batch, heads, n, head_dim]
        return t.reshape(n, batch, heads, head_dim).permute(1, 2, 0, 3)

    mask = _additive(b.get("attn_mask"), q, masked_when=True)
    if mask is not None:
        mask = mask.view(batch, heads, length, source) if mask.dim() == 3 else mask
    padding = _additive(b.get("key_padding_mask"), q, masked_when=True)
    if padding is not None:
        padding = padding.view(batch, 1, 1, source)
        mask = padding if mask is None else mask + padding
    causal = bool(b.get("is_causal")) and mask is None
    probs = _probs(split(q, length), split(k, source), 1 / math.sqrt(head_dim), mask, causal)
    mode.state.applied.add("attention as constant")
    out = (probs @ split(v, source)).permute(2, 0, 1, 3).reshape(length * batch, dim)
    out = mode._affine(F.linear, None, (out, b["out_proj_weight"], b.get("out_proj_bias")), {})
    out = out.view(length, batch, dim)
    weights_out = None
    if b.get("need_weights", True):
        weights_out = probs.mean(1) if b.get("average_attn_weights", True) else probs
        if not batched:
            weights_out = weights_out.squeeze(0)
    return (out if batched else out.squeeze(1)), weights_out


def _matmul(mode, func, args, kwargs):
    """A matrix product with one operand on the relevance path is linear in it (LRP-0: its gradient). Of
    two activations it is attention scores: computed from detached operands, a constant marked as
    scores, which may only reach a softmax (:func:`scores_flow`)."""
    operands = [a for a in args[:2] if isinstance(a, torch.Tensor)]
    if len(operands) == 2 and all(a.requires_grad for a in operands):
        out = func(*(a.detach() for a in args[:2]), *args[2:], **kwargs)
        out._cnnw_scores = (getattr(func, "__name__", "matmul"), mode._where())
        return out
    return func(*args, **kwargs)


# what attention scores may go through on their way to the softmax: scaling, a bias or mask, reshaping
_SCORE_FLOW = frozenset("""view view_as reshape reshape_as flatten unflatten permute transpose contiguous clone squeeze
unsqueeze expand expand_as __getitem__ add __add__ __radd__ add_ __iadd__ sub __sub__ __rsub__ sub_ __isub__ mul __mul__
__rmul__ mul_ __imul__ div __truediv__ div_ __itruediv__ masked_fill masked_fill_ where to float double half bfloat16
type type_as dropout""".split())


def scores_flow(mode, func, path, args, kwargs):
    """A call reading attention scores (a product of two activations, a constant): a softmax makes them
    the constant attention probabilities; scaling, masks and reshapes keep them scores; anything else
    (an activation among the arguments included) is refused, naming the product and its module."""
    name = getattr(func, "__name__", str(func))
    made, where = next(t._cnnw_scores for t in _flat(args, kwargs) if getattr(t, "_cnnw_scores", None))
    if path or (name != "softmax" and name not in _SCORE_FLOW):
        mode._unsupported(made, f"a product of two activations; it has a rule as attention scores, constant on their "
                          f"way to a softmax, but here it reaches {name!r}", where)
    out = func(*args, **kwargs)
    if name == "softmax":
        mode.state.applied.add("attention as constant")
    elif isinstance(out, torch.Tensor):
        out._cnnw_scores = (made, where)
    return out


def _flat(args, kwargs):
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _flat(value, {})


ATTENTION = {F.scaled_dot_product_attention: _sdpa, F.multi_head_attention_forward: _mha,
             **dict.fromkeys((torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__,
                              torch.bmm, torch.Tensor.bmm), _matmul)}
