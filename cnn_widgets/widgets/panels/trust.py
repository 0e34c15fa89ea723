"""The Trust tab's job: can these pictures be believed? The sanity check (Adebayo et al. 2018:
the saliency maps of every chosen method as the model's stages are randomised top-down, and their
similarity to the original maps) then the deletion and insertion curves (RISE) of the same methods,
on the current image and target.

Started by ``recompute("trust")`` (the tab's Run button), stopped by ``cancel("trust")``. Each
randomised stage is shown as it finishes (a column of the strip and a point of the similarity
curve), then each method's curves. Every method's verdict (``SanityCheck.verdict``) is kept per
model state in ``trust_verdicts``, which the saliency caption shows beside its picture. The model is
never changed: the engine randomises copies.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.faithfulness import LOWER_IS_BETTER, Faithfulness
from ...engine.pictures import magnitude_map, to_uint8
from ...engine.sanity import ORIGINAL, SIMILAR, SanityCheck, default_stages
from ...engine.targets import Direction
from .base import Panel, model_tag, target_text
from .saliency import PERCENTILE

THUMB = 64  # pixels of each map of the strip (the engine's maps are the input's size)
STEPS = 24  # points of each deletion / insertion curve after the first (one batched pass per curve)
METRIC = "spearman_abs"  # the similarity the strip's curve and the verdicts show
MODES = {"cascade": "cascading, top-down", "independent": "one stage at a time"}
#: The faithfulness curves the tab draws (``net.faithfulness`` metrics) and what each one's x axis
#: counts: the cheap pair of one batched pass each (ROAD's imputations cost seconds per curve: a cell's call).
SHOWN_CURVES = {"deletion": "most important pixels removed first", "insertion": "most important pixels put back first"}


class Curves(TypedDict):
    title: str  # what the curve does ("most important pixels removed first")
    lower_is_better: bool  # of its AUC
    quantity: str  # "probability" (in [0, 1]), or "unit value" for a unit target
    fractions: list[float]
    curves: dict[str, list[float]]  # method -> the target's probability at each fraction
    auc: dict[str, float]


class TrustInfo(TypedDict, total=False):
    """The ``trust_info`` trait, beside ``trust_maps`` (uint8 [methods, stages done, THUMB, THUMB])."""

    methods: list[str]
    stages: list[str]  # done so far: "original", then the randomised stages top-down
    planned: list[str]  # every stage asked for: "original", then the randomised stages top-down
    mode: str  # "cascade" | "independent"
    metric: str
    similarity: dict[str, list[float]]  # method -> one number per stage done
    half: int  # index of the stage with the top half randomised (-1: none)
    threshold: float  # sanity.SIMILAR: a method whose map at ``half`` is this similar fails
    curves: dict[str, Curves]  # metric (SHOWN_CURVES) -> its curves so far
    target: str  # what is explained, in words
    subject: int  # the trust_subject it was computed for (the front end marks it stale when that moved on)
    model: str  # model_tag of the model it was computed on


def thumbnails(maps: torch.Tensor) -> np.ndarray:
    """``[S, H, W]`` absolute maps as uint8 ``[S, THUMB, THUMB]``, each over its own ``PERCENTILE``-th
    percentile, as the saliency panel shows a map (``pictures.magnitude_map``: the strip compares
    patterns, not scales)."""
    small = F.interpolate(maps.float().unsqueeze(1), size=(THUMB, THUMB), mode="area").squeeze(1)
    return np.stack([to_uint8(magnitude_map(m, percentile=PERCENTILE), 0.0, 1.0) for m in small])


def _curves(metric: str, result: Faithfulness | None) -> Curves:
    return {"title": SHOWN_CURVES[metric], "lower_is_better": metric in LOWER_IS_BETTER,
            "quantity": "probability" if result is None else result.quantity,
            "fractions": [] if result is None else [float(f) for f in result.fractions],
            "curves": {} if result is None else {m: [float(v) for v in c] for m, c in result.curves.items()},
            "auc": {} if result is None else {m: float(a) for m, a in result.auc.items()}}


class TrustPanel(Panel):
    name = "trust"
    label = "trust checks"

    def compute(self, explorer) -> dict:
        net, image, methods = explorer.net, explorer.image, list(explorer.trust_methods)
        target = explorer.resolved_target()
        if isinstance(target, Direction):
            raise ValueError("the trust checks explain a class or a unit, not an atlas cell's direction; "
                             "choose 'top', a class or the selected unit as the target")
        tag = model_tag(net)
        cascade = explorer.trust_mode == "cascade"
        stages = default_stages(net.model)
        total = len(stages) + 1 + len(SHOWN_CURVES) * len(methods)
        info: TrustInfo = {"methods": methods, "stages": [], "planned": [ORIGINAL, *stages], "threshold": SIMILAR,
                           "mode": explorer.trust_mode, "metric": METRIC, "similarity": {}, "half": -1,
                           "target": target_text(net, target), "subject": explorer.trust_subject, "model": tag,
                           "curves": {m: _curves(m, None) for m in SHOWN_CURVES}}
        verdicts = dict(explorer.trust_verdicts) if all(v.get("model") == tag for v in explorer.trust_verdicts.values()) else {}

        def sanity_traits(check: SanityCheck) -> dict:
            maps = np.stack([thumbnails(check.maps[m]) for m in methods])  # (the original's stage is always done)
            half = check.half_stage()
            similarity = {m: [v if v == v else None for v in check.similarity(m, METRIC)] for m in methods}  # NaN: a flat map
            info.update(stages=list(check.stages), similarity=similarity,
                        half=-1 if half is None else half)
            for m in methods:
                verdict = check.verdict(m)
                if verdict is not None:
                    value = verdict["similarity"]
                    verdicts[m] = {**verdict, "similarity": value if value == value else None, "model": tag,
                                   "image": explorer.image_name}
            return {"trust_maps": maps, "trust_info": dict(info), "trust_verdicts": dict(verdicts)}

        def on_stage(done: int, _total: int, check: SanityCheck) -> None:
            traits = sanity_traits(check)
            explorer.report_progress(done, total, lambda: traits, unit="steps", urgent=done == 1)

        check = net.sanity_check(image, target, methods=methods, cascade=cascade, stages=stages,
                                 progress=False, callback=on_stage)
        traits = sanity_traits(check)
        done = len(check.stages)
        for metric in SHOWN_CURVES:
            def on_method(_done: int, _total: int, curves: Faithfulness, metric: str = metric) -> None:
                nonlocal done, traits
                info["curves"] = {**info["curves"], metric: _curves(metric, curves)}
                done += 1
                traits = {**traits, "trust_info": dict(info)}
                explorer.report_progress(done, total, lambda traits=traits: traits, unit="steps")

            net.faithfulness(image, target, methods=methods, metric=metric, steps=STEPS, batch_size=STEPS + 1,
                             progress=False, callback=on_method)
        return traits
