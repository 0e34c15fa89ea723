"""Deletion, insertion and ROAD curves of saliency maps (Petsiuk, Das & Saenko, "RISE", BMVC 2018;
Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022).

A faithful map ranks first the pixels the model's score depends on most. *Deletion* replaces the
image's pixels by a baseline, most important first, and records the target's score after each
step: a faithful map makes it fall fast (a small area under the curve). *Insertion* starts from the
baseline and puts the image's pixels back in the same order: the score should rise fast (a large
area). A pixel's importance is its map's absolute value summed over the input's channels (a
Grad-CAM map as it is); ties keep the image's raster order. Every step's image goes through the
model in batches (``steps + 1`` images per method, ``ceil((steps + 1) / batch_size)`` passes).

*ROAD* (RemOve And Debias) removes pixels as deletion does -- most relevant first (``road``, MoRF)
or least relevant first (``road_lerf``, LeRF) -- but fills them by noisy linear imputation
(:mod:`.road`: each removed pixel the weighted mean of its neighbours, plus noise) instead of a
baseline, so the removed set's outline no longer tells the model which pixels were ranked first.
A faithful map makes the MoRF curve fall fast (low AUC) and the LeRF curve stay high (high AUC).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .checks import check_bool, check_choice, check_float, check_int
from .errors import OptionError
from .hooks import inference_state
from .images import ImageLike
from .occlusion import FILLS, occlusion_fill
from .road import ROAD_NOISE, road_images
from .saliency import saliency
from .sanity import check_methods, fixed_target
from .targets import QUANTITIES, ClassTarget, Direction, Target, Unit, scalar

__all__ = ["BLUR_SIGMA", "CURVES", "IMPUTED", "LOWER_IS_BETTER", "Faithfulness", "faithfulness"]

#: The curves: RISE's deletion and insertion, ROAD's most- and least-relevant-first removal.
CURVES = ("deletion", "insertion", "road", "road_lerf")
#: The curves whose removed pixels are imputed (:mod:`.road`) rather than set to a baseline.
IMPUTED = ("road", "road_lerf")
#: The curves a faithful map keeps low (the others it keeps high).
LOWER_IS_BETTER = ("deletion", "road")
#: The blur baseline's Gaussian sigma in input pixels (RISE's insertion baseline: sigma 5, 224 px).
BLUR_SIGMA = 5.0


@dataclass
class Faithfulness:
    """What :func:`faithfulness` measured.

    Attributes
    ----------
    fractions
        ``[steps + 1]``: the share of pixels removed (deletion, ROAD) or put back (insertion) at each point.
    curves
        ``curves[method]``: ``[steps + 1]`` scores of the target (a probability for a class target
        by default, so in [0, 1]).
    auc
        ``auc[method]``: the trapezoidal area under the curve over ``fractions`` (lower is better for
        deletion and ``road``, higher for insertion and ``road_lerf``: :data:`LOWER_IS_BETTER`).
    baseline
        The fill of removed pixels: a baseline's name, or ``"noisy linear imputation"`` for ROAD.
    """

    metric: str
    baseline: str
    methods: list[str]
    fractions: torch.Tensor
    curves: dict[str, torch.Tensor]
    auc: dict[str, float]
    target: object = None
    quantity: str = "probability"
    interrupted: bool = False  # Ctrl-C stopped it: ``methods`` are the ones whose curve is whole

    def table(self) -> str:
        """One line per method with its AUC, best first."""
        better_low = self.metric in LOWER_IS_BETTER
        ranked = sorted(self.methods, key=lambda m: self.auc[m], reverse=not better_low)
        width = max(len(m) for m in self.methods)
        head = f"{self.metric} AUC ({'lower' if better_low else 'higher'} is better), baseline {self.baseline}"
        return "\n".join([head, *(f"{m:<{width}}  {self.auc[m]:.4f}" for m in ranked)])

    def figure(self):
        """A matplotlib figure of the curves, with each method's AUC in the legend."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        for method in self.methods:
            ax.plot(self.fractions.numpy(), self.curves[method].numpy(), label=f"{method} ({self.auc[method]:.3f})")
        ax.set_xlabel(f"share of pixels {'inserted' if self.metric == 'insertion' else 'removed'}")
        ax.set_ylabel(self.quantity)
        ax.set_title(f"{self.metric} (baseline: {self.baseline})", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        return fig


def importance_order(attribution: torch.Tensor, least_first: bool = False) -> torch.Tensor:
    """Pixel indices ``[H * W]``, most important first (``least_first``: least important first):
    ``|attribution|`` summed over channels (a ``[H, W]`` map as it is), ties in raster order."""
    values = attribution.detach().abs().sum(dim=0) if attribution.dim() == 3 else attribution.detach()
    return torch.sort(values.flatten().double(), descending=not least_first, stable=True).indices


def faithfulness(
    net, image: ImageLike, target: Target = None, methods: Sequence[str] | None = None, metric: str = "deletion",
    steps: int = 32, baseline: str = "blur", quantity: str = "probability", batch_size: int = 16,
    noise: float = ROAD_NOISE, seed: int = 0, progress: bool | None = None,
    callback: Callable[[int, int, "Faithfulness"], None] | None = None,
) -> Faithfulness:
    """Deletion or insertion curves (RISE, Petsiuk et al. 2018), or ROAD curves (Rong et al. 2022),
    of saliency ``methods`` on ``image``.

    Parameters
    ----------
    target
        As for ``net.saliency``; ``None`` is the top class (of the image), kept for every step.
    methods
        Names from the saliency registry (default: those of one backward pass,
        :data:`~.sanity.SINGLE_PASS`).
    metric
        ``"deletion"``, ``"insertion"``, ``"road"`` (most relevant removed first) or ``"road_lerf"``
        (least relevant first) (:data:`CURVES`).
    steps
        Points of the curve after the first: step ``i`` has ``round(i * H * W / steps)`` pixels
        removed or inserted.
    baseline
        What a removed pixel becomes in deletion and insertion, one of ``zero``, ``mean``, ``blur``
        (the occlusion fills; ``blur`` with sigma :data:`BLUR_SIGMA`). ROAD imputes instead.
    quantity
        ``"probability"`` (default) or ``"logit"`` for a class target; a unit's value as it is.
    noise, seed
        ROAD only: the standard deviation of the noise added to imputed pixels (model-input units;
        the paper's 0.01) and the seed of its generator (each method's curve starts from ``seed``,
        so methods meet the same noise; the same call gives the same curves).
    progress, callback
        A progress bar over the methods (default: for ROAD, or more than two methods);
        ``callback(done, total, partial_result)`` after each method (raise to stop). Ctrl-C keeps
        the methods whose curve is whole (``interrupted``).

    ROAD solves one sparse system per step image (:func:`.road.noisy_linear_imputation`, all
    channels at once, scipy on the CPU); the step images then go through the model in batches. Its
    last point, every pixel removed, is the image's channel means plus noise (nothing is left to
    interpolate from). The paper reports a data set's accuracy per step; one image's curve is the
    target's score, as for deletion.
    """
    methods = check_methods(methods)
    check_choice("metric", metric, CURVES)
    check_choice("baseline", baseline, FILLS)
    check_choice("quantity", quantity, QUANTITIES)
    steps, batch_size = check_int("steps", steps), check_int("batch_size", batch_size)
    noise, seed = check_float("noise", noise, low=0), check_int("seed", seed, low=0)
    if isinstance(target, Direction):
        raise OptionError("faithfulness explains a class or a unit; a direction target has no score to delete from")
    x = net.prepare(image)
    resolved = fixed_target(net, x, target)
    explained = resolved if isinstance(resolved, Unit) else resolved.index
    h, w = x.shape[-2:]
    counts = [round(i * h * w / steps) for i in range(steps + 1)]
    fractions = torch.tensor([c / (h * w) for c in counts], dtype=torch.float64)
    imputed = metric in IMPUTED
    if not imputed:
        with torch.no_grad():
            base = occlusion_fill(x, baseline, window=round(4 * BLUR_SIGMA))
    show = (imputed or len(methods) > 2) if progress is None else check_bool("progress", progress)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(methods), desc=metric, unit="method", leave=False)
    curves, auc = {}, {}

    def result(interrupted: bool = False) -> Faithfulness:
        return Faithfulness(metric, "noisy linear imputation" if imputed else baseline, list(curves), fractions,
                            dict(curves), dict(auc), resolved, quantity if isinstance(resolved, ClassTarget) else "unit value",
                            interrupted)

    try:
        for method in methods:
            order = importance_order(saliency(net, x, explained, method=method), least_first=metric == "road_lerf")
            rank = torch.empty(h * w, dtype=torch.long)
            rank[order.cpu()] = torch.arange(h * w)  # rank[p]: the step position of pixel p
            rank = rank.view(h, w)
            if imputed:
                generator = torch.Generator().manual_seed(seed)
                images = road_images(x[0], rank, counts, noise, generator)
                chunks = (torch.stack([next(images) for _ in counts[start:start + batch_size]])
                          for start in range(0, len(counts), batch_size))
            else:
                chunks = _masked(x, base, rank.to(x.device), counts, metric == "insertion", batch_size)
            curve = _scores(net, chunks, resolved, quantity)
            curves[method], auc[method] = curve, float(torch.trapezoid(curve.double(), fractions))
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(len(curves), len(methods), result())
    except KeyboardInterrupt:
        return result(interrupted=True)
    finally:
        if bar is not None:
            bar.close()
    return result()


def _masked(x, base, rank, counts, insert: bool, batch_size: int):
    """The step images of deletion (or insertion), ``batch_size`` at a time: ``[b, C, H, W]``."""
    for start in range(0, len(counts), batch_size):
        chunk = torch.tensor(counts[start:start + batch_size], device=x.device).view(-1, 1, 1, 1)
        changed = rank < chunk  # [b, 1, H, W] by broadcasting: the pixels removed (or inserted) at each step
        yield torch.where(changed, x, base) if insert else torch.where(changed, base, x)


def _scores(net, chunks, resolved, quantity) -> torch.Tensor:
    """The target's score on every image of ``chunks`` (batches ``[b, C, H, W]``), in order."""
    layers = [resolved.layer] if isinstance(resolved, Unit) else []
    values = []
    with inference_state(net.model), torch.no_grad():
        for batch in chunks:
            logits, outputs = net._forward(batch, layers=layers, stop_early=bool(layers))
            values.append(scalar(resolved, logits, outputs, quantity).detach().float().cpu())
    return torch.cat(values)
