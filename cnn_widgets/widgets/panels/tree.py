"""The contribution tree (Cogswell's "Why is this a cat?" posts): which channels of the layer below
made the selected unit or class fire, expanded one path at a time.

Each node picture is sent twice: cropped to where its energy is (readable at thumbnail size) and
whole (the enlarged view on hover, with the crop box drawn).
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F

from ...engine import Unit
from ...engine.contributions import PICTURES
from ...engine.targets import Direction
from ...engine.pictures import pixels_to_uint8
from .base import DIRECTION_NOTE, Panel, model_tag, target_text

THUMBNAIL = 128  # node pictures (the energy crop) are sent at this size (square)
FULL_THUMBNAIL = 112  # ... and the whole picture at this size, for the enlarged view with the crop box
MAX_CACHED_LEVELS = 64


class TreeNode(TypedDict):
    """A node of ``tree["levels"]``."""

    layer: str
    channel: int
    label: str  # "layer[channel]", or the class name at a class root
    score: float  # the contribution to the parent (the root: its own value)
    picture: int  # index into tree_pictures / tree_full; -1 while the pictures are being computed
    box: list[int]  # the crop shown, in picture pixels: top, left, bottom, right (absent without a picture)
    size: list[int]  # the picture's height, width (absent without a picture)
    children: list[TreeNode]  # best first
    children_total: float  # every channel of the layer below, summed (absent when not expanded); rule "lrp": the
    #   node's relevance minus the step's leak


class TreeInfo(TypedDict):
    """The ``tree`` trait, beside ``tree_pictures`` (uint8 [N, 128, 128, 3]) and ``tree_full`` ([N, 112, 112, 3])."""

    levels: list[TreeNode]  # level i: the node at path[:i] with its children
    path: list[list]  # the expanded path, [layer, channel] steps (the ``tree_path`` trait)
    target: str  # the root, in words
    rule: str  # backward rule of the scores (engine.contributions.RULES: "gradient" | "guided" | "lrp")
    composite: str | None  # the LRP composite of rule "lrp" (engine.lrp_rules.COMPOSITES), else None
    reduce: str  # how a unit's map becomes one number ("sum" | "max")
    pending: bool  # the scores of the last level are shown; its pictures are being computed
    model: str  # base.model_tag: the pictures' method's Trust-tab verdict is shown when the tags match
    pictures: str  # the saliency method of the node pictures (engine.contributions.PICTURES)
    note: str  # instead of all the above: why there is no tree for this target (not an error)


def energy_box(picture: torch.Tensor | np.ndarray, mass: float = 0.9, pad: float = 0.06, min_fraction: float = 0.25,
               grey: float = 0.5) -> tuple[int, int, int, int]:
    """Where a node picture's energy is: a square box ``(top, left, bottom, right)`` (exclusive ends).

    A contribution-tree picture is mostly grey (no gradient) with the feeding region a small part
    of it; shown whole as a thumbnail the region is a few pixels wide. The energy of pixel ``(y, x)``
    is ``e = sum_c |p_c - grey|``. The box trims ``(1 - mass) / 4`` of the total energy from each of
    its four sides (through the row and column marginals), so it holds at least ``mass`` of it; it is
    then padded by ``pad`` of its side on every side, made square around its centre, at least
    ``min_fraction`` of the picture's shorter side, and shifted to lie inside the picture. A flat
    (all grey) picture gives the largest centred square.

    Parameters
    ----------
    picture
        ``[3, H, W]`` or ``[H, W]`` in ``[0, 1]`` (grey = 0.5), or ``[H, W, 3]`` uint8 (grey = 128).
    mass, pad, min_fraction, grey
        As above (``grey`` on the 0..1 scale).
    """
    if isinstance(picture, torch.Tensor):
        p = picture.detach().double().cpu().numpy()
    else:
        p = np.asarray(picture)
        if p.dtype == np.uint8:
            if p.ndim == 3 and p.shape[-1] in (1, 3, 4) and p.shape[0] not in (1, 3):
                p = np.moveaxis(p[..., :3], -1, 0)
            p, grey = p.astype(np.float64) / 255.0, (round(grey * 255.0)) / 255.0  # uint8 grey is 128
        p = p.astype(np.float64)
    energy = np.abs(p - grey).sum(axis=0) if p.ndim == 3 else np.abs(p - grey)
    energy = np.nan_to_num(energy)
    height, width = energy.shape
    short = min(height, width)
    total = float(energy.sum())
    if not total > 0:
        top, left = (height - short) // 2, (width - short) // 2
        return top, left, top + short, left + short
    tail = (1.0 - mass) / 4.0 * total

    def span(marginal: np.ndarray) -> tuple[int, int]:
        cumulative = np.cumsum(marginal)
        lo = int(np.searchsorted(cumulative, tail, side="right"))
        hi = int(np.searchsorted(cumulative, total - tail, side="left")) + 1
        return lo, max(hi, lo + 1)

    y0, y1 = span(energy.sum(axis=1))
    x0, x1 = span(energy.sum(axis=0))
    side = max(y1 - y0, x1 - x0)
    side = math.ceil(side * (1.0 + 2.0 * pad))
    side = min(short, max(side, math.ceil(min_fraction * short)))
    top = int(round((y0 + y1) / 2.0 - side / 2.0))
    left = int(round((x0 + x1) / 2.0 - side / 2.0))
    top = min(max(top, 0), height - side)
    left = min(max(left, 0), width - side)
    return top, left, top + side, left + side


def thumbnail(picture: torch.Tensor, size: int = THUMBNAIL, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A node picture ``[3, H, W]`` in [0, 1] (or its ``box`` crop) as a uint8 ``[size, size, 3]`` thumbnail."""
    p = picture.detach().float().cpu()
    if p.dim() == 2:
        p = p[None].expand(3, -1, -1)
    if box is not None:
        top, left, bottom, right = box
        p = p[:, top:bottom, left:right]
    p = F.interpolate(p[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return pixels_to_uint8(p)


def node_json(node, picture: int, box: tuple[int, int, int, int] | None = None, size: tuple[int, int] | None = None) -> dict:
    unit = node.unit
    entry = {
        "layer": unit.layer,
        "channel": int(unit.channel),
        "label": str(getattr(node, "label", "") or unit),
        "score": float(node.score),
        "picture": picture,
    }
    if box is not None:
        entry["box"] = [int(v) for v in box]  # the crop shown, in picture pixels (top, left, bottom, right)
        entry["size"] = [int(v) for v in size]  # the picture's (height, width)
    return entry


def _shift_pictures(node: dict, offset: int) -> dict:
    picture = node["picture"] + offset if node["picture"] >= 0 else -1  # -1: no picture yet
    return {**node, "picture": picture, "children": [_shift_pictures(c, offset) for c in node["children"]]}


class TreePanel(Panel):
    """The levels along ``tree_path``. A level not computed yet arrives in two steps: its children's
    scores first (the engine's ``pictures=False``, milliseconds on a kept forward pass), shown with
    empty thumbnails through ``explorer.report_progress``, then the whole level with its pictures."""

    name = "tree"
    label = "contribution tree"

    def __init__(self):
        self._cache: dict[tuple, tuple[dict, list[tuple[np.ndarray, np.ndarray]]]] = {}

    def forget(self) -> None:
        self._cache.clear()

    def compute(self, explorer) -> dict:
        target = explorer.resolved_target()
        if isinstance(target, Direction):
            return {"tree": {"note": f"The contribution tree {DIRECTION_NOTE}"}, "tree_pictures": None, "tree_full": None}
        paths = [tuple(Unit(s[0], int(s[1])) for s in explorer.tree_path[:i]) for i in range(len(explorer.tree_path) + 1)]
        report = getattr(explorer, "report_progress", None)
        missing = [p for p in paths if self._key(explorer, target, p) not in self._cache]
        if missing and report is not None:
            scores = self._result(explorer, target, paths, pictures=False)
            report(0, len(missing), lambda: scores, unit="levels")
        return self._result(explorer, target, paths)

    def _result(self, explorer, target, paths, pictures: bool = True) -> dict:
        levels, stack = [], []
        for path in paths:
            level, level_pictures = self._level(explorer, target, path, pictures)
            level = _shift_pictures(level, len(stack))
            if level["picture"] < 0 and levels:  # the node's picture is the one drawn for it as a child
                on_path = [c for c in levels[-1]["children"] if (c["layer"], c["channel"]) == (path[-1].layer, path[-1].channel)]
                if on_path:
                    level = {**level, "picture": on_path[0]["picture"], "box": on_path[0].get("box"), "size": on_path[0].get("size")}
            levels.append(level)
            stack.extend(level_pictures)
        info: TreeInfo = {"levels": levels, "path": [list(s) for s in explorer.tree_path],
                          "target": target_text(explorer.net, target), "rule": explorer.rule, "reduce": explorer.reduce,
                          "composite": explorer.composite if explorer.rule == "lrp" else None,
                          "pending": not pictures, "model": model_tag(explorer.net), "pictures": PICTURES[explorer.rule]}
        return {
            "tree": info,
            "tree_pictures": np.stack([crop for crop, _ in stack]) if stack else None,
            "tree_full": np.stack([whole for _, whole in stack]) if stack else None,
        }

    @staticmethod
    def _key(w, target, path: tuple[Unit, ...]) -> tuple:
        return (w.net, target, path, w.k, w.depth, w.rule, w.reduce, w.composite if w.rule == "lrp" else None)

    def _level(self, w, target, path: tuple[Unit, ...], pictures: bool = True) -> tuple[dict, list[tuple[np.ndarray, np.ndarray]]]:
        key = self._key(w, target, path)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        options = {"composite": w.composite} if w.rule == "lrp" else {}
        node = w.net.contribution_tree(w.image, target, depth=w.depth, k=w.k, rule=w.rule, reduce=w.reduce, path=path,
                                       pictures=pictures, **options)
        drawn: list[tuple[np.ndarray, np.ndarray]] = []

        def describe(n) -> dict:
            if n.picture is None:  # scores first: no picture yet
                entry = node_json(n, -1)
            else:
                box = energy_box(n.picture, grey=1.0 if w.rule == "lrp" else 0.5)  # relevance heatmaps: white is 0
                drawn.append((thumbnail(n.picture, THUMBNAIL, box), thumbnail(n.picture, FULL_THUMBNAIL)))
                entry = node_json(n, len(drawn) - 1, box, tuple(n.picture.shape[-2:]))
            entry["children"] = [describe(child) for child in n.children]
            if n.children_total is not None:
                entry["children_total"] = float(n.children_total)
            return entry

        level = describe(node)
        if pictures:
            if len(self._cache) > MAX_CACHED_LEVELS:
                self._cache.clear()
            self._cache[key] = (level, drawn)
        return level, drawn
