"""scikit-learn's 8x8 handwritten digits as a deterministic train / test split (no download: the data
ship inside scikit-learn). Part of :mod:`cnn_widgets.engine.datasets`, which registers :func:`digits_split`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .checks import check_choice, check_float, check_int
from .errors import OptionError

__all__ = ["Digits", "DigitsDataset", "digits", "digits_split"]




class DigitsDataset(Dataset):
    """A split of scikit-learn's digits.

    Attributes
    ----------
    images
        float tensor ``[n, 8, 8]`` in [0, 1] (the original 0..16 values divided by 16).
    targets
        int64 tensor ``[n]`` of labels 0..9.
    indices
        Positions of these images in ``sklearn.datasets.load_digits()``.

    ``dataset[i]`` is ``(image, label)``: an 8x8 grayscale ``PIL.Image`` (mode "L", 0..255; or
    ``transform(image)``) and an int, like torchvision's MNIST.
    """

    classes = [str(d) for d in range(10)]

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, indices: np.ndarray, split: str,
                 transform: Callable | None = None, recipe: tuple[str, dict] | None = None):
        self.images, self.targets, self.indices, self.split = images, targets, indices, split
        self.transform = transform
        self.recipe = recipe

    def __len__(self) -> int:
        return len(self.targets)

    def pil(self, index: int) -> Image.Image:
        array = (self.images[index].numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(array, mode="L")

    def __getitem__(self, index: int):
        image = self.pil(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __repr__(self) -> str:
        return f"DigitsDataset({self.split}, {len(self)} images 8x8, labels 0..9)"


@dataclass(frozen=True)
class Digits:
    """scikit-learn's digits, split deterministically: ``.train``, ``.test`` and ``.classes``."""

    train: DigitsDataset
    test: DigitsDataset
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))


@functools.lru_cache(maxsize=8)
def _digits_arrays(test_fraction: float, seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()  # ships inside scikit-learn: no download
    images = data.images.astype(np.float32) / 16.0
    indices = np.arange(len(images))
    train_idx, test_idx = train_test_split(
        indices, test_size=test_fraction, random_state=seed, stratify=data.target
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return images, data.target.astype(np.int64), train_idx, test_idx


def digits(test_fraction: float = 0.25, seed: int = 0, transform: Callable | None = None) -> Digits:
    """scikit-learn's 8x8 digits with labels, split train / test deterministically (stratified).

    Parameters
    ----------
    test_fraction
        Share of the 1,797 images held out (default 25%: 1,347 train / 450 test).
    seed
        Seed of the stratified split (same seed, same split, on any machine).
    transform
        Applied to each 8x8 PIL image (e.g. a network's ``preprocess``).
    """
    test_fraction, seed = _check_split(test_fraction, seed)
    if test_fraction >= 1.0:
        raise OptionError("test_fraction must be below 1 (a share of the images held out), got 1.0")
    images, labels, train_idx, test_idx = _digits_arrays(test_fraction, seed)

    def split(idx, name):
        recipe = ("digits_split", {"split": name, "test_fraction": float(test_fraction), "seed": int(seed)})
        return DigitsDataset(torch.from_numpy(images[idx]), torch.from_numpy(labels[idx]), idx, name, transform, recipe)

    return Digits(train=split(train_idx, "train"), test=split(test_idx, "test"))


def digits_split(split: str = "test", test_fraction: float = 0.25, seed: int = 0) -> DigitsDataset:
    """One split of :func:`digits`, ``"train"`` or ``"test"`` (used to re-create a saved scan's images)."""
    check_choice("split", split, ("train", "test"))
    return getattr(digits(test_fraction, seed), split)


def _check_split(test_fraction, seed) -> tuple[float, int]:
    return (check_float("test_fraction", test_fraction, 0.0, 1.0, open_low=True),
            check_int("seed", seed, low=0, high=2**32 - 1))
