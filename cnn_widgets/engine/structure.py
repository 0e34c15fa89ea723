"""What a model is made of at one input shape: its explorable layers, its class count and its logit layer.

Layer shapes depend on the input size (a CIFAR-style model with no resizing preprocess runs only
on 32x32), so the structure is learned from a real input, once per input shape, and relearned
when the model's modules change (a head replaced after wrapping).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .checks import check_int
from .errors import CnnWidgetsError, ImageError, ModelError, OptionError
from .hooks import capture_outputs, inference_state, tensor_version
from .layers import LayerInfo, discover_layers
from .model_kinds import explored_module
from .relu_rules import rectifier_rules

#: how to find the class scores in a model's output: None (automatic), a key/index, or a callable
OutputSelector = Any  # None | str | int | Callable[[Any], torch.Tensor]


@dataclass(frozen=True)
class Structure:
    """The explorable layers of a model at one input shape, its class count and its logit layer."""

    layers: list[LayerInfo]
    num_classes: int | None  # None: the output holds no class scores (a backbone, a segmentation map)
    logit_layer: str | None  # the last explorable layer whose output *is* the class scores, if any
    scores_error: str = ""  # why there are no class scores, said when something needs them


def describe(out) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, dict):
        return f"a dict with keys {list(out)[:8]}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items ({', '.join(type(o).__name__ for o in out[:4])})"
    return f"a {type(out).__name__}"


def select_logits(out, output: OutputSelector, model_name: str) -> torch.Tensor:
    """The ``[N, classes]`` class scores inside whatever the model returned.

    ``output=None`` takes a tensor as it is, the first tensor of a tuple or list, the ``"logits"``
    entry of a dict or the ``.logits`` attribute of an output object (Hugging Face style); a key or
    index selects an entry; a callable maps the output to the scores. A ``[N, C, 1, 1]`` tensor
    (a conv classifier) is flattened to ``[N, C]``; a map per channel is refused.
    """
    fix = "pass output=<key or index> or output=<callable returning the [N, classes] scores> to cw.Network"
    if callable(output):
        try:
            out = output(out)
        except Exception as err:  # the user's selector, not the model, failed: say so
            raise ModelError(f"output={output!r} raised {type(err).__name__}: {err}, given {model_name}'s output, "
                             f"which is {describe(out)}; {fix}") from err
    elif output is not None:
        try:
            out = out[output]
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"output={output!r} does not select anything from {model_name}'s output, "
                             f"which is {describe(out)}; {fix}") from None
    elif isinstance(out, (tuple, list)):
        tensors = [o for o in out if isinstance(o, torch.Tensor)]
        if not tensors:
            raise ModelError(f"{model_name} returned {describe(out)} with no tensor in it; {fix}")
        out = tensors[0]
    elif isinstance(out, dict):
        if "logits" not in out:
            raise ModelError(f"{model_name} returned {describe(out)}; say which entry holds the class scores: {fix} "
                             f"(e.g. output={next(iter(out), 'key')!r})")
        out = out["logits"]
    elif not isinstance(out, torch.Tensor) and isinstance(getattr(out, "logits", None), torch.Tensor):
        out = out.logits
    if isinstance(out, torch.Tensor) and out.dim() > 2:
        if math.prod(out.shape[2:]) != 1:  # a map per class (segmentation, a conv head without pooling)
            raise ModelError(f"{model_name} returned {describe(out)}, a map per channel, not one score per class; "
                             "pass output=lambda out: out.mean((2, 3)) (or another reduction) to cw.Network")
        out = out.flatten(1)  # a conv classifier's [N, classes, 1, 1]
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ModelError(f"the class scores of {model_name} must be a tensor [N, classes]; got {describe(out)}. {fix}")
    return out


def modules_key(model: nn.Module) -> tuple:
    """Identity of the model's modules: changes when a layer or head is replaced after wrapping."""
    return tuple(id(m) for m in model.modules())


def state_key(net) -> tuple:
    """What ``net``'s model computes now: THE definition of "the model changed" for every cache of the engine.

    Its modules (``modules_key``), the storage and version counter of every parameter and buffer
    (an optimiser step, ``load_state_dict``, ``p.data = ...`` or a batch norm's running statistics
    moving in a train-mode pass changes one; an in-place write through ``p.data``, which has a
    version counter of its own, is the one change it cannot see), each module's forward hooks (a
    hook the user adds or removes between two calls), and the output selector. Not the train/eval
    flags: the engine always computes in eval mode (``inference_state``), so they change nothing it
    computes, and a background computation holding the model in eval mode must not make a cell's
    call miss its cache.
    """
    return (*model_key(net.model), repr(net.output))


def model_key(model: nn.Module) -> tuple:
    """:func:`state_key` without the output selector: what a bare model computes now (its modules,
    parameters, buffers and forward hooks)."""
    tensors = (*model.parameters(), *model.buffers())
    hooks = tuple((tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for m in model.modules())
    return (modules_key(model), tuple((t.data_ptr(), tensor_version(t)) for t in tensors), hooks)


def learn_structure(model: nn.Module, example: torch.Tensor, output: OutputSelector, model_name: str) -> Structure:
    """Trace ``model`` on ``example`` ``[1, C, H, W]``: layers, class count and logit layer.

    Raises whatever the model raises when it cannot run on this input (the caller says why).
    """
    with inference_state(model):
        layers = discover_layers(model, example)
    if not any(layer.kind == "conv" for layer in layers):
        raise ModelError(f"{model_name} has no convolution layer that runs in its forward pass; cnn_widgets explores CNNs")
    # the logit layer: a layer whose whole output is one number per class (a linear head, or a conv
    # classifier's 1x1 map flattened in forward, as in SqueezeNet), equal to the scores it returns
    small = {layer.name: layer._module for layer in layers if math.prod(layer.shape[1:]) == 1}
    with inference_state(model), torch.no_grad(), rectifier_rules(), capture_outputs(small) as outputs:
        out = model(example)
    try:
        logits = select_logits(out, output, model_name)
    except ModelError as err:  # layers, activations and scans still work; class scores are refused when asked for
        return Structure(layers, None, None, str(err))
    num_classes = int(logits.shape[-1])
    logit_layer = None
    for layer in reversed(layers):
        value = outputs.get(layer.name)
        if value is not None and value[0].numel() == num_classes and torch.allclose(
            value[0].flatten().float(), logits[0].float(), rtol=1e-4, atol=1e-5
        ):
            logit_layer = layer.name
            break
    return Structure(layers, num_classes, logit_layer)


def check_input_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise OptionError(f"input_size must be an int or (height, width), got {size!r}")
    return check_int("input_size height", pair[0]), check_int("input_size width", pair[1])


def check_model(model) -> nn.Module:
    """The module to explore for ``model``: itself if it is a torch module with convolutions (cnn_widgets
    explores CNNs), or a ``torch.compile`` model's original module (``model_kinds``: TorchScript refused)."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"Network needs a torch.nn.Module, got {type(model).__name__}")
    model = explored_module(model)
    if not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        raise ModelError(
            f"{type(model).__name__} has no convolution layers; cnn_widgets explores CNNs "
            "(models with nn.Conv2d layers)"
        )
    return model


def check_preprocess(preprocess):
    """``preprocess`` if it can be called on an image (``None`` stays ``None``)."""
    if preprocess is not None and not callable(preprocess):
        raise OptionError(
            f"preprocess must be a callable from an RGB PIL image to a tensor [3, H, W] (e.g. a torchvision "
            f"transform), got {type(preprocess).__name__}"
        )
    return preprocess


def check_labels(labels) -> list[str] | None:
    """Class names as a list of strings (``None`` stays ``None``); a bare string is refused, not split."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise OptionError(f"labels must be a list of class names, one per output, got {labels!r:.60}")
    return [str(label) for label in labels]


def class_names(labels: list[str] | None, num_classes: int, model_name: str) -> list[str]:
    """One name per class: ``labels``, or ``"class 0"``, ... when there are none."""
    if labels is None:
        return [f"class {i}" for i in range(num_classes)]
    if len(labels) != num_classes:  # also after a head replaced since wrapping
        raise OptionError(
            f"labels has {len(labels)} name{'s' if len(labels) != 1 else ''} but {model_name} outputs "
            f"{num_classes} classes; pass one label per class (net.labels = None gives 'class 0', 'class 1', ...)"
        )
    return labels


def does_not_fit(model_name: str, shape: tuple[int, ...], err: Exception, known: list[tuple[int, ...]]) -> CnnWidgetsError:
    """The error for a model that cannot run on an input of ``shape``: what it runs on, and the fix."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if known:
        c, h, w = known[-1]
        return ImageError(
            f"{model_name} cannot run on an input of shape {list(shape)} ({reason}); it runs on "
            f"{[c, h, w]}: resize images to {h}x{w}, e.g. preprocess=T.Compose([T.Resize(({h}, {w})), T.ToTensor()])"
        )
    return ModelError(
        f"{model_name} cannot run on an input of shape {list(shape)} from preprocess ({reason}); pass "
        "input_size=(H, W) to cw.Network (the image size the model expects), or a preprocess that resizes"
    )
