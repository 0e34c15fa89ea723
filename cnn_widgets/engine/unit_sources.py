"""The operations that combine many numbers into one, taken apart at one output index for
:mod:`.unit_explain`: a convolution, pooling (a window or a reduction), a linear layer, an
element-wise sum / difference / product / quotient, a concatenation. Values are those the operation
read in the recorded pass, in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import UnsupportedLayerError
from .targets import Unit
from .tracing import pair
from .unit_steps import Combination, Convolution, Linear, Pooling
from .unit_trace import PassRecorder, Record, arg, base_name

COMBINE = {"add": "add", "radd": "add", "iadd": "add", "sub": "subtract", "rsub": "subtract", "isub": "subtract",
           "mul": "multiply", "rmul": "multiply", "imul": "multiply", "div": "divide", "truediv": "divide",
           "itruediv": "divide", "true_divide": "divide"}
CONCAT = {"cat", "concat", "concatenate"}
REDUCTIONS = {"mean", "sum", "amax"}
LINEAR_TOP = 10  # a linear unit shows its largest products, the rest as one sum
SHOWN = ("convolutions, pooling, linear layers, sums, products, concatenations, batch / group / layer norms "
         "and per-number activations")


def _at(value, index: tuple[int, ...]) -> float:
    """One number of a tensor (broadcast against an output ``index``) or a Python number."""
    if not isinstance(value, torch.Tensor):
        return float(value)
    offset = len(index) - value.dim()
    return float(value[tuple(0 if value.shape[k] == 1 else index[offset + k] for k in range(value.dim()))])


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy().copy()


def _conv(rec: PassRecorder, r: Record, index: tuple[int, ...]) -> Convolution:
    x = rec.value(r.args[0], r.index)
    weight = rec.value(arg(r, 1, "weight"), r.index)
    bias = rec.value(arg(r, 2, "bias"), r.index)
    stride, dilation = pair(arg(r, 3, "stride", 1)), pair(arg(r, 5, "dilation", 1))
    groups = int(arg(r, 6, "groups", 1))
    kh, kw = weight.shape[2:]
    padding = arg(r, 4, "padding", 0)
    if padding == "valid":
        padding = 0
    if padding == "same":
        padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, (kh, kw)))
    pad = pair(padding)
    n, c, oy, ox = index
    per_group = weight.shape[0] // groups
    first = (c // per_group) * weight.shape[1]
    channels = tuple(range(first, first + weight.shape[1]))
    h, w = x.shape[2:]
    y0, x0 = oy * stride[0] - pad[0], ox * stride[1] - pad[1]
    rows = torch.arange(kh) * dilation[0] + y0
    cols = torch.arange(kw) * dilation[1] + x0
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    maps = x[n, first:first + weight.shape[1]].double()
    patch = torch.zeros(len(channels), kh, kw, dtype=torch.float64)
    ry, rx = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    patch[:] = maps[:, ry][:, :, rx] * inside
    kernel = weight[c].double()
    products = patch * kernel
    out = r.copies[0]
    return Convolution(
        patch.numpy(), kernel.numpy(), products.numpy(), products.sum((1, 2)).numpy(), channels,
        (~inside).numpy(), float(bias[c]) if bias is not None else None, stride, dilation, pad, groups,
        (y0, x0), maps.numpy(), _numpy(out[n, c]), input_from=rec.source(r.args[0], r.index),
    )


def _pool(rec: PassRecorder, r: Record, index: tuple[int, ...], name: str) -> Pooling:
    x = rec.value(r.args[0], r.index)
    n, c, oy, ox = index
    plane = x[n, c].double()
    h, w = plane.shape
    out_plane = _numpy(r.copies[0][n, c])
    if name.startswith("adaptive"):
        size = arg(r, 1, "output_size")
        size = pair(size)
        oh, ow = (s if s is not None else d for s, d in zip(size, (h, w)))
        ys, ye = (oy * h) // oh, -((-(oy + 1) * h) // oh)
        xs, xe = (ox * w) // ow, -((-(ox + 1) * w) // ow)
        values = plane[ys:ye, xs:xe]
        y0, x0, divisor = ys, xs, float(values.numel())
        valid = torch.ones_like(values, dtype=torch.bool)
    else:
        k = pair(arg(r, 1, "kernel_size"))
        stride = arg(r, 2, "stride", None)
        stride = k if stride is None or stride == [] or stride == () else pair(stride)
        pad = pair(arg(r, 3, "padding", 0))
        if name == "max_pool2d":
            d = pair(arg(r, 4, "dilation", 1))
        else:
            d = (1, 1)
        y0, x0 = oy * stride[0] - pad[0], ox * stride[1] - pad[1]
        rows, cols = torch.arange(k[0]) * d[0] + y0, torch.arange(k[1]) * d[1] + x0
        valid = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
        values = plane[rows.clamp(0, h - 1)][:, cols.clamp(0, w - 1)]
        divisor = None
        if name == "avg_pool2d":
            include, override = arg(r, 5, "count_include_pad", True), arg(r, 6, "divisor_override", None)
            hend, wend = min(y0 + k[0], h + pad[0]), min(x0 + k[1], w + pad[1])
            pool_size = (hend - y0) * (wend - x0)
            inner = (min(hend, h) - max(y0, 0)) * (min(wend, w) - max(x0, 0))
            divisor = float(override) if override else float(pool_size if include else inner)
    values = torch.where(valid, values, torch.full_like(values, float("nan"))).numpy()
    op = "max" if "max" in name else "average"
    winner = tuple(int(i) for i in np.unravel_index(np.nanargmax(values), values.shape)) if op == "max" else None
    windows = {"adaptive": True} if name.startswith("adaptive") else \
        {"kernel": tuple(k), "stride": tuple(stride), "pad": tuple(pad), "dilation": tuple(d)}
    return Pooling(op, values, (y0, x0), winner, divisor if op == "average" else None, plane.numpy(), out_plane,
                   input_from=rec.source(r.args[0], r.index), **windows)


def _reduction(rec: PassRecorder, r: Record, index: tuple[int, ...], name: str) -> Pooling:
    """``x.mean(dims)`` / ``sum`` / ``amax`` (a global pool written as a reduction) as a pooling window."""
    x = rec.value(r.args[0], r.index)
    dims = arg(r, 1, "dim", None)
    dims = tuple(range(x.dim())) if dims is None or dims == () or dims == [] else \
        (dims,) if isinstance(dims, int) else tuple(dims)
    dims = tuple(sorted(d % x.dim() for d in dims))
    keep = bool(arg(r, 2, "keepdim", False))
    kept = iter(index)
    where = []
    for d in range(x.dim()):
        if d in dims:
            where.append(slice(None))
            if keep:
                next(kept)
        else:
            where.append(next(kept))
    values = x[tuple(where)].double()
    op = "max" if name == "amax" else "average"
    divisor = float(values.numel()) if name == "mean" else 1.0
    arr = values.numpy()
    winner = tuple(int(i) for i in np.unravel_index(np.argmax(arr), arr.shape)) if op == "max" else None
    shown = arr if arr.ndim <= 2 else arr.reshape(-1)
    return Pooling(op, shown, (0, 0), winner, divisor if op == "average" else None,
                   shown if shown.ndim == 2 else None, input_from=rec.source(r.args[0], r.index))


def _linear(rec: PassRecorder, r: Record, index: tuple[int, ...]) -> Linear:
    x = rec.value(r.args[0], r.index)
    weight, bias = rec.value(arg(r, 1, "weight"), r.index), rec.value(arg(r, 2, "bias"), r.index)
    row = x[index[:-1]].double()
    o = index[-1]
    products = row * weight[o].double()
    order = products.abs().argsort(descending=True)
    top = order[:LINEAR_TOP]
    rest = order[LINEAR_TOP:]
    return Linear(top.numpy(), row[top].numpy(), weight[o].double()[top].numpy(), products[top].numpy(),
                  float(products[rest].sum()), int(rest.numel()), float(bias[o]) if bias is not None else None,
                  float(products.abs().sum()) + (abs(float(bias[o])) if bias is not None else 0.0))


def _combination(rec: PassRecorder, r: Record, index: tuple[int, ...], op: str) -> Combination:
    operands = list(r.args[:2])
    if base_name(r.name).startswith("r"):  # x.__rsub__(y) is y - x
        operands.reverse()
    values = [_at(rec.value(a, r.index), index) for a in operands]
    alpha = r.kwargs.get("alpha")
    if alpha is not None:
        values[1] *= float(alpha)
    return Combination(op, tuple(values), tuple(rec.source(a, r.index) for a in operands))


def _concat(rec: PassRecorder, r: Record, index: tuple[int, ...]) -> Combination:
    parts = list(arg(r, 0, "tensors"))
    dim = int(arg(r, 1, "dim", 0)) % len(index)
    at = index[dim]
    for k, part in enumerate(parts):
        if at < part.shape[dim]:
            inner = index[:dim] + (at,) + index[dim + 1:]
            return Combination("concat", (float(rec.value(part, r.index)[inner]),), (rec.source(part, r.index),),
                               part=k, channel=at, parts=len(parts))
        at -= part.shape[dim]
    raise AssertionError("index beyond the concatenation")


def source_of(rec: PassRecorder, r: Record, index: tuple[int, ...], unit: Unit):
    name = base_name(r.name)
    if name == "conv2d":
        return _conv(rec, r, index)
    if name in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"):
        return _pool(rec, r, index, name)
    if name in REDUCTIONS:
        return _reduction(rec, r, index, name)
    if name == "linear":
        return _linear(rec, r, index)
    if name in COMBINE and len(r.args) >= 2:
        return _combination(rec, r, index, COMBINE[name])
    if name in CONCAT:
        return _concat(rec, r, index)
    where = f" in module {r.module!r}" if r.module else ""
    raise UnsupportedLayerError(f"explain_unit cannot take apart {r.name!r}{where}, which computes {unit}; it shows {SHOWN}")
