"""Turning whatever the user holds into an RGB PIL image, and the offline sample photos."""

from __future__ import annotations

import hashlib

import os
import struct
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

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


_SAMPLE_DIGESTS: dict[str, tuple[tuple[int, int], str]] = {}  # name -> (size, digest of its RGB bytes), filled lazily


def sample_name(image) -> str | None:
    """The name of the sample photo ``image`` is (a ``PIL.Image`` with the very same pixels), else ``None``.

    So a sample passed by value (``cw.Explorer(net, cw.sample_image("cat"))``) is named as one.
    """
    if not isinstance(image, Image.Image) or image.mode != "RGB":
        return None
    digest = None
    for name in SAMPLE_IMAGES:
        if name not in _SAMPLE_DIGESTS:
            sample = sample_image(name)
            _SAMPLE_DIGESTS[name] = (sample.size, hashlib.blake2b(sample.tobytes(), digest_size=16).hexdigest())
        size, sample_digest = _SAMPLE_DIGESTS[name]
        if size == image.size:
            digest = digest or hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
            if digest == sample_digest:
                return name
    return None


def to_rgb_image(image: ImageLike) -> Image.Image:
    """Convert a PIL image, a file path or an ``HxW`` / ``HxWx{1,3,4}`` array to an RGB PIL image.

    Arrays: uint8 is taken as 0..255, float and bool as 0..1. PIL images and files: the EXIF
    orientation is applied (phone photos come out upright); 16-bit grayscale (modes ``I;16*``) is
    scaled from 0..65535 to 0..255; mode ``I`` (32-bit integers) likewise when it holds 16-bit
    values, as is when it holds 8-bit ones, and min-max scaled otherwise; mode ``F`` (floats) is
    taken as 0..1 when it lies there and min-max scaled otherwise. Grayscale is replicated to three
    channels; RGBA and palette transparency are composited onto white.

    Raises
    ------
    ImageError
        For anything that is not a readable, non-empty image (a missing, corrupt or truncated file, a
        decompression bomb, an empty image, NaN values, a wrong array shape), with the fix.
    """
    if isinstance(image, Image.Image):
        with _decoding("the PIL image"):
            return _pil_to_rgb(_upright(image))
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise ImageError(f"image file not found: {str(path)!r}; pass an existing path, a PIL image or an array")
        with _decoding(repr(str(path))), Image.open(path) as opened:
            return _pil_to_rgb(_upright(opened))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageError(
        f"cannot use an object of type {type(image).__name__} as an image; pass a PIL image, a file path, "
        "an HxWx3 array (uint8 0..255 or float 0..1) or a preprocessed tensor [3, H, W]"
    )


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Turn PIL's decoding errors (raised on open or on the lazy first load) into ImageErrors."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{what} is too large to decode safely ({exc}); PIL refuses images this big as a guard against "
            "decompression-bomb attacks. Resize it first (e.g. with an image editor or PIL's Image.thumbnail "
            "after raising the limit), or, if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from exc
    # PIL's format plugins report broken data as any of these
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageError(
            f"cannot read {what} as an image ({type(exc).__name__}: {exc}); the file may be truncated, corrupt "
            "or not an image -- re-save it as PNG/JPEG (PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True reads what "
            "a truncated file holds)"
        ) from exc


def _upright(image: Image.Image) -> Image.Image:
    """The image as it is meant to be seen: rotated/flipped by its EXIF orientation tag, if any."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError, struct.error):
        return image  # unreadable EXIF: the pixels themselves are still fine
    # exif_transpose drops the tag from its result, so an already-upright image is not turned twice
    return ImageOps.exif_transpose(image) if orientation not in (None, 1) else image


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageError(f"the image is empty ({width}x{height} pixels); pass an image with at least one pixel")
    if min(width, height) < 2:  # the rule for arrays too (_array_to_rgb): one row or column is no picture
        raise ImageError(f"image of {width}x{height} pixels is too small; it needs at least 2x2 pixels")
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode == "I" or mode.startswith("I;16"):
        return _gray_to_rgb(_integer_to_unit(np.asarray(image), sixteen_bit=mode != "I"))
    if mode == "F":
        return _gray_to_rgb(_float_to_unit(np.asarray(image, dtype=np.float64)))
    if mode in ("RGBA", "LA", "PA", "RGBa", "P"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError(
            f"cannot convert a PIL image of mode {mode!r} to RGB ({exc}); convert it yourself first"
        ) from exc


def _integer_to_unit(values: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    """Integer pixels as floats in [0, 1], scaled from the range they were stored in.

    Converting with PIL would clip 16-bit values at 255, which turns almost every pixel white.
    """
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if sixteen_bit or (low >= 0 and 255 < high <= 65535):
        return values / 65535.0
    if low >= 0 and high <= 255:
        return values / 255.0
    return _min_max(values)


def _float_to_unit(values: np.ndarray) -> np.ndarray:
    """Float pixels (PIL mode ``F``) in [0, 1]: as they are if they lie there, else min-max scaled."""
    if not np.isfinite(values).all():
        raise ImageError("the image (PIL mode 'F') contains NaN or infinite values; clean it with np.nan_to_num first")
    if values.min() >= 0 and values.max() <= 1:
        return values
    return _min_max(values)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)  # constant: black


def _gray_to_rgb(unit: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(unit * 255.0).astype(np.uint8), mode="L").convert("RGB")


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


#: The channel count each preprocess produces for an ordinary RGB picture (learnt once per callable).
_CHANNELS: "weakref.WeakKeyDictionary[Any, int | None]" = weakref.WeakKeyDictionary()


def _expected_channels(preprocess: Callable) -> int | None:
    """How many channels ``preprocess`` gives a normal RGB image (``None`` if it cannot tell)."""
    try:
        return _CHANNELS[preprocess]
    except (KeyError, TypeError):
        pass
    try:
        probe = preprocess(Image.new("RGB", (256, 256), (128, 128, 128)))
        channels = int(probe.shape[0]) if isinstance(probe, torch.Tensor) and probe.dim() == 3 else None
    except Exception:  # a preprocess that cannot take the probe still takes the user's tensors unchecked
        channels = None
    try:
        _CHANNELS[preprocess] = channels
    except TypeError:  # not weak-referenceable: probe again next time
        pass
    return channels


def _check_tensor(image: torch.Tensor, preprocess: Callable) -> torch.Tensor:
    """A preprocessed tensor ``[C, H, W]`` / ``[1, C, H, W]`` as ``[C, H, W]``; wrong layouts refused."""
    x = image.detach()
    shape = tuple(image.shape)
    if x.dim() == 4 and x.shape[0] != 1:
        raise ImageError(
            f"a tensor image is one preprocessed input [C, H, W] or [1, C, H, W]; got a batch of {shape[0]} "
            f"{shape}. Pass one image at a time (x[i]), or use net.scan for many images"
        )
    if x.dim() == 4:
        x = x[0]
    if x.dim() != 3:
        raise ImageError(
            f"a tensor image must be a preprocessed input [C, H, W] or [1, C, H, W]; got shape {shape} "
            "(pass PIL images or HxWx3 arrays to have them preprocessed"
            + (", or add the channel dimension with x[None] for a grayscale model)" if x.dim() == 2 else ")")
        )
    if not x.is_floating_point():
        raise ImageError("a tensor image must be float (a preprocessed input); pass uint8 data as a numpy array")
    channels = _expected_channels(preprocess)
    if channels is not None:
        wrong = x.shape[0] != channels
    else:  # no channel count to compare with: catch the unmistakable channels-last case only
        wrong = x.shape[-1] in (1, 3, 4) and x.shape[0] > 4
        channels = x.shape[-1]
    if wrong:
        hint = (
            f"it looks channels-last (H x W x {channels}); use x.permute(2, 0, 1)"
            if x.shape[-1] == channels
            else "pass a PIL image or an HxWx3 array to have it preprocessed"
        )
        raise ImageError(
            f"a tensor image must be a preprocessed input [{channels}, H, W] (channels first, as the "
            f"preprocess makes it); got shape {shape}: {hint}"
        )
    # the largest and smallest values are finite exactly when all are (a NaN anywhere makes both
    # NaN): two reductions without the bool copy of torch.isfinite, about 15x faster per image
    if x.numel() and not (np.isfinite(x.amax().item()) and np.isfinite(x.amin().item())):
        raise ImageError("the image tensor contains NaN or infinite values; clean it with torch.nan_to_num first")
    return x


def model_input(image: ImageLike, preprocess: Callable) -> torch.Tensor:
    """One model input ``[C, H, W]`` (unbatched, where ``preprocess`` left it) for any image.

    A float tensor ``[C, H, W]`` / ``[1, C, H, W]`` is taken as already preprocessed and used as it
    is, once its layout is checked against what ``preprocess`` makes of an RGB picture (a
    channels-last ``[H, W, C]`` tensor, a batch, or a wrong channel count is refused before it can
    reach the model); anything else goes through :func:`to_rgb_image` and then ``preprocess``. The
    network's ``prepare`` and the dataset scan both prepare images here, so they agree on every input.
    """
    if isinstance(image, torch.Tensor):
        return _check_tensor(image, preprocess)
    x = preprocess(to_rgb_image(image))
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ImageError(
            f"preprocess must return a tensor [C, H, W], got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}"
        )
    return x
