"""Layers whose output is a map on a grid but not laid out ``[N, C, H, W]``: transformer tokens.

A vision transformer's block returns ``[N, tokens, C]``: a few *extra* tokens first (the class
token, DeiT's distillation token, register tokens), then one token per patch of the image in
row-major order on the patch grid ``(h, w)``. A Swin stage (and a channels-last block) returns
``[N, H, W, C]``. The engine explores both as the ``[C, h, w]`` map every CNN layer is: a
:class:`TokenLayout` says how to read that map out of the module's output and how to put a map
back, so a forward hook can hand the rest of the model the very same values *computed from the
map*. Gradients with respect to the map then flow (Grad-CAM, saliency of a unit, the contribution
tree), exactly as pytorch-grad-cam's ``reshape_transform`` does for Grad-CAM alone.

The extra tokens are kept apart: a block with extra tokens also lists a layer of its own,
``"<block>:tokens"`` (:data:`TOKENS`), whose ``[C, 1, prefix]`` map holds them: ``cw.Unit("blocks.11:tokens",
c, position=(0, 0))`` is channel ``c`` of the class token, usable as any unit is. A layer that reads
only extra tokens (a head on the class token) reads that layer, not the patch map.

A token's receptive field, for display (top images, the tree's pictures), is its patch: attention
lets every token see the whole image from the first block on, so the traced field would be the
whole image for every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: the suffix of the layer holding a block's extra tokens: ``"blocks.11" + TOKENS``
TOKENS = ":tokens"

#: the most extra tokens (class, distillation, registers) before the patch tokens that are recognised
MAX_EXTRA_TOKENS = 16


@dataclass(frozen=True)
class TokenLayout:
    """How a layer's ``[N, tokens, C]`` or ``[N, H, W, C]`` output holds a ``[N, C, h, w]`` map."""

    grid: tuple[int, int]  # (h, w): the patch grid
    prefix: int = 0  # extra tokens before the patch tokens ([N, tokens, C] only)
    channels_last: bool = False  # [N, H, W, C] (a Swin stage), not [N, tokens, C]
    extra_only: bool = False  # the map is the extra tokens, [N, C, 1, prefix] (the ":tokens" layer)

    def to_map(self, out: torch.Tensor) -> torch.Tensor:
        """The ``[N, C, h, w]`` map of ``out`` (a differentiable view of it)."""
        if self.channels_last:
            return out.permute(0, 3, 1, 2)
        if self.extra_only:
            return out[:, :self.prefix].transpose(1, 2).unsqueeze(2)
        n, _, c = out.shape
        return out[:, self.prefix:].transpose(1, 2).reshape(n, c, *self.grid)

    def from_map(self, feature_map: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` rebuilt from ``feature_map`` (equal values; gradients reach the map)."""
        if self.channels_last:
            return feature_map.permute(0, 2, 3, 1)
        tokens = feature_map.flatten(2).transpose(1, 2)
        if self.extra_only:
            return torch.cat([tokens, out[:, self.prefix:]], dim=1)
        return torch.cat([out[:, :self.prefix], tokens], dim=1) if self.prefix else tokens

    def extras(self) -> "TokenLayout":
        """The layout of the block's ``":tokens"`` layer: its extra tokens as a ``[C, 1, prefix]`` map."""
        return TokenLayout((1, self.prefix), self.prefix, extra_only=True)

    def __str__(self) -> str:
        if self.extra_only:
            return "the class token" if self.prefix == 1 else f"the {self.prefix} extra tokens (the class token first)"
        if self.channels_last:
            return f"channels-last {self.grid[0]}x{self.grid[1]} map"
        extra = f" after {self.prefix} extra token{'s' if self.prefix != 1 else ''}" if self.prefix else ""
        return f"{self.grid[0]}x{self.grid[1]} patch tokens{extra}"


@dataclass(frozen=True)
class Copied:
    """The layout of a layer whose output the model later changes in place (a residual ``result +=
    input`` in MobileNet's and EfficientNet's blocks): the rest of the pass reads a copy (the same
    values; gradients flow through it), so the captured map stays the layer's own output."""

    inner: TokenLayout | None = None

    def to_map(self, out: torch.Tensor) -> torch.Tensor:
        return self.inner.to_map(out) if self.inner is not None else out

    def from_map(self, feature_map: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return (self.inner.from_map(feature_map, out) if self.inner is not None else feature_map).clone()


def token_layout(out: torch.Tensor, grids: list[tuple[int, int]], channels_last: bool) -> TokenLayout | None:
    """The layout of a module's output, or None when it is not a token map.

    ``grids``: the patch grids the traced pass flattened into tokens; ``channels_last``: the trace
    found the output's spatial axes at (1, 2).
    """
    if not isinstance(out, torch.Tensor) or out.shape[0] != 1:
        return None
    if out.dim() == 4 and channels_last:
        return TokenLayout((int(out.shape[1]), int(out.shape[2])), channels_last=True)
    if out.dim() == 3:
        tokens = int(out.shape[1])
        for h, w in grids:
            if 0 <= tokens - h * w <= MAX_EXTRA_TOKENS:
                return TokenLayout((h, w), tokens - h * w)
    return None
