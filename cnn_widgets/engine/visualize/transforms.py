"""Random transforms applied to the image before every step, so the result must survive them.

Lucid's "standard" robustness set (Olah et al., Feature Visualization, Distill 2017): pad, jitter,
random scale, random rotation, jitter. A pattern that still drives the unit after small shifts,
zooms and turns is a pattern of the unit, not of a pixel grid. Every draw comes from one
``torch.Generator``, so a run is reproducible for its seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
TRANSFORM_SETS = ("standard", "none")


def _choice(options: list, generator: torch.Generator):
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def pad(width: int, value: float = 0.5) -> Transform:
    return lambda x, g: F.pad(x, (width,) * 4, value=value)


def jitter(d: int) -> Transform:
    """Crop ``d`` pixels off at a random offset (a random shift of up to ``d - 1`` pixels)."""

    def apply(x, g):
        dy, dx = (int(v) for v in torch.randint(d, (2,), generator=g))
        h, w = x.shape[-2:]
        return x[..., dy : h - d + dy, dx : w - d + dx]

    return apply


def random_scale(scales: list[float]) -> Transform:
    def apply(x, g):
        s = _choice(scales, g)
        h, w = x.shape[-2:]
        return F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", align_corners=False)

    return apply


def random_rotate(degrees: list[float]) -> Transform:
    def apply(x, g):
        angle = math.radians(_choice(degrees, g))
        if angle == 0:
            return x
        c, s = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)

    return apply


def transform_set(name: str, size: int) -> list[Transform]:
    """The named set, with pixel amounts scaled from Lucid's 224-pixel values to ``size``."""
    if name == "none":
        return []
    k = max(size / 224, 0.25)
    return [
        pad(max(1, round(12 * k))),
        jitter(max(2, round(8 * k))),
        random_scale([1 + (i - 5) / 50 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(max(2, round(4 * k))),
    ]


def apply_all(transforms: list[Transform], x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    for t in transforms:
        x = t(x, generator)
    return x
