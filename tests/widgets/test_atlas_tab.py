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
    explorer._handle_msg({"content": {"data": {"method": "custom", "content": {"type": "recompute", "panel": "atlas"}}}, "buffers": []})
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
    explorer._handle_msg({"content": {"data": {"method": "custom", "content": {"type": "recompute", "panel": "atlas"}}}, "buffers": []})
    assert "needs a scan" in explorer.error


def test_a_click_makes_the_cell_direction_the_explained_target(explorer):
    """Saliency of the direction is recomputed, equal to the engine's saliency of Direction(layer,
    the cell's mean activation); occlusion and the tree say they take no direction; a second cell
    recomputes; the Visualise tab gets the same direction; a class brings everything back."""
    from cnn_widgets.engine.targets import Direction
    from cnn_widgets.widgets.panels.saliency import saliency_display

    explorer.build_atlas()
    explorer.compute()
    (row, col, _, _), (row2, col2, _, _) = explorer.atlas_info["cells"][:2]
    before = explorer.saliency.copy()
    explorer._on_custom_message(explorer, {"type": "atlas", "action": "explain", "row": row, "col": col}, [])
    explorer.compute()
    label = f"atlas cell ({row}, {col}) of relu2"
    assert explorer.target == "atlas" and explorer.atlas_target == {"layer": "relu2", "row": row, "col": col, "label": label}
    assert explorer.saliency_info["target"] == label
    cell = explorer._shown_atlas.cell(row, col)
    engine = explorer.net.saliency(explorer.image, Direction("relu2", torch.from_numpy(cell.direction.astype(np.float32))),
                                   method=explorer.method)
    np.testing.assert_array_equal(explorer.saliency, saliency_display(engine))
    assert not np.array_equal(explorer.saliency, before)
    assert explorer.error == ""  # a click on a cell is a normal action: no error anywhere
    assert explorer.occlusion is None and "not an atlas cell's direction" in explorer.occlusion_info["note"]
    assert explorer.tree["note"].startswith("The contribution tree explains a class or a unit")
    assert explorer.viz_direction[1] == label
    explorer.explain_atlas_cell(row2, col2)  # the target stays "atlas": its panels still recompute
    explorer.compute()
    assert explorer.saliency_info["target"] == f"atlas cell ({row2}, {col2}) of relu2"
    explorer.target = "top"
    explorer.compute()
    assert explorer.error == "" and explorer.saliency_info["target"].startswith("class")


def test_bad_directions_and_cells_leave_the_widget_as_it_was(explorer):
    from cnn_widgets.engine.targets import Direction

    explorer.build_atlas()
    explorer.compute()
    state = (explorer.target, dict(explorer.atlas_target), explorer.saliency.copy())
    with pytest.raises(cw.TargetError, match="channels"):
        explorer.explain_direction(Direction("relu2", torch.ones(3)))
    with pytest.raises(cw.LayerNotFoundError):
        explorer.explain_direction(Direction("relu22", torch.ones(3)))
    with pytest.raises(Exception, match="atlas cell"):
        explorer.target = "atlas"  # no cell explained yet
    explorer._on_custom_message(explorer, {"type": "atlas", "action": "explain", "row": 99, "col": 0}, [])
    assert "no cell at (99, 0)" in explorer.error
    explorer.compute()
    assert (explorer.target, explorer.atlas_target) == state[:2]
    np.testing.assert_array_equal(explorer.saliency, state[2])


def test_a_new_network_drops_the_direction_target(explorer, setup):
    explorer.build_atlas()
    row, col, _, _ = explorer.atlas_info["cells"][0]
    explorer.explain_atlas_cell(row, col)
    net = setup[0]
    explorer.net = cw.Network(net.model, preprocess=net.preprocess, labels=net.labels)
    assert explorer.target == "top" and explorer.atlas_target == {}


def test_a_build_for_the_old_layer_is_never_drawn_over_the_new_one(explorer, monkeypatch):
    """The build runs on the runner's long lane; choosing another layer meanwhile cancels it."""
    import threading

    explorer.runner.threaded = True  # as in a kernel
    started, go = threading.Event(), threading.Event()
    real = explorer.net.atlas

    def slow_atlas(*args, **kwargs):
        started.set()
        go.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(explorer.net, "atlas", slow_atlas)
    explorer.build_atlas(wait=False)
    assert started.wait(30) and explorer.runner.running("atlas")
    explorer.layer = "relu1"
    go.set()
    assert explorer.runner.wait(60)
    assert explorer.atlas_image is None and explorer.progress["atlas"]["state"] == "cancelled"
    explorer.build_atlas()  # the new layer's, when asked for
    assert explorer.atlas_info["layer"] == "relu1" and explorer.progress["atlas"]["state"] == "done"


@pytest.mark.parametrize("built", [False, True])
def test_a_class_the_network_does_not_have_is_refused_and_the_filter_stays(explorer, built):
    from traitlets import TraitError

    if built:
        explorer.build_atlas()
    explorer.atlas_class = 3
    shown = None if explorer.atlas_image is None else explorer.atlas_image.copy()
    for bad in (5000, 10, -2):  # the digits model has classes 0..9; -1 is "all cells"
        with pytest.raises(TraitError, match=rf"atlas_class must be -1 \(all cells\) or a class index 0\.\.9, got {bad}"):
            explorer.atlas_class = bad
        assert explorer.atlas_class == 3
    explorer.set_state({"atlas_class": 5000})  # the front end's way: the error is shown, the value kept
    assert explorer.atlas_class == 3 and "atlas_class must be -1" in explorer.error
    if built:
        np.testing.assert_array_equal(explorer.atlas_image, shown)
    explorer.atlas_class = -1
    assert explorer.atlas_class == -1
