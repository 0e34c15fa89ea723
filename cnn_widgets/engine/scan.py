"""Dataset scans: one forward pass over many images, bounded memory, resumable.

``scan(net, images)`` (``net.scan(images)``) runs the network once over a dataset and keeps, for
every channel ``c`` of every scanned layer ``L``:

* the top-``k`` images by spatial maximum ``m_i = max_{y,x} h^L_c(image_i)[y, x]`` with the
  position of that maximum: the "maximally activating images / patches" of Zeiler & Fergus
  ("Visualizing and Understanding Convolutional Networks", 2014, fig. 2) and Girshick et al.
  (R-CNN, 2014, pool5 units). Order: value descending, ties broken by the lower image index; a tie
  of positions inside one map goes to the first in row-major order. The result is independent of
  the batch size and of where a scan was interrupted and resumed;
* running statistics: mean activation, maximum, fraction of positions that are exactly zero
  (the sparsity of a rectified layer) and the number of images on which the channel fires at all
  (``m_i > 0``), from which :meth:`Scan.dead_channels` flags dead filters (cs231n notes);
* a code per image: the global average pool of the layer (``[N, C]`` float per layer; the only
  memory that grows with the number of images, ``4 * N * C`` bytes in float32) for embeddings
  (PCA, t-SNE of CNN codes, Karpathy's cnnembed; lecture seed 003).

Everything else is bounded by ``k`` and the channel counts. Images are loaded and preprocessed
by a DataLoader (``num_workers`` in parallel) and scanned in batches under ``torch.no_grad`` and
``inference_state`` (eval mode, frozen parameters, flags restored afterwards); each layer is
reduced inside its forward hook as soon as its output exists (hooks removed after every batch, on
error and on Ctrl-C too), so the pass costs the plain forward plus a few reductions.

Sources and how image ``i`` is found again (for :meth:`Scan.top_images`):

* a map-style ``torch.utils.data.Dataset`` yielding images or ``(image, label)``: ``dataset[i]``
  (labels also come from ``dataset.targets`` when the items are bare images);
* a ``DataLoader`` with a sequential sampler (``shuffle=False``) yielding ``[B, 3, H, W]`` tensors
  or ``(tensors, labels)``: ``loader.dataset[i]``;
* a folder: its image files (recursively, sorted by relative path), labelled by sub-folder when
  there are sub-folders: the file path (kept in saved scans);
* a list / tuple of PIL images, arrays, paths or preprocessed tensors ``[3, H, W]``: ``images[i]``.

Images are PIL images, paths, arrays (run through ``net.preprocess``) or float tensors
``[3, H, W]`` (taken as model inputs as they are), as everywhere in the engine.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler

from .errors import CnnWidgetsError, ImageError, LayerNotFoundError, NonFiniteError, TargetError
from .hooks import StopForward, inference_state
from .images import to_rgb_image
from .targets import Unit

if TYPE_CHECKING:  # pragma: no cover
    from .network import Network

__all__ = ["Scan", "ScanError", "ChannelStats", "TopImage", "scan", "default_scan_layers", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
FORMAT = "cnn_widgets.scan"
VERSION = 1
#: Networks with at most this many spatial explorable layers are scanned at every layer by default.
SMALL_NET_LAYERS = 16


class ScanError(CnnWidgetsError):
    """A scan cannot be run, resumed, saved or loaded as asked."""


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------


@dataclass
class TopImage:
    """One of a unit's maximally activating images (Zeiler & Fergus fig. 2: patch and reconstruction).

    Attributes
    ----------
    index
        Image index in the scanned source.
    value
        The unit's spatial maximum on that image.
    position
        ``(y, x)`` of that maximum on the layer's map (``None`` for a non-spatial layer).
    box
        Receptive field of that position in the input: ``(top, left, bottom, right)``, exclusive
        ends, clipped to the image.
    image
        The whole input as displayed (``H x W x 3`` uint8: preprocessing without normalisation).
    crop
        ``image[top:bottom, left:right]``.
    reconstruction
        Deconvnet (or guided-backprop / gradient) picture of this unit at this position, computed
        w.r.t. the input, cropped like ``crop`` and scaled for display: grey is 0,
        ``0.5 + 0.5 * clip(r / p99(|r|), -1, 1)`` per crop (``None`` when not asked for).
    raw_reconstruction
        The same crop, unscaled (float32 ``h x w x 3``).
    label
        The image's label when the source gives labels.
    """

    index: int
    value: float
    position: tuple[int, int] | None
    box: tuple[int, int, int, int]
    image: np.ndarray
    crop: np.ndarray
    reconstruction: np.ndarray | None = None
    raw_reconstruction: np.ndarray | None = field(default=None, repr=False)
    label: Any = None


@dataclass
class ChannelStats:
    """Per-channel statistics of one layer over the scanned images (arrays of length C)."""

    mean: np.ndarray
    max: np.ndarray
    fraction_zero: np.ndarray
    fraction_images_firing: np.ndarray
    images: int


@dataclass
class _LayerState:
    """Running state of one layer. Replaced as a whole after each batch (never mutated)."""

    top_values: torch.Tensor  # [C, k] model dtype, -inf where empty
    top_index: torch.Tensor  # [C, k] int64, -1 where empty
    top_y: torch.Tensor  # [C, k] int64 row of the maximum on the map
    top_x: torch.Tensor  # [C, k] int64 column
    code_sum: torch.Tensor  # [C] float64, sum over images of the spatial mean
    max: torch.Tensor  # [C] model dtype
    zeros: torch.Tensor  # [C] int64, positions exactly 0
    firing: torch.Tensor  # [C] int64, images whose spatial max > 0


@dataclass
class _State:
    count: int
    layers: dict[str, _LayerState]


class _Rows:
    """A growable ``[N, ...]`` array; rows past ``count`` are scratch (invisible until committed)."""

    def __init__(self, width: int | None, dtype, capacity: int):
        self.width, self.dtype = width, dtype
        shape = (max(capacity, 1),) if width is None else (max(capacity, 1), width)
        self.data = np.empty(shape, dtype=dtype) if dtype is not object else np.full(shape, None, dtype=object)

    def write(self, start: int, rows) -> None:
        end = start + len(rows)
        if end > len(self.data):
            grown = max(end, 2 * len(self.data))
            shape = (grown,) if self.width is None else (grown, self.width)
            new = np.empty(shape, dtype=self.dtype) if self.dtype is not object else np.full(shape, None, dtype=object)
            new[: len(self.data)] = self.data
            self.data = new
        if self.dtype is object:
            for j, r in enumerate(rows):
                self.data[start + j] = r
        else:
            self.data[start:end] = rows


# ------------------------------------------------------------------------------------------
# sources
# ------------------------------------------------------------------------------------------


def _to_input(item, preprocess) -> torch.Tensor:
    """A model input ``[3, H, W]`` (not batched, on the CPU) for one image, like ``Network.prepare``."""
    if isinstance(item, torch.Tensor) and item.is_floating_point():
        x = item.detach()
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3:
            raise ImageError(f"a tensor image must be a preprocessed input [3, H, W]; got shape {tuple(item.shape)}")
        return x
    x = preprocess(to_rgb_image(item))
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ImageError(f"preprocess must return a tensor [3, H, W], got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    return x


def _split_item(item):
    """``(image, label)`` from a dataset item (``label`` None when there is none)."""
    if isinstance(item, (tuple, list)) and len(item) >= 2 and not isinstance(item[0], (int, float)):
        return item[0], item[1]
    return item, None


def _plain_label(label):
    if isinstance(label, torch.Tensor):
        return label.item() if label.numel() == 1 else label.tolist()
    if isinstance(label, np.generic):
        return label.item()
    return label


class _Prepared(Dataset):
    """Items ``start..`` of a source as ``(input tensor, label)``; runs in DataLoader workers."""

    def __init__(self, source: "_Source", preprocess, start: int):
        self.source, self.preprocess, self.start = source, preprocess, start

    def __len__(self) -> int:
        return len(self.source) - self.start

    def __getitem__(self, i: int):
        image, label = _split_item(self.source.item(self.start + i))
        if label is None:
            label = self.source.label(self.start + i)
        return _to_input(image, self.preprocess), _plain_label(label)


def _collate(batch):
    xs = [b[0] for b in batch]
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ImageError(
            f"images in one batch preprocess to different sizes {sorted(shapes)}; give the network a preprocess "
            "that resizes to one size (e.g. cw.imagenet_preprocess()) or scan with batch_size=1"
        )
    return torch.stack(xs), [b[1] for b in batch]


class _Source:
    """Where the scanned images come from, and how image ``i`` is loaded again."""

    kind = "items"

    def __init__(self, items, labels=None, description: str = ""):
        self.items = items
        if labels is None:
            # torchvision-style datasets that return bare images may still say what each one is
            targets = getattr(items, "targets", None)
            if targets is not None and not isinstance(items, (list, tuple)) and len(targets) == len(items):
                labels = [_plain_label(t) for t in targets]
        self.labels = labels
        self.description = description

    def __len__(self) -> int:
        return len(self.items)

    def item(self, i: int):
        return self.items[i]

    def label(self, i: int):
        return None if self.labels is None else self.labels[i]

    def image(self, i: int):
        """Image ``i`` as given by the source (PIL / path / array / tensor)."""
        return _split_item(self.item(i))[0]

    def batches(self, net: "Network", start: int, batch_size: int, num_workers: int):
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
        recipe = getattr(self.items, "recipe", None)
        if recipe is not None:
            module, function, kwargs = recipe
            return {"kind": "recipe", "module": module, "function": function, "kwargs": kwargs, "length": len(self)}
        if isinstance(self.items, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in self.items):
            return {"kind": "paths", "paths": [str(p) for p in self.items], "length": len(self)}
        return {"kind": "unsaved", "description": self.description, "length": len(self)}

    @property
    def class_names(self):
        classes = getattr(self.items, "classes", None)
        return [str(c) for c in classes] if classes is not None else None


class _FolderSource(_Source):
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


class _LoaderSource(_Source):
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

    def batches(self, net: "Network", start: int, batch_size: int, num_workers: int):
        loader = self.loader
        if start:
            subset = torch.utils.data.Subset(loader.dataset, range(start, len(loader.dataset)))
            loader = DataLoader(subset, batch_size=loader.batch_size, shuffle=False, num_workers=loader.num_workers,
                                collate_fn=loader.collate_fn, drop_last=loader.drop_last)
        for batch in loader:
            images, labels = batch, None
            if isinstance(batch, (tuple, list)) and len(batch) >= 2 and not isinstance(batch[0], (int, float)):
                images, labels = batch[0], batch[1]
            if isinstance(images, torch.Tensor) and images.dim() == 4 and images.is_floating_point():
                x = images
            elif isinstance(images, (list, tuple)):
                x = torch.stack([_to_input(im, net.preprocess) for im in images])
            else:
                raise ImageError(
                    "a DataLoader must yield float image batches [B, 3, H, W] (or (images, labels)); got "
                    f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}"
                )
            n = len(x)
            if labels is None:
                labels = [None] * n
            elif isinstance(labels, torch.Tensor):
                labels = [_plain_label(v) for v in labels]
            else:
                labels = [_plain_label(v) for v in labels]
            yield x, labels

    def record(self) -> dict:
        recipe = getattr(self.items, "recipe", None)
        if recipe is not None:
            return super().record()
        return {"kind": "unsaved", "description": self.description, "length": len(self)}


def _as_source(images) -> _Source:
    if isinstance(images, _Source):
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
        return _Source(list(images), None, f"{type(images).__name__} batch")
    if hasattr(images, "__getitem__") and hasattr(images, "__len__"):
        if len(images) == 0:
            raise ScanError("there are no images to scan (the dataset is empty)")
        return _Source(images, None, f"{type(images).__name__} of {len(images)} images")
    raise ScanError(
        f"cannot scan an object of type {type(images).__name__}; pass a torch Dataset or DataLoader, a folder "
        "path or a list of images"
    )


def _source_from_record(record: dict) -> _Source | None:
    kind = record.get("kind")
    if kind == "paths":
        return _Source(list(record["paths"]), record.get("labels"), "saved paths")
    if kind == "recipe":
        module = importlib.import_module(record["module"])
        items = getattr(module, record["function"])(**record["kwargs"])
        return _Source(items, None, f"{record['function']}({record['kwargs']})")
    return None


# ------------------------------------------------------------------------------------------
# layers and fingerprint
# ------------------------------------------------------------------------------------------


def default_scan_layers(net: "Network") -> list[str]:
    """The layers a scan covers when none are named.

    * Small networks (at most ``SMALL_NET_LAYERS`` = 16 spatial explorable layers, e.g. the digits
      CNN, AlexNet): every explorable layer, spatial or not (AlexNet's fc6/fc7 codes included).
    * Larger networks with blocks (ResNets, EfficientNets): the first rectified stem layer, every
      block output (the channel-mixing stages of a residual network) and the last spatial layer
      before global pooling (e.g. ``bn2.act`` / ``layer4``).
    * Larger plain chains (VGG): the rectifiers that follow a channel-mixing convolution.
    """
    layers = net.layers
    spatial = [l for l in layers if l.is_spatial and not (l.receptive_field and l.receptive_field.is_global)]
    if len(spatial) <= SMALL_NET_LAYERS:
        return [l.name for l in layers]
    blocks = [l for l in spatial if l.kind == "block"]
    if blocks:
        chosen = []
        first_act = next((l for l in spatial if l.kind == "activation"), None)
        if first_act is not None and first_act.index < blocks[0].index:
            chosen.append(first_act)
        chosen += blocks
        if spatial[-1] not in chosen:
            chosen.append(spatial[-1])
        return [l.name for l in sorted(chosen, key=lambda l: l.index)]
    by_name = {l.name: l for l in layers}
    rectified = [
        l for l in spatial
        if l.kind == "activation" and l.input_layer in by_name and by_name[l.input_layer].kind == "conv"
        and by_name[l.input_layer].mixes_channels
    ]
    return [l.name for l in (rectified or spatial)]


def model_fingerprint(model: torch.nn.Module) -> str:
    """Identity of the weights: per tensor its name, shape, dtype, the wrap-around sum of its bytes
    read as 64-bit words, and up to 256 evenly spaced bytes.

    Integer sums are exact and independent of thread counts, so the same weights always give the
    same string, and changing any weight changes the sum. About 10 ms per 100 MB of weights.
    """
    digest = hashlib.blake2b(digest_size=16)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
            if not raw.size:
                continue
            words = raw.size // 8 * 8
            total = raw[:words].view(np.uint64).sum(dtype=np.uint64) + np.uint64(raw[words:].sum(dtype=np.uint64))
            digest.update(np.asarray(total, dtype=np.uint64).tobytes())
            digest.update(raw[:: max(1, raw.size // 256)][:256].tobytes())
    return digest.hexdigest()


def _unit_of(unit) -> tuple[str, int]:
    if isinstance(unit, Unit):
        return unit.layer, unit.channel
    if isinstance(unit, (tuple, list)) and len(unit) == 2:
        return str(unit[0]), int(unit[1])
    raise TargetError(f"a unit is cw.Unit(layer, channel) or a (layer, channel) pair, got {unit!r}")


# ------------------------------------------------------------------------------------------
# the scan
# ------------------------------------------------------------------------------------------


class Scan:
    """The result of :func:`scan`: top-k images per channel, statistics and codes per layer.

    Attributes
    ----------
    net
        The scanned :class:`Network`.
    layers
        Names of the scanned layers.
    k
        Images kept per channel.
    count
        Number of images covered (the first ``count`` of the source).
    total
        Number of images in the source.
    complete
        ``count == total``.
    interrupted
        The last pass was stopped by Ctrl-C (resume it with ``net.scan(images, resume=scan)``).
    labels
        ``np.ndarray`` of the covered images' labels, or ``None`` when the source has none.
    class_names
        Names of the label values when the source has them (``dataset.classes``, sub-folders).
    """

    def __init__(self, net: "Network", layers: Sequence[str], k: int, source: _Source | None, total: int,
                 batch_size: int, fingerprint: str):
        self.net = net
        self.layers = list(layers)
        self.k = int(k)
        self.total = int(total)
        self.batch_size = int(batch_size)
        self.fingerprint = fingerprint
        self.interrupted = False
        self._source = source
        self._source_record = source.record() if source is not None else {"kind": "unsaved", "length": total}
        self.class_names = source.class_names if source is not None else None
        infos = {name: net.layer(name) for name in self.layers}
        self._shapes = {name: tuple(infos[name].shape) for name in self.layers}
        dtype = net.dtype
        layer_states = {}
        self._codes: dict[str, _Rows] = {}
        for name in self.layers:
            c = self._shapes[name][0]
            layer_states[name] = _LayerState(
                top_values=torch.full((c, self.k), -math.inf, dtype=dtype),
                top_index=torch.full((c, self.k), -1, dtype=torch.int64),
                top_y=torch.zeros((c, self.k), dtype=torch.int64),
                top_x=torch.zeros((c, self.k), dtype=torch.int64),
                code_sum=torch.zeros(c, dtype=torch.float64),
                max=torch.full((c,), -math.inf, dtype=dtype),
                zeros=torch.zeros(c, dtype=torch.int64),
                firing=torch.zeros(c, dtype=torch.int64),
            )
            self._codes[name] = _Rows(c, _numpy_dtype(dtype), total)
        self._labels = _Rows(None, object, total)
        self._state = _State(0, layer_states)

    # ---------------------------------------------------------------- bookkeeping
    @property
    def count(self) -> int:
        return self._state.count

    @property
    def complete(self) -> bool:
        return self.count >= self.total

    def __repr__(self) -> str:
        status = "complete" if self.complete else ("interrupted" if self.interrupted else "partial")
        return f"Scan({self.net.name}, {len(self.layers)} layers, k={self.k}, {self.count}/{self.total} images, {status})"

    def _check_layer(self, layer: str) -> str:
        if layer in self._shapes:
            return layer
        info = self.net.layer(layer)  # raises LayerNotFoundError with suggestions for unknown names
        raise LayerNotFoundError(
            f"layer {info.name!r} was not scanned; this scan covers {', '.join(repr(n) for n in self.layers[:8])}"
            + (" ..." if len(self.layers) > 8 else "") + f" (scan again with layers=[{info.name!r}])"
        )

    def _check_unit(self, unit) -> tuple[str, int]:
        layer, channel = _unit_of(unit)
        layer = self._check_layer(layer)
        c = self._shapes[layer][0]
        if not 0 <= channel < c:
            raise TargetError(f"channel {channel} is out of range for layer {layer!r}, which has {c} channels (0..{c - 1})")
        return layer, channel

    def _fold(self, name: str, out: torch.Tensor, start: int) -> _LayerState:
        """One layer's output for images ``start ..``, folded into a new (uncommitted) state."""
        batch = out.shape[0]
        flat = out.detach().reshape(batch, out.shape[1], -1)  # [B, C, P] on the model's device
        # the running state lives on the CPU; only [B, C] summaries leave the device
        values = flat.amax(dim=2).cpu()  # [B, C] spatial maxima
        if not torch.isfinite(values).all():
            raise NonFiniteError(
                f"layer {name!r} produced NaN or infinite values on images {start}..{start + batch - 1}; "
                "check the images and that the preprocessing matches the model"
            )
        codes = flat.mean(dim=2).cpu()  # [B, C] global average pool
        # |sign| summed in floating point counts the non-zeros exactly (a map has far fewer than
        # 2**24 positions) and is several times faster than summing a bool tensor.
        nonzero = flat.sign().abs_().sum(dim=2).sum(dim=0, dtype=torch.float64).to(torch.int64).cpu()
        old = self._state.layers[name]
        # Only (image, channel) pairs beating the channel's current k-th value can enter its top-k
        # (an equal value loses to the earlier image): locate the maximum for those alone.
        entering = values.to(old.top_values.dtype) > old.top_values[:, -1][None, :]
        share = float(entering.float().mean())
        if share > 0.25:  # early batches: nearly every pair enters, one argmax over all is cheaper
            positions = flat.argmax(dim=2).cpu()  # first maximum in row-major order on ties
        else:
            positions = torch.zeros_like(values, dtype=torch.int64)
            if share > 0:
                positions[entering] = flat[entering.to(flat.device)].argmax(dim=1).cpu()
        width = out.shape[-1] if out.dim() >= 3 else 1
        top = _merge_top(old, values.to(old.top_values.dtype), entering, positions // width, positions % width,
                         start, self.k)
        # rows past the committed count are scratch until the new state is swapped in
        self._codes[name].write(start, codes.to(torch.float64 if codes.dtype == torch.float64 else torch.float32).numpy())
        return _LayerState(
            *top,
            code_sum=old.code_sum + codes.sum(dim=0, dtype=torch.float64),
            max=torch.maximum(old.max, values.amax(dim=0).to(old.max.dtype)),
            zeros=old.zeros + (flat.shape[0] * flat.shape[2] - nonzero),
            firing=old.firing + (values > 0).sum(dim=0),
        )

    def _scan_batch(self, x: torch.Tensor, start: int, labels: list) -> None:
        """Forward one batch (images ``start .. start + B - 1``), fold every layer, commit atomically.

        Each layer is folded inside its forward hook, the moment its output exists: an in-place
        operation later in the model (``ReLU(inplace=True)``) cannot alter what was seen, no
        output is kept alive to the end of the pass (peak memory: the plain forward's), and no
        out-of-place copies are needed (the pass is the plain forward; no backward follows, so
        no rectifier rule is involved). The pass stops after the last scanned layer.
        Call inside ``inference_state`` and ``no_grad``.
        """
        pending: dict[str, _LayerState] = {}
        modules = {name: self.net.layer(name)._module for name in self.layers}

        def make_hook(name: str):
            def hook(_module, _inputs, output):
                if isinstance(output, (tuple, list)):
                    output = output[0]
                # The reductions are small and memory-bound: on a CPU they run faster on one thread
                # than split across cores that the convolutions (or other processes) keep busy.
                threads = torch.get_num_threads()
                if threads > 1 and output.device.type == "cpu":
                    torch.set_num_threads(1)
                try:
                    pending[name] = self._fold(name, output, start)
                finally:
                    if torch.get_num_threads() != threads:
                        torch.set_num_threads(threads)
                if len(pending) == len(modules):
                    raise StopForward

            return hook

        handles = []
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_hook(make_hook(name)))
            try:
                self.net.model(x)
            except StopForward:
                pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [n for n in self.layers if n not in pending]
        if missing:
            raise ScanError(f"layers {missing} produced no output in the forward pass; scan other layers")
        self._labels.write(start, labels)
        self._state = _State(start + len(labels), pending)  # one assignment: Ctrl-C safe

    # ---------------------------------------------------------------- queries
    def top(self, layer: str) -> dict[str, np.ndarray]:
        """Raw top-k table of a layer: ``values``, ``indices``, ``positions`` (``[C, k]``; ``[C, k, 2]``)."""
        layer = self._check_layer(layer)
        st = self._state.layers[layer]
        kept = min(self.k, self.count)
        return {
            "values": st.top_values[:, :kept].to(torch.float64 if st.top_values.dtype == torch.float64
                                                  else torch.float32).numpy().copy(),
            "indices": st.top_index[:, :kept].numpy().copy(),
            "positions": np.stack([st.top_y[:, :kept].numpy(), st.top_x[:, :kept].numpy()], axis=-1),
        }

    def top_images(self, unit, method: str | None = "deconvnet", k: int | None = None) -> list[TopImage]:
        """The unit's top images, best first, with receptive-field crops and reconstructions.

        Parameters
        ----------
        unit
            ``cw.Unit(layer, channel)`` or ``(layer, channel)``.
        method
            ``"deconvnet"`` (Zeiler & Fergus), ``"guided_backprop"`` (Springenberg et al.),
            ``"gradient"``, or ``None`` for no reconstruction (faster: no backward pass).
        k
            How many (at most the scan's ``k``).

        The images are loaded again from the source (``dataset[i]``, the file, ``images[i]``).
        """
        layer, channel = self._check_unit(unit)
        table = self.top(layer)
        n = min(k or self.k, table["indices"].shape[1])
        if n and self._source is None:
            raise ScanError(
                "this scan was loaded without its images (they were not files or a cnn_widgets dataset); "
                "pass them again: Scan.load(path, net, images=...)"
            )
        info = self.net.layer(layer)
        spatial = info.is_spatial
        has_labels = self.labels is not None
        results = []
        inputs = []
        for rank in range(n):
            index = int(table["indices"][channel, rank])
            if index < 0:
                break
            item = self._source.image(index)
            x = self.net.prepare(item)
            display = self.net.display_image(item)
            if display.shape[:2] != tuple(x.shape[-2:]):
                display = np.asarray(to_rgb_image(display).resize((x.shape[-1], x.shape[-2])))
            position = tuple(int(v) for v in table["positions"][channel, rank]) if spatial else None
            box = _box(info, position, tuple(x.shape[-2:]))
            top, left, bottom, right = box
            results.append(
                TopImage(
                    index=index,
                    value=float(table["values"][channel, rank]),
                    position=position,
                    box=box,
                    image=display,
                    crop=display[top:bottom, left:right].copy(),
                    label=self._labels.data[index] if has_labels else None,
                )
            )
            inputs.append(x)
        if method is not None and results:
            grads = reconstruct(self.net, inputs, layer, channel, [r.position for r in results], method)
            for r, g in zip(results, grads):
                top, left, bottom, right = r.box
                crop = g[top:bottom, left:right]
                r.raw_reconstruction = crop
                r.reconstruction = _display_signed(crop)
        return results

    def image(self, index: int):
        """Image ``index`` of the scanned dataset, loaded again from its source (PIL image or tensor)."""
        if self._source is None:
            raise ScanError(
                "this scan was loaded without its images; pass them again: Scan.load(path, net, images=...)"
            )
        if not 0 <= index < self.count:
            raise ScanError(f"image index {index} is out of range; this scan covers {self.count} images")
        return self._source.image(index)

    @property
    def labels(self) -> np.ndarray | None:
        labels = self._labels.data[: self.count]
        if self.count == 0 or all(v is None for v in labels):
            return None
        try:
            return np.array(list(labels))
        except Exception:  # ragged labels
            return labels.copy()

    def codes(self, layer: str) -> np.ndarray:
        """Global-average-pooled code of each covered image: ``[count, C]`` (a copy)."""
        layer = self._check_layer(layer)
        return self._codes[layer].data[: self.count].copy()

    def embedding(self, layer: str, method: str = "pca", seed: int = 0, **options) -> np.ndarray:
        """2-D coordinates ``[N, 2]`` of the images' codes at ``layer``, one row per covered image.

        ``"pca"``: projection of the centred codes ``X - mean`` on the first two right singular
        vectors of their SVD (sign fixed so the largest loading of each axis is positive).
        ``"tsne"``: scikit-learn's t-SNE (van der Maaten & Hinton, 2008) with PCA initialisation and
        ``random_state=seed``; codes wider than 50 are first reduced to 50 PCA dimensions, and the
        perplexity defaults to ``min(30, (N - 1) / 3)``. Extra ``options`` go to ``TSNE``.
        """
        x = self.codes(layer).astype(np.float64)
        if len(x) < 2:
            raise ScanError(f"an embedding needs at least 2 scanned images, this scan covers {len(x)}")
        if method == "pca":
            return _pca(x, 2)
        if method == "tsne":
            from sklearn.manifold import TSNE

            if len(x) < 5:
                raise ScanError(f"t-SNE needs at least 5 images, this scan covers {len(x)}; use method='pca'")
            if x.shape[1] > 50:
                x = _pca(x, min(50, len(x)))
            options.setdefault("perplexity", min(30.0, (len(x) - 1) / 3.0))
            options.setdefault("init", "pca")
            return TSNE(n_components=2, random_state=seed, **options).fit_transform(x)
        raise ScanError(f"unknown embedding method {method!r}; use 'pca' or 'tsne'")

    def stats(self, layer: str) -> ChannelStats:
        """Per-channel mean, max, fraction of positions exactly zero and fraction of images firing."""
        layer = self._check_layer(layer)
        st = self._state.layers[layer]
        n = max(self.count, 1)
        shape = self._shapes[layer]
        positions = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return ChannelStats(
            mean=(st.code_sum / n).numpy(),
            max=st.max.double().numpy(),
            fraction_zero=(st.zeros.double() / (n * positions)).numpy(),
            fraction_images_firing=(st.firing.double() / n).numpy(),
            images=self.count,
        )

    def dead_channels(self, layer: str, threshold: float = 0.01) -> list[int]:
        """Channels that (nearly) never fire: positive on at most ``threshold`` of the images.

        A channel fires on an image when its largest value there is ``> 0``; with the default
        ``threshold=0.01`` a channel is dead when it is zero (or negative) everywhere on at least
        99% of the scanned images. ``threshold=0`` asks for channels that never fired at all.
        """
        if self.count == 0:
            raise ScanError("the scan covers no image yet")
        frac = self.stats(layer).fraction_images_firing
        return [int(c) for c in np.flatnonzero(frac <= threshold)]

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the scan to ``path`` (``torch.save``; loads with ``weights_only=True``)."""
        state = self._state
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "net_name": self.net.name,
            "fingerprint": self.fingerprint,
            "layers": list(self.layers),
            "shapes": {n: list(s) for n, s in self._shapes.items()},
            "k": self.k,
            "count": state.count,
            "total": self.total,
            "batch_size": self.batch_size,
            "interrupted": self.interrupted,
            "source": self._source_record,
            "class_names": self.class_names,
            "labels": [_plain_label(v) for v in self._labels.data[: state.count]],
            "state": {
                name: {
                    "top_values": ls.top_values, "top_index": ls.top_index, "top_y": ls.top_y, "top_x": ls.top_x,
                    "code_sum": ls.code_sum, "max": ls.max, "zeros": ls.zeros, "firing": ls.firing,
                    "codes": torch.from_numpy(self._codes[name].data[: state.count].copy()),
                }
                for name, ls in state.layers.items()
            },
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)  # never leave a half-written file behind

    @classmethod
    def load(cls, path: str | os.PathLike, net: "Network", images=None) -> "Scan":
        """Read a scan written by :meth:`save` for the same network.

        The images are found again from the saved file paths or dataset recipe; for other sources
        pass the same ``images`` as for the scan (needed by :meth:`top_images` and to resume).
        """
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ScanError(f"no scan file at {str(path)!r}") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ScanError(f"{str(path)!r} is not a cnn_widgets scan file")
        for name, shape in payload["shapes"].items():
            try:
                info = net.layer(name)
            except LayerNotFoundError:
                raise ScanError(f"the scan in {str(path)!r} was made on another network: it has layer {name!r}, "
                                f"{net.name} does not") from None
            if tuple(info.shape) != tuple(shape):
                raise ScanError(f"the scan in {str(path)!r} was made on another network: layer {name!r} has shape "
                                f"{tuple(shape)} there, {tuple(info.shape)} here")
        fingerprint = model_fingerprint(net.model)
        if fingerprint != payload["fingerprint"]:
            warnings.warn(f"the scan in {str(path)!r} was made with other weights than {net.name}'s; its rankings "
                          "describe the old weights", stacklevel=2)
        source = _as_source(images) if images is not None else _source_from_record(payload["source"])
        total = payload["total"]
        if source is not None and len(source) != total:
            raise ScanError(f"the images given have {len(source)} items; the scan was made on {total}")
        scan_ = cls(net, payload["layers"], payload["k"], source, total, payload["batch_size"], payload["fingerprint"])
        scan_._source_record = payload["source"] if images is None else scan_._source_record
        scan_.class_names = payload.get("class_names") or scan_.class_names
        count = payload["count"]
        layers = {}
        for name, st in payload["state"].items():
            layers[name] = _LayerState(st["top_values"], st["top_index"], st["top_y"], st["top_x"],
                                       st["code_sum"], st["max"], st["zeros"], st["firing"])
            scan_._codes[name].write(0, st["codes"].numpy())
        scan_._labels.write(0, payload["labels"])
        scan_._state = _State(count, layers)
        scan_.interrupted = payload["interrupted"]
        return scan_


def _merge_top(old: _LayerState, values, entering, ys, xs, start: int, k: int):
    """New ``(top_values, top_index, top_y, top_x)``: the old top-k of each channel merged with this
    batch's entering ``[B, C]`` candidates. Only channels with a candidate are re-sorted."""
    rows = entering.any(dim=0).nonzero().squeeze(1)
    if len(rows) == 0:
        return old.top_values, old.top_index, old.top_y, old.top_x
    every = len(rows) == values.shape[1]
    pick = (lambda t: t) if every else (lambda t: t[rows])
    batch = values.shape[0]
    index = torch.arange(start, start + batch, dtype=torch.int64)
    cand_v = torch.cat([pick(old.top_values), pick(values.masked_fill(~entering, -math.inf).T)], dim=1)
    cand_i = torch.cat([pick(old.top_index), index.expand(len(rows), batch)], dim=1)
    cand_y = torch.cat([pick(old.top_y), pick(ys.T)], dim=1)
    cand_x = torch.cat([pick(old.top_x), pick(xs.T)], dim=1)
    # Stable descending sort: equal values keep candidate order, i.e. the kept entries (all from
    # earlier images, themselves in index order among equals) first, then this batch in index
    # order => ties go to the lower image index, whatever the batch size.
    order = torch.sort(cand_v, dim=1, descending=True, stable=True).indices[:, :k]
    merged = [cand.gather(1, order) for cand in (cand_v, cand_i, cand_y, cand_x)]
    if every:
        return tuple(merged)
    result = []
    for previous, new in zip((old.top_values, old.top_index, old.top_y, old.top_x), merged):
        full = previous.clone()  # states are never mutated: a resumed or saved scan may share them
        full[rows] = new
        result.append(full)
    return tuple(result)


def _numpy_dtype(dtype: torch.dtype):
    return {torch.float64: np.float64, torch.float16: np.float32, torch.bfloat16: np.float32}.get(dtype, np.float32)


def _pca(x: np.ndarray, components: int) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:components]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return centred @ (vt * signs[:, None]).T


def _box(info, position, image_size) -> tuple[int, int, int, int]:
    rf = info.receptive_field
    if position is None or rf is None or rf.is_global:
        return 0, 0, int(image_size[0]), int(image_size[1])
    return rf.box(position[0], position[1], image_size=image_size)


def _display_signed(r: np.ndarray) -> np.ndarray:
    """Signed reconstruction as uint8, grey at zero, clipped at the 99th percentile of ``|r|``.

    The same display rule as the contribution tree's pictures (a max scale leaves deep-layer
    reconstructions as faint grey: one bright pixel sets the scale).
    """
    from .contributions import normalise_picture

    if r.size == 0:
        return np.full(r.shape, 128, dtype=np.uint8)
    shown = normalise_picture(torch.from_numpy(np.ascontiguousarray(r)).permute(2, 0, 1))
    return np.round(shown.permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)


_RULES = {"deconvnet": "deconvnet", "guided_backprop": "guided", "guided": "guided", "gradient": "gradient"}


def reconstruct(net: "Network", inputs: list[torch.Tensor], layer: str, channel: int,
                positions: list[tuple[int, int] | None], method: str = "deconvnet") -> list[np.ndarray]:
    """Input-space picture of ``layer[channel]`` at each position, one per input (``H x W x 3`` float32).

    The unit's value at that position (its whole map's maximum for a non-spatial layer) is
    back-propagated to the input with the rectifier rule of ``method``: deconvnet (Zeiler & Fergus
    2014: ``max(g, 0)`` at every ReLU, the forward mask ignored, max-pool switches kept), guided
    backprop (Springenberg et al. 2015) or the plain gradient. Inputs of equal size share one pass
    (each image's value depends only on its own input in eval mode).
    """
    if method not in _RULES:
        raise ScanError(f"unknown reconstruction method {method!r}; use 'deconvnet', 'guided_backprop' or 'gradient'")
    results: list[np.ndarray | None] = [None] * len(inputs)
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(inputs):
        groups.setdefault(tuple(x.shape), []).append(i)
    for members in groups.values():
        x = torch.cat([inputs[i] for i in members]).detach().requires_grad_(True)
        with net.session(_RULES[method]), torch.enable_grad():
            _, outputs = net.forward(x, [layer], stop_early=True)
            out = outputs[layer][:, channel]  # [B, H, W] or [B]
            picked = []
            for row, i in enumerate(members):
                pos = positions[i]
                if out.dim() == 1:
                    picked.append(out[row])
                elif pos is None:
                    picked.append(out[row].amax())
                else:
                    picked.append(out[row, pos[0], pos[1]])
            grad = torch.autograd.grad(torch.stack(picked).sum(), x)[0]
        for row, i in enumerate(members):
            results[i] = grad[row].permute(1, 2, 0).detach().float().cpu().numpy()
    return results  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------


def scan(
    net: "Network",
    images,
    layers: Sequence[str] | str | None = None,
    k: int = 9,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
    save_to: str | os.PathLike | None = None,
    resume: "Scan | str | os.PathLike | None" = None,
) -> Scan:
    """One forward pass over a dataset, keeping top-k images, statistics and codes per channel.

    Parameters
    ----------
    net
        The :class:`Network`.
    images
        A map-style torch ``Dataset`` (items: image or ``(image, label)``), a ``DataLoader`` with
        ``shuffle=False``, a folder of image files, or a list of PIL images / arrays / paths /
        preprocessed tensors ``[3, H, W]``.
    layers
        Layer names; default :func:`default_scan_layers` (every layer of a small network; stem,
        block outputs and last spatial layer of a large one). Non-spatial layers work too (their
        code is the vector itself, the top images have no position).
    k
        Images kept per channel (9: Zeiler & Fergus' 3x3 grids).
    batch_size
        Images per forward pass (default 32, or the resumed scan's batch size: keep it equal to
        get bit-identical results).
    num_workers
        DataLoader worker processes loading and preprocessing images (0: in this process).
    progress
        Show a tqdm progress bar.
    save_to
        Write the scan there when the pass ends (also when it is interrupted).
    resume
        A partial :class:`Scan` or the path of a saved one, made with the same network, layers
        and images: scanning continues at its first unscanned image. The result equals one
        uninterrupted scan.

    Ctrl-C stops the pass and returns the images covered so far (``scan.interrupted``; only whole
    batches are kept); the model, its flags and hooks are left as before.
    """
    from tqdm.auto import tqdm

    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ScanError(f"k must be a positive integer, got {k!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ScanError(f"batch_size must be a positive integer, got {batch_size!r}")
    source = _as_source(images)
    if isinstance(layers, str):
        layers = [layers]
    names = default_scan_layers(net) if layers is None else [net.layer(n).name for n in layers]
    names = list(dict.fromkeys(names))
    if not names:
        raise ScanError("no layer to scan; pass layers=[...] (net.layers lists them)")

    if resume is not None:
        result = resume if isinstance(resume, Scan) else Scan.load(resume, net, images=images)
        if result.fingerprint != model_fingerprint(net.model):
            raise ScanError("the network's weights changed since this scan began; start a new scan")
        if layers is not None and names != result.layers:
            raise ScanError(f"resume scans the layers of the original scan ({len(result.layers)}); leave layers=None")
        if result.total != len(source):
            raise ScanError(f"resume needs the same images: the scan was made on {result.total}, got {len(source)}")
        if k != 9 and k != result.k:  # 9 is the default: left alone, the original k is kept
            raise ScanError(f"resume keeps the original k={result.k}")
        result._source = source
        if batch_size is None:
            batch_size = result.batch_size
    else:
        batch_size = batch_size or 32
        result = Scan(net, names, k, source, len(source), batch_size, model_fingerprint(net.model))

    start = result.count
    result.interrupted = False
    bar = tqdm(total=result.total, initial=start, unit="img", desc=f"scan {net.name}", disable=not progress)
    try:
        position = start
        with inference_state(net.model), torch.no_grad():
            for x, labels in source.batches(net, start, batch_size, num_workers):
                result._scan_batch(x.to(device=net.device, dtype=net.dtype), position, labels)
                position += len(labels)
                bar.update(len(labels))
    except KeyboardInterrupt:
        result.interrupted = True
        warnings.warn(
            f"scan interrupted: {result.count} of {result.total} images covered; continue with "
            "net.scan(images, resume=scan)", stacklevel=2,
        )
    finally:
        bar.close()
        if save_to is not None:
            result.save(save_to)
    return result
