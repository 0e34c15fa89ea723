"""Slide figures of the Explorer's panels, drawn from its current state (no recomputation).

``explorer.save_figure("saliency", "fig.png", scale=2)`` writes what the panel shows: the same
pixels (the image, the heat map coloured through ``widgets/colormaps.py`` and blended exactly as
js/src/pixels.js ``blendHeat`` does), its title and caption; ``"all"`` puts every panel in one
figure. PNG at ``scale`` x (2 for projectors), SVG / PDF with text, bars and frames as vectors.
``plotting.py`` builds the same figures from the engine for papers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..engine.checks import check_choice, check_int
from ..widgets.colormaps import lut
from .sheet import MUTED, Block, save, stack

#: Panels a figure can show, with what they are (the error for a bad name lists these).
PANELS = {"predictions": "the image and its top-5 predictions", "saliency": "the saliency map over the image",
          "occlusion": "the occlusion map over the image", "feature_maps": "the feature maps of the selected layer",
          "tree": "the contribution tree", "all": "every panel above in one figure"}
PAD = 8
TITLE = 14
PICTURE = 224  #: a smaller input is drawn enlarged by a whole factor to at least this side (16 px digits: 14 x)
ROW = 26  #: height of one prediction bar


def enlarged(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with every pixel a ``k x k`` block, ``k`` the least whole factor giving a side of at least ``PICTURE``."""
    k = max(1, -(-PICTURE // max(rgb.shape[:2])))
    return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1) if k > 1 else rgb


def _alpha(values: np.ndarray, opacity: float, alpha_of: Callable) -> np.ndarray:
    # per-value alpha as the renderer keeps it (a Float32Array)
    return np.clip(alpha_of(values.astype(np.float64)) * opacity, 0, 1).astype(np.float32).astype(np.float64)


def blend_heat(image: np.ndarray, heat: np.ndarray | None, colormap: str, opacity: float, alpha_of: Callable) -> np.ndarray:
    """uint8 [H, W, 3]: ``heat`` (uint8, nearest-neighbour resampled) coloured by ``colormap`` over ``image``."""
    if heat is None:
        return np.asarray(image, np.uint8)
    H, W = image.shape[:2]
    hh, hw = heat.shape
    v = heat[(np.arange(H) * hh) // H][:, (np.arange(W) * hw) // W]
    a = _alpha(np.arange(256), opacity, alpha_of)[v][..., None]
    base = image.astype(np.float64)
    out = base + (lut(colormap)[v].astype(np.float64) - base) * a
    return np.clip(np.round(out), 0, 255).astype(np.uint8)  # Uint8ClampedArray: round half to even


SALIENCY_ALPHA = lambda v: np.sqrt(v / 255)  # noqa: E731 - js/src/panels/saliency.js
OCCLUSION_ALPHA = lambda v: 0.2 + 0.65 * np.abs(v - 128) / 127  # noqa: E731 - js/src/panels/occlusion.js


def _label(state: Mapping, trait: str, value) -> str:
    for v, text in state["choices"].get("options", {}).get(trait, []):
        if v == value:
            return text
    return str(value)


def _legend(block: Block, x: int, y: int, colormap: str, left: str, right: str) -> int:
    block.text(x, y, left, size=12, color=MUTED)
    bar = np.repeat(lut(colormap)[None, :, :], 10, axis=0)[:, ::2]  # 128 x 10
    bx = x + 8 * len(left) + 6
    block.picture(bar, bx, y + 3)
    block.text(bx + bar.shape[1] + 6, y, right, size=12, color=MUTED)
    return 18


def _panel(title: str, body: Callable[[Block, int, int], int], width: int, caption: str) -> Block:
    """Title, the body drawn at (PAD, y) returning its height, then the wrapped caption."""
    block = Block(width + 2 * PAD, 0)
    block.text(PAD, PAD, title, size=TITLE, weight="bold")
    y = PAD + TITLE + 10
    y += body(block, PAD, y)
    if caption:
        y += 4 + block.text(PAD, y + 4, caption, size=12, color=MUTED, wrap=width)
    block.height = y + PAD
    return block


def predictions_block(state: Mapping) -> Block:
    image = enlarged(state["image_data"])
    preds = state["predictions"] or []
    H, W = image.shape[:2]
    bars_w, bars_h = 260, ROW * max(1, len(preds))  # a row per prediction, however small the image

    def body(block, x, y):
        block.picture(image, x, y, name="image")
        block.bars(x + W + 12, y, bars_w, bars_h, [p["label"] for p in preds], [p["probability"] for p in preds])
        return max(H, bars_h)

    top = preds[0] if preds else None
    caption = f"top-1: {top['label']} ({100 * top['probability']:.1f}%)" if top else ""
    return _panel("Image and top-5 predictions", body, W + 12 + bars_w, caption)


def _heat_block(state: Mapping, name: str, title: str, colormap: str, opacity: float, alpha_of, legend, caption: str) -> Block:
    image = state["image_data"]
    rgb = enlarged(blend_heat(image, state[name], colormap, opacity, alpha_of))
    H, W = rgb.shape[:2]

    def body(block, x, y):
        block.picture(rgb, x, y, name=name)
        return H + 6 + _legend(block, x, y + H + 6, colormap, *legend)

    return _panel(title, body, max(W, 300), caption)


def saliency_block(state: Mapping) -> Block:
    info = state["saliency_info"] or {}
    caption = f"{_label(state, 'method', info.get('method'))} for {info['target']}" if info.get("target") else ""
    return _heat_block(state, "saliency", "Saliency", "inferno", float(state["opacity"]), SALIENCY_ALPHA, ("low", "high"), caption)


def occlusion_block(state: Mapping) -> Block:
    i = state["occlusion_info"] or {}
    caption = (f"drop of {i['target']} when a {i['window']}px square is filled with {i['fill']} (stride {i['stride']}); "
               f"red = the score falls, largest {i['extent']:.3g}") if i.get("target") else ""
    return _heat_block(state, "occlusion", "Occlusion", "coolwarm", 1.0, OCCLUSION_ALPHA, ("rises", "falls"), caption)


def tiles(maps: np.ndarray, colormap: str, tile: int, cols: int, gap: int = 2) -> np.ndarray:
    """uint8 RGB grid of [C, h, w] maps through ``colormap``: tile pixel (ty, tx) = map (ty*h//tile, tx*w//tile)."""
    C, h, w = maps.shape
    rows = -(-C // cols)
    out = np.full((gap + rows * (tile + gap), gap + cols * (tile + gap), 3), 255, np.uint8)
    ys, xs = (np.arange(tile) * h) // tile, (np.arange(tile) * w) // tile
    table = lut(colormap)
    for c in range(C):
        y0, x0 = gap + (c // cols) * (tile + gap), gap + (c % cols) * (tile + gap)
        out[y0:y0 + tile, x0:x0 + tile] = table[maps[c][ys][:, xs]]
    return out


def feature_maps_block(state: Mapping, max_width: int = 860) -> Block:
    maps = state["fmap"]
    info = state["fmap_info"] or {}
    C, h, w = maps.shape
    side = max(h, w, 1)
    tile = 112 if side >= 112 else max(10, (112 // side) * side)
    fit = lambda t: max(1, min(C, (max_width - 2) // (t + 2)))  # noqa: E731 - columns of tile t
    while tile > 10 and -(-C // fit(tile)) * (tile + 2) > 420:  # as js/src/panels/feature_maps.js: at most 420 px high
        tile -= 1
    cols = fit(tile)
    grid = tiles(maps, state["colormap"], tile, cols)
    dead = state.get("fmap_dead")

    def body(block, x, y):
        block.picture(grid, x, y, name="feature_maps")
        channel = int(state["channel"])
        for c in range(C):
            cx, cy = x + 2 + (c % cols) * (tile + 2), y + 2 + (c // cols) * (tile + 2)
            if dead is not None and dead[c]:
                block.line(cx, cy, cx + tile, cy + tile, "#e0201b", 1.5)
                block.line(cx + tile, cy, cx, cy + tile, "#e0201b", 1.5)
            if c == channel:
                block.frame(cx - 1.5, cy - 1.5, tile + 3, tile + 3, "#ff8c00", 3)
        return grid.shape[0]

    scale_text = "each tile stretched to its own range" if info.get("lo") is None else f"shared scale {info['lo']:.3g} … {info['hi']:.3g}"
    caption = f"{scale_text} · {int(info.get('dead', 0))} dead (all-zero) channels crossed out in red · selected: channel {state['channel']} (orange)"
    return _panel(f"Feature maps of {info.get('layer', '')} ({C} channels, {h}×{w}) · {state['colormap']}", body,
                  max(grid.shape[1], 400), caption)


def tree_block(state: Mapping) -> Block:
    tree = state["tree"] or {}
    levels = tree.get("levels") or []
    pictures = state["tree_pictures"]  # [N, t, t, 3]: drawn at their own size
    thumb = pictures.shape[1]
    path = tree.get("path") or []
    # row 0: the root; row i + 1: the children of the node followed in row i (framed in orange)
    rows: list[list[tuple[dict, bool]]] = [[(levels[0], bool(path))]] if levels else []
    for i, level in enumerate(levels):
        nxt = path[i] if i < len(path) else None
        rows.append([(child, bool(nxt) and [child["layer"], child["channel"]] == list(nxt)) for child in level.get("children", [])])
    cell_w, cell_h = thumb + 36, thumb + 44
    cols = max((len(r) for r in rows), default=1)

    def body(block, x, y):
        for r, row in enumerate(rows):
            for c, (node, followed) in enumerate(row):
                cx, cy = x + c * cell_w, y + r * cell_h
                small = pictures[node["picture"]]
                block.picture(small, cx, cy, name=f"tree_{r}_{c}")
                if followed:
                    block.frame(cx - 2, cy - 2, small.shape[1] + 4, small.shape[0] + 4, "#ff8c00", 3)
                block.text(cx, cy + small.shape[0] + 4, node["label"], size=11, weight="bold")
                block.text(cx, cy + small.shape[0] + 19, f"{'value' if r == 0 else 'score'} {node['score']:.3g}", size=11, color=MUTED)
            if r + 1 < len(rows):
                block.line(x, y + (r + 1) * cell_h - 6, x + cols * cell_w - 20, y + (r + 1) * cell_h - 6, "#d5d9e0", 1)
        return len(rows) * cell_h

    caption = (f"for {tree['target']} · {_label(state, 'rule', tree.get('rule'))} rule, {_label(state, 'reduce', tree.get('reduce'))}"
               " · each row: the parts of the framed node above, best first") if tree.get("target") else ""
    return _panel("Contribution tree (which features below made this one fire)", body, max(cols * cell_w, 400), caption)


BLOCKS = {"predictions": predictions_block, "saliency": saliency_block, "occlusion": occlusion_block,
          "feature_maps": feature_maps_block, "tree": tree_block}


def figure_block(state: Mapping, panel: str) -> Block:
    """The block of one panel, or of ``"all"``: the three top panels side by side, the feature maps, the tree."""
    check_choice("panel", panel, PANELS)
    missing = [name for name in BLOCKS if panel in (name, "all") and not _has_data(state, name)]
    if panel != "all" and missing:
        raise ValueError(f"the {panel} panel has nothing to show yet (compute it first, e.g. explorer.compute())")
    if panel != "all":
        return BLOCKS[panel](state)
    top = stack([BLOCKS[n](state) for n in ("predictions", "saliency", "occlusion") if n not in missing], across=True)
    return stack([top, *(BLOCKS[n](state) for n in ("feature_maps", "tree") if n not in missing)])


def _has_data(state: Mapping, name: str) -> bool:
    needs = {"predictions": "image_data", "saliency": "saliency", "occlusion": "occlusion", "feature_maps": "fmap", "tree": "tree_pictures"}
    return state.get("image_data") is not None and state.get(needs[name]) is not None


class ExplorerState(Mapping):
    """An Explorer's traits read as a mapping (the figures take any mapping of trait values)."""

    def __init__(self, explorer):
        self._explorer = explorer

    def __getitem__(self, name):
        return getattr(self._explorer, name)

    def __iter__(self):
        return iter(self._explorer.keys)

    def __len__(self):
        return len(self._explorer.keys)

    def get(self, name, default=None):
        return getattr(self._explorer, name, default)


def save_panel_figure(state: Mapping, panel: str, path: str | Path, scale: int = 2) -> dict:
    """Write a panel (or ``"all"``) as PNG / SVG / PDF; returns ``{"path", "size", "scale", "regions"}``."""
    check_choice("panel", panel, PANELS)
    scale = check_int("scale", scale, 1, 8)
    return save(figure_block(state, panel), path, scale)
