"""Sanity checks for saliency maps: model-parameter randomisation (Adebayo et al., NeurIPS 2018).

A saliency method that explains the model should change when the model's weights are replaced by
random ones. :func:`sanity_check` re-initialises the model's stages top-down on a **copy** --
cascading (the classifier, then the classifier and the stage below, ... down to every stage) or
one stage at a time (``cascade=False``) -- computes each method's map on every randomised copy,
and measures how similar each map stays to the original model's, with the paper's four measures
(:data:`METRICS`). A method whose maps stay similar while the top of the network is noise shows
the image, not what the model learned (guided backprop, deconvnet: the paper's Figure 2).

The data-randomisation test of the paper is the same comparison with a model trained on shuffled
labels: call ``net.saliency`` on both networks and compare the maps with :func:`similarity`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .checks import check_bool, check_choice, check_int
from .errors import OptionError
from .images import ImageLike
from .saliency import METHODS, saliency
from .targets import ClassTarget, Target, Unit

__all__ = ["METRICS", "SINGLE_PASS", "SanityCheck", "check_methods", "default_stages", "fixed_target", "randomized_copy",
           "sanity_check", "similarity"]

#: Similarity of a map to the original model's (the paper's Section 4): Spearman rank correlation
#: of the absolute maps (``spearman_abs``) and of the signed maps (``spearman``), the structural
#: similarity index of the absolute maps scaled to [0, 1] (``ssim``), and the Pearson correlation
#: of their histograms of oriented gradients (``hog``).
METRICS = ("spearman_abs", "spearman", "ssim", "hog")
#: The methods checked when none are named: those of one backward pass each (SmoothGrad and
#: integrated gradients cost tens of passes per stage; name them to include them).
SINGLE_PASS = ("gradient", "deconvnet", "guided_backprop", "input_x_gradient", "grad_cam")
ORIGINAL = "original"
#: The verdict's rule (:meth:`SanityCheck.verdict`): a method *fails* when its map, with the top half
#: of the stages randomised (cascading), is still this similar (``spearman_abs``) to the original's.
#: The paper gives no threshold; at 0.5 the maps share most of their rank order.
SIMILAR = 0.5


@dataclass
class SanityCheck:
    """What :func:`sanity_check` found.

    Attributes
    ----------
    stages
        ``"original"``, then the randomised stages top-down: with ``cascade`` stage ``i`` is the model
        with every stage down to ``stages[i]`` randomised; without it only ``stages[i]``.
    methods
        The saliency methods compared.
    maps
        ``maps[method]``: ``[len(stages), H, W]`` float32 maps on the CPU, each summed over the
        input's channels (Grad-CAM's map as it is); the first is the original model's.
    target
        The explained class (the original model's top class for ``target=None``) or unit, the same
        for every stage.
    cascade, seed
        As called. ``interrupted``: Ctrl-C stopped it; the stages computed are kept.
    """

    stages: list[str]
    methods: list[str]
    maps: dict[str, torch.Tensor]
    signed: dict[str, torch.Tensor] = field(repr=False)
    target: object = None
    cascade: bool = True
    seed: int = 0
    interrupted: bool = False
    planned: int = 0  # the randomised stages asked for (``stages`` has them once all are computed)

    def similarity(self, method: str, metric: str = "spearman_abs") -> list[float]:
        """One number per stage: how similar ``method``'s map on that stage is to the original's
        (1.0 for the original itself)."""
        check_choice("method", method, self.methods)
        check_choice("metric", metric, METRICS)
        kind = self.signed[method] if metric == "spearman" else self.maps[method]
        return [similarity(kind[0], kind[i], metric) for i in range(len(self.stages))]

    def half_stage(self) -> int | None:
        """The index of the stage with the top half of the stages randomised (cascading), or None
        (independent stages, or not computed yet)."""
        index = (self.planned + 1) // 2 if self.planned else None
        return index if self.cascade and index is not None and index < len(self.stages) else None

    def verdict(self, method: str) -> dict | None:
        """Whether ``method``'s map follows the model: ``{"similarity", "stage", "fails", "text"}`` at the
        :meth:`half_stage` (``fails``: still at least :data:`SIMILAR` alike), or None before it."""
        check_choice("method", method, self.methods)
        index = self.half_stage()
        if index is None:
            return None
        value = self.similarity(method)[index]
        fails = bool(value >= SIMILAR)  # (NaN: a flat map, nothing of the original left: it changed)
        text = (f"changes little when the top half of the network is randomised: {value:.2f}" if fails
                else f"changes when the top half of the network is randomised: {value:.2f}" if value == value
                else "its map goes flat when the top half of the network is randomised")
        return {"similarity": value, "stage": self.stages[index], "fails": fails, "text": text}

    def table(self, metric: str = "spearman_abs") -> str:
        """A plain-text table: one row per method, one column per stage."""
        check_choice("metric", metric, METRICS)
        width = max(len(m) for m in self.methods)
        head = f"{metric:<{width}}  " + "  ".join(f"{s[-12:]:>12}" for s in self.stages)
        rows = [f"{m:<{width}}  " + "  ".join(f"{v:12.3f}" for v in self.similarity(m, metric)) for m in self.methods]
        return "\n".join([head, *rows])

    def figure(self, metric: str = "spearman_abs"):
        """A matplotlib figure: each method's maps, one column per stage, and the similarity curves."""
        import matplotlib.pyplot as plt

        rows, cols = len(self.methods) + 1, len(self.stages)
        fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.4 * rows), squeeze=False)
        for r, method in enumerate(self.methods):
            for c in range(cols):
                ax = axes[r][c]
                ax.imshow(self.maps[method][c].numpy(), cmap="gray")
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(self.stages[c], fontsize=6)
                if c == 0:
                    ax.set_ylabel(method, fontsize=7)
        curve = fig.add_subplot(rows, 1, rows)
        for c in range(cols):
            axes[rows - 1][c].remove()
        for method in self.methods:
            curve.plot(range(cols), self.similarity(method, metric), marker="o", label=method)
        curve.set_xticks(range(cols), self.stages, rotation=60, fontsize=6)
        curve.set_ylabel(metric)
        curve.legend(fontsize=6)
        fig.tight_layout()
        return fig


def default_stages(model: nn.Module) -> list[str]:
    """The model's stages top-down: its children with parameters, a ``Sequential`` or ``ModuleList``
    child split into its own children with parameters (``blocks.6``, ..., ``blocks.0``), in the
    reverse of the order the model registers them (its forward order in torchvision and timm)."""
    names = []
    for name, child in model.named_children():
        if not _has_parameters(child):
            continue
        inner = [n for n, c in child.named_children() if _has_parameters(c)]
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(inner) > 1:
            names += [f"{name}.{n}" for n in inner]
        else:
            names.append(name)
    return names[::-1]


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _randomize(module: nn.Module, generator_seed: int) -> None:
    """Re-initialise ``module`` in place, as a fresh one would be: each submodule's own
    ``reset_parameters`` (PyTorch's initialisation; a batch norm's running statistics reset too),
    drawn from a generator seeded with ``generator_seed``; a parameter no submodule resets is drawn
    from a normal distribution with its original mean and standard deviation."""
    reset: set[int] = set()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(generator_seed)
        for sub in module.modules():
            if callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()
                reset.update(id(p) for p in sub.parameters(recurse=False))
        for p in module.parameters():
            if id(p) not in reset:
                std = float(p.float().std()) if p.numel() > 1 else 0.0
                p.copy_(torch.randn(p.shape, dtype=torch.float32).mul_(std).add_(float(p.float().mean())).to(p.dtype))


def randomized_copy(model: nn.Module, stages: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with ``stages`` re-initialised (stage ``i`` of ``default_stages``
    order with seed ``seed + i`` of its position in ``stages``); ``model`` itself is never touched."""
    clone = copy.deepcopy(model)
    for i, name in enumerate(stages):
        _randomize(clone.get_submodule(name), seed + i)
    return clone


def check_methods(methods: Sequence[str] | None) -> list[str]:
    """``methods`` (default :data:`SINGLE_PASS`) as a list of saliency-registry names, or an ``OptionError``."""
    methods = list(SINGLE_PASS if methods is None else methods)
    if not methods:
        raise OptionError("methods is empty; name saliency methods, e.g. ['gradient', 'guided_backprop']")
    for method in methods:
        check_choice("method", method, METHODS)
    return methods


def fixed_target(net, x: torch.Tensor, target: Target) -> Unit | ClassTarget:
    """``target`` resolved once, ``None`` as the top class of ``x`` now: what every randomised model
    or perturbed copy is then asked about."""
    return net._resolve_target(net.top_class(x) if target is None else target)


def _check_stages(model: nn.Module, stages) -> list[str]:
    if stages is None:
        stages = default_stages(model)
    if isinstance(stages, str) or not isinstance(stages, Sequence):
        raise OptionError(f"stages must be a list of module names, top-down; got {stages!r}")
    known = dict(model.named_modules())
    for name in stages:
        if not isinstance(name, str) or name not in known or not name or not _has_parameters(known[name]):
            hint = ", ".join(default_stages(model)[:8])
            raise OptionError(f"stage {name!r} is not a module of the model with parameters; "
                              f"name modules of net.model, top-down (the default stages: {hint}, ...)")
    if len(set(stages)) != len(stages) or not stages:
        raise OptionError(f"stages must name at least one module, each once; got {list(stages)}")
    return list(stages)


def sanity_check(
    net, image: ImageLike, target: Target = None, methods: Sequence[str] | None = None, cascade: bool = True,
    stages: Sequence[str] | None = None, seed: int = 0, progress: bool | None = None,
    callback: Callable[[int, int, "SanityCheck"], None] | None = None,
) -> SanityCheck:
    """Model-parameter randomisation test (Adebayo et al. 2018) of saliency ``methods`` on ``image``.

    Parameters
    ----------
    target
        What is explained, as for ``net.saliency``; ``None`` is the original model's top class,
        kept for every randomised stage.
    methods
        Names from the saliency registry (default :data:`SINGLE_PASS`).
    cascade
        Randomise top-down cumulatively (the paper's cascading test), or each stage alone.
    stages
        Module names of ``net.model``, top-down (default :func:`default_stages`).
    seed
        Stage ``i``'s weights are drawn with seed ``seed + i``: the same call gives the same maps.
    callback
        ``callback(done, total, partial_result)`` after each stage (raise to stop).

    The model is never changed: the stages are randomised on one deep copy (its memory for the
    duration of the call; without ``cascade`` each stage is put back before the next), traced once.
    Ctrl-C keeps the stages computed (``interrupted``).
    """
    methods = check_methods(methods)
    cascade = check_bool("cascade", cascade)
    seed = check_int("seed", seed, low=0)
    names = _check_stages(net.model, stages)
    x = net.prepare(image)
    resolved = fixed_target(net, x, target)  # the original model's class, for every stage
    explained = resolved if not isinstance(resolved, ClassTarget) else resolved.index
    show = (len(names) > 4) if progress is None else check_bool("progress", progress)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names) + 1, desc="sanity check", unit="stage", leave=False)
    signed: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    done_stages: list[str] = []
    interrupted = False

    def result() -> SanityCheck:
        maps = {m: torch.stack([s.abs() for s in signed[m]]) if signed[m] else torch.zeros(0) for m in methods}
        flat = {m: torch.stack(signed[m]) if signed[m] else torch.zeros(0) for m in methods}
        return SanityCheck(list(done_stages), methods, maps, flat, resolved, cascade, seed, interrupted, len(names))

    def run(on, stage: str) -> None:
        for method in methods:
            attribution = saliency(on, x, explained, method=method).detach().float().cpu()
            signed[method].append(attribution.sum(dim=0) if attribution.dim() == 3 else attribution)
        done_stages.append(stage)
        if bar is not None:
            bar.update(1)
        if callback is not None:
            callback(len(done_stages), len(names) + 1, result())

    try:
        run(net, ORIGINAL)
        # one copy, one network on it for every stage: its layers are traced once (a trace costs as much as a
        # few passes) and its caches follow the weights (state_key: an in-place write moves a version counter)
        clone = copy.deepcopy(net.model)
        other = type(net)(clone, preprocess=net.preprocess, labels=getattr(net, "_labels", None), name=net.name,
                          output=net.output)
        for i, name in enumerate(names):
            module = clone.get_submodule(name)
            kept = None if cascade else {k: v.clone() for k, v in module.state_dict().items()}
            _randomize(module, seed + i)
            run(other, name)
            if kept is not None:  # one stage at a time: put this one back before the next
                with torch.no_grad():
                    for key, value in module.state_dict().items():
                        value.copy_(kept[key])
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    return result()


def _ranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values, method="average")


def similarity(a: torch.Tensor, b: torch.Tensor, metric: str = "spearman_abs") -> float:
    """How similar two maps ``[H, W]`` are, by one of :data:`METRICS` (``spearman_abs``, ``ssim`` and
    ``hog`` take absolute values; ``spearman`` the maps as they are)."""
    check_choice("metric", metric, METRICS)
    a, b = (np.asarray(t.detach().double().cpu().numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float64) for t in (a, b))
    if a.shape != b.shape or a.ndim != 2:
        raise OptionError(f"similarity compares two maps of the same [H, W] shape; got {a.shape} and {b.shape}")
    if metric != "spearman":
        a, b = np.abs(a), np.abs(b)
    if metric.startswith("spearman"):
        ra, rb = _ranks(a.ravel()), _ranks(b.ravel())
        return _pearson(ra, rb)
    a, b = _unit_range(a), _unit_range(b)
    if metric == "ssim":
        from skimage.metrics import structural_similarity

        return float(structural_similarity(a, b, data_range=1.0))
    from skimage.feature import hog

    cell = max(2, min(a.shape) // 16)
    return _pearson(hog(a, pixels_per_cell=(cell, cell), cells_per_block=(2, 2)),
                    hog(b, pixels_per_cell=(cell, cell), cells_per_block=(2, 2)))


def _unit_range(a: np.ndarray) -> np.ndarray:
    top = a.max()
    return a / top if top > 0 else a


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else float("nan")
