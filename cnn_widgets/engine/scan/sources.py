"""Where a scan's images come from, how they reach the model in batches, and how image ``i`` is found again.

* a map-style ``torch.utils.data.Dataset`` yielding images or ``(image, label)``: ``dataset[i]``
  (labels also come from ``dataset.targets`` when the items are bare images);
* a ``DataLoader`` with a sequential sampler (``shuffle=False``) yielding ``[B, 3, H, W]`` tensors
  or ``(tensors, labels)``: ``loader.dataset[i]``;
* a folder: its image files (recursively, sorted by relative path), labelled by sub-folder when
  there are sub-folders: the file path (kept in saved scans);
* a list / tuple of PIL images, arrays, paths or preprocessed tensors ``[3, H, W]``: ``images[i]``.

Every image is prepared by :func:`~cnn_widgets.engine.images.model_input`, as in ``net.prepare``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

from ..errors import ImageError
from ..images import model_input
from .errors import ScanError
from .recipes import dataset_from_record, recipe_record

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase

__all__ = ["IMAGE_EXTENSIONS", "Source", "as_source", "plain_label", "source_from_record"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _split_item(item):
    """``(image, label)`` from a dataset item (``label`` None when there is none)."""
    if isinstance(item, (tuple, list)) and len(item) >= 2 and not isinstance(item[0], (int, float)):
        return item[0], item[1]
    return item, None


def plain_label(label):
    """A label as a plain Python value (tensors and numpy scalars unwrapped), so it saves as data."""
    if isinstance(label, torch.Tensor):
        return label.item() if label.numel() == 1 else label.tolist()
    if isinstance(label, np.generic):
        return label.item()
    return label


class _Prepared(Dataset):
    """Items ``start..`` of a source as ``(input tensor, label)``; runs in DataLoader workers."""

    def __init__(self, source: "Source", preprocess, start: int):
        self.source, self.preprocess, self.start = source, preprocess, start

    def __len__(self) -> int:
        return len(self.source) - self.start

    def __getitem__(self, i: int):
        image, label = _split_item(self.source.item(self.start + i))
        if label is None:
            label = self.source.label(self.start + i)
        return model_input(image, self.preprocess), plain_label(label)


def _collate(batch):
    xs = [b[0] for b in batch]
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ImageError(
            f"images in one batch preprocess to different sizes {sorted(shapes)}; give the network a preprocess "
            "that resizes to one size (e.g. cw.imagenet_preprocess()) or scan with batch_size=1"
        )
    return torch.stack(xs), [b[1] for b in batch]


class Source:
    """A sequence of images (a dataset or a list), and how to load image ``i`` and its label again."""

    kind = "items"

    def __init__(self, items, labels=None, description: str = ""):
        self.items = items
        if labels is None:
            # torchvision-style datasets that return bare images may still say what each one is
            targets = getattr(items, "targets", None)
            if targets is not None and not isinstance(items, (list, tuple)) and len(targets) == len(items):
                labels = targets  # read one at a time (label(i)): a dataset of 10**8 items costs nothing here
        self.labels = labels
        self.description = description

    def __len__(self) -> int:
        return len(self.items)

    def item(self, i: int):
        return self.items[i]

    def label(self, i: int):
        return None if self.labels is None else plain_label(self.labels[i])

    def image(self, i: int):
        """Image ``i`` as given by the source (PIL / path / array / tensor)."""
        return _split_item(self.item(i))[0]

    def batches(self, net: "NetworkBase", start: int, batch_size: int, num_workers: int):
        """``(inputs [B, 3, H, W] on the CPU, labels)`` for images ``start..``, in order."""
        loader = DataLoader(
            _Prepared(self, net.preprocess, start),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=_collate,
            persistent_workers=False,
        )
        yield from loader

    def record(self) -> dict:
        """What a saved scan keeps to find the images again: a dataset recipe, file paths, or nothing."""
        dataset = recipe_record(self.items)
        if dataset is not None:
            return {**dataset, "length": len(self)}
        if isinstance(self.items, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in self.items):
            return {"kind": "paths", "paths": [str(p) for p in self.items], "length": len(self)}
        return {"kind": "unsaved", "description": self.description, "length": len(self)}

    @property
    def class_names(self):
        classes = getattr(self.items, "classes", None)
        return [str(c) for c in classes] if classes is not None else None


class _FolderSource(Source):
    kind = "folder"

    def __init__(self, root: Path):
        files = sorted(
            (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: p.relative_to(root).as_posix(),
        )
        if not files:
            raise ScanError(f"the folder {str(root)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        self.root = root
        nested = any(p.parent != root for p in files)
        labels = [p.parent.relative_to(root).as_posix() for p in files] if nested else None
        super().__init__([str(p) for p in files], labels, f"folder {root}")
        self._classes = sorted(set(labels)) if labels else None

    def record(self) -> dict:
        return {"kind": "paths", "paths": list(self.items), "labels": self.labels, "length": len(self)}

    @property
    def class_names(self):
        return self._classes


class _LoaderSource(Source):
    """A user's DataLoader: iterated as it is; image ``i`` is ``loader.dataset[i]``."""

    kind = "loader"

    def __init__(self, loader: DataLoader):
        if isinstance(loader.dataset, IterableDataset) or not isinstance(loader.sampler, SequentialSampler):
            raise ScanError(
                "scan needs a DataLoader that visits its dataset in order (shuffle=False, no sampler), so "
                "image i can be found again for top_images; pass DataLoader(dataset, shuffle=False) or the dataset"
            )
        super().__init__(loader.dataset, None, f"DataLoader over {type(loader.dataset).__name__}")
        self.loader = loader

    def batches(self, net: "NetworkBase", start: int, batch_size: int, num_workers: int):
        loader = self.loader
        if start:
            subset = torch.utils.data.Subset(loader.dataset, range(start, len(loader.dataset)))
            loader = DataLoader(subset, batch_size=loader.batch_size, shuffle=False, num_workers=loader.num_workers,
                                collate_fn=loader.collate_fn, drop_last=loader.drop_last)
        for batch in loader:
            images, labels = _split_item(batch)
            if isinstance(images, torch.Tensor) and images.dim() == 4 and images.is_floating_point():
                x = images
            elif isinstance(images, (list, tuple)):
                x = torch.stack([model_input(im, net.preprocess) for im in images])
            else:
                raise ImageError(
                    "a DataLoader must yield float image batches [B, 3, H, W] (or (images, labels)); got "
                    f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}"
                )
            labels = [None] * len(x) if labels is None else [plain_label(v) for v in labels]
            yield x, labels

    def record(self) -> dict:
        if recipe_record(self.items) is not None:
            return super().record()
        return {"kind": "unsaved", "description": self.description, "length": len(self)}


def as_source(images) -> Source:
    """The :class:`Source` for whatever the user passed to ``scan`` (errors say what is accepted)."""
    if isinstance(images, Source):
        return images
    if isinstance(images, DataLoader):
        return _LoaderSource(images)
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        return _FolderSource(Path(images))
    if isinstance(images, IterableDataset):
        raise ScanError("scan needs a map-style dataset (with __len__ and __getitem__), not an IterableDataset")
    if isinstance(images, (str, os.PathLike)):
        raise ScanError(f"{str(images)!r} is not a folder; pass a folder of images, a Dataset, a DataLoader or a list")
    if isinstance(images, (torch.Tensor, np.ndarray)) and getattr(images, "ndim", 0) == 4:
        return Source(list(images), None, f"{type(images).__name__} batch")
    if hasattr(images, "__getitem__") and hasattr(images, "__len__"):
        if len(images) == 0:
            raise ScanError("there are no images to scan (the dataset is empty)")
        return Source(images, None, f"{type(images).__name__} of {len(images)} images")
    raise ScanError(
        f"cannot scan an object of type {type(images).__name__}; pass a torch Dataset or DataLoader, a folder "
        "path or a list of images"
    )


def source_from_record(record: dict, where: str = "the scan file") -> Source | None:
    """The images a saved record names (``None`` when it names none); only data is read, no code is run."""
    kind = record.get("kind")
    if kind == "unsaved":
        return None
    if kind == "paths":
        paths, labels = record.get("paths"), record.get("labels")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths) or not (
                labels is None or (isinstance(labels, list) and len(labels) == len(paths))):
            raise ScanError(f"{where} lists its image files in a form this version cannot read; pass the images: "
                            "Scan.load(path, net, images=...)")
        return Source(list(paths), labels, "saved paths")
    dataset = dataset_from_record(record, where)  # refuses anything but the package's own datasets
    return Source(dataset, None, f"{record.get('name') or record.get('function')}({record.get('kwargs')})")
