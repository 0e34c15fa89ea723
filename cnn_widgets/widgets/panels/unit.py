"""The "Inside a unit" tab: the arithmetic of one number of a layer (CNN Explainer's view, any model).

``net.explain_unit(image, cw.Unit(layer, channel, position))`` takes the number apart (engine,
``unit_steps.py``); this panel turns its parts into what the view draws: the few input channels
that contribute most (the rest summed as one entry), their patches, kernel slices and products as
float32 arrays, the input and output maps the animation slides over, and every sum as a JSON number
(float64), so the front end adds up the parts it shows and compares the total with the model's.

Computed only while the tab is shown (its row in ``panels/__init__.py``).
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from ...engine import Unit
from ...engine.unit_steps import (
    Combination,
    Convolution,
    Linear,
    Pooling,
    Step,
    UnitArithmetic,
)
from .base import Panel

SHOWN_CHANNELS = 6  # input channels of a convolution drawn one by one; the others are one "other channels" entry
PRINTED_CELLS = 25  # kernels up to 5 x 5 print their numbers in the cells (larger ones: on hover)


class StepEntry(TypedDict):
    name: str  # "batch_norm" or an activation as PyTorch names it (relu, hardtanh, silu, ...)
    module: str
    input: float
    output: float
    scale: float | None  # batch_norm: output = input * scale + shift
    shift: float | None
    bounds: list[float] | None  # hardtanh (ReLU6): [min_val, max_val], the engine's Step.params


class UnitInfo(TypedDict, total=False):
    """``unit_info``, beside ``unit_patch`` / ``unit_kernel`` / ``unit_products`` (float32 [k, kh, kw]:
    the shown input channels; a pool's window [1, kh, kw], NaN on the padding), ``unit_input``
    (float32 [k, H, W]: those channels' input maps) and ``unit_output`` (float32 [Ho, Wo])."""

    layer: str
    channel: int
    position: list[int] | None  # [y, x] on the layer's map (the engine's choice when none was given)
    module: str  # the module whose operation is the source
    kind: str  # "conv", "pool", "linear" or "combine"
    value: float  # the unit's number as the model computed it (net.activations at the position)
    total: float  # the engine's float64 recomputation from the parts
    steps: list[StepEntry]  # applied to the source's result, in order, giving value
    then: list[StepEntry]  # what the model applies to this layer's output next (shown after the value)
    conv: dict  # channels (shown), sums (shown), other {count, sum} | None, count, bias, stride, dilation, pad,
    #             groups, window [y0, x0], kernel [kh, kw], padding [[bool]], printed, extent
    pool: dict  # op, window, winner, divisor, kernel [kh, kw]
    linear: dict  # inputs, values, weights, products, rest, rest_count, bias
    combine: dict  # op, operands, sources, part, channel, parts
    softmax: dict  # classes, labels, logits, shift, exps, exp_sum, probabilities (the top classes)
    slide: dict | None  # how the window moves over the input map: {kh, kw, sy, sx, py, px, dy, dx} or {adaptive}
    input_is_image: bool  # the input map is the network's input (draw the image under the window)
    input_from: str  # the module that computed the input map ("input": the network's input; "" for none)


def _f(value) -> float | None:
    return None if value is None else float(value)


def _step(step: Step) -> StepEntry:
    bounds = [float(v) for v in step.params[:2]] if step.name == "hardtanh" and len(step.params) >= 2 else None
    return {"name": step.name, "module": step.module, "input": float(step.input), "output": float(step.output),
            "scale": _f(step.scale), "shift": _f(step.shift), "bounds": bounds}


def _pool_slide(source: Pooling) -> dict | None:
    """Where each window of the pooling lies on its input map (the engine's kernel, stride, padding, dilation)."""
    if source.input_map is None or source.output_map is None or source.values.ndim != 2:
        return None
    if source.adaptive:
        return {"adaptive": True}
    if source.kernel is None or source.stride is None:
        return None
    (kh, kw), (sy, sx) = source.kernel, source.stride
    (py, px), (dy, dx) = source.pad or (0, 0), source.dilation or (1, 1)
    return {"kh": int(kh), "kw": int(kw), "sy": int(sy), "sx": int(sx), "py": int(py), "px": int(px), "dy": int(dy), "dx": int(dx)}


def _conv(source: Convolution, count: int = SHOWN_CHANNELS) -> tuple[dict, dict]:
    sums = source.channel_sums
    order = np.argsort(-np.abs(sums), kind="stable")[:count]
    order = np.sort(order) if len(sums) <= count else order  # all shown: in channel order
    rest = np.setdiff1d(np.arange(len(sums)), order)
    kh, kw = source.kernel.shape[1:]
    extent = float(np.abs(source.products[order]).max()) if len(order) else 0.0
    info = {
        "channels": [int(source.channels[i]) for i in order], "sums": [float(sums[i]) for i in order],
        "other": {"count": len(rest), "sum": float(sums[rest].sum())} if len(rest) else None,
        "count": len(sums), "bias": _f(source.bias), "stride": list(source.stride), "dilation": list(source.dilation),
        "pad": list(source.pad), "groups": int(source.groups), "window": [int(v) for v in source.window],
        "kernel": [int(kh), int(kw)], "padding": source.padding.astype(bool).tolist(), "printed": bool(kh * kw <= PRINTED_CELLS),
        "extent": extent,
    }
    slide = {"kh": int(kh), "kw": int(kw), "sy": int(source.stride[0]), "sx": int(source.stride[1]),
             "py": int(source.pad[0]), "px": int(source.pad[1]), "dy": int(source.dilation[0]), "dx": int(source.dilation[1])}
    arrays = {"unit_patch": source.patch[order], "unit_kernel": source.kernel[order], "unit_products": source.products[order],
              "unit_input": source.input_map[order], "unit_output": source.output_map}
    return info, {"slide": slide, "arrays": arrays}


def _map2d(a) -> np.ndarray:
    a = np.asarray(a)
    return a if a.ndim == 2 else a.reshape(1, -1)


def unit_view(arith: UnitArithmetic) -> dict:
    """The result traits of the tab for one explained unit."""
    unit = arith.unit
    info: UnitInfo = {
        "layer": arith.layer, "channel": int(unit.channel),
        "position": None if unit.position is None else [int(v) for v in unit.position],
        "module": arith.module, "kind": arith.kind, "value": float(arith.value), "total": float(arith.total),
        "steps": [_step(s) for s in arith.steps], "then": [_step(s) for s in arith.then],
        "slide": None, "input_is_image": False, "input_from": getattr(arith.source, "input_from", ""),
    }
    arrays: dict = {"unit_patch": None, "unit_kernel": None, "unit_products": None, "unit_input": None, "unit_output": None}
    source = arith.source
    if isinstance(source, Convolution):
        info["conv"], extra = _conv(source)
        info["slide"] = extra["slide"]
        arrays.update(extra["arrays"])
        info["input_is_image"] = source.input_from == "input"  # the view draws the image under the window
    elif isinstance(source, Pooling):
        kernel = list(source.values.shape)
        info["pool"] = {"op": source.op, "window": [int(v) for v in source.window], "kernel": kernel,
                        "winner": None if source.winner is None else [int(v) for v in source.winner],
                        "divisor": _f(source.divisor)}
        values = source.values if source.values.ndim == 2 else source.values[None, :]
        arrays["unit_patch"] = values[None]
        if source.input_map is not None:
            arrays["unit_input"] = _map2d(source.input_map)[None]
        if source.output_map is not None:
            arrays["unit_output"] = _map2d(source.output_map)
        info["slide"] = _pool_slide(source)
    elif isinstance(source, Linear):
        info["linear"] = {"inputs": [int(i) for i in source.inputs], "values": source.values.tolist(),
                          "weights": source.weights.tolist(), "products": source.products.tolist(),
                          "rest": float(source.rest), "rest_count": int(source.rest_count), "bias": _f(source.bias)}
    elif isinstance(source, Combination):
        info["combine"] = {"op": source.op, "operands": [float(v) for v in source.operands], "sources": list(source.sources),
                           "part": source.part, "channel": source.channel, "parts": source.parts}
    if arith.softmax is not None:
        s = arith.softmax  # the engine's rows: the top classes and the unit's own
        info["softmax"] = {"classes": [int(c) for c in s.classes], "labels": list(s.labels),
                           "logits": np.asarray(s.logits).tolist(), "shift": float(s.shift),
                           "exps": np.asarray(s.exps).tolist(), "exp_sum": float(s.exp_sum),
                           "probabilities": np.asarray(s.probabilities).tolist()}
    out = {name: None if a is None else np.ascontiguousarray(a, dtype=np.float32) for name, a in arrays.items()}
    return {"unit_info": dict(info), **out}


class UnitPanel(Panel):
    name = "unit"
    label = "inside a unit"

    def compute(self, explorer) -> dict:
        position = tuple(explorer.unit_position) or None
        return unit_view(explorer.net.explain_unit(explorer.image, Unit(explorer.layer, explorer.channel, position)))
