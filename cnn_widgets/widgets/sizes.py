"""Settings whose range and default follow the model's input size (occlusion windows, visualisation size).

The class-level ranges of the Explorer's traits are the widest (a 224-pixel ImageNet model); these
functions narrow them per network, so a 16x16 digits model opens with windows that fit it and its
sliders never offer a window larger than the input.
"""

from __future__ import annotations

REFERENCE = 224  # the input size the class defaults (window 48, stride 24) were chosen for


def _snap(value: float, step: int, low: int, high: int) -> int:
    return int(min(high, max(low, round(value / step) * step)))


def occlusion_ranges(input_size: tuple[int, int]) -> dict[str, dict]:
    """``{"window": {min, max, step}, "stride": {...}}`` for a model input of ``(H, W)`` pixels.

    The window can cover the whole input; the stride at most half of it; the smallest of both gives
    at most about 28 x 28 windows (8 pixels on a 224 input).
    """
    side = max(1, min(input_size))
    step = max(1, side // 56)
    low = max(1, side // 28)
    return {"window": {"min": low, "max": side, "step": step},
            "stride": {"min": low, "max": max(low, side // 2), "step": step}}


def occlusion_defaults(input_size: tuple[int, int]) -> dict[str, int]:
    """Window and stride in the same proportion to the input as 48 and 24 to 224 (so 48 / 24 there)."""
    ranges = occlusion_ranges(input_size)
    limits = ranges["window"]
    window = _snap(limits["max"] * 48 / REFERENCE, limits["step"], limits["min"], limits["max"])
    stride = _snap(window / 2, ranges["stride"]["step"], ranges["stride"]["min"], min(window, ranges["stride"]["max"]))
    return {"window": window, "stride": stride}


def fits(value: int, limits: dict) -> bool:
    return limits["min"] <= value <= limits["max"]


def visualize_ranges(input_size: tuple[int, int]) -> dict[str, dict]:
    """Picture side and jitter of the Visualise tab: from a quarter to twice the input side (at most 256)."""
    side = max(8, min(input_size))
    step = max(1, side // 28)
    return {"viz_size": {"min": max(8, side // 4 // step * step), "max": min(256, 2 * side) // step * step, "step": step},
            "viz_jitter": {"min": 0, "max": max(1, side // 4), "step": 1}}


def visualize_defaults(input_size: tuple[int, int]) -> dict[str, int]:
    """128 px pictures on a 224 model (fast enough to watch), the input side on small models; jitter 1/7 of it."""
    side = max(8, min(input_size))
    limits = visualize_ranges(input_size)["viz_size"]
    return {"viz_size": _snap(min(128, side), limits["step"], limits["min"], limits["max"]), "viz_jitter": max(1, side // 7)}
