"""Our trust checks against Quantus 0.6 (Hedström et al., JMLR 2023) on the same maps and settings.

Every expected number here comes out of a Quantus metric -- its own orderings, perturbations,
randomised models and similarity -- never our result read back. Quantus runs on float32 (it feeds
the model ``torch.Tensor(x)``), so the tiny convnet is float32 too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

quantus = pytest.importorskip("quantus")
captum_attr = pytest.importorskip("captum.attr")

import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
from cnn_widgets.engine.road import noisy_linear_imputation
from cnn_widgets.engine.sanity import default_stages

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tests/engine/conftest.py
              pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]

SIZE = 24  # 576 pixels: 9 deletion steps of 64 pixels (see the pixel-flipping test for why)


def tiny_net() -> cw.Network:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4)).eval()
    with torch.no_grad():
        model[-1].weight.mul_(12)  # confident enough that removing pixels moves the probability a lot
    return cw.Network(model, preprocess=lambda img: torch.zeros(3, SIZE, SIZE))


def smooth_image(seed: int = 1) -> torch.Tensor:
    """Blurred noise: neighbours are alike, so imputing a pixel differs clearly from zeroing it."""
    from scipy.ndimage import gaussian_filter

    noise = np.random.default_rng(seed).standard_normal((3, SIZE, SIZE))
    return torch.from_numpy(gaussian_filter(noise, (0, 2, 2)) * 4).float()


def fingerprint(model):
    return [v.detach().clone() for v in model.state_dict().values()], model.training, hook_count(model)


def assert_unchanged(model, before):
    after = fingerprint(model)
    assert all(torch.equal(a, b) for a, b in zip(after[0], before[0])) and after[1:] == before[1:]


class Recorder(nn.Module):
    """The model, keeping every batch Quantus feeds it: ROAD returns only 0/1 correctness, so the
    probabilities of Quantus's own perturbed images are read from what it passed in."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def captum_explainer(model, inputs, targets, method="gradient", **_):
    """Quantus's explain_func: captum's maps summed over channels (ours sum the signed map, then
    take |.|; Quantus's abs=True takes |.| after this function)."""
    kind = captum_attr.GuidedBackprop if method == "guided_backprop" else captum_attr.Saliency
    x = torch.as_tensor(inputs, dtype=torch.float32).requires_grad_(True)
    extra = {"abs": False} if kind is captum_attr.Saliency else {}
    return kind(model).attribute(x, target=torch.as_tensor(targets), **extra).sum(1).detach().numpy()


@pytest.mark.parametrize("method", ["gradient", "guided_backprop"])
def test_sanity_check_similarity_equals_quantus_mprt(method):
    """Quantus MPRT re-initialises every module with ``reset_parameters`` under
    ``torch.manual_seed(seed + 1)`` -- the same seed for every layer -- while ours draws stage ``i``
    with ``seed + i``. So each *independent* stage is compared with our call for that stage alone at
    seed ``quantus_seed + 1``, and the cascade only at its first stage (deeper cascade stages hold
    differently drawn upper layers on the two sides, by that seed rule alone).

    Tolerance 1e-5: the maps come from captum (Quantus) and our hooks, both float32 autograd of the
    same model; a rounding-level swap of two near-equal pixels moves Spearman's rho by ~1e-7 here.
    """
    net, x = tiny_net(), smooth_image()
    before = fingerprint(net.model)
    top = int(net.model(x[None]).argmax())
    stages = default_stages(net.model)
    assert stages == ["6", "2", "0"]  # the modules Quantus randomises, top-down
    settings = {"seed": 41, "disable_warnings": True}
    run = {"x_batch": x[None].numpy(), "y_batch": np.array([top]), "a_batch": None, "explain_func": captum_explainer,
           "explain_func_kwargs": {"method": method}, "device": "cpu"}
    independent = quantus.MPRT(layer_order="independent", **settings)(model=net.model, **run)
    cascade = quantus.MPRT(layer_order="top_down", **settings)(model=net.model, **run)
    for stage in stages:
        ours = net.sanity_check(x, top, methods=[method], cascade=False, stages=[stage], seed=42, progress=False)
        assert ours.similarity(method, "spearman_abs")[1] == pytest.approx(float(independent[stage][0]), abs=1e-5)
    ours = net.sanity_check(x, top, methods=[method], cascade=True, seed=42, progress=False)
    assert ours.stages == ["original", *stages]
    assert ours.similarity(method)[1] == pytest.approx(float(cascade["6"][0]), abs=1e-5)
    assert max(float(independent[s][0]) for s in stages) < 0.9  # randomisation did change the maps
    assert_unchanged(net.model, before)


@pytest.mark.parametrize("method", ["gradient", "guided_backprop"])
def test_deletion_curve_equals_quantus_pixel_flipping_and_region_perturbation(method):
    """Same map, zero baseline (Quantus ``perturb_baseline=0.0``: its ``"black"`` is the image's
    minimum), probabilities of the target.

    Quantus's PixelFlipping broadcasts the ``[1, H, W]`` map to ``[3, H, W]`` and steps over the
    ``3 H W`` values, ``features_in_step`` at a time, but checks ``features_in_step`` against
    ``H W``; 576 pixels with 192 values (64 whole pixels) per step satisfy both, giving 9 steps.
    Ties are ordered differently (ours in raster order, Quantus by numpy's unstable argsort), so
    the test checks that no tie straddles a step boundary, where the order would matter.
    Tolerance 1e-6: the same float32 images through the same model, in other batches.
    RegionPerturbation with 1-pixel patches records ``p(x) - p(step)`` after every pixel.
    """
    net, x = tiny_net(), smooth_image(2)
    before = fingerprint(net.model)
    top = int(net.model(x[None]).argmax())
    values = net.saliency(x, top, method=method).abs().sum(0)
    ranked = torch.sort(values.flatten(), descending=True).values
    assert all(ranked[k - 1] > ranked[k] for k in range(64, SIZE * SIZE, 64))
    ours = net.faithfulness(x, top, methods=[method], steps=9, baseline="zero").curves[method].double().numpy()
    run = {"model": net.model, "x_batch": x[None].numpy(), "y_batch": np.array([top]),
           "a_batch": values[None, None].numpy(), "device": "cpu"}
    flipping = quantus.PixelFlipping(features_in_step=3 * 64, perturb_baseline=0.0, disable_warnings=True)(**run)
    np.testing.assert_allclose(ours[1:], np.asarray(flipping[0]), rtol=0, atol=1e-6)
    regions = quantus.RegionPerturbation(patch_size=1, regions_evaluation=SIZE * SIZE, perturb_baseline=0.0,
                                         disable_warnings=True)(**run)
    drops = np.asarray(regions[0])[63::64]  # after 64, 128, ... pixels
    np.testing.assert_allclose(ours[0] - ours[1:], drops, rtol=0, atol=1e-6)
    assert ours.max() - ours.min() > 0.05  # the curve moves: agreement is not two flat lines
    assert_unchanged(net.model, before)


def test_noisy_linear_imputation_equals_quantus():
    """Quantus's ``noisy_linear_imputation`` (from the authors' road_evaluation) on the same pixels,
    noise off: the same equations solved two ways (lil -> csc there, coo -> csc here), 1e-12."""
    from quantus.functions import perturb_func

    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, SIZE, SIZE))
    removed = rng.random((SIZE, SIZE)) < 0.6
    theirs = perturb_func.noisy_linear_imputation(x, np.flatnonzero(removed.ravel()), noise=0.0)
    ours = noisy_linear_imputation(torch.from_numpy(x), torch.from_numpy(removed), noise=0.0).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["road", "road_lerf"])
def test_road_curve_equals_quantus_road(metric):
    """Quantus ROAD on our map, noise 0 on both sides (their noise comes from numpy's global
    generator, ours from a seeded torch one: with noise the images differ by the draw alone).

    Two settings make Quantus 0.6 compute our ROAD. (1) Its ``evaluate_batch`` ranks the map
    broadcast to ``[3, H, W]`` but imputes on the ``H W`` pixel grid, so a ``[1, H, W]`` map raises an
    IndexError; the map is given as ``[3, H, W]`` with channel 0 the importance (negated for LeRF,
    Quantus being MoRF only) and channels 1-2 below every value, so the first ``3 H W * p / 100``
    ranked indices are pixels. (2) Its step sizes are ``int(3 H W * p / 100)``: ``p`` is chosen half
    a pixel above each of our counts. Quantus reports only whether the top class stays the target,
    so the probabilities are those of the images it fed the model (``Recorder``). Tolerance 1e-5:
    float64 imputations equal to 1e-12, cast to float32, through the same float32 model.
    """
    net, x = tiny_net(), smooth_image(4)
    before = fingerprint(net.model)
    top = int(net.model(x[None]).argmax())
    steps, pixels = 8, SIZE * SIZE
    ours = net.faithfulness(x, top, methods=["gradient"], metric=metric, steps=steps, noise=0.0)
    values = net.saliency(x, top, method="gradient").abs().sum(0).numpy()
    ranked = -values if metric == "road_lerf" else values
    importance = np.full((1, 3, SIZE, SIZE), ranked.min() - 1, dtype=np.float32)
    importance[0, 0] = ranked
    counts = [round(i * pixels / steps) for i in range(1, steps)]  # 100 % removed is singular in Quantus
    recorder = Recorder(net.model).eval()
    road = quantus.ROAD(percentages=[100 * (c + 0.5) / (3 * pixels) for c in counts], noise=0.0,
                        disable_warnings=True)
    correct = road(model=recorder, x_batch=x[None].numpy(), y_batch=np.array([top]), a_batch=importance,
                   device="cpu")
    assert len(recorder.seen) == len(counts)
    with torch.no_grad():
        theirs = np.array([float(net.model(seen).softmax(1)[0, top]) for seen in recorder.seen])
        predicted = [int(net.model(seen).argmax()) == top for seen in recorder.seen]
    curve = ours.curves["gradient"].double().numpy()
    np.testing.assert_allclose(curve[1:steps], theirs, rtol=0, atol=1e-5)
    assert [bool(v) for v in correct.values()] == predicted  # Quantus's own 0/1 agrees with those images
    deletion = net.faithfulness(x, top, methods=["gradient"], steps=steps, baseline="zero").curves["gradient"].numpy()
    assert np.abs(deletion[1:steps] - theirs).max() > 1e-2  # imputing is not zeroing: the check can fail
    assert_unchanged(net.model, before)
