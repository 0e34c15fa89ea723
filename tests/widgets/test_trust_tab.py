"""The Explorer's Trust tab (panels/trust.py, trust_tab.py): the sanity check's strip and curves of
the current image and target, streamed stage by stage on the runner, with Cancel; the verdicts the
saliency caption shows; the model never changed."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import cnn_widgets as cw
from cnn_widgets.engine.digits_dataset import digits_split
from cnn_widgets.engine.sanity import SIMILAR, default_stages
from cnn_widgets.widgets.panels.base import model_tag
from cnn_widgets.widgets.panels.trust import STEPS, THUMB, thumbnails
from test_progress import as_in_a_kernel, assert_untouched, fingerprint, front_end_message, front_end_update

METHODS = ["gradient", "guided_backprop", "grad_cam"]


@pytest.fixture(scope="module")
def digits():
    return cw.digits_cnn()


@pytest.fixture(scope="module")
def digit():
    return digits_split("test")[3][0]


def test_a_run_shows_every_stage_and_both_curves_of_the_engine_calls(digits, digit):
    explorer = cw.Explorer(digits, digit, tab="trust")
    before = fingerprint(digits.model)
    explorer.run_trust_checks(wait=True)
    info = explorer.trust_info
    stages = default_stages(digits.model)
    assert info["planned"] == info["stages"] == ["original", *stages] and info["methods"] == METHODS
    assert explorer.progress["trust"]["state"] == "done" and explorer.error == ""
    target = digits.top_class(digit)
    # the widget shows what the engine's public calls give on the same image and class
    check = digits.sanity_check(digit, target, methods=METHODS, progress=False)
    for method in METHODS:
        ours = check.similarity(method)
        engine = [float("nan") if v is None else v for v in info["similarity"][method]]  # null: a flat map (NaN)
        np.testing.assert_allclose(engine, ours, atol=1e-6)
        # and the similarity is Spearman's rho of the absolute maps, computed here by scipy
        maps = check.maps[method].flatten(1).numpy()
        for stage in range(1, len(maps)):
            if maps[stage].std() > 0:  # (a map that is all zeros has no rank correlation)
                np.testing.assert_allclose(engine[stage], spearmanr(maps[0], maps[stage]).statistic, atol=1e-6)
    for metric in ("deletion", "insertion"):
        curves = digits.faithfulness(digit, target, methods=METHODS, metric=metric, steps=STEPS)
        for method in METHODS:
            np.testing.assert_allclose(info["curves"][metric]["curves"][method], curves.curves[method].numpy(), atol=1e-6)
            assert info["curves"][metric]["auc"][method] == pytest.approx(curves.auc[method], abs=1e-9)
        shown = info["curves"][metric]
        assert shown["quantity"] == "probability" and len(shown["fractions"]) == STEPS + 1
        assert shown["lower_is_better"] == (metric == "deletion")
    assert list(info["curves"]) == ["deletion", "insertion"]  # ROAD (seconds per curve) stays a cell's call
    assert explorer.trust_maps.shape == (3, len(stages) + 1, THUMB, THUMB)
    assert_untouched(digits.model, before)


def test_the_verdict_follows_the_top_half_stage_and_reaches_the_saliency_caption(digits, digit):
    explorer = cw.Explorer(digits, digit, tab="trust", method="guided_backprop")
    explorer.run_trust_checks(wait=True)
    half = (len(default_stages(digits.model)) + 1) // 2  # the stage with the top half randomised
    assert explorer.trust_info["half"] == half
    for method in METHODS:
        value = explorer.trust_info["similarity"][method][half]
        verdict = explorer.trust_verdicts[method]
        assert verdict["similarity"] == pytest.approx(value) and verdict["fails"] == (value >= SIMILAR)
        assert verdict["stage"] == explorer.trust_info["stages"][half] and f"{value:.2f}" in verdict["text"]
        assert verdict["model"] == model_tag(digits)
    # the saliency map shown is of the same model: the front end pairs them by this tag
    assert explorer.saliency_info["model"] == explorer.trust_verdicts["guided_backprop"]["model"]


def test_a_changed_model_gets_another_tag_so_old_verdicts_are_not_shown(tiny):
    tag = model_tag(tiny)
    assert model_tag(tiny) == tag  # the same model: the same tag
    state = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    try:
        with torch.no_grad():
            next(tiny.model.parameters()).add_(1.0)  # an optimiser step's kind of change: the version counter moves
        assert model_tag(tiny) != tag
    finally:
        tiny.model.load_state_dict(state)


def test_thumbnails_are_block_means_over_their_own_percentile():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 2 * THUMB, 2 * THUMB, generator=generator) ** 3
    got = thumbnails(maps)
    for i in range(2):
        blocks = maps[i].numpy().reshape(THUMB, 2, THUMB, 2).mean(axis=(1, 3))
        scale = np.percentile(blocks, 99.5)
        expected = np.clip(np.round(np.clip(blocks / scale, 0, 1) * 255), 0, 255)
        assert np.abs(got[i].astype(int) - expected.astype(int)).max() <= 1  # float32 vs float64 rounding


def test_stages_stream_in_and_cancel_keeps_them_with_the_model_untouched(digits, digit):
    explorer = as_in_a_kernel(cw.Explorer(digits, digit, tab="trust"))
    explorer.compute()
    before = fingerprint(digits.model)
    seen, first_stage, cancel_sent = [], threading.Event(), threading.Event()
    original = explorer.report_progress

    def spy(done, total, partial=None, **kwargs):  # on the runner's worker, between two stages
        if partial is not None and "trust_maps" in partial():
            seen.append(len(partial()["trust_info"]["stages"]))
            first_stage.set()
            cancel_sent.wait(30)  # the Cancel arrives while the job waits to go on
        return original(done, total, partial, **kwargs)

    explorer.report_progress = spy
    front_end_message(explorer, {"type": "recompute", "panel": "trust"})
    assert first_stage.wait(60)
    front_end_message(explorer, {"type": "cancel", "panel": "trust"})
    cancel_sent.set()
    assert explorer.runner.wait(60)
    assert seen and seen[0] == 1  # the original model's maps came first, alone
    assert explorer.progress["trust"]["state"] == "cancelled"
    shown = explorer.trust_info["stages"]
    assert 1 <= len(shown) < len(explorer.trust_info["planned"]), "a cancelled run keeps the stages it had"
    assert explorer.trust_maps.shape[1] == len(shown)
    assert_untouched(digits.model, before)


def test_bad_methods_are_refused_and_change_nothing(digits, digit):
    explorer = cw.Explorer(digits, digit, tab="trust")
    front_end_update(explorer, trust_methods=["gradient", "no_such_method"])
    assert "trust_methods must name saliency methods" in explorer.error and "no_such_method" in explorer.error
    assert explorer.trust_methods == METHODS
    front_end_update(explorer, trust_methods=[])
    assert explorer.trust_methods == METHODS and "at least one" in explorer.error
    front_end_update(explorer, trust_methods=["smoothgrad", "gradient"])
    assert explorer.trust_methods == ["smoothgrad", "gradient"] and explorer.error == ""


def test_a_new_image_or_target_marks_the_result_stale(digits, digit):
    explorer = cw.Explorer(digits, digit, tab="trust")
    explorer.run_trust_checks(wait=True)
    assert explorer.trust_info["subject"] == explorer.trust_subject
    explorer.image = digits_split("test")[4][0]
    assert explorer.trust_info["subject"] != explorer.trust_subject
    subject = explorer.trust_subject
    explorer.target = 2
    assert explorer.trust_subject == subject + 1
    explorer.layer, explorer.channel = explorer.layer, 1  # the selection matters only for target "unit"
    assert explorer.trust_subject == subject + 1


def test_an_atlas_direction_target_is_an_error_in_the_tab_not_a_dead_widget(digits, digit, monkeypatch):
    from cnn_widgets.engine.targets import Direction

    explorer = cw.Explorer(digits, digit, tab="trust")
    layer = digits.layer_names[1]
    direction = Direction(layer, torch.ones(digits.layer(layer).channels))
    monkeypatch.setattr(explorer, "resolved_target", lambda: direction)
    explorer.run_trust_checks(wait=True)
    assert explorer.progress["trust"]["state"] == "error"
    assert "class or a unit" in explorer.error


def test_the_trust_and_compare_tabs_on_a_torchvision_model():
    import torchvision
    import torchvision.transforms as T

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    preprocess = T.Compose([T.Resize(64), T.CenterCrop(64), T.ToTensor(), T.Normalize([0.5] * 3, [0.25] * 3)])
    net = cw.Network(model, preprocess=preprocess, name="resnet18")
    before = fingerprint(model)
    explorer = cw.Explorer(net, "astronaut", tab="trust", trust_methods=["gradient", "grad_cam"], window=32, stride=32)
    explorer.run_trust_checks(wait=True)
    info = explorer.trust_info
    assert explorer.error == "" and explorer.progress["trust"]["state"] == "done"
    assert info["stages"] == ["original", *default_stages(model)] and info["stages"][1] == "fc"
    photo = cw.sample_image("astronaut")
    check = net.sanity_check(photo, net.top_class(photo), methods=["gradient"], progress=False)
    np.testing.assert_allclose(info["similarity"]["gradient"], check.similarity("gradient"), atol=1e-6)
    other = cw.Network(randomized_copy_of(model), preprocess=preprocess, name="resnet18, fc randomised")
    explorer.compare_net = other
    explorer.tab = "compare"
    explorer.compute()
    assert explorer.compare_info["other"]["name"] == "resnet18, fc randomised" and explorer.error == ""
    # everything below fc is the same network: the same feature maps of the selected layer
    np.testing.assert_array_equal(explorer.compare_fmaps, explorer.compare_other_fmaps)
    assert_untouched(model, before)


def randomized_copy_of(model):
    from cnn_widgets.engine.sanity import randomized_copy

    return randomized_copy(model, ["fc"])
