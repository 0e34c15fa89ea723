"""``net.explain_unit``: the exact arithmetic of one number of a layer (CNN Explainer's view, any model).

One recorded forward pass (:mod:`.unit_trace`) is followed back from the unit's number: through the
operations that only move numbers (a reshape, a permute, a token picked out) and the per-number
steps (an activation, a batch or layer norm as its scale and shift for this number), down to the one
operation that combines many numbers: a convolution, a pooling window, a linear layer, a sum,
product or concatenation. That operation is taken apart on the values it read (copies made during
the pass), in float64; the steps are applied to its result in order, giving ``total``, which equals
the model's own ``value`` up to float32 rounding.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .errors import TargetError, UnsupportedLayerError
from .hooks import StopForward, this_thread_only
from .targets import Unit, check_unit
from .unit_sources import source_of
from .unit_steps import Softmax, Step, UnitArithmetic
from .unit_trace import KEEPS, MOVES, PassRecorder, Record, arg, base_name, record_pass, replay_index

if TYPE_CHECKING:
    from .core import NetworkBase
    from .images import ImageLike

ACTIVATIONS = {"relu", "relu6", "hardtanh", "hardswish", "silu", "gelu", "sigmoid", "tanh", "leaky_relu", "elu",
               "hardsigmoid", "mish", "softplus", "selu", "celu", "threshold", "rrelu", "softsign", "logsigmoid"}
NORMS = ("batch_norm", "group_norm", "layer_norm")  # shown as scale and shift for one number
AFTER = 8  # operations recorded after the unit's layer (its batch norm and activation, for ``then``)


# ----------------------------------------------------------------------------- the per-number steps
def _norm_step(rec: PassRecorder, r: Record, index: tuple[int, ...], name: str) -> Step:
    """A batch, group or layer norm of one number as ``input * scale + shift`` (its statistics read from
    the pass: running statistics, or the numbers normalised together)."""
    x = rec.value(r.args[0], r.index)
    inp = float(x[index])
    if name == "batch_norm":
        c = index[1]
        mean, var = rec.value(arg(r, 1, "running_mean"), r.index), rec.value(arg(r, 2, "running_var"), r.index)
        weight, bias = rec.value(arg(r, 3, "weight"), r.index), rec.value(arg(r, 4, "bias"), r.index)
        eps = float(arg(r, 7, "eps", 1e-5))
        if mean is None or bool(arg(r, 5, "training", False)):  # batch statistics
            plane = x[:, c].double()
            m, v = float(plane.mean()), float(plane.var(unbiased=False))
        else:
            m, v = float(mean[c]), float(var[c])
        w = float(weight[c]) if weight is not None else 1.0
        b = float(bias[c]) if bias is not None else 0.0
    elif name == "group_norm":  # statistics over the channels of the number's group and the whole map
        groups = int(arg(r, 1, "num_groups"))
        size = x.shape[1] // groups
        first = (index[1] // size) * size
        group = x[index[0], first:first + size].double()
        m, v = float(group.mean()), float(group.var(unbiased=False))
        weight, bias = rec.value(arg(r, 2, "weight"), r.index), rec.value(arg(r, 3, "bias"), r.index)
        eps = float(arg(r, 4, "eps", 1e-5))
        w = float(weight[index[1]]) if weight is not None else 1.0
        b = float(bias[index[1]]) if bias is not None else 0.0
    else:  # layer_norm over the last len(normalized_shape) axes
        shape = tuple(arg(r, 1, "normalized_shape"))
        lead = index[: x.dim() - len(shape)]
        group = x[lead].double()
        m, v = float(group.mean()), float(group.var(unbiased=False))
        eps = float(arg(r, 4, "eps", 1e-5))
        weight, bias = rec.value(arg(r, 2, "weight"), r.index), rec.value(arg(r, 3, "bias"), r.index)
        inner = index[x.dim() - len(shape):]
        w = float(weight[inner]) if weight is not None else 1.0
        b = float(bias[inner]) if bias is not None else 0.0
    scale = w / math.sqrt(v + eps)
    shift = b - m * scale
    return Step(name, inp, inp * scale + shift, r.module, scale, shift)


def _apply(r: Record, number: float) -> float:
    """The recorded activation call applied to one float64 number (its other arguments as called)."""
    return float(r.func(torch.tensor([number], dtype=torch.float64), *r.args[1:], **r.kwargs)[0])


def _activation_step(rec: PassRecorder, r: Record, index: tuple[int, ...], name: str) -> Step:
    inp = float(rec.value(r.args[0], r.index)[index])
    params = tuple(float(a) for a in (*r.args[1:], *r.kwargs.values())
                   if isinstance(a, (int, float)) and not isinstance(a, bool))
    return Step(name, inp, _apply(r, inp), r.module, params=params)


def _is_step(r: Record) -> bool:
    name = base_name(r.name)
    return name in NORMS or name in ACTIVATIONS


def _step(rec: PassRecorder, r: Record, index: tuple[int, ...]) -> Step | None:
    name = base_name(r.name)
    if name in NORMS:
        return _norm_step(rec, r, index, name)
    if name in ACTIVATIONS:
        return _activation_step(rec, r, index, name)
    return None


# ----------------------------------------------------------------------------- the walk
def _walk(rec: PassRecorder, tensor: torch.Tensor, before: int, index: tuple[int, ...], unit: Unit):
    """Follow one number back to its source; returns (source record, source, steps in forward order)."""
    steps: list[tuple[Record, Step]] = []
    while True:
        found = rec.producer(tensor, before)
        if found is None:
            raise UnsupportedLayerError(f"{unit} is the model's input or a parameter as it is; nothing computes it")
        r, piece = found
        first = r.args[0] if r.args else None  # every op followed takes its tensor first, by position
        if r.name in MOVES or r.name in KEEPS or _is_step(r):
            if not isinstance(first, torch.Tensor):
                raise UnsupportedLayerError(f"explain_unit cannot follow {r.name!r} in module {r.module!r}, which computes {unit}: "
                                            "its input is not its first positional argument")
        if r.name in MOVES:
            index = replay_index(r, piece, index)
        elif r.name not in KEEPS:
            step = _step(rec, r, index)
            if step is None:
                return r, source_of(rec, r, index, unit), steps[::-1]
            steps.append((r, step))
        tensor, before = first, r.index


def _then(rec: PassRecorder, tensor: torch.Tensor, start: int, index: tuple[int, ...]) -> tuple[Step, ...]:
    """The batch norm and activation the model applies to a layer's output right after it."""
    steps = []
    for r in rec.records[start:]:
        if not any(a is tensor for a in r.args if isinstance(a, torch.Tensor)):
            continue
        step = _step(rec, r, index) if r.args and r.args[0] is tensor else None
        if step is None:
            break
        steps.append(step)
        tensor = r.outputs[0]
        if step.name != "batch_norm":
            break
    return tuple(steps)


def _softmax(net: "NetworkBase", image, channel: int) -> Softmax:
    logits = net.logits(image).double()
    top = [int(i) for i in logits.topk(min(5, logits.numel())).indices]
    if channel not in top:
        top.append(channel)
    shift = float(logits.max())
    exps_all = (logits - shift).exp()
    exps = exps_all[top]
    total = float(exps_all.sum())
    return Softmax(tuple(top), tuple(net.label(i) for i in top), logits[top].numpy(), shift, exps.numpy(), total,
                   (exps / total).numpy())


def _raw_index(info, out: torch.Tensor, channel: int, position) -> tuple[int, ...]:
    """The index in the module's own output of the map's number (token blocks: through their layout)."""
    if info.layout is None:
        return (0, channel, *position) if position is not None else (0, channel)
    numbered = torch.arange(out.numel(), dtype=torch.float64).view(out.shape)
    flat = int(info.layout.to_map(numbered)[0, channel, position[0], position[1]])
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), out.shape))


def explain_unit(net: "NetworkBase", image: "ImageLike", unit: Unit) -> UnitArithmetic:
    """The exact arithmetic of one number of a layer (see :class:`~.unit_steps.UnitArithmetic`).

    ``unit`` is a ``cw.Unit(layer, channel, (y, x))``; without a position the channel's largest
    number is explained. The parts are the values the model read in one forward pass of ``image``.
    """
    if not isinstance(unit, Unit):
        raise TargetError(f"explain_unit needs a cw.Unit(layer, channel, (y, x)), got {unit!r}")
    info = net.layer(unit.layer)
    unit = check_unit(Unit(info.name, unit.channel, unit.position), info)
    act = net.activations(image, info.name)[info.name][unit.channel]
    if info.is_spatial and unit.position is None:
        y, x = divmod(int(act.argmax()), act.shape[-1])
        unit = Unit(info.name, unit.channel, (y, x))
    value = float(act[unit.position] if unit.position is not None else act)
    x = net.prepare(image)
    seen: dict = {}

    def hook(_module, _inputs, output):
        if "out" not in seen:
            seen["out"], seen["at"] = output[0] if isinstance(output, (tuple, list)) else output, len(rec.records)
            rec.stop_at = len(rec.records) + AFTER

    names = {m: n for n, m in net.model.named_modules()}
    with net._session(), torch.no_grad(), record_pass(net.model, names) as rec:
        handle = info._module.register_forward_hook(this_thread_only(hook))
        try:
            net.model(x)
        except StopForward:
            pass
        finally:
            handle.remove()
    if "out" not in seen:
        raise UnsupportedLayerError(f"layer {info.name!r} did not run when the model was called on this image; "
                                    "explain a unit of a layer the forward pass reaches")
    out, at = seen["out"], seen["at"]
    index = _raw_index(info, out, unit.channel, unit.position)
    record, source, steps = _walk(rec, out, at, index, unit)
    total, magnitude = source.total, source.magnitude
    for r, step in steps:  # the steps applied to the recomputed number, not to the model's
        if step.scale is None:
            total = _apply(r, total)
        else:
            total, magnitude = total * step.scale + step.shift, magnitude * abs(step.scale)
    steps = [step for _, step in steps]
    then = _then(rec, out, at, index) if not steps and source.kind in ("conv", "linear") else ()
    softmax = _softmax(net, image, unit.channel) if info.name == net.logit_layer else None
    return UnitArithmetic(unit, info.name, record.module, source, tuple(steps), value, total, magnitude, then, softmax,
                          str(out.dtype).replace("torch.", ""))
