"""How long the trust checks take on the default model at 224 px, ours beside Quantus (a script, never a test).

Run:  python benchmarks/bench_trust.py [--quick] [--methods gradient grad_cam ...] [--steps 32] [--threads 1]

Rows, measured side by side in one run, each with the 1-minute load average beside it; ``ratio`` is
Quantus's time over ours (above 1: ours is faster):

* ``sanity``: ``net.sanity_check`` (cascading randomisation of every default stage, then the
  Spearman similarity of every stage) against Quantus's ``MPRT`` (``layer_order="top_down"``) on the
  same stages. Quantus randomises every module that has ``reset_parameters`` (99 in the default
  model) one stage each; for identical work its layer generator is made to yield our stages
  instead, each re-initialised by Quantus's own rule (``torch.manual_seed(seed + 1)``, then every
  submodule's ``reset_parameters``). Quantus computes the original's map twice (as ``a_batch`` and
  again inside its loop): 14 maps to our 13. One more row times Quantus's MPRT as shipped (every
  module a stage) for the first method, for scale. ``|d| stage 1``: the first stage's Spearman
  similarity, ours minus Quantus's (the one stage both sides draw with the same seed: Quantus uses
  ``seed + 1`` for every layer, ours ``seed + i`` for stage ``i``).
* ``deletion``: ``net.faithfulness`` deletion curves (zero baseline, ``--steps`` steps, batched
  ``--batch``; our batch-1 time beside it) against Quantus's ``PixelFlipping`` with
  ``perturb_baseline=0.0``. PixelFlipping steps over the map broadcast to ``3 H W`` values but checks
  ``features_in_step`` against ``H W``: with ``features_in_step = H W / steps`` it needs ``3 * steps``
  single-image passes, every third of them at our step's pixel set (``max|d|`` compares those).
* ``road`` (ROAD, noise 0.01): ``net.faithfulness(metric="road")`` against Quantus's ``ROAD`` at the
  same removed counts (its 0/1 result, not compared; the test file compares the images).

Quantus computes its maps with captum at our settings (the ``explain_func`` a Quantus user writes):
``Saliency``, ``GuidedBackprop`` (captum's guided rule skips the model's ReLU6, so its map is the
plain gradient: ``max|d|`` is large), ``IntegratedGradients`` (Gauss-Legendre, our step count and
batch), ``NoiseTunnel`` SmoothGrad (our sample count, noise and batch; other draws), ``LayerGradCam``
at our Grad-CAM layer, bilinearly upsampled. ``--quick``: gradient and grad_cam, ROAD for gradient.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings

import numpy as np
import torch

import cnn_widgets as cw
from cnn_widgets.engine.sanity import default_stages

DEFAULT_METHODS = ("gradient", "guided_backprop", "integrated_gradients", "smoothgrad", "grad_cam")
QUICK_METHODS = ("gradient", "grad_cam")


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def captum_explainer(net, x: torch.Tensor, top: int):
    """Quantus's ``explain_func`` for each method: captum at the settings of our registry's defaults."""
    from captum import attr

    from cnn_widgets.engine.grad_cam import _cam_layer

    cam_layer, _ = _cam_layer(net, net._resolve_target(top), None)
    sigma = 0.15 * float(x.max() - x.min())  # our SmoothGrad's noise level

    def explain(model, inputs, targets, method="gradient", pixel="abs_sum", **_):
        """``pixel``: ``abs_sum`` (our faithfulness ranks ``sum_c |a_c|``) or ``sum`` (our sanity check
        compares ``|sum_c a_c|``; Quantus's ``abs=True`` takes the ``|.|``)."""
        inputs = torch.as_tensor(inputs, dtype=torch.float32).requires_grad_(True)
        targets = torch.as_tensor(targets)
        if method == "gradient":
            a = attr.Saliency(model).attribute(inputs, target=targets, abs=False)
        elif method == "guided_backprop":
            a = attr.GuidedBackprop(model).attribute(inputs, target=targets)
        elif method == "integrated_gradients":
            a = attr.IntegratedGradients(model).attribute(inputs, baselines=torch.zeros_like(inputs), target=targets,
                                                          n_steps=32, method="gausslegendre", internal_batch_size=16)
        elif method == "smoothgrad":
            a = attr.NoiseTunnel(attr.Saliency(model)).attribute(inputs, nt_type="smoothgrad", nt_samples=25,
                                                                 nt_samples_batch_size=16, stdevs=sigma,
                                                                 target=targets, abs=False)
        elif method == "grad_cam":
            cam = attr.LayerGradCam(model, model.get_submodule(cam_layer)).attribute(inputs, target=targets,
                                                                                    relu_attributions=True)
            return attr.LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), "bilinear")[:, 0].detach().numpy()
        else:
            raise ValueError(method)
        return (a.abs().sum(1) if pixel == "abs_sum" else a.sum(1)).detach().numpy()

    return explain


def quantus_on_our_stages(stages: list[str]):
    """Quantus's MPRT layer generator, yielding ``stages`` (top-down) instead of every module."""
    from quantus.helpers.model.pytorch_model import PyTorchModel

    def generator(self, order: str = "top_down", seed: int = 42):
        model = copy.deepcopy(self.model)
        for name in stages:
            torch.manual_seed(seed + 1)  # Quantus's rule: the same seed for every layer
            for sub in model.get_submodule(name).modules():
                if hasattr(sub, "reset_parameters"):
                    sub.reset_parameters()
            yield name, model

    original = PyTorchModel.get_random_layer_generator
    PyTorchModel.get_random_layer_generator = generator
    return lambda: setattr(PyTorchModel, "get_random_layer_generator", original)


def timed(function, *args, **kwargs):
    """``function(*args, **kwargs)`` and the seconds it took."""
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def quantus_road(quantus, explain, net, batch: dict, method: str, counts: list[int], pixels: int):
    """Quantus's ROAD at our removed counts. It ranks the map broadcast to 3 channels but imputes on
    the pixel grid: channel 0 carries the importance and the others rank below it (see
    tests/engine/test_quantus_agreement.py); ``p`` sits half a pixel above each count."""
    values = explain(net.model, batch["x_batch"], batch["y_batch"], method=method)[0]
    importance = np.full((1, 3, *values.shape), values.min() - 1, dtype=np.float32)
    importance[0, 0] = values
    road = quantus.ROAD(percentages=[100 * (c + 0.5) / (3 * pixels) for c in counts], noise=0.01,
                        disable_warnings=True)
    return road(model=net.model, a_batch=importance, **batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=32, help="deletion and ROAD curve steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="gradient and grad_cam only, ROAD for gradient")
    args = parser.parse_args()
    methods = args.methods or list(QUICK_METHODS if args.quick else DEFAULT_METHODS)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import quantus

    net, cat = cw.load_default(), cw.sample_image("cat")
    x = net.prepare(cat)
    top = int(net.logits(x).argmax())
    explain = captum_explainer(net, x, top)
    batch = {"x_batch": x.numpy(), "y_batch": np.array([top]), "device": "cpu"}
    net.saliency(cat)  # warm up
    cw.engine.sanity.similarity(torch.rand(8, 8), torch.rand(8, 8))  # scipy.stats imported (Quantus's import did too)
    stages = default_stages(net.model)
    print(f"bench_trust: default model, cat 224 px, torch {torch.__version__}, quantus {quantus.__version__}, "
          f"{torch.get_num_threads()} thread(s), load {load()}")
    print(f"sanity: {len(stages)} stages top-down, both sides; ratio = quantus s / ours s")

    print(f"\n{'sanity cascade':<22}{'ours s':>9}{'quantus s':>11}{'ratio':>7}{'|d| stage 1':>12}{'load':>7}")
    restore = quantus_on_our_stages(stages)
    try:
        for method in methods:
            ours, mine = timed(net.sanity_check, cat, top, methods=[method], seed=42, progress=False)
            rho, rho_time = timed(ours.similarity, method)
            mprt = quantus.MPRT(layer_order="top_down", seed=41, disable_warnings=True)
            try:
                theirs, q_time = timed(mprt, model=net.model, a_batch=None, explain_func=explain,
                                       explain_func_kwargs={"method": method, "pixel": "sum"}, **batch)
            except AssertionError as error:  # Quantus refuses a map that is zero everywhere
                print(f"{method:<22}{mine + rho_time:>9.2f}   quantus refused: {str(error).split(',')[0]}")
                continue
            mine += rho_time
            diff = abs(rho[1] - float(theirs[stages[0]][0]))  # the one stage drawn with the same seed on both sides
            print(f"{method:<22}{mine:>9.2f}{q_time:>11.2f}{q_time / mine:>7.2f}{diff:>12.2g}{load():>7}")
    finally:
        restore()
    method = methods[0]  # for scale: Quantus as shipped randomises every module with reset_parameters
    modules = sum(1 for m in net.model.modules() if hasattr(m, "reset_parameters"))
    mprt = quantus.MPRT(layer_order="top_down", seed=41, disable_warnings=True)
    _, q_time = timed(mprt, model=net.model, a_batch=None, explain_func=explain,
                      explain_func_kwargs={"method": method, "pixel": "sum"}, **batch)
    print(f"{method + f' ({modules} modules)':<22}{'':>9}{q_time:>11.2f}{'':>7}{'':>12}{load():>7}  (Quantus's own stages)")

    pixels = x.shape[-2] * x.shape[-1]
    print(f"\n{'deletion':<22}{'ours s':>9}{'batch 1 s':>11}{'quantus s':>11}{'ratio':>7}{'max|d|':>9}{'AUC':>7}{'load':>7}")
    for method in methods:
        deletion = {"methods": [method], "steps": args.steps, "baseline": "zero"}
        result, mine = timed(net.faithfulness, cat, top, batch_size=args.batch, **deletion)
        _, single = timed(net.faithfulness, cat, top, batch_size=1, **deletion)
        flipping = quantus.PixelFlipping(features_in_step=pixels // args.steps, perturb_baseline=0.0,
                                         disable_warnings=True)
        theirs, q_time = timed(flipping, model=net.model, a_batch=None, explain_func=explain,
                               explain_func_kwargs={"method": method}, **batch)
        whole = np.asarray(theirs[0])[2::3]  # every third step removes whole pixels
        diff = float(np.abs(result.curves[method][1:].numpy() - whole).max())
        print(f"{method:<22}{mine:>9.2f}{single:>11.2f}{q_time:>11.2f}{q_time / mine:>7.2f}{diff:>9.2g}"
              f"{result.auc[method]:>7.3f}{load():>7}")

    print(f"\n{'road (noise 0.01)':<22}{'ours s':>9}{'quantus s':>11}{'ratio':>7}{'AUC':>7}{'load':>7}")
    counts = [round(i * pixels / args.steps) for i in range(1, args.steps)]  # 100 % is singular in Quantus
    for method in methods[:1] if args.quick else methods:
        result, mine = timed(net.faithfulness, cat, top, methods=[method], metric="road", steps=args.steps,
                             batch_size=args.batch, progress=False)
        _, q_time = timed(quantus_road, quantus, explain, net, batch, method, counts, pixels)
        print(f"{method:<22}{mine:>9.2f}{q_time:>11.2f}{q_time / mine:>7.2f}{result.auc[method]:>7.3f}{load():>7}")
    assert not net.model.training


if __name__ == "__main__":
    main()
