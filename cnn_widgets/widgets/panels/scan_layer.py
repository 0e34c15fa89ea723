"""The selected layer over an attached dataset scan: a scatter of the scanned images (PCA of their
codes, clickable) and the channels that (nearly) never fire over the scan.

Without a scan the panel is empty; ``scan_summary`` describes the attached scan for ``scan_info``.
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np

from ...engine import CnnWidgetsError
from .base import Panel, scan_problem

#: At most this many scatter thumbnails are sent (more images: every n-th one has a thumbnail).
MAX_EMBEDDING_THUMBS = 5000


class ScanInfo(TypedDict, total=False):
    """The ``scan_info`` trait; ``{}`` while no scan is attached."""

    text: str  # repr of the scan
    layers: list[str]  # the scanned layers
    count: int  # how many images it covers
    k: int  # top images kept per channel
    labels: bool  # whether the images have labels
    ranking: dict | None  # rank="relevance": {"target", "label", "composite"} of the relevance ranking, else None


class ScanLayerInfo(TypedDict, total=False):
    """The ``scan_layer_info`` trait, beside ``scan_dead``, ``embedding``, ``embedding_labels`` and
    ``embedding_thumbs``; ``{}`` while no scan is attached."""

    layer: str  # the layer described
    in_scan: bool  # False: the scan cannot describe it (``message`` says why), the arrays are None
    message: str  # why a part is missing, or ""
    dead: int  # how many channels (nearly) never fire over the scan
    label_names: list[str]  # label code i of embedding_labels is label_names[i]
    thumb_step: int  # embedding_thumbs[j] is the thumbnail of scanned image j * thumb_step


def scan_summary(scan) -> ScanInfo:
    if scan is None:
        return {}
    ranking = getattr(scan, "ranking", None)
    return {"text": repr(scan), "layers": list(scan.layers), "count": int(scan.count), "k": int(scan.k),
            "labels": scan.labels is not None,
            "ranking": None if ranking is None else {"target": ranking.target, "label": ranking.label,
                                                     "composite": ranking.composite}}


def label_codes(labels, class_names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Labels of N images as float32 codes ``0..L-1`` (``-1``: none) and the L names, in sorted order.

    Integer labels name themselves through ``class_names`` when those are given (``dataset.classes``).
    """
    if labels is None:
        return np.zeros(0, np.float32), []
    values = [v.item() if isinstance(v, np.generic) else v for v in list(labels)]
    present = [v for v in values if v is not None]
    try:
        distinct = sorted(set(present))
    except TypeError:  # mixed kinds: order of first appearance
        distinct = list(dict.fromkeys(present))
    code_of = {v: i for i, v in enumerate(distinct)}
    codes = np.array([code_of[v] if v is not None else -1 for v in values], np.float32)

    def name(v) -> str:
        if class_names is not None and isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < len(class_names):
            return str(class_names[v])
        return str(v)

    return codes, [name(v) for v in distinct]


def square_thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """An ``H x W x 3`` uint8 image letter-boxed (white) into ``size x size`` (aspect kept)."""
    from PIL import Image

    rgb = np.asarray(image, np.uint8)[..., :3]
    h, w = rgb.shape[:2]
    scale = size / max(h, w, 1)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((nw, nh), Image.BILINEAR, reducing_gap=None))
    out = np.full((size, size, 3), 255, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = small
    return out


def embedding_thumb_size(count: int, budget_bytes: int = 4_000_000, largest: int = 48, smallest: int = 16) -> int:
    """Side of the scatter thumbnails: as large as ``largest`` while ``count`` of them fit the budget."""
    if count <= 0:
        return largest
    side = int(math.sqrt(budget_bytes / (3 * count)))
    return max(smallest, min(largest, side))


class ScanLayerPanel(Panel):
    name = "scan_layer"
    label = "scan view"

    def __init__(self):
        self._thumbs: tuple | None = None  # (scan, count, net, thumbnails, step)

    def compute(self, explorer) -> dict:
        empty = {"scan_dead": None, "embedding": None, "embedding_labels": None, "embedding_thumbs": None}
        scan, layer = explorer.scan, explorer.layer
        if scan is None:
            return {**empty, "scan_layer_info": {}}
        problem = scan_problem(explorer, layer)
        if problem:
            return {**empty, "scan_layer_info": {"layer": layer, "in_scan": False, "message": problem}}
        dead = np.zeros(explorer.net.layer(layer).channels, np.uint8)
        dead_list = scan.dead_channels(layer)
        dead[dead_list] = 1
        info: ScanLayerInfo = {"layer": layer, "in_scan": True, "message": "", "dead": len(dead_list)}
        result = {**empty, "scan_dead": dead}
        if scan.count >= 2:
            result["embedding"] = np.ascontiguousarray(scan.embedding(layer, "pca"), np.float32)
            codes, names = label_codes(scan.labels, getattr(scan, "class_names", None))
            if len(names):
                result["embedding_labels"] = codes
            result["embedding_thumbs"], step = self._thumbnails(explorer)
            info.update(label_names=names, thumb_step=step)
        else:
            info["message"] = f"an embedding needs at least 2 scanned images, this scan covers {scan.count}"
        return {**result, "scan_layer_info": info}

    def _thumbnails(self, explorer) -> tuple[np.ndarray | None, int]:
        """Thumbnails of the scanned images (every ``step``-th one), cached per scan and network."""
        scan, net, count = explorer.scan, explorer.net, int(explorer.scan.count)
        cached = self._thumbs
        if cached is not None and cached[0] is scan and cached[1] == count and cached[2] is net:
            return cached[3], cached[4]
        step = max(1, math.ceil(count / MAX_EMBEDDING_THUMBS))
        indices = range(0, count, step)
        size = embedding_thumb_size(len(indices))
        try:
            thumbs = np.stack([square_thumbnail(net.display_image(scan.image(i)), size) for i in indices])
        except CnnWidgetsError:
            thumbs = None  # images not available (a loaded scan without them): points only
        self._thumbs = (scan, count, net, thumbs, step)
        return thumbs, step
