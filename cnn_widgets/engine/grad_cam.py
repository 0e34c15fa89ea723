"""Grad-CAM at any explorable layer or any named module of the network.

Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV 2017.

The layer's output is captured with the engine's one hook mechanism
(:func:`~cnn_widgets.engine.hooks.capture_outputs`) inside ``net._session("gradient")``, so a name
users know from other tools (``layer4`` of a torchvision ResNet, ``features.18`` of MobileNetV2,
``features`` of VGG, ``features.norm5`` of DenseNet) works as well as a name of ``net.layers``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .checks import check_bool
from .errors import LayerNotFoundError, OptionError, closest_names
from .hooks import capture_outputs
from .targets import TOP_CLASS, ClassTarget, Unit, scalar
from .tokens import Copied

__all__ = ["grad_cam"]

# the ReLU-family calls after_relu looks for (modules call these too: nn.ReLU runs F.relu)
_RECTIFIERS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu6}


def grad_cam(
    net,
    x: torch.Tensor,
    target,
    layer: str | nn.Module | None = None,
    after_relu: bool = False,
    quantity: str = "logit",
) -> torch.Tensor:
    """Grad-CAM, ``relu(sum_k w_k A^k)`` with ``w_k = mean_{ij} d f / d A^k_{ij}``, upsampled.

    ``A`` is the output ``[C, H, W]`` of ``layer``; the map is bilinearly upsampled to the input
    size and returned as ``[H, W]``.

    Parameters
    ----------
    layer
        A name of ``net.layers``, or the dotted name (or the object) of any submodule of
        ``net.model`` that returns one ``[C, H, W]`` tensor (a module returning a tuple is taken by
        its first tensor). Default, for a class target: the last spatial (H*W > 1) non-pooling
        layer before global pooling -- VGG16's relu5_3 as in the paper, ResNet's last block,
        EfficientNet's head activation, DenseNet's ``features`` (the output of ``norm5``, before
        the ReLU; see ``after_relu``). For a :class:`Unit` on a spatial layer: the layer it is
        explained in, ``net.layer_below(unit.layer)`` (the input of the nearest channel-mixing
        layer), or the unit's own layer when there is none below; for a unit of a non-spatial
        layer (e.g. a fully connected neuron): the last spatial layer before it. (A map taken at
        the unit's own layer with ``reduce="sum"`` is just the unit's activation map.)
    after_relu
        Take ``A`` after the ReLU (or ReLU6) that the model applies to the layer's output next,
        also when that ReLU is a function call in ``forward`` rather than a module. This is how
        to get DenseNet's rectified features: torchvision's ``features`` ends at ``norm5`` and
        ``DenseNet.forward`` applies ``F.relu``, so no module outputs the post-ReLU map (other
        tools' ``features`` / ``features.norm5`` is the map before it). Refused when no ReLU
        takes the layer's output.
    quantity
        ``"logit"`` (default) or ``"probability"`` for class targets.
    """
    check_bool("after_relu", after_relu)
    resolved = net._resolve_target(target) if target is not None else TOP_CLASS  # None: top-1, same pass
    name, module = _cam_layer(net, resolved, layer)
    # x requires grad only so that the layer output joins the graph; the backward stops at it
    x = x.detach().requires_grad_(True)
    unit = isinstance(resolved, Unit)
    layout = net.layer(name).capture if name in net.layer_names else None
    for copy in (False, True):  # a second pass only for a module (not a listed layer) whose output is changed in place later
        with net._session("gradient"), torch.enable_grad(), \
                capture_outputs({name: module}, layouts={name: Copied(layout) if copy else layout}) as captured:
            with _Watch(captured, name) as watch:
                logits, outputs = net._forward(x, layers=[resolved.layer] if unit else [], stop_early=unit)
            if not copy and _changed_in_place(watch, name):
                continue  # again, the rest of the pass reading a copy: the captured map stays the layer's output
            activation = _activation(net, name, watch, resolved, after_relu)
            if resolved is TOP_CLASS:
                index = int(logits[0].argmax())
                resolved = ClassTarget(index, net.label(index))
            value = scalar(resolved, logits, outputs, quantity)
            (grad,) = torch.autograd.grad(value.sum(), activation, allow_unused=True)
        break
    if grad is None:
        raise OptionError(f"the target does not depend on the output of {name!r}; pick a layer on its path")
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation.detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return cam[0, 0]


def _changed_in_place(watch, name: str) -> bool:
    output = watch.captured.get(name)
    return isinstance(output, torch.Tensor) and output is watch.first and output._version != watch.version


class _Watch(TorchFunctionMode):
    """Follows the captured output of ``name`` through the rest of the forward pass.

    It notes the first output and its version counter right after capture (a second call of a
    reused module would replace it; an in-place change later, such as a residual
    ``out += identity`` on a ``bn2`` output, would silently turn it into another tensor) and what
    the first ReLU-family call taking it returns (``after_relu``). Entered inside
    ``net._session``, so it sees each call first and hands it on to the session's rectifier mode,
    which computes rectifiers out of place.
    """

    def __init__(self, captured: dict[str, torch.Tensor], name: str):
        super().__init__()
        self.captured, self.name = captured, name
        self.first: torch.Tensor | None = None
        self.version = 0
        self.rectified: torch.Tensor | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = self.captured.get(self.name)
        if self.first is None and isinstance(output, torch.Tensor):
            # the first call after the capture: nothing has touched the output yet
            self.first, self.version = output, output._version
        result = func(*args, **(kwargs or {}))
        if self.rectified is None and output is not None and func in _RECTIFIERS and args and args[0] is output:
            self.rectified = result
        return result


def _activation(net, name: str, watch: _Watch, target, after_relu: bool) -> torch.Tensor:
    """The captured map ``[B, C, H, W]`` of ``name`` (after its ReLU with ``after_relu``), or a clear error."""
    if name not in watch.captured:
        if isinstance(target, Unit):
            raise OptionError(
                f"grad_cam layer {name!r} runs after the unit's layer {target.layer!r}, so it cannot explain it; "
                "pick a layer at or below the unit's"
            )
        raise OptionError(f"the module {name!r} does not run in {net.name}'s forward pass; pick one that does")
    activation = watch.captured[name]
    if not isinstance(activation, torch.Tensor) or activation.dim() != 4 or activation.shape[-2:].numel() < 2:
        shape = tuple(activation.shape[1:]) if isinstance(activation, torch.Tensor) else type(activation).__name__
        raise OptionError(
            f"grad_cam needs a spatial layer [C, H, W] with more than one position; {name!r} gives {shape}. "
            f"Try one of {', '.join(repr(n) for n in _spatial_names(net)[-3:])}"
        )
    if watch.first is not None and activation is not watch.first:
        raise OptionError(
            f"the module {name!r} runs more than once in the forward pass (a reused module, like the ReLU of a "
            "torchvision BasicBlock), so its output is ambiguous; pick a module that runs once"
        )
    if watch.first is not None and activation._version != watch.version:
        raise OptionError(
            f"the output of {name!r} is changed in place later in the forward pass (e.g. a residual add), so it "
            "is not what the rest of the network reads; pick the module that returns the changed value (the block)"
        )
    if after_relu:
        if watch.rectified is None:
            raise OptionError(
                f"after_relu=True, but {net.name} applies no ReLU to the output of {name!r}; leave after_relu off "
                "(the output is used as it is)"
            )
        activation = watch.rectified
    return activation


def _spatial_names(net) -> list[str]:
    return [info.name for info in net.layers if info.is_spatial and info.shape[1] * info.shape[2] > 1]


def _cam_layer(net, target, layer) -> tuple[str, nn.Module]:
    """The name and module whose output Grad-CAM uses (see :func:`grad_cam` for the defaults)."""
    layers = net.layers
    spatial = [info for info in layers if info.is_spatial and info.shape[1] * info.shape[2] > 1]
    if not spatial:
        raise OptionError(f"{net.name} has no spatial layer with more than one position; grad_cam needs one")
    if layer is not None:
        return _named_layer(net, target, layer)
    if isinstance(target, Unit):
        own = net.layer(target.layer)
        if own.is_spatial:
            below = net.layer_below(own.name)
            info = net.layer(below) if below is not None and net.layer(below).is_spatial else own
            return info.name, info._module
        spatial = [info for info in spatial if info.index < own.index]
        if not spatial:
            raise OptionError(f"no spatial layer comes before {own.name!r}; pass grad_cam a layer=")
    info = ([info for info in spatial if info.kind != "pool"] or spatial)[-1]
    return info.name, info._module


def _named_layer(net, target, layer) -> tuple[str, nn.Module]:
    """An explorable layer (checked now) or any named submodule (checked on its captured output)."""
    modules = dict(net.model.named_modules())
    if isinstance(layer, nn.Module):
        names = [n for n, m in modules.items() if m is layer and n]
        if not names:
            raise OptionError(f"the module given as layer= is not a submodule of {net.name}")
        layer = names[0]
    name = getattr(layer, "name", layer)  # a LayerInfo
    if name in net.layer_names:
        info = net.layer(name)
        if not info.is_spatial or info.shape[1] * info.shape[2] < 2:
            raise OptionError(
                f"grad_cam needs a spatial layer [C, H, W] with more than one position; {info.name!r} has shape {info.shape}. "
                f"Try one of {', '.join(repr(n) for n in _spatial_names(net)[-3:])}"
            )
        if isinstance(target, Unit) and info.index > net.layer(target.layer).index:
            raise OptionError(
                f"grad_cam layer {info.name!r} comes after the unit's layer {target.layer!r}, so it cannot "
                "explain it; pick a layer at or below the unit's"
            )
        return info.name, info._module
    if isinstance(name, str) and name and name in modules:
        return name, modules[name]
    hint = closest_names(str(name), net.layer_names + [n for n in modules if n and n not in net.layer_names])
    raise LayerNotFoundError(
        f"{net.name} has no layer or module {name!r}"
        + (f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else "")
        + " (grad_cam takes a name of net.layers or of net.model.named_modules() with one [C, H, W] output)"
    )
