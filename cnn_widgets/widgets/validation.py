"""Checks of the Explorer's settings that depend on the network (layer names, channel range, class
targets, tree steps): each returns the value to store or raises a ``TraitError`` that says what is
wrong and what is allowed. Fixed sets and ranges are checked by the trait types in ``options.py``.
"""

from __future__ import annotations

import torch
from traitlets import TraitError

from ..engine import CnnWidgetsError, Network, SAMPLE_IMAGES, sample_image, to_rgb_image
from ..engine.errors import closest_names

#: The targets that are not a class, with their menu labels (the classes of the predictions follow them).
TARGETS = {"top": "top-1 class", "unit": "selected unit"}


def default_layer(net: Network) -> str:
    """A mid-level layer worth showing first: the last block/conv output still at least 14 pixels wide."""
    spatial = [layer for layer in net.layers if layer.is_spatial and layer.shape[1] >= 14]
    for kinds in (("block",), ("conv", "activation")):
        good = [layer for layer in spatial if layer.kind in kinds]
        if good:
            return good[-1].name
    return ([layer for layer in net.layers if layer.is_spatial] or net.layers)[-1].name


def check_net(value) -> Network:
    if isinstance(value, torch.nn.Module):
        value = Network(value)
    if not isinstance(value, Network):
        raise TraitError(f"net must be a cw.Network or a torch.nn.Module, got {type(value).__name__}")
    value.layers  # raises ModelError for models without conv layers
    return value


def check_image(net: Network | None, value):
    """A sample name, tensor or anything ``to_rgb_image`` takes; raises ``CnnWidgetsError`` (the widget reports it)."""
    if isinstance(value, str) and value in SAMPLE_IMAGES:
        value = sample_image(value)
    elif isinstance(value, torch.Tensor):
        value = value.detach().clone()
    else:
        value = to_rgb_image(value)
    if net is not None:
        net.prepare(value)  # wrong sizes, NaNs, ... are refused before anything changes
    return value


def check_scan(value):
    if value is None:
        return None
    if not all(callable(getattr(value, name, None)) for name in ("top_images", "embedding", "dead_channels")):
        raise TraitError(f"scan must be the result of net.scan(images) (a cnn_widgets Scan), got {type(value).__name__}")
    return value


def check_layer(net: Network | None, value: str) -> str:
    if net is None:
        return value
    names = net.layer_names
    if value not in names:
        hint = closest_names(str(value), names)
        listed = ", ".join(names) if len(names) <= 24 else f"{', '.join(names[:12])}, …, {', '.join(names[-4:])} ({len(names)} in all)"
        raise TraitError(f"no explorable layer {value!r}" + (f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else ".")
                         + f" The explorable layers are: {listed} (explorer.layers lists them).")
    return value


def check_channel(net: Network | None, layer: str, value) -> int:
    value = int(value)
    if net is not None and layer:
        channels = net.layer(layer).channels
        if not 0 <= value < channels:
            raise TraitError(f"channel {value} is out of range for layer {layer!r} (0..{channels - 1})")
    elif value < 0:
        raise TraitError(f"channel must be >= 0, got {value}")
    return value


def check_target(net: Network | None, value) -> str | int:
    """``"top"``, ``"unit"``, a class index, or a class label (stored as its index)."""
    if isinstance(value, str):
        if value in TARGETS:
            return value
        if value.lstrip("-").isdigit():
            value = int(value)
        elif net is not None:
            try:
                return net.class_index(value)
            except CnnWidgetsError as exc:
                raise TraitError(str(exc)) from exc
    if isinstance(value, bool) or not isinstance(value, int):
        raise TraitError(f"target must be 'top', 'unit', a class index or a class label, got {value!r}")
    if net is not None and not 0 <= value < net.num_classes:
        raise TraitError(f"class index {value} is out of range (0..{net.num_classes - 1})")
    return value


def check_tree_path(net: Network | None, steps, target=None, layer: str | None = None, atlas: str = "atlas") -> list[list]:
    """``steps`` as ``[layer, channel]`` pairs that the tree rooted now can follow (the engine's one rule,
    :func:`~cnn_widgets.engine.contributions.check_path`: each step one layer below the one before,
    from the root: the selected unit's layer, or the logit layer for a class), or a ``TraitError``."""
    from ..engine import Unit
    from ..engine.contributions import check_path

    path = []
    for step in steps:
        if not isinstance(step, (list, tuple)) or len(step) != 2 or not isinstance(step[0], str) \
                or isinstance(step[1], bool) or not isinstance(step[1], int):
            raise TraitError(f"tree_path steps are [layer name, channel index] pairs, got {step!r}")
        path.append([step[0], step[1]])
    if not path or net is None:
        return path
    if target == atlas:
        raise TraitError("tree_path must be [] while an atlas cell's direction is explained (a direction has no tree)")
    root = layer if target == "unit" else net.logit_layer
    if root is None:
        raise TraitError(f"tree_path must be []: {net.name} has no logit layer for a class's tree (select a unit)")
    try:
        check_path(net, root, [Unit(name, channel) for name, channel in path])
    except CnnWidgetsError as exc:
        raise TraitError(f"tree_path {path!r} is not a path of the tree rooted in {root!r}: {exc}") from exc
    return path


def stale_tree_path(net: Network | None, target, layer: str, steps, atlas: str) -> bool:
    """Whether ``steps`` were built on another tree than the one rooted now (:func:`check_tree_path` refuses them)."""
    try:
        check_tree_path(net, steps, target, layer, atlas)
    except TraitError:
        return True
    return False
