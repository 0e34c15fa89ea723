"""Occlusion: how much the target drops when a square of the input is covered up.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014 (section 4.2):
slide a grey square over the image and record the class probability -- or a feature map's
activation, as in their layer-5 example (also in the Stanford cs231n notes) -- for every position.

By default each occluded copy is recomputed only where the square can change it (Krypton:
Nakandala, Kumar & Papakonstantinou, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations", SIGMOD 2019), exactly; ``approx`` and ``drill_down`` are
Krypton's approximate modes. See :mod:`cnn_widgets.engine.incremental`.
"""

from __future__ import annotations

import warnings

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .checks import check_bool, check_choice, check_float, check_int
from .errors import OptionError
from .hooks import inference_state
from .incremental.heat import OcclusionResult, first_pass_estimate, heat_error, heat_map, neighbour_spread
from .occlusion_runs import Evaluator, run_windows
from .precision import accumulation_dtype
from .targets import QUANTITIES, TOP_CLASS, ClassTarget, Direction, Target, Unit

__all__ = ["FILLS", "MAX_TABLE", "METHODS", "OcclusionResult", "first_pass", "first_pass_stride", "occlusion", "occlusion_fill",
           "window_positions"]

FILLS = ("zero", "mean", "blur")
# incremental until it does not pay | recompute what the window changes (Krypton) | the whole network per copy
METHODS = ("auto", "incremental", "full")
#: ``table=True`` keeps every class's (or channel's) drops only up to this many numbers (64 MiB of
#: float32); beyond it ``OcclusionResult.table`` is ``None``.
MAX_TABLE = 2**24


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


def first_pass(size: tuple[int, int], window: int, stride: int) -> tuple[list[int], list[int]]:
    """Top and left corners of an exact run's first pass: as few of :func:`window_positions`' corners
    as still cover every pixel, so the map is whole after them and then refines in place.

    Along each side, from the first corner, the next one kept is the farthest that leaves no gap
    (at most ``window`` after the last kept), and the last corner is always kept. With ``stride``
    about half the window this keeps every other corner: a quarter of the windows.
    """
    tops, lefts = (_covering(starts, window) for starts in window_positions(size, window, stride))
    return tops, lefts


def _covering(starts: list[int], window: int) -> list[int]:
    kept = [starts[0]]
    for before, start in zip(starts, starts[1:]):
        if start > kept[-1] + window:  # ``start`` would leave a gap: the one before it is the farthest that does not
            kept.append(before)
    if kept[-1] != starts[-1]:
        kept.append(starts[-1])
    return kept


def first_pass_stride(window: int, stride: int) -> int:
    """Drill-down's first-pass stride: twice ``stride``, at most ``window`` (so every pixel is covered)."""
    return min(window, 2 * stride)


def _columns(net, resolved) -> int:
    """How many targets of the same kind there are: classes, or the channels of the unit's layer."""
    return net.layer(resolved.layer).channels if isinstance(resolved, Unit) else net.num_classes


def _column(values: torch.Tensor, column: int | None) -> torch.Tensor:
    """The target's drops from a batch's ``[rows, C]`` table (or its ``[rows]`` drops as they are)."""
    return values if values.dim() == 1 else values[:, column]


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
    execution: str = "auto",
    approx: float | None = None,
    drill_down: float | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    result: bool = False,
    compare: bool = False,
    table: bool = False,
    method: str | None = None,
) -> torch.Tensor | OcclusionResult:
    """Drop of the target when a ``window x window`` square (all channels) is replaced by ``fill``.

    ``drop(p) = f(x) - f(x with the window at p filled)``, where ``f`` is the class probability
    (``quantity="probability"``, default), its logit (``quantity="logit"``), or a
    :class:`~cnn_widgets.Unit`'s value (its map summed, max pixel, or one position).

    Every pixel is covered: windows start at ``0, stride, 2*stride, ...`` until one reaches the
    right (bottom) border, and that last one is clipped at the border when the steps do not land on
    it exactly (``(size - window) % stride != 0``), as in Captum's ``Occlusion``. A ``stride``
    larger than ``window`` would leave unoccluded stripes that read as "no effect", so it is
    refused (:class:`OptionError`), as Captum does.

    Incremental inference (Nakandala, Kumar & Papakonstantinou, "Incremental and Approximate
    Inference for Faster Occlusion-based Deep CNN Explanations", SIGMOD 2019): the clean image's
    activations are computed once, and each layer of an occluded copy only where the window can
    change it (its projective field), read from the cached maps. Ops that mix all positions
    (global pooling, linear layers, anything unknown) run on whole maps. The result equals full
    recomputation up to float rounding; a model torch.fx cannot trace runs in full.

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
    execution
        How the occluded copies run (not what is computed: every choice gives the same map).
        ``"auto"`` (default): incremental, unless one window at the centre makes it recompute at
        least :data:`~.occlusion_runs.FULL_WORK` of a full forward pass: then every window runs in full, which
        is faster there (e.g. squeeze-and-excitation blocks, whose global pooling changes every
        position, as in EfficientNet-B0 or MobileNetV3); ``"incremental"``: always; ``"full"``: the
        whole network per copy. All three are exact; ``OcclusionResult.method`` and ``reason`` say
        which ran and why.
    method
        The old name of ``execution`` (``DeprecationWarning``): ``method`` means the explanation
        method everywhere else in the API.
    approx
        Krypton's projective-field threshold ``tau`` in ``(0, 1]``: a changed region wider than
        ``tau`` of its map is cut to that, centred (approximate; ``None``: exact).
    drill_down
        Krypton's adaptive drill-down: a first pass at stride ``min(window, 2*stride)``, then the
        fraction in ``(0, 1]`` of all windows run at ``stride``: those whose first-pass neighbours
        disagree most (:func:`~cnn_widgets.engine.incremental.heat.neighbour_spread`: the edges of
        high and low regions, where an estimate from the neighbours is least sure; on the benchmark's
        exact maps this beat Krypton's "where the drop is high", e.g. correlation 0.915 vs 0.880 on
        VGG16 at 16/8 with 0.2). A window at a corner of the first pass keeps its (exact) value from
        it and is not run again; the others take the first pass's mean over their square
        (approximate; ``None``: all windows).
    callback
        ``callback(done, total, heat)`` after every batch: windows done, windows in all, and the
        ``[H, W]`` heat map of the windows done so far (NaN where none is yet). Raise to stop.
        An exact run computes its :func:`first_pass` first (``OcclusionResult.first_pass``
        windows, in batches of their own), so from then on every pixel has a value: the mean
        drop of the windows done over it, which refines in place to the exact map.
    result
        Return an :class:`OcclusionResult` (heat map, grid, method, work, error) instead of a tensor.
    compare
        With ``approx`` or ``drill_down``: also run the exact method and put the error in
        ``OcclusionResult.error``.
    table
        Also keep the drops of every class (a class target) or of every channel of the unit's
        layer, with the same quantity, position or reduce, from the very same passes:
        ``OcclusionResult.table`` ``[nh, nw, C]``, whose column ``c`` is the grid of that class or
        channel (``None`` with ``drill_down``, which picks windows by the target's own values, or
        above :data:`MAX_TABLE` numbers).

    Returns
    -------
    torch.Tensor | OcclusionResult
        ``[H, W]``: each pixel holds the mean drop over the windows covering it (captum's
        ``Occlusion`` convention), or the ``[nh, nw]`` grid, one value per window corner of
        :func:`window_positions`; or, with ``result=True``, both and how they were computed.
    """
    check_choice("fill", fill, FILLS)
    check_choice("quantity", quantity, QUANTITIES)
    if method is not None:
        warnings.warn("occlusion(method=...) is now occlusion(execution=...); 'method' names the explanation "
                      "method elsewhere in the API", DeprecationWarning, stacklevel=3)
        execution = method
    check_choice("execution", execution, METHODS)
    check_int("batch_size", batch_size)
    grid, result, compare = check_bool("grid", grid), check_bool("result", result), check_bool("compare", compare)
    table = check_bool("table", table)
    if progress is not None:
        check_bool("progress", progress)
    if approx is not None:
        approx = check_float("approx", approx, 0, 1, open_low=True)
    if drill_down is not None:
        drill_down = check_float("drill_down", drill_down, 0, 1, open_low=True)
    if callback is not None and not callable(callback):
        raise OptionError(f"callback must be a function callback(done, total, heat), got {callback!r}")
    x = net.prepare(image)
    size = tuple(x.shape[-2:])
    window, stride = _check(window, stride, size)
    resolved = net._resolve_target(target) if target is not None else TOP_CLASS
    tops, lefts = window_positions(size, window, stride)
    corners = [(t, l) for t in tops for l in lefts]
    nh, nw = len(tops), len(lefts)
    coarse_stride = first_pass_stride(window, stride)
    coarse = None
    if drill_down is not None and coarse_stride > stride:
        coarse = window_positions(size, window, coarse_stride)
    shared: dict[int, int] = {}  # fine window -> the first pass's window at the same corner (its value is exact)
    if coarse is not None:
        fine_index = {corner: i for i, corner in enumerate(corners)}
        coarse_corners = [(t, l) for t in coarse[0] for l in coarse[1]]
        shared = {fine_index[c]: j for j, c in enumerate(coarse_corners) if c in fine_index}
        keep = min(math.ceil(drill_down * len(corners)), len(corners) - len(shared))
    total = len(corners) if coarse is None else len(coarse_corners) + keep
    # an exact run: its first pass (every pixel covered), then the other windows, row by row
    firsts = first_pass(size, window, stride) if coarse is None else ([], [])
    first_set = {(t, l) for t in firsts[0] for l in firsts[1]}
    stages = [[i for i, c in enumerate(corners) if c in first_set], [i for i, c in enumerate(corners) if c not in first_set]]
    columns = _columns(net, resolved) if table and drill_down is None and not isinstance(resolved, Direction) else 0
    keep_table = 0 < columns and len(corners) * columns <= MAX_TABLE
    show = total > 64 if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="occlusion", unit="window", leave=False)
    try:
        # eval mode + frozen parameters; no rectifier rules (no backward pass), so native in-place
        # ReLUs run at full speed -- a unit's output is captured as the pass stops right after it
        with inference_state(net.model), torch.no_grad():
            evaluate = Evaluator(net, x, resolved, quantity, execution, approx, occlusion_fill(x, fill, window), window,
                                 table=keep_table)
            acc = accumulation_dtype(x.dtype)  # drops and the heat map in float32 for a bfloat16 model
            drops = torch.full((nh * nw,), float("nan"), dtype=acc, device=x.device)
            offset = 0
            if coarse is not None:
                shape = (len(coarse[0]), len(coarse[1]))

                def coarse_batch(done, values):
                    if callback is not None:
                        partial = torch.full((len(coarse_corners),), float("nan"), dtype=acc, device=x.device)
                        partial[: len(values)] = values
                        callback(done, total, heat_map(partial.view(shape), window, coarse_stride, size))

                values = run_windows(evaluate, coarse_corners, batch_size, bar, coarse_batch)
                estimate = first_pass_estimate(values.view(shape), window, coarse_stride, size, corners)
                drops = estimate.to(acc).clone()  # windows not drilled into keep the first pass's estimate
                # run the windows whose estimate is least sure: where the first pass's neighbours disagree
                rank = neighbour_spread(values.view(shape), coarse_stride, corners).to(estimate.dtype)
                if shared:  # a window the first pass ran at the same corner is exact already: never run twice
                    at = torch.tensor(list(shared), dtype=torch.long)
                    drops[at] = values[torch.tensor(list(shared.values()), dtype=torch.long)].to(drops.dtype)
                    rank[at] = -math.inf
                stages = [sorted(rank.topk(keep).indices.tolist())]
                offset = len(coarse_corners)
            rows = torch.full((nh * nw, columns), float("nan"), dtype=acc, device=x.device) if keep_table else None
            for todo in stages:

                def fine_batch(done, values, todo=todo, offset=offset):
                    if callback is not None:
                        partial = drops.clone()
                        partial[todo[: len(values)]] = _column(values, evaluate.column).to(partial.dtype)
                        callback(offset + done, total, heat_map(partial.view(nh, nw), window, stride, size))

                values = run_windows(evaluate, [corners[i] for i in todo], batch_size, bar, fine_batch)
                if todo:
                    drops[todo] = _column(values, evaluate.column).to(drops.dtype)
                    if rows is not None:
                        rows[todo] = values.to(rows.dtype)
                offset += len(todo)
            error = {}
            approximate = evaluate.runner is not None and approx is not None or coarse is not None
            if compare and approximate:
                resolved = evaluate.resolved  # the same class as this run's, also for target=None
                exact = occlusion(net, x, resolved.index if isinstance(resolved, ClassTarget) else resolved, window, stride, fill, quantity, batch_size,
                                  progress=False, execution=execution, result=True)
                error = heat_error(heat_map(drops.view(nh, nw), window, stride, size), exact.heat)
    finally:
        if bar is not None:
            bar.close()
    grid_values = drops.view(nh, nw).detach()
    heat = heat_map(grid_values, window, stride, size).detach()  # count >= 1 everywhere: stride <= window
    if result:
        return OcclusionResult(heat, grid_values, evaluate.method, evaluate.reason, not approximate, evaluate.work,
                               evaluate.runs, error, first_pass=len(stages[0]) if coarse is None else 0,
                               table=None if rows is None else rows.view(nh, nw, columns).detach())
    return grid_values if grid else heat
