"""The one gradient-ascent loop of feature visualisation, batched: ``n`` pictures at once.

:func:`ascend` optimises a batch of parametrised pictures (:class:`~.param.ImageParam`) so that an
objective (a class, a unit, a layer, or a :class:`~cnn_widgets.engine.targets.Direction` -- with a
``[n, C]`` vector, one direction per picture) is as large as possible, through Lucid's random
transforms. :func:`~.run.visualize` runs it once for one target (optionally ``n`` diverse
pictures); the activation atlas (:func:`~cnn_widgets.engine.atlas.icons.direction_icons`) runs it
once per batch of cells, each picture with its own direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import call_back
from ..errors import CnnWidgetsError
from ..hooks import inference_state
from ..pictures import pixels_to_uint8
from ..preprocess import pixels_to_input
from .objectives import Objective, diversity, objective_layer, objective_value
from .param import ImageParam
from .transforms import Transform, apply_all

__all__ = ["Ascent", "ascend", "model_input", "runs_at", "shape_check"]

FrameCallback = Callable[[int, np.ndarray, float], "bool | None"]  # (step, frame, objective) -> False stops
SIGNATURE = "callback(step, frame, objective)"


@dataclass
class Ascent:
    """What :func:`ascend` reached: pixels ``[n, 3, size, size]`` in ``[0, 1]``, the objective (mean over
    the batch) after each step, uint8 frames of the first picture, whether it was stopped early, and
    whether the model ran at the picture's own size (``native``)."""

    pixels: torch.Tensor
    curve: list[float]
    frames: list[np.ndarray]
    interrupted: bool
    native: bool = True


def runs_at(net, size: int | tuple[int, int]) -> bool:
    """Whether the model runs on ``size x size`` (or ``(h, w)``) inputs (a fully convolutional body with
    global pooling does; a flatten + linear head runs at one size only, some bodies at multiples of 32)."""
    h, w = (size, size) if isinstance(size, int) else size
    try:
        net._structure(torch.zeros(1, net.input_channels, h, w, device=net.device, dtype=net.dtype))
    except CnnWidgetsError:
        return False
    return True


def shape_check(net) -> Callable[[tuple[int, int]], bool]:
    """:func:`runs_at` for ``(h, w)`` shapes, each asked once (the transforms give a handful of sizes)."""
    known: dict[tuple[int, int], bool] = {}

    def fits(hw: tuple[int, int]) -> bool:
        hw = (int(hw[0]), int(hw[1]))
        if hw not in known:
            known[hw] = runs_at(net, hw)
        return known[hw]

    return fits


def model_input(net, pixels: torch.Tensor, size: int, native: bool, exact: bool = True,
                fits: Callable[[tuple[int, int]], bool] | None = None) -> torch.Tensor:
    """Pixels after the transforms, normalised, at ``size`` (or at the model's input size if it needs that).

    With ``native`` and not ``exact`` the transformed picture goes in at whatever size the transforms
    left it (within a few per cent of ``size``): resizing it back would shrink every pattern by the
    padding on average (about 5% at 224 px), so the picture would be optimised at the wrong scale.
    A size the model does not run at (``fits``: a flatten + linear head takes one size only) is
    resized back to ``size`` all the same.
    """
    hw = (size, size) if native else net.input_size
    shape = tuple(pixels.shape[-2:])
    loose = native and not exact and (fits is None or fits(shape))
    if not loose and shape != tuple(hw):
        pixels = F.interpolate(pixels, size=hw, mode="bilinear", align_corners=False)
    return pixels_to_input(pixels, net.preprocess, net.input_channels)


def forward_value(net, objective: Objective, x: torch.Tensor):
    """The objective per row of ``x`` (the pass stops at the objective's layer), and that layer's output."""
    layer = objective_layer(objective)
    logits, outputs = net._forward(x, layers=[layer] if layer else [], stop_early=layer is not None)
    return objective_value(objective, logits, outputs), outputs.get(layer) if layer else None


def ascend(net, objective: Objective, n: int, size: int, steps: int, *, generator: torch.Generator,
           chain: list[Transform], lr: float = 0.05, param: str = "fourier", decorrelate: bool = True,
           start: torch.Tensor | None = None, native: bool | None = True, exact: bool = True, negative: bool = False,
           reduce: str = "mean", diversity_weight: float = 0.0, l2: float = 0.0, tv: float = 0.0, every: int = 0,
           callback: FrameCallback | None = None, show_start: bool = False, bar=None) -> Ascent:
    """Adam on ``n`` pictures of ``size`` pixels for ``steps`` steps (options checked by the callers).

    The loss is ``-(sum or mean over the batch of the objective)`` (``reduce``; ``sum`` gives every
    picture exactly its own objective's gradient), ``negative`` flips it, plus Lucid's diversity
    term and L2 / total-variation penalties. The initial noise and every transform are drawn from
    ``generator`` in a fixed order, so a seed gives the same pictures. The model input is
    :func:`model_input` of the transformed pixels (``native``: the model runs at ``size``; ``None``:
    find that out with :func:`runs_at`, after the starting frame; ``exact``: resized back to exactly
    that). Every ``every`` steps (and at the last) a frame of the first picture is kept and
    ``callback(step, frame, objective)`` called; ``False`` stops. ``show_start`` first calls
    ``callback(0, frame, nan)`` with the starting picture, before any use of the model (a viewer
    shows it at once; nothing is measured yet, and it is not kept in ``frames``). Ctrl-C stops too;
    either way the pictures reached are returned with ``interrupted`` set. The model runs in eval
    mode with frozen parameters (restored after).
    """
    image = ImageParam(n, size, param, decorrelate, start=start, generator=generator).to(net.device)
    optimizer = torch.optim.Adam(image.parameters(), lr=lr)
    fits = shape_check(net)
    sign = -1.0 if negative else 1.0
    curve: list[float] = []
    frames: list[np.ndarray] = []
    interrupted = False
    try:
        if show_start and callback is not None:
            with torch.no_grad():
                interrupted = call_back(callback, SIGNATURE, 0, pixels_to_uint8(image()[0]), float("nan")) is False
        if native is None:
            native = runs_at(net, size)  # the model's first pass at this size: after the starting frame
        if interrupted:
            steps = 0  # stopped at the start: no step
        with inference_state(net.model), torch.enable_grad():
            for step in range(1, steps + 1):
                optimizer.zero_grad(set_to_none=True)
                pixels = image()
                x = model_input(net, apply_all(chain, pixels, generator), size, native, exact, fits)
                value, h = forward_value(net, objective, x.to(net.dtype))
                loss = -sign * (value.sum() if reduce == "sum" else value.mean())
                if diversity_weight and h is not None:
                    loss = loss + diversity_weight * diversity(h)
                if l2:
                    loss = loss + l2 * (pixels - 0.5).pow(2).mean()
                if tv:
                    loss = loss + tv * ((pixels[..., 1:, :] - pixels[..., :-1, :]).abs().mean()
                                        + (pixels[..., :, 1:] - pixels[..., :, :-1]).abs().mean())
                loss.backward()
                optimizer.step()
                curve.append(float(value.detach().mean()))
                if bar is not None:
                    bar.update(1)
                if every and (step % every == 0 or step == steps):
                    frame = pixels_to_uint8(image().detach()[0])
                    frames.append(frame)
                    if callback is not None and call_back(callback, SIGNATURE, step, frame, curve[-1]) is False:
                        interrupted = step < steps
                        break
    except KeyboardInterrupt:
        interrupted = True
    if native is None:  # (interrupted before it was known)
        native = runs_at(net, size)
    with torch.no_grad():
        final = image().detach().float()
    return Ascent(final, curve, frames, interrupted, native)
