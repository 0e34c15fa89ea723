"""A matplotlib figure laid out in pixels, for slide figures that match the widget pixel for pixel.

A ``Block`` is a list of drawing steps in its own pixel coordinates (x right, y down, at 1x) and
its size; blocks are placed side by side or stacked, then drawn on a ``matplotlib.figure.Figure``
of exactly ``width * scale`` by ``height * scale`` pixels (dpi = 100 * scale, no tight bbox), so a
2x PNG has twice the pixel size of the 1x one. Pictures go in through ``figimage`` (no resampling:
each pixel becomes a ``scale`` x ``scale`` block); text, bars, frames and lines stay vector in SVG.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ..engine.errors import OptionError

PT_PER_PX = 0.72  # a figure at 100 dpi: 1 px = 0.72 pt
TEXT = "#1d2330"
MUTED = "#596173"


@dataclass
class Block:
    """Drawing steps at 1x pixel coordinates inside a ``width`` x ``height`` box."""

    width: int
    height: int
    steps: list[tuple] = field(default_factory=list)
    regions: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # name -> x, y, w, h of a picture

    def picture(self, rgb: np.ndarray, x: int, y: int, name: str | None = None) -> None:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        self.steps.append(("picture", rgb, x, y))
        if name:
            self.regions[name] = (x, y, rgb.shape[1], rgb.shape[0])

    def text(self, x: float, y: float, text: str, size: float = 13, weight: str = "normal", color: str = TEXT,
             wrap: float | None = None, ha: str = "left", va: str = "top") -> int:
        """Write text; with ``wrap`` (px) break it into lines that fit. Returns the height used (px)."""
        lines = [text]
        if wrap:
            per_line = max(8, int(wrap / (0.55 * size)))
            lines = textwrap.wrap(text, per_line) or [""]
        for i, line in enumerate(lines):
            self.steps.append(("text", x, y + i * size * 1.35, line, size, weight, color, ha, va))
        return int(np.ceil(len(lines) * size * 1.35))

    def frame(self, x: float, y: float, w: float, h: float, color: str, width: float = 2.0, fill: str | None = None) -> None:
        self.steps.append(("frame", x, y, w, h, color, width, fill))

    def line(self, x0: float, y0: float, x1: float, y1: float, color: str, width: float = 1.0) -> None:
        self.steps.append(("line", x0, y0, x1, y1, color, width))

    def bars(self, x: int, y: int, w: int, h: int, labels: list[str], values: list[float]) -> None:
        self.steps.append(("bars", x, y, w, h, labels, values))

    def place(self, other: Block, x: int, y: int) -> None:
        """Copy another block's steps here at offset (x, y)."""
        for step in other.steps:
            kind = step[0]
            if kind == "picture":
                self.steps.append(("picture", step[1], step[2] + x, step[3] + y))
            elif kind == "text":
                self.steps.append(("text", step[1] + x, step[2] + y, *step[3:]))
            elif kind in ("frame", "bars"):
                self.steps.append((kind, step[1] + x, step[2] + y, *step[3:]))
            elif kind == "line":
                self.steps.append(("line", step[1] + x, step[2] + y, step[3] + x, step[4] + y, *step[5:]))
        for name, (rx, ry, rw, rh) in other.regions.items():
            self.regions[name] = (rx + x, ry + y, rw, rh)


def stack(blocks: list[Block], gap: int = 16, across: bool = False) -> Block:
    """Blocks one below the other (or side by side with ``across``), top-aligned."""
    if across:
        out = Block(sum(b.width for b in blocks) + gap * (len(blocks) - 1), max(b.height for b in blocks))
        x = 0
        for b in blocks:
            out.place(b, x, 0)
            x += b.width + gap
    else:
        out = Block(max(b.width for b in blocks), sum(b.height for b in blocks) + gap * (len(blocks) - 1))
        y = 0
        for b in blocks:
            out.place(b, 0, y)
            y += b.height + gap
    return out


def render(block: Block, scale: int = 2, background: str = "#ffffff"):
    """A ``matplotlib.figure.Figure`` of exactly ``block.width * scale`` x ``block.height * scale`` px."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    W, H = block.width, block.height
    fig = Figure(figsize=(W / 100, H / 100), dpi=100 * scale, facecolor=background)
    fx = lambda x: x / W  # noqa: E731 - pixel -> figure fraction
    fy = lambda y: 1 - y / H  # noqa: E731
    for step in block.steps:
        kind = step[0]
        if kind == "picture":
            _, rgb, x, y = step
            big = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
            fig.figimage(big, xo=int(round(x * scale)), yo=int(round((H - y) * scale)) - big.shape[0], origin="upper", zorder=1)
        elif kind == "text":
            _, x, y, text, size, weight, color, ha, va = step
            fig.text(fx(x), fy(y), text, fontsize=size * PT_PER_PX, fontweight=weight, color=color, ha=ha, va=va, zorder=3)
        elif kind == "frame":
            _, x, y, w, h, color, width, fill = step
            fig.add_artist(Rectangle((fx(x), fy(y + h)), w / W, h / H, transform=fig.transFigure, edgecolor=color,
                                     linewidth=width * PT_PER_PX, facecolor=fill or "none", zorder=2 if fill is None else 0.5))
        elif kind == "line":
            _, x0, y0, x1, y1, color, width = step
            fig.add_artist(_line(fig, [fx(x0), fx(x1)], [fy(y0), fy(y1)], color, width * PT_PER_PX))
        elif kind == "bars":
            _, x, y, w, h, labels, values = step
            ax = fig.add_axes((fx(x), fy(y + h), w / W, h / H))
            _bar_chart(ax, labels, values)
    return fig


def _line(fig, xs, ys, color, width):
    from matplotlib.lines import Line2D

    return Line2D(xs, ys, transform=fig.transFigure, color=color, linewidth=width, zorder=2)


def _bar_chart(ax, labels: list[str], values: list[float]) -> None:
    ys = np.arange(len(values))[::-1]
    ax.barh(ys, values, color="#cfe0f5", height=0.8)
    for y, label, value in zip(ys, labels, values):
        ax.text(0.01, y, label, va="center", ha="left", fontsize=12 * PT_PER_PX, color=TEXT)
        ax.text(0.99, y, f"{100 * value:.1f}%", va="center", ha="right", fontsize=12 * PT_PER_PX, color=TEXT,
                transform=ax.get_yaxis_transform())
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(values) - 0.4)
    ax.axis("off")


FORMATS = ("png", "svg", "pdf")


def figure_path(path) -> Path:
    """``path`` checked: a .png / .svg / .pdf file in a folder that exists (an ``OptionError`` otherwise)."""
    from .paths import output_path

    out = output_path(path, "save_figure", "figure.png")
    if out.suffix.lower().lstrip(".") not in FORMATS:
        raise OptionError(f"cannot save a figure as {out.name!r}: use a .png, .svg or .pdf file name")
    return out


def save(block: Block, path: str | Path, scale: int = 2) -> dict:
    """Write the block as PNG / SVG / PDF (by the suffix). Text stays text in SVG (editable on a slide)."""
    from matplotlib import rc_context

    path = figure_path(path)
    kind = path.suffix.lower().lstrip(".")
    fig = render(block, scale)
    with rc_context({"svg.fonttype": "none"}):
        fig.savefig(path, dpi=100 * scale, format=kind, facecolor=fig.get_facecolor())
    return {"path": str(path), "size": (block.width * scale, block.height * scale), "scale": scale,
            "regions": {name: tuple(int(v * scale) for v in box) for name, box in block.regions.items()}}
