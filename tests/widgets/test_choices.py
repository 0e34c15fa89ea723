"""One source for every choice: the menus, labels and ranges the renderer shows come from Python.

The ``choices`` trait is read off the traits that validate the values and the engine's registries
(a saliency method registered at run time is offered by the next Explorer), and the renderer's
source holds no copy of them.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import traitlets

import cnn_widgets as cw
from cnn_widgets.engine.occlusion import FILLS
from cnn_widgets.engine.saliency import METHODS, SaliencyMethod
from cnn_widgets.widgets.panels import PANELS, on_demand, panels_recomputed_by, triggers
from cnn_widgets.widgets.panels.saliency import saliency_display

JS_SOURCE = Path(__file__).resolve().parents[2] / "js" / "src"


def test_a_saliency_method_registered_at_run_time_is_offered_and_computed(tiny):
    def dummy(net, x, target):
        return x[0] * 2

    METHODS["dummy"] = SaliencyMethod(dummy, "Dummy")
    try:
        explorer = cw.Explorer(tiny, window=112, stride=112)
        assert ["dummy", "Dummy"] in explorer.choices["options"]["method"]
        explorer.method = "dummy"
        assert explorer.error == "" and explorer.saliency_info["method"] == "dummy"
        expected = saliency_display(tiny.prepare(explorer.image)[0] * 2, "rgb")
        np.testing.assert_array_equal(explorer.saliency, expected)
        # displayed as the built-in [3, H, W] methods are: max_c |a_c| over its 99.5th percentile, 0..255
        magnitude = (tiny.prepare(explorer.image)[0] * 2).abs().amax(0)
        scale = torch.quantile(magnitude.flatten(), 0.995)
        np.testing.assert_allclose(explorer.saliency, np.round((magnitude / scale).clamp(0, 1).numpy() * 255), atol=1)
        explorer.method = "gradient"
        np.testing.assert_array_equal(
            explorer.saliency, saliency_display(tiny.saliency(explorer.image, explorer.resolved_target(), method="gradient"), "rgb")
        )
    finally:
        del METHODS["dummy"]
    assert ["dummy", "Dummy"] not in cw.Explorer(tiny, window=112, stride=112).choices["options"]["method"]


def test_choices_are_the_traits_own_values_labels_and_ranges(tiny):
    explorer = cw.Explorer(tiny, window=112, stride=112)
    options, ranges = explorer.choices["options"], explorer.choices["ranges"]
    assert options["method"] == [[name, m.label] for name, m in METHODS.items() if m.applies(tiny)]  # no rollout on a CNN
    assert [v for v, _ in options["fill"]] == list(FILLS)
    for name in ("fill", "rule", "reduce", "scaling", "colormap", "reconstruction", "tab", "image_name"):
        trait = explorer.traits()[name]
        assert [v for v, _ in options[name]] == list(trait.values), name
        assert getattr(explorer, name) in trait.values
    for name in ("window", "stride", "k", "depth", "opacity"):
        trait = explorer.traits()[name]
        assert ranges[name] == trait.range(explorer), name  # window and stride: narrowed to the input size
        with pytest.raises(traitlets.TraitError, match=f"{name} must be between"):
            setattr(explorer, name, ranges[name]["max"] + 1)
    assert ranges["window"]["min"] >= ranges["stride"]["min"]  # stride <= window stays reachable
    assert set(explorer.choices["panels"]) == {row.panel.name for row in PANELS}
    assert set(explorer.choices["scan_tabs"]) <= {v for v, _ in options["tab"]}


def test_stride_never_exceeds_the_window(tiny):
    explorer = cw.Explorer(tiny, window=112, stride=112)
    explorer.window = 64
    assert (explorer.window, explorer.stride) == (64, 64) and explorer.error == ""
    assert explorer.occlusion_info["stride"] == 64
    explorer.stride = 96
    assert (explorer.window, explorer.stride) == (96, 96)


def test_the_renderer_holds_no_copy_of_the_choices():
    source = "\n".join(p.read_text() for p in JS_SOURCE.rglob("*.js"))
    for copied in ("guided_backprop", "Grad-CAM", "per_tile", "per-tile scale", "deconvnet", '"mean"', '"selected unit', '"custom"'):
        assert copied not in source, copied


def test_the_recompute_table_names_real_traits_and_panels(tiny):
    explorer = cw.Explorer(tiny, window=112, stride=112)
    assert set(triggers()) <= set(explorer.trait_names())
    assert list(explorer.panels) == [row.panel.name for row in PANELS]
    jobs = on_demand()  # started by the user only: the Visualise run, the Atlas build, the Trust checks
    assert jobs == ["visualize", "atlas", "trust"]
    # the Compare and Inside-a-unit tabs compute only while shown
    assert panels_recomputed_by("net", explorer) == [name for name in explorer.panels if name not in [*jobs, "compare", "unit"]]
    explorer.tab = "compare"
    assert panels_recomputed_by("net", explorer) == [name for name in explorer.panels if name not in [*jobs, "unit"]]
    explorer.tab = "unit"
    assert panels_recomputed_by("net", explorer) == [name for name in explorer.panels if name not in [*jobs, "compare"]]
    assert panels_recomputed_by("unit_position", explorer) == ["unit"]
    explorer.tab = "tree"
    assert panels_recomputed_by("channel", explorer) == ["filters"]  # no scan, target "top"
    explorer.target = "unit"
    assert panels_recomputed_by("channel", explorer) == ["filters", "saliency", "tree", "occlusion"]
    explorer.viz_steps = 8
    for name, panel in explorer.panels.items():
        if name != "atlas":  # (needs a scan: tests/widgets/test_atlas_tab.py)
            assert set(panel.compute(explorer)) <= set(explorer.trait_names()), name
