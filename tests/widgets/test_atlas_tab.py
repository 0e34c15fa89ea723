"""The Atlas tab: an atlas of the selected layer over the scan, hover patches, class filter, click to visualise."""

import numpy as np
import pytest
import torch

import cnn_widgets as cw
from cnn_widgets.engine.datasets import digits_split
from cnn_widgets.widgets.atlas_tab import ICON_SIZE


@pytest.fixture(scope="module")
def setup():
    net = cw.digits_cnn()
    images = torch.utils.data.Subset(digits_split("test"), range(24))
    return net, net.scan(images, layers=["relu2"], k=3, progress=False)


@pytest.fixture()
def explorer(setup):
    net, scan = setup
    explorer = cw.Explorer(net, scan=scan, layer="relu2", atlas_grid=4, tab="atlas")
    explorer.viz_steps = 8
    return explorer


def test_the_atlas_is_drawn_and_hover_shows_top_patches(explorer, setup):
    assert "atlas" in dict(explorer.choices["options"]["tab"]) and "atlas" in explorer.choices["scan_tabs"]
    assert explorer.atlas_image is None and explorer.atlas_info["classes"][0] == [-1, "all cells"]
    explorer._on_custom_message(explorer, {"type": "atlas", "action": "build"}, [])
    info = explorer.atlas_info
    assert explorer.error == "" and info["layer"] == "relu2" and info["grid"] == 4
    assert explorer.atlas_image.shape == (4 * ICON_SIZE, 4 * ICON_SIZE, 3) and explorer.atlas_image.dtype == np.uint8
    assert sum(count for _, _, count, _ in info["cells"]) == 24 * 4  # every sampled vector is in one cell
    row, col, count, _ = info["cells"][0]
    explorer.atlas_cell_patches(row, col)
    assert explorer.atlas_hover == {"row": row, "col": col, "count": count}
    assert explorer.atlas_patches.ndim == 4 and 1 <= explorer.atlas_patches.shape[0] <= 9


def test_class_filter_keeps_the_best_cells(explorer):
    explorer.build_atlas()
    every = len(explorer.atlas_info["cells"])
    explorer.atlas_class = explorer.predictions[0]["index"]
    kept = explorer.atlas_info["cells"]
    assert 1 <= len(kept) <= every and all(score is not None for *_, score in kept)
    assert [s for *_, s in kept] == sorted((s for *_, s in kept), reverse=True)


def test_a_click_visualises_the_cell_direction(explorer):
    explorer.build_atlas()
    row, col, _, _ = explorer.atlas_info["cells"][0]
    explorer.visualize_atlas_cell(row, col, wait=True)
    assert explorer.tab == "visualize" and explorer.viz_info["target"] == f"atlas cell ({row}, {col}) of relu2"
    assert explorer.viz_info["step"] == 8 and explorer.viz_frame.shape == (16, 16, 3)
    explorer.channel = 1  # a new selection is what is visualised again
    assert explorer.viz_direction is None


def test_without_a_scan_the_build_explains_itself(setup):
    explorer = cw.Explorer(setup[0])
    explorer._on_custom_message(explorer, {"type": "atlas", "action": "build"}, [])
    assert "needs a scan" in explorer.error
