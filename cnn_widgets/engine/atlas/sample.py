"""Activation vectors sampled at a few spatial positions of each image, with bounded memory.

Carter et al. ("Exploring Neural Networks with Activation Atlases", Distill 2019) sample one random
spatial position per image over a million images: an atlas of a layer shows what its positions
see, not only the pooled code of whole images. Here ``positions`` random positions (without
replacement) are drawn per image. Only the sampled vectors are kept (``M = N * positions`` rows of
``C`` floats); each batch's map is reduced inside its forward hook and dropped, and the pass stops at
the layer. Positions are drawn image by image from one seeded generator, so the sample does not
depend on the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import CnnWidgetsError
from ..hooks import StopForward, inference_state, on_outputs
from .stages import StageCallback

if TYPE_CHECKING:  # pragma: no cover
    from ..core import NetworkBase
    from ..scan.sources import Source

__all__ = ["Samples", "draw_positions", "sample_activations"]


@dataclass
class Samples:
    """``M`` activation vectors of one layer and where they come from.

    Attributes
    ----------
    vectors
        ``float32 [M, C]``.
    image_index
        ``int64 [M]``: the image of each vector in the source.
    position
        ``int64 [M, 2]``: ``(y, x)`` on the layer's map (``(0, 0)`` for a non-spatial layer).
    map_size
        ``(H, W)`` of the layer's map (``(1, 1)`` for a non-spatial layer).
    images
        How many images were covered (fewer than the source holds when interrupted).
    interrupted
        True when Ctrl-C stopped the pass (the vectors of whole batches covered so far are kept).
    """

    vectors: np.ndarray
    image_index: np.ndarray
    position: np.ndarray
    map_size: tuple[int, int]
    images: int
    interrupted: bool = False


def draw_positions(rng: np.random.Generator, map_size: tuple[int, int], positions: int) -> np.ndarray:
    """``[min(positions, H*W), 2]`` distinct ``(y, x)`` positions for one image, in draw order."""
    h, w = map_size
    flat = rng.choice(h * w, size=min(positions, h * w), replace=False)
    return np.stack([flat // w, flat % w], axis=1).astype(np.int64)


def sample_activations(net: "NetworkBase", source: "Source", layer: str, positions: int = 4, seed: int = 0,
                       batch_size: int = 16, progress: bool = True,
                       callback: StageCallback | None = None) -> Samples:
    """One forward pass over ``source`` keeping ``positions`` activation vectors of ``layer`` per image."""
    from tqdm.auto import tqdm

    module = net.layer(layer)._module
    rng = np.random.default_rng(seed)
    vectors, images, where = [], [], []
    map_size: tuple[int, int] | None = None
    start = 0
    interrupted = False

    def keep(_name: str, output: torch.Tensor) -> None:
        nonlocal map_size
        out = output.detach()
        if out.dim() == 2:
            out = out[:, :, None, None]
        if out.dim() != 4:
            raise CnnWidgetsError(f"layer {layer!r} gives outputs of shape {tuple(output.shape)}; an atlas needs "
                                  "[N, C, H, W] or [N, C] (pick a conv, activation or pooled layer)")
        map_size = tuple(out.shape[-2:])
        for b in range(out.shape[0]):
            yx = draw_positions(rng, map_size, positions)
            picked = out[b][:, torch.from_numpy(yx[:, 0]), torch.from_numpy(yx[:, 1])].T
            vectors.append(picked.float().cpu().numpy())
            where.append(yx)
            images.append(np.full(len(yx), start + b, dtype=np.int64))

    bar = tqdm(total=len(source), unit="img", desc=f"atlas: sample {layer}", disable=not progress, leave=False)
    try:
        with inference_state(net.model), torch.no_grad():
            for x, labels in source.batches(net, 0, batch_size, 0):
                with on_outputs({layer: module}, keep, stop_after=True, layouts={layer: net.layer(layer).capture}):
                    try:
                        net.model(x.to(device=net.device, dtype=net.dtype))
                    except StopForward:
                        pass
                start += len(labels)
                bar.update(len(labels))
                if callback is not None:
                    callback("images sampled", start, len(source))
    except KeyboardInterrupt:
        interrupted = True
        keep_rows = sum(len(i) for i in images if len(i) and i[0] < start)
        vectors, where, images = _trim(vectors, where, images, keep_rows)
    finally:
        bar.close()
    if not vectors:
        raise CnnWidgetsError("no activation vector was sampled (no image was covered); pass some images")
    if not all(np.isfinite(v).all() for v in vectors):
        raise CnnWidgetsError(f"layer {layer!r} produced NaN or infinite values; check the weights and preprocessing")
    return Samples(np.concatenate(vectors), np.concatenate(images), np.concatenate(where), map_size, start, interrupted)


def _trim(vectors: list, where: list, images: list, rows: int):
    """Keep the first ``rows`` sampled rows (a batch cut short by Ctrl-C is dropped whole)."""
    kept_v, kept_w, kept_i, total = [], [], [], 0
    for v, w, i in zip(vectors, where, images):
        if total + len(v) > rows:
            break
        kept_v.append(v), kept_w.append(w), kept_i.append(i)
        total += len(v)
    return kept_v, kept_w, kept_i
