"""Relevance in the Explorer: LRP in the saliency menu with its composite, the tree's relevance rule
(CRP) with what its children add up to, and the Top images' "most relevant" ranking.

Every number is checked against a computation done here without the widget: a hand-made LRP-0
pass of the digits CNN (gradient x input is LRP-0 for a ReLU network), ``net.relevance``'s per-layer
totals, and single-image relevance of the scanned channels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from traitlets import TraitError

import cnn_widgets as cw
from cnn_widgets.engine.digits_dataset import digits_split
from test_progress import assert_untouched, fingerprint
from test_trust_tab import digit, digits  # noqa: F401 (module fixtures: the digits CNN and a test digit)


def test_lrp_is_in_the_saliency_menu_with_its_composites(digits, digit):
    explorer = cw.Explorer(digits, digit, method="lrp", composite="zero")
    methods = dict(explorer.choices["options"]["method"])
    assert methods["lrp"] == "LRP"
    assert dict(explorer.choices["options"]["composite"]) == {n: c.label for n, c in cw.COMPOSITES.items()}
    assert explorer.saliency_info["method"] == "lrp" and explorer.saliency_info["composite"] == "zero"
    # LRP-0 of a ReLU network is gradient x input: the map shown is the same picture as input_x_gradient's
    shown = explorer.saliency.copy()
    explorer.method = "input_x_gradient"
    np.testing.assert_array_equal(shown, explorer.saliency)
    explorer.method = "lrp"
    explorer.composite = "epsilon_plus_flat"  # another composite: another map, recomputed
    assert explorer.saliency_info["composite"] == "epsilon_plus_flat"
    assert not np.array_equal(shown, explorer.saliency)
    with pytest.raises(TraitError, match="composite"):
        explorer.composite = "epsilon_plus_flatt"
    assert explorer.composite == "epsilon_plus_flat"


def test_the_relevance_tree_says_what_its_children_add_up_to(digits, digit):
    before = fingerprint(digits.model)
    explorer = cw.Explorer(digits, digit, rule="lrp", composite="epsilon_plus", k=3)
    tree = explorer.tree
    assert tree["rule"] == "lrp" and tree["composite"] == "epsilon_plus" and tree["pictures"] == "lrp"
    root = tree["levels"][0]
    # the root's relevance spread over every channel of the layer below is net.relevance's total there
    totals = dict(digits.relevance(digit, root["channel"], composite="epsilon_plus").layers)
    below = digits.layer_below(digits.logit_layer)
    assert root["children_total"] == pytest.approx(totals[below], rel=1e-5)
    assert root["score"] == pytest.approx(totals[digits.logit_layer], rel=1e-6)
    # each child's score is that channel's relevance: the sum over its map of h * (LRP gradient)
    x = digits.prepare(digit).requires_grad_(True)
    with digits._session("lrp:epsilon_plus"), torch.enable_grad():
        logits, outputs = digits._forward(x, [below])
        (grad,) = torch.autograd.grad(logits[0, root["channel"]], outputs[below])
    per_channel = (outputs[below] * grad)[0].flatten(1).sum(1).detach()
    for child in root["children"]:
        assert child["score"] == pytest.approx(float(per_channel[child["channel"]]), rel=1e-5, abs=1e-9)
    assert [c["channel"] for c in root["children"]] == per_channel.topk(3).indices.tolist()
    # a gradient rule's tree says its scores are no decomposition (the caption's input: children_total is there too)
    explorer.rule = "guided"
    assert explorer.tree["rule"] == "guided" and explorer.tree["composite"] is None
    assert explorer.tree["pictures"] == "guided_backprop"
    assert_untouched(digits.model, before)


def test_top_images_rank_by_relevance_for_a_relevance_scan(digits):
    images = [digits_split("test")[i][0] for i in range(12)]
    scan = digits.scan(images, layers=["relu2"], k=3, rank="relevance", target=7, batch_size=5, progress=False)
    explorer = cw.Explorer(digits, images[0], scan=scan, layer="relu2", channel=4)
    assert explorer.scan_info["ranking"] == {"target": 7, "label": digits.label(7), "composite": "epsilon_plus_flat"}
    assert explorer.top_info["by"] == "activation"
    explorer.top_by = "relevance"
    info = explorer.top_info
    assert info["by"] == "relevance" and info["message"] == ""
    # each image's value is channel 4's relevance for class 7 on that image alone, best first
    relevance = []
    for image in images:
        x = digits.prepare(image).requires_grad_(True)
        with digits._session("lrp:epsilon_plus_flat"), torch.enable_grad():
            logits, outputs = digits._forward(x, ["relu2"])
            (grad,) = torch.autograd.grad(logits[0, 7], outputs["relu2"])
        relevance.append(float((outputs["relu2"] * grad)[0, 4].sum().detach()))
    best = np.argsort(-np.array(relevance), kind="stable")[:3]
    assert [item["index"] for item in info["items"]] == best.tolist()
    np.testing.assert_allclose([item["value"] for item in info["items"]], np.array(relevance)[best], rtol=1e-4, atol=1e-7)
    # a scan ranked by activation only shows the activation ranking whatever top_by says
    plain = digits.scan(images, layers=["relu2"], k=3, batch_size=5, progress=False)
    explorer.scan = plain
    assert explorer.scan_info["ranking"] is None and explorer.top_info["by"] == "activation"


def test_the_trust_tab_scores_lrp_like_any_method(digits, digit):
    from scipy.stats import spearmanr

    explorer = cw.Explorer(digits, digit, tab="trust", method="lrp", trust_methods=["lrp", "gradient"])
    explorer.run_trust_checks(wait=True)
    info = explorer.trust_info
    assert explorer.error == "" and info["methods"] == ["lrp", "gradient"]
    # the randomisation test of the LRP maps, recomputed here from the engine's maps with scipy
    check = digits.sanity_check(digit, digits.top_class(digit), methods=["lrp"], progress=False)
    maps = check.maps["lrp"].flatten(1).numpy()
    for stage in range(1, len(maps)):
        expected = spearmanr(np.abs(maps[0]), np.abs(maps[stage])).statistic
        assert info["similarity"]["lrp"][stage] == pytest.approx(expected, abs=1e-6)
    assert explorer.trust_verdicts["lrp"]["model"] == explorer.saliency_info["model"]  # the caption pairs them
