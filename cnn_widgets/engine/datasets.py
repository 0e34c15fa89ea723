"""Offline datasets for demos, lectures and tests: nothing here downloads anything.

* :func:`digits`: scikit-learn's 8x8 handwritten digits (1,797 images, labels 0..9), split into a
  deterministic train / test pair (the data ship inside scikit-learn).
* :func:`photos`: the real photographs bundled inside the scikit-image package (colour, plus the
  grayscale ones converted to RGB). Only files present in the installed package are used, so
  scikit-image's download-on-demand images (``kidney``, ``lily``, ...) are never fetched.
* :func:`faces`: scikit-image's LFW subset (100 faces, 100 non-faces, 25x25).
* :func:`augmented_photos`: deterministic crops / flips / scales of the colour photos, so an
  ImageNet model has a few hundred real images to rank (``net.scan(cw.datasets.augmented_photos())``).

Each dataset is a ``torch.utils.data.Dataset`` returning PIL images (with a label where one exists),
in the style of torchvision (``transform=`` / ``.targets`` / ``.classes``). Datasets made here
carry a ``recipe``: the name of their factory in :data:`DATASETS` and its keyword arguments as
plain values, so a saved scan can re-create them by name (a scan file holds data, never code).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .checks import check_float, check_int
from .digits_dataset import Digits, DigitsDataset, digits, digits_split
from .errors import ImageError, OptionError
from .images import to_rgb_image

__all__ = [
    "COLOUR_PHOTOS", "DATASETS", "GRAYSCALE_PHOTOS", "AugmentedPhotos", "Digits", "DigitsDataset", "Faces",
    "Photos", "augmented_photos", "digits", "digits_split", "faces", "photos",
]

#: Colour photos bundled with scikit-image: name -> (loader function, file that must exist offline).
COLOUR_PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea": ("chelsea", "chelsea.png"),
    "coffee": ("coffee", "coffee.png"),
    "rocket": ("rocket", "rocket.jpg"),
    "astronaut": ("astronaut", "astronaut.png"),
    "hubble_deep_field": ("hubble_deep_field", "hubble_deep_field.jpg"),
    "immunohistochemistry": ("immunohistochemistry", "ihc.png"),
    "retina": ("retina", "retina.jpg"),
    "colorwheel": ("colorwheel", "color.png"),
    "motorcycle": ("stereo_motorcycle", "motorcycle_left.png"),
    "logo": ("logo", "logo.png"),
}

#: Grayscale photos bundled with scikit-image (converted to RGB by replicating the channel).
GRAYSCALE_PHOTOS: dict[str, tuple[str, str]] = {
    "camera": ("camera", "camera.png"),
    "coins": ("coins", "coins.png"),
    "moon": ("moon", "moon.png"),
    "page": ("page", "page.png"),
    "text": ("text", "text.png"),
    "brick": ("brick", "brick.png"),
    "grass": ("grass", "grass.png"),
    "gravel": ("gravel", "gravel.png"),
    "clock": ("clock", "clock_motion.png"),
    "cell": ("cell", "cell.png"),
    "microaneurysms": ("microaneurysms", "microaneurysms.png"),
    "horse": ("horse", "horse.png"),
    "phantom": ("shepp_logan_phantom", "phantom.png"),
}


def _skimage_data_dir() -> str:
    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data")


@functools.lru_cache(maxsize=None)
def _load_photo(name: str) -> Image.Image:
    """One bundled photo as an RGB PIL image (cached; callers get copies)."""
    import skimage.data

    table = {**COLOUR_PHOTOS, **GRAYSCALE_PHOTOS}
    function, filename = table[name]
    if not os.path.exists(os.path.join(_skimage_data_dir(), filename)):
        # scikit-image would try to download it: refuse, we are offline by contract.
        raise ImageError(f"scikit-image's photo {name!r} is not bundled in this installation ({filename} missing)")
    array = getattr(skimage.data, function)()
    if isinstance(array, tuple):  # stereo_motorcycle -> (left, right, disparity)
        array = array[0]
    return to_rgb_image(array)


def _check_names(names, what: str = "names") -> list[str]:
    """A non-empty list of bundled photo names, checked before anything is loaded."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise OptionError(f"{what} must be a list of photo names, got {names!r}")
    if not names:
        raise OptionError(f"{what} is empty; name at least one photo ({', '.join(list(COLOUR_PHOTOS)[:4])}, ...) "
                          "or leave it out for all of them")
    unknown = [n for n in names if n not in COLOUR_PHOTOS and n not in GRAYSCALE_PHOTOS]
    if unknown:
        raise ImageError(
            f"unknown photo(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; choose from "
            f"{', '.join(list(COLOUR_PHOTOS) + list(GRAYSCALE_PHOTOS))}"
        )
    return list(names)


def available_photos(grayscale: bool = True) -> list[str]:
    """Names of the bundled photos present in this scikit-image installation (no download)."""
    names = list(COLOUR_PHOTOS) + (list(GRAYSCALE_PHOTOS) if grayscale else [])
    table = {**COLOUR_PHOTOS, **GRAYSCALE_PHOTOS}
    data_dir = _skimage_data_dir()
    return [n for n in names if os.path.exists(os.path.join(data_dir, table[n][1]))]


# ------------------------------------------------------------------------------------------
# photos
# ------------------------------------------------------------------------------------------


class Photos(Dataset):
    """scikit-image's bundled photos as RGB PIL images; ``photos[i]`` or ``photos.image(name)``.

    ``targets[i] = i`` and ``classes`` are the photo names, so an embedding can be coloured by photo.
    """

    def __init__(self, names: Sequence[str], transform: Callable | None = None):
        self.names = list(names)
        self.classes = list(self.names)
        self.targets = list(range(len(self.names)))
        self.transform = transform
        self.recipe = ("photos", {"names": self.names})

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int):
        image = _load_photo(self.names[index]).copy()
        return self.transform(image) if self.transform is not None else image

    def image(self, name: str) -> Image.Image:
        if name not in self.names:
            raise ImageError(f"no photo {name!r}; choose one of {', '.join(self.names)}")
        return self[self.names.index(name)]

    def as_dict(self) -> dict[str, Image.Image]:
        return {name: self[i] for i, name in enumerate(self.names)}

    def __repr__(self) -> str:
        return f"Photos({len(self)} images: {', '.join(self.names)})"


def photos(grayscale: bool = True, names: Sequence[str] | None = None, transform: Callable | None = None) -> Photos:
    """The real photos that ship inside scikit-image, as a dataset of RGB PIL images.

    Parameters
    ----------
    grayscale
        Also include the grayscale photos (camera, coins, moon, ...), converted to RGB.
    names
        Pick photos by name (see :data:`COLOUR_PHOTOS`, :data:`GRAYSCALE_PHOTOS`).
    transform
        Applied to each PIL image (torchvision style).
    """
    names = available_photos(grayscale) if names is None else _check_names(names)
    return Photos(names, transform)


# ------------------------------------------------------------------------------------------
# augmented photos
# ------------------------------------------------------------------------------------------


#: The largest side of an augmented photo (a recipe asking for more is refused before any image is made).
MAX_SIZE = 4096


class _CycleTargets(Sequence):
    """``targets[i] = i % classes`` for ``n`` items, computed on access (no list of ``n`` entries)."""

    def __init__(self, n: int, classes: int):
        self.n, self.classes = n, classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [i % self.classes for i in range(*index.indices(self.n))]
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} targets")
        return (index % self.n) % self.classes

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, tuple, Sequence)) else NotImplemented


class AugmentedPhotos(Dataset):
    """Deterministic random crops / scales / flips of the bundled colour photos.

    Item ``i`` depends only on ``(seed, i)`` (not on the order items are read in, nor on the
    DataLoader workers): photo ``i % len(names)``, a square crop whose side is a random fraction
    (``scale``) of the photo's short side at a random place, mirrored with probability 1/2, resized
    to ``size x size``. ``targets[i]`` is the index of the source photo, ``classes`` its names.
    """

    def __init__(
        self,
        n: int = 300,
        seed: int = 0,
        size: int = 256,
        scale: tuple[float, float] = (0.3, 1.0),
        names: Sequence[str] | None = None,
        transform: Callable | None = None,
    ):
        # every argument checked before anything is built (a saved scan's recipe may name any values)
        self.n = check_int("n", n)
        self.seed = check_int("seed", seed, low=0, high=2**63 - 1)
        self.size = check_int("size", size, low=8, high=MAX_SIZE)
        if isinstance(scale, (str, bytes)) or not isinstance(scale, Sequence) or len(scale) != 2:
            raise OptionError(f"scale must be a pair (smallest, largest) of crop fractions in (0, 1], got {scale!r}")
        self.scale = (check_float("scale[0]", scale[0], 0.0, 1.0, open_low=True),
                      check_float("scale[1]", scale[1], 0.0, 1.0, open_low=True))
        if self.scale[0] > self.scale[1]:
            raise OptionError(f"scale must be (smallest, largest) with smallest <= largest, got {scale!r}")
        self.names = _check_names(names) if names is not None else available_photos(grayscale=False)
        self.classes = list(self.names)
        self.targets = _CycleTargets(self.n, len(self.names))
        self.transform = transform
        self.recipe = (
            "augmented_photos",
            {"n": self.n, "seed": self.seed, "size": self.size, "scale": list(self.scale), "names": self.names},
        )

    def __len__(self) -> int:
        return self.n

    def params(self, index: int) -> dict:
        """The crop box ``(left, top, right, bottom)`` in the source photo and the flip of item ``index``."""
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} augmented photos")
        name = self.names[index % len(self.names)]
        width, height = _load_photo(name).size
        rng = np.random.default_rng([self.seed, index])
        side = int(round(min(width, height) * rng.uniform(*self.scale)))
        side = max(8, min(side, width, height))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        flip = bool(rng.integers(0, 2))
        return {"photo": name, "box": (left, top, left + side, top + side), "flip": flip}

    def __getitem__(self, index: int):
        if index < 0:
            index += self.n
        p = self.params(index)
        image = _load_photo(p["photo"]).crop(p["box"]).resize((self.size, self.size), Image.BILINEAR)
        if p["flip"]:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return self.transform(image) if self.transform is not None else image

    def __repr__(self) -> str:
        return f"AugmentedPhotos(n={self.n}, seed={self.seed}, size={self.size}, photos={len(self.names)})"


def augmented_photos(
    n: int = 300,
    seed: int = 0,
    size: int = 256,
    scale: tuple[float, float] = (0.3, 1.0),
    names: Sequence[str] | None = None,
    transform: Callable | None = None,
) -> AugmentedPhotos:
    """``n`` deterministic crops / flips / scales of the bundled colour photos (PIL, ``size x size``).

    Real images (not noise) for ranking units of an ImageNet model offline; see :class:`AugmentedPhotos`.
    """
    return AugmentedPhotos(n=n, seed=seed, size=size, scale=scale, names=names, transform=transform)


# ------------------------------------------------------------------------------------------
# faces
# ------------------------------------------------------------------------------------------


class Faces(Dataset):
    """scikit-image's LFW subset: 200 grayscale 25x25 crops, the first 100 faces, the rest not.

    ``dataset[i]`` is ``(RGB PIL image, label)`` with label 1 for a face and 0 for a non-face.
    """

    classes = ["non-face", "face"]

    def __init__(self, transform: Callable | None = None):
        import skimage.data

        if not os.path.exists(os.path.join(_skimage_data_dir(), "lfw_subset.npy")):
            raise ImageError("scikit-image's LFW subset (lfw_subset.npy) is not bundled in this installation")
        self.images = np.asarray(skimage.data.lfw_subset(), dtype=np.float64)
        self.targets = [1] * 100 + [0] * (len(self.images) - 100)
        self.transform = transform
        self.recipe = ("faces", {})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = to_rgb_image(np.clip(self.images[index], 0.0, 1.0))
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def faces(transform: Callable | None = None) -> Faces:
    """scikit-image's bundled face subset (LFW): 100 faces and 100 non-faces, labelled 1 / 0."""
    return Faces(transform)


# ------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------

#: The datasets a saved scan may name, by the ``recipe`` name their datasets carry. Loading a scan
#: file calls only these, with plain keyword arguments (``transform`` excepted); add a dataset
#: here to make scans of it re-create their images on load.
DATASETS: dict[str, Callable[..., Dataset]] = {
    "photos": photos,
    "augmented_photos": augmented_photos,
    "digits_split": digits_split,
    "faces": faces,
}
