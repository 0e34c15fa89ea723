"""Turning whatever the user holds into an RGB PIL image, and the offline sample photos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import ImageError

#: Offline photos bundled with scikit-image (no download). "cat" is chelsea.
SAMPLE_IMAGES: dict[str, str] = {
    "cat": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
    "astronaut": "astronaut",
    "coins": "coins",
    "camera": "camera",
    "horse": "horse",
    "hubble": "hubble_deep_field",
    "ihc": "immunohistochemistry",
    "colorwheel": "colorwheel",
    "clock": "clock",
}

ImageLike = Any  # PIL.Image | str | os.PathLike | np.ndarray | torch.Tensor


def sample_image(name: str = "cat") -> Image.Image:
    """An offline sample photo as an RGB ``PIL.Image``.

    Parameters
    ----------
    name
        One of ``cw.SAMPLE_IMAGES`` ("cat", "coffee", "rocket", "astronaut", ...). The photos come
        from scikit-image's bundled data; nothing is downloaded.
    """
    import skimage.data

    if name not in SAMPLE_IMAGES:
        raise ImageError(f"unknown sample image {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
    array = getattr(skimage.data, SAMPLE_IMAGES[name])()
    return to_rgb_image(array)


def to_rgb_image(image: ImageLike) -> Image.Image:
    """Convert a PIL image, a file path or an ``HxW`` / ``HxWx{1,3,4}`` array to an RGB PIL image.

    uint8 arrays are taken as 0..255, float and bool arrays as 0..1. Grayscale is replicated to three
    channels; RGBA is composited onto white.
    """
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise ImageError(f"image file not found: {str(path)!r}; pass an existing path, a PIL image or an array")
        try:
            with Image.open(path) as opened:
                return _pil_to_rgb(opened)
        except OSError as exc:
            raise ImageError(f"cannot read {str(path)!r} as an image ({exc}); pass a PNG/JPEG file") from exc
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageError(
        f"cannot use an object of type {type(image).__name__} as an image; pass a PIL image, a file path, "
        "an HxWx3 array (uint8 0..255 or float 0..1) or a preprocessed tensor [3, H, W]"
    )


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _array_to_rgb(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        raise ImageError(
            f"array of shape {tuple(array.shape)} looks channels-first; images must be HxWx3 "
            "(use array.transpose(1, 2, 0)), or pass a preprocessed torch tensor [3, H, W]"
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageError(
            f"an image array must be HxW (grayscale), HxWx3 (RGB) or HxWx4 (RGBA); got shape {tuple(array.shape)}"
        )
    if min(array.shape[:2]) < 2:
        raise ImageError(f"image of shape {tuple(array.shape)} is too small; it needs at least 2x2 pixels")
    if array.dtype == np.bool_:
        array = array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError("the image array contains NaN or infinite values; clean it with np.nan_to_num first")
        if array.min() < 0 or array.max() > 1:
            raise ImageError(
                f"a float image must hold values in [0, 1], got [{array.min():.3g}, {array.max():.3g}]; "
                "divide by 255 or pass uint8"
            )
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise ImageError(f"an integer image must hold values in 0..255, got {array.min()}..{array.max()}")
        array = array.astype(np.uint8)
    if array.ndim == 2:
        return Image.fromarray(array, mode="L").convert("RGB")
    if array.shape[-1] == 4:
        return _pil_to_rgb(Image.fromarray(array, mode="RGBA"))
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def model_input(image: ImageLike, preprocess) -> torch.Tensor:
    """One model input ``[3, H, W]`` (unbatched, where ``preprocess`` left it) for any image.

    A float tensor ``[3, H, W]`` / ``[1, 3, H, W]`` is taken as already preprocessed and used as it
    is; anything else goes through :func:`to_rgb_image` and then ``preprocess``. The network's
    ``prepare`` and the dataset scan both prepare images here, so they agree on every input.
    """
    if isinstance(image, torch.Tensor):
        x = image.detach()
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3:
            raise ImageError(
                f"a tensor image must be a preprocessed input [3, H, W] or [1, 3, H, W]; got shape "
                f"{tuple(image.shape)} (pass PIL images or HxWx3 arrays to have them preprocessed)"
            )
        if not x.is_floating_point():
            raise ImageError("a tensor image must be float (a preprocessed input); pass uint8 data as a numpy array")
        return x
    x = preprocess(to_rgb_image(image))
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ImageError(
            f"preprocess must return a tensor [3, H, W], got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}"
        )
    return x
