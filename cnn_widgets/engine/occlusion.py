"""Occlusion: how much the target drops when a square of the input is covered up.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014 (section 4.2):
slide a grey square over the image and record the class probability -- or a feature map's
activation, as in their layer-5 example (also in the Stanford cs231n notes) -- for every position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .checks import check_choice, check_int
from .errors import OptionError
from .hooks import inference_state
from .targets import QUANTITIES, TOP_CLASS, ClassTarget, Target, Unit, scalar

__all__ = ["FILLS", "occlusion", "occlusion_fill", "window_positions"]

FILLS = ("zero", "mean", "blur")


def occlusion_fill(x: torch.Tensor, fill: str, window: int) -> torch.Tensor:
    """The values an occluded window takes, as a full image ``[1, 3, H, W]`` (model-input space).

    ``zero``: zeros; ``mean``: the input's per-channel mean; ``blur``: the input Gaussian-blurred
    with ``sigma = window / 4`` (the window's content is hidden, its colours kept).
    """
    if fill == "zero":
        return torch.zeros_like(x)
    if fill == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    if fill == "blur":
        return _gaussian_blur(x, sigma=window / 4)
    check_choice("fill", fill, FILLS)
    raise AssertionError(f"fill {fill!r} is in FILLS but has no rule here")  # FILLS and the rules above must agree


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    # separable, per channel; replicate padding keeps the borders' colours (works for any radius)
    out = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def window_positions(size: tuple[int, int], window: int, stride: int) -> tuple[list[int], list[int]]:
    """Top and left corners of the windows, the one place that decides them.

    Along a side of ``n`` pixels the corners are ``0, stride, 2*stride, ..., k*stride`` with
    ``k = ceil((n - window) / stride)``: the last window reaches the border and, when
    ``(n - window) % stride != 0``, past it, where it is clipped (Captum's ``Occlusion`` does the
    same). With ``stride <= window`` every pixel is then covered by at least one window.
    """
    return [[k * stride for k in range(-(-(n - window) // stride) + 1)] for n in size]  # type: ignore[return-value]


def _check(window, stride, size) -> tuple[int, int]:
    window = check_int("window", window)
    stride = check_int("stride", stride)
    if window > min(size):
        raise OptionError(
            f"window {window} is larger than the {size[0]}x{size[1]} model input; use a window of at most {min(size)}"
        )
    # a step longer than the window skips stripes that would read as "no effect" (Captum refuses
    # it too); one window spanning the whole input has nowhere to step, so any stride is fine
    if stride > window and window < max(size):
        raise OptionError(
            f"stride {stride} is larger than the window {window}, which would leave pixels no window covers; "
            f"use a stride of at most {window}"
        )
    return window, stride


def occlusion(
    net,
    image,
    target: Target = None,
    window: int = 32,
    stride: int = 16,
    fill: str = "mean",
    quantity: str = "probability",
    batch_size: int = 32,
    grid: bool = False,
    progress: bool | None = None,
) -> torch.Tensor:
    """Drop of the target when a ``window x window`` square (all channels) is replaced by ``fill``.

    ``drop(p) = f(x) - f(x with the window at p filled)``, where ``f`` is the class probability
    (``quantity="probability"``, default), its logit (``quantity="logit"``), or a
    :class:`~cnn_widgets.Unit`'s value (its map summed, max pixel, or one position).

    Every pixel is covered: windows start at ``0, stride, 2*stride, ...`` until one reaches the
    right (bottom) border, and that last one is clipped at the border when the steps do not land on
    it exactly (``(size - window) % stride != 0``), as in Captum's ``Occlusion``. A ``stride``
    larger than ``window`` would leave unoccluded stripes that read as "no effect", so it is
    refused (:class:`OptionError`), as Captum does.

    Parameters
    ----------
    target
        Class index, label, :class:`~cnn_widgets.Unit`, or ``None`` for the top-1 class.
    window, stride
        Square size and step, in model-input pixels (``1 <= stride <= window <= min(H, W)``).
    fill
        ``"zero"``, ``"mean"`` or ``"blur"`` (see :func:`occlusion_fill`).
    batch_size
        Occluded copies per forward pass.
    grid
        Return the ``[nh, nw]`` window grid instead of the ``[H, W]`` map.
    progress
        Show a tqdm bar (``None``: when there are more than 64 windows). Ctrl-C stops the scan.

    Returns
    -------
    torch.Tensor
        ``[H, W]``: each pixel holds the mean drop over the windows covering it (captum's
        ``Occlusion`` convention), or the ``[nh, nw]`` grid, one value per window corner of
        :func:`window_positions`.
    """
    check_choice("fill", fill, FILLS)
    check_choice("quantity", quantity, QUANTITIES)
    check_int("batch_size", batch_size)
    x = net.prepare(image)
    size = tuple(x.shape[-2:])
    window, stride = _check(window, stride, size)
    resolved = net.resolve_target(target) if target is not None else TOP_CLASS
    tops, lefts = window_positions(size, window, stride)
    corners = [(t, l) for t in tops for l in lefts]
    filled = occlusion_fill(x, fill, window)

    unit = isinstance(resolved, Unit)
    layers = [resolved.layer] if unit else []
    show = len(corners) > 64 if progress is None else bool(progress)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(corners), desc="occlusion", unit="window", leave=False)
    values = []
    try:
        # eval mode + frozen parameters; no rectifier rules (no backward pass), so native in-place
        # ReLUs run at full speed -- a unit's output is captured as the pass stops right after it
        with inference_state(net.model), torch.no_grad():
            for start in range(0, len(corners), batch_size):
                chunk = corners[start : start + batch_size]
                # the first batch also carries the unoccluded image (row 0): no extra forward for f(x)
                first = start == 0
                batch = x.repeat(len(chunk) + first, 1, 1, 1)
                for row, (t, l) in enumerate(chunk, start=first):
                    batch[row, :, t : t + window, l : l + window] = filled[0, :, t : t + window, l : l + window]
                logits, outputs = net.forward(batch, layers=layers, stop_early=unit)
                if resolved is TOP_CLASS:
                    index = int(logits[0].argmax())
                    resolved = ClassTarget(index, net.label(index))
                values.append(scalar(resolved, logits, outputs, quantity))
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    values = torch.cat(values)
    drops = values[0] - values[1:]
    nh, nw = len(tops), len(lefts)
    if grid:
        return drops.view(nh, nw).detach()
    # spread each window's drop over its pixels: a transposed convolution with a box kernel, cropped
    # to the input (the clipped last windows reach past the border)
    box = torch.ones(1, 1, window, window, dtype=drops.dtype, device=drops.device)
    h, w = size
    total = F.conv_transpose2d(drops.view(1, 1, nh, nw), box, stride=stride)[0, 0, :h, :w]
    count = F.conv_transpose2d(torch.ones_like(drops).view(1, 1, nh, nw), box, stride=stride)[0, 0, :h, :w]
    return (total / count).detach()  # count >= 1 everywhere: stride <= window and the last window is clipped
