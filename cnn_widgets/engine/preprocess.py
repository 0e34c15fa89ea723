"""Model-input preparation that is not about one network: the ImageNet transform and display pixels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .images import ImageLike, to_rgb_image
from .pictures import pixels_to_uint8

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_preprocess(size: int = 224, resize: int = 256, interpolation: str = "bilinear") -> Callable:
    """The usual ImageNet transform: resize the short side, centre-crop, to tensor, normalise."""
    from torchvision import transforms as T

    mode = getattr(T.InterpolationMode, interpolation.upper())
    return T.Compose(
        [
            T.Resize(resize, interpolation=mode),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def display_pixels(image: ImageLike, preprocess: Callable, model_input: torch.Tensor) -> np.ndarray:
    """What the model sees, as ``HxWx3`` uint8: ``preprocess`` without its ``Normalize`` steps.

    When that cannot be done (a tensor input, a preprocess that is not a ``Compose``), the model
    input ``[1, C, H, W]`` is shown as it is if it lies in ``[0, 1]``, else stretched to it.
    Grayscale inputs come out as grey RGB.
    """
    if not isinstance(image, torch.Tensor):
        transforms = getattr(preprocess, "transforms", None)
        if transforms is not None:
            from torchvision import transforms as T

            kept = [t for t in transforms if not isinstance(t, T.Normalize)]
            out = T.Compose(kept)(to_rgb_image(image))
            if isinstance(out, torch.Tensor) and out.dim() == 3:
                return pixels_to_uint8(out)
    x = model_input[0].float()
    lo, hi = x.amin(), x.amax()
    if lo >= 0 and hi <= 1:  # already pixels in [0, 1] (e.g. T.ToTensor()): show them as they are
        return pixels_to_uint8(x)
    return pixels_to_uint8((x - lo) / (hi - lo).clamp_min(1e-12))


def normalize_steps(preprocess: Callable) -> list:
    """The ``Normalize`` transforms of a ``Compose`` preprocess, in order (empty for anything else)."""
    from torchvision import transforms as T

    return [t for t in getattr(preprocess, "transforms", []) or [] if isinstance(t, T.Normalize)]


def pixels_to_input(pixels: torch.Tensor, preprocess: Callable, channels: int) -> torch.Tensor:
    """Differentiably map RGB pixels ``[N, 3, H, W]`` in ``[0, 1]`` to model inputs ``[N, C, H, W]``.

    Applies the ``Normalize`` steps of ``preprocess`` (the only part of a usual preprocess that
    acts after resizing); a one-channel model gets the ITU-R 601 luma, as ``T.Grayscale`` gives.
    """
    x = pixels
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    for step in normalize_steps(preprocess):
        mean = torch.as_tensor(step.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.as_tensor(step.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x
