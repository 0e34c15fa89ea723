"""256-entry colormap lookup tables shared by Python and the JS renderer.

The single source is ``colormaps.json`` next to this file (one hex string of 256 RGB triples per
colormap). The renderer imports the same file at bundle time, so a tile coloured in the browser
and ``lut(name)[value]`` here are the same bytes. Regenerate the file (from matplotlib) with
``python -m cnn_widgets.widgets.colormaps``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from ..engine.errors import OptionError

SOURCE = Path(__file__).with_name("colormaps.json")

#: Our names -> matplotlib names used to generate the tables.
_MATPLOTLIB_NAMES = {
    "viridis": "viridis",  # feature maps (sequential, perceptually uniform)
    "magma": "magma",
    "inferno": "inferno",  # saliency overlays
    "gray": "gray",
    "coolwarm": "coolwarm",  # signed maps: occlusion drop, filter weights (128 = zero)
}


@lru_cache(maxsize=None)
def _tables() -> dict[str, str]:
    return json.loads(SOURCE.read_text())


def names() -> list[str]:
    """Colormap names known to both Python and the renderer."""
    return list(_tables())


def lut(name: str) -> np.ndarray:
    """The ``[256, 3]`` uint8 lookup table of colormap ``name`` (identical to the JS renderer's)."""
    tables = _tables()
    if name not in tables:
        raise OptionError(f"unknown colormap {name!r}; choose one of {', '.join(tables)}")
    return np.frombuffer(bytes.fromhex(tables[name]), dtype=np.uint8).reshape(256, 3).copy()


def apply(name: str, values: np.ndarray) -> np.ndarray:
    """Colour a uint8 array through ``lut(name)``: shape ``[..., 3]``."""
    return lut(name)[np.asarray(values, dtype=np.uint8)]


def _generate() -> dict[str, str]:
    from matplotlib import colormaps as mpl_colormaps

    ramp = np.linspace(0.0, 1.0, 256)
    out = {}
    for ours, theirs in _MATPLOTLIB_NAMES.items():
        rgb = mpl_colormaps[theirs](ramp)[:, :3]
        out[ours] = (np.round(rgb * 255).clip(0, 255).astype(np.uint8)).tobytes().hex()
    return out


if __name__ == "__main__":
    SOURCE.write_text(json.dumps(_generate(), indent=1) + "\n")
    print(f"wrote {SOURCE}")
