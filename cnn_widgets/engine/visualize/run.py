"""Gradient ascent on the input: what a unit or class looks for (feature visualisation) and DeepDream.

Erhan et al. 2009 and Simonyan et al. 2014 (activation maximisation); Olah, Mordvintsev &
Schubert, "Feature Visualization", Distill 2017 (Fourier parametrisation, colour decorrelation,
transformation robustness, diversity); Mordvintsev, Olah & Tyka, "Inceptionism" 2015 (DeepDream).
From a start image ``x0`` instead of noise, a few steps towards another class give an image that
still looks like ``x0`` but is classified as the target: an adversarial example (Szegedy et al. 2014).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..checks import call_back, check_bool, check_callback, check_choice, check_float, check_int
from ..core import NetworkBase
from ..errors import OptionError, TargetError, closest_names
from ..hooks import inference_state
from ..images import ImageLike
from ..pictures import pixels_to_uint8
from ..preprocess import display_pixels, pixels_to_input
from ..targets import Target, Unit, check_direction
from .ascent import SIGNATURE, FrameCallback, ascend, forward_value, model_input, shape_check
from .objectives import Direction, LayerTarget, Objective, objective_layer
from .param import PARAMS
from .transforms import TRANSFORM_SETS, transform_set


@dataclass
class Visualization:
    """The result of :func:`visualize` or :func:`dream`.

    Attributes
    ----------
    image
        The (first) picture, a ``PIL.Image`` in pixel space.
    images
        Every picture of the batch (``n`` of them with ``n > 1``).
    input
        The model input ``[C, H, W]`` for :attr:`image` (normalised), at the size the optimisation fed
        the model: the picture's own ``size`` when the model runs at that size (a fully convolutional
        body with global pooling), else the model's input size. ``net.activations(viz.input)``
        measures the picture at the scale it was optimised for.
    objective
        The objective (mean over the batch) after each step.
    frames
        ``uint8 [F, H, W, 3]`` snapshots of the first picture every ``every`` steps (and the last).
    interrupted
        True when Ctrl-C or a callback stopped the run early (everything above is what was reached).
    """

    image: Image.Image
    images: list[Image.Image]
    input: torch.Tensor
    objective: list[float]
    frames: np.ndarray
    interrupted: bool = False
    settings: dict = field(default_factory=dict)


def _objective(net: NetworkBase, target) -> Objective:
    if isinstance(target, Direction):
        return check_direction(target, net.layer(target.layer))
    if isinstance(target, LayerTarget):
        net.layer(target.layer)
        return target
    if isinstance(target, str) and target in net.layer_names:
        return LayerTarget(target)
    try:
        return net._resolve_target(target)
    except TargetError:
        if not isinstance(target, str):
            raise
    # neither a layer nor a class label (as net.class_index reads one): a misspelt layer or label
    close = [f"layer {n!r}" for n in closest_names(target, net.layer_names)]
    close += [f"class {n!r}" for n in closest_names(target, net.labels, 2) if n.lower() != target.lower()]
    raise TargetError(f"{target!r} is neither a layer nor a class label of {net.name}"
                      + (f"; did you mean {', '.join(close)}?" if close else "")
                      + " (net.layer_names lists the layers, net.labels the classes; a class index works too)")


def start_pixels(net: NetworkBase, image: ImageLike, size: int) -> torch.Tensor:
    """``[1, 3, size, size]`` pixels in ``[0, 1]`` of what the model sees of ``image``."""
    shown = display_pixels(image, net.preprocess, net.prepare(image))
    x = torch.from_numpy(shown).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) if x.shape[-1] != size else x


def visualize(
    net: NetworkBase, target: Target | str | Direction, steps: int = 256, size: int | None = None, lr: float = 0.05,
    param: str = "fourier", decorrelate: bool = True, transforms: str = "standard", start: ImageLike | None = None,
    seed: int = 0, every: int = 16, progress: bool = True, negative: bool = False, n: int = 1,
    diversity_weight: float = 0.0, l2: float = 0.0, tv: float = 0.0, callback: FrameCallback | None = None,
    show_start: bool = False,
) -> Visualization:
    """Optimise an image so that ``target`` is as large as possible (or as small: ``negative``).

    Parameters
    ----------
    target
        Class index or label (its logit), ``cw.Unit`` (the mean of its map; with a position, that
        neuron), a layer name (DeepDream's mean square) or a :class:`Direction`.
    steps, lr
        Adam steps and learning rate on the parameters.
    size
        Side of the optimised picture (default: the model's input side, or the side of ``start`` as
        the model sees it). The model runs on it at that size when it can (after the transforms,
        which change the size slightly, it is resized back to ``size``); a model that needs its
        own input size gets the picture resized to that.
    param, decorrelate
        ``"fourier"`` (default) or ``"pixel"`` (the naive ascent, for comparison); colour decorrelation.
    transforms
        ``"standard"`` (pad, jitter, scale, rotate, jitter; Lucid's set) or ``"none"``.
    start
        An image to start from instead of noise (``x0``): a few steps towards a class give an
        adversarial example.
    seed
        Makes the run reproducible (initial noise and transforms).
    every
        Keep a frame (and call ``callback``) every ``every`` steps.
    n, diversity_weight
        A batch of ``n`` pictures pushed apart by Lucid's diversity term with this weight.
    l2, tv
        Weights of an L2 penalty on ``pixels - 0.5`` and of total variation (Mahendran & Vedaldi 2015).
    callback
        Called as ``callback(step, frame, objective)`` with every kept frame; returning ``False`` stops.
    show_start
        First call ``callback(0, frame, nan)`` with the starting picture (noise, or ``start``) before
        the model runs at all, so a viewer shows something at once (the Explorer's Visualise tab).
        The frame is not kept in :attr:`Visualization.frames`; the run is the same with or without it.
    """
    objective = _objective(net, target)
    steps, every, n = check_int("steps", steps), check_int("every", every), check_int("n", n)
    lr = check_float("lr", lr, low=0, open_low=True)
    check_choice("param", param, PARAMS)
    check_choice("transforms", transforms, TRANSFORM_SETS)
    decorrelate, negative, progress = check_bool("decorrelate", decorrelate), check_bool("negative", negative), check_bool("progress", progress)
    show_start = check_bool("show_start", show_start)
    check_callback("callback", callback, SIGNATURE)
    diversity_weight, l2, tv = (check_float(name, v, low=0) for name, v in (("diversity_weight", diversity_weight), ("l2", l2), ("tv", tv)))
    seed = check_int("seed", seed, low=0)
    if start is not None:
        net.prepare(start)  # the start image as the model sees it sets the default size
    size = check_int("size", size, low=8, high=1024) if size is not None else net.input_size[0]
    if diversity_weight and objective_layer(objective) is None:
        raise OptionError("diversity_weight needs a unit, layer or direction target (a class has no layer to compare)")
    generator = torch.Generator().manual_seed(seed)
    # None: the ascent finds out whether the model runs at `size` (a first pass there) after the starting frame
    native = True if size == net.input_size[0] == net.input_size[1] else None
    x0 = start_pixels(net, start, size) if start is not None else None
    # a neuron at a position indexes the map at `size`; any other objective takes the picture as it comes
    exact = isinstance(objective, Unit) and objective.position is not None
    bar = _bar(steps, "visualize", progress)
    try:
        reached = ascend(net, objective, n, size, steps, generator=generator, chain=transform_set(transforms, size), lr=lr,
                         param=param, decorrelate=decorrelate, start=x0, native=native, exact=exact, negative=negative,
                         diversity_weight=diversity_weight, l2=l2, tv=tv, every=every, callback=callback,
                         show_start=show_start, bar=bar)
    finally:
        if bar is not None:
            bar.close()
    settings = dict(steps=steps, size=size, lr=lr, param=param, decorrelate=decorrelate, transforms=transforms,
                    seed=seed, negative=negative, n=n, start=start is not None)
    return _result(net, reached.pixels, reached.curve, reached.frames, reached.interrupted, settings, size, reached.native)


def _result(net, final: torch.Tensor, curve, frames, interrupted, settings, size: int, native: bool) -> Visualization:
    pictures = [Image.fromarray(pixels_to_uint8(p)) for p in final]
    with torch.no_grad():
        shown = model_input(net, final[:1].to(net.device), size, native).to(net.dtype)[0].detach()
    shape = (0, *final.shape[-2:], 3)
    stacked = np.stack(frames) if frames else np.zeros(shape, np.uint8)
    return Visualization(pictures[0], pictures, shown, curve, stacked, interrupted, settings)


def _bar(total: int, desc: str, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def dream(
    net: NetworkBase, image: ImageLike, layer: str | Unit, octaves: int = 4, octave_scale: float = 1.4,
    steps: int = 10, lr: float = 0.02, jitter: int = 32, seed: int = 0, progress: bool = True,
    callback: FrameCallback | None = None, show_start: bool = False,
) -> Visualization:
    """DeepDream (Mordvintsev, Olah & Tyka 2015): amplify what ``layer`` sees in ``image``.

    Gradient ascent of the layer's mean square (or a unit's mean) on the image itself, octave by
    octave from ``octave_scale ** (octaves - 1)`` times smaller up to full size, each step with a
    random shift of up to ``jitter`` pixels and a gradient normalised by its mean magnitude; the
    detail found at one octave is carried up to the next. ``callback(octave, frame, objective)`` is
    called after each octave (``False`` stops); ``show_start`` first calls ``callback(0, image, nan)``
    with the image itself, before the model runs.
    """
    objective = LayerTarget(net.layer(layer).name) if isinstance(layer, str) else net._resolve_target(layer)
    octaves, steps, seed = check_int("octaves", octaves), check_int("steps", steps), check_int("seed", seed, low=0)
    jitter = check_int("jitter", jitter, low=0)
    lr = check_float("lr", lr, low=0, open_low=True)
    octave_scale = check_float("octave_scale", octave_scale, low=1)
    show_start = check_bool("show_start", show_start)
    check_callback("callback", callback, "callback(octave, frame, objective)")
    generator = torch.Generator().manual_seed(seed)
    h, w = net.prepare(image).shape[-2:]  # the image as the model sees it
    base = start_pixels(net, image, h).to(net.device)
    if (h, w) != tuple(base.shape[-2:]):
        base = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    sizes = [(max(8, round(h / octave_scale**i)), max(8, round(w / octave_scale**i))) for i in reversed(range(octaves))]
    detail = torch.zeros_like(base)
    fits = shape_check(net)
    curve, frames, interrupted = [], [], False
    bar = _bar(octaves * steps, "dream", progress)
    try:
        if show_start and callback is not None and call_back(callback, SIGNATURE, 0, pixels_to_uint8(base[0]), float("nan")) is False:
            sizes, interrupted = [], True  # stopped at the start: no octave
        with inference_state(net.model), torch.enable_grad():
            for octave, hw in enumerate(sizes):
                octave_base = F.interpolate(base, size=hw, mode="bilinear", align_corners=False)
                x = (octave_base + F.interpolate(detail, size=hw, mode="bilinear", align_corners=False)).detach()
                for step in range(steps):
                    dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
                    shifted = torch.roll(x, (dy, dx), dims=(2, 3)).requires_grad_(True)
                    # a model that runs at one size only sees the octave resized to it (coarser detail)
                    seen = shifted if fits(hw) else F.interpolate(shifted, size=(h, w), mode="bilinear", align_corners=False)
                    value, _ = forward_value(net, objective, pixels_to_input(seen, net.preprocess, net.input_channels).to(net.dtype))
                    (grad,) = torch.autograd.grad(value.sum(), shifted)
                    grad = torch.roll(grad, (-dy, -dx), dims=(2, 3))
                    x = (x + lr * grad / grad.abs().mean().clamp_min(1e-12)).clamp(0, 1).detach()
                    curve.append(float(value.detach().sum()))
                    if bar is not None:
                        bar.update(1)
                detail = x - octave_base
                frame = pixels_to_uint8(F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)[0])
                frames.append(frame)
                if callback is not None and call_back(callback, "callback(octave, frame, objective)", octave + 1, frame, curve[-1]) is False:
                    interrupted = octave + 1 < octaves
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    final = (base + F.interpolate(detail, size=(h, w), mode="bilinear", align_corners=False)).clamp(0, 1)
    settings = dict(octaves=octaves, octave_scale=octave_scale, steps=steps, lr=lr, jitter=jitter, seed=seed)
    return _result(net, final.cpu(), curve, frames, interrupted, settings, h, h == w)
