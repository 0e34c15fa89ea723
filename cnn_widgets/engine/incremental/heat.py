"""Heat maps from window grids, and what an occlusion run reports (:class:`OcclusionResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["OcclusionResult", "first_pass_estimate", "heat_error", "heat_map", "neighbour_spread", "window_means"]


@dataclass
class OcclusionResult:
    """Heat map, window grid and how they were computed (``occlusion(..., result=True)``).

    Attributes
    ----------
    heat
        ``[H, W]``: mean drop over the windows covering each pixel.
    grid
        ``[nh, nw]``: one drop per window corner of :func:`window_positions`.
    method
        ``"incremental"`` (Krypton's incremental inference, every window) or ``"full"`` (the whole
        network per occluded copy: asked for, the model could not be traced, or ``execution="auto"``
        found from one window that incremental inference would save too little here).
    reason
        Why ``"full"`` ran although incremental inference was asked for (``None`` otherwise).
    exact
        Whether the result equals full recomputation (``approx`` and ``drill_down`` make it approximate).
    work
        Multiply-adds of convolutions and linear layers run, over those of one full forward pass
        per window (the speed-up limit is ``1 / work``; ``1.0`` for ``"full"``).
    windows
        Occluded copies actually run (fewer than ``grid.numel()`` with ``drill_down``).
    error
        With ``compare=True`` on an approximate run: ``{"max_abs", "relative", "correlation"}`` of
        the heat map against the exact one (relative: max abs error over max abs exact value).
    first_pass
        Windows of an exact run's first pass (:func:`~cnn_widgets.engine.occlusion.first_pass`),
        computed before the others; after them the map covers every pixel (0 for a drill-down).
    table
        With ``table=True``: ``[nh, nw, C]``, the drops of every class (or every channel of the
        unit's layer) from the same passes; ``None`` otherwise.
    """

    heat: torch.Tensor
    grid: torch.Tensor
    method: str
    reason: str | None = None
    exact: bool = True
    work: float = 1.0
    windows: int = 0
    error: dict = field(default_factory=dict)
    first_pass: int = 0
    table: torch.Tensor | None = None


def heat_map(grid: torch.Tensor, window: int, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """Spread each window's drop over its pixels (NaN windows are not done yet; NaN where none is)."""
    done = ~torch.isnan(grid)
    box = torch.ones(1, 1, window, window, dtype=grid.dtype, device=grid.device)
    h, w = size
    nh, nw = grid.shape
    # a transposed convolution with a box kernel, cropped to the input (the clipped last windows reach past it)
    total = F.conv_transpose2d(torch.where(done, grid, 0).view(1, 1, nh, nw), box, stride=stride)[0, 0, :h, :w]
    count = F.conv_transpose2d(done.to(grid.dtype).view(1, 1, nh, nw), box, stride=stride)[0, 0, :h, :w]
    return torch.where(count > 0, total / count.clamp(min=1), float("nan"))


def window_means(heat: torch.Tensor, corners, window: int) -> torch.Tensor:
    """Mean of ``heat`` over each window (an integral image: one pass for all windows)."""
    h, w = heat.shape
    integral = F.pad(heat.cumsum(0).cumsum(1), (1, 0, 1, 0))
    t = torch.tensor([c[0] for c in corners])
    l = torch.tensor([c[1] for c in corners])
    b, r = (t + window).clamp(max=h), (l + window).clamp(max=w)
    sums = integral[b, r] - integral[t, r] - integral[b, l] + integral[t, l]
    return sums / ((b - t) * (r - l)).to(heat.dtype)


def first_pass_estimate(coarse: torch.Tensor, window: int, coarse_stride: int, size: tuple[int, int],
                        corners) -> torch.Tensor:
    """Drill-down's estimate of each window at ``corners`` from the first pass's ``[ch, cw]`` grid:
    the mean, over the window's square, of the first pass's heat map."""
    return window_means(heat_map(coarse, window, coarse_stride, size), corners, window)


def neighbour_spread(coarse: torch.Tensor, coarse_stride: int, corners) -> torch.Tensor:
    """For each window at ``corners``, how much the first pass's nearest windows disagree.

    ``coarse`` is the first pass's ``[ch, cw]`` grid at corners ``(a * coarse_stride, b * coarse_stride)``.
    The neighbours of a window at ``(t, l)`` are the first-pass windows less than one coarse step
    away along both axes (rows ``floor(t / s)`` and ``ceil(t / s)``, the same for columns: up to
    four); the spread is their largest value minus their smallest. A window whose neighbours agree
    is well estimated by them; one between neighbours that disagree (the edge of a high or low
    region) is not, and is worth running.
    """
    ch, cw = coarse.shape
    t = torch.tensor([c[0] for c in corners])
    l = torch.tensor([c[1] for c in corners])
    rows = [(t // coarse_stride).clamp(max=ch - 1), (-(-t // coarse_stride)).clamp(max=ch - 1)]
    cols = [(l // coarse_stride).clamp(max=cw - 1), (-(-l // coarse_stride)).clamp(max=cw - 1)]
    near = torch.stack([coarse[r, c] for r in rows for c in cols])  # [4, windows]
    return near.amax(dim=0) - near.amin(dim=0)


def heat_error(heat: torch.Tensor, exact: torch.Tensor) -> dict:
    """Max and relative error of an approximate heat map, and its Pearson correlation with the exact one."""
    diff = (heat - exact).abs().max().item()
    a, b = heat.flatten().double(), exact.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    corr = float((a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-300))
    return {"max_abs": diff, "relative": diff / max(exact.abs().max().item(), 1e-300), "correlation": corr}
