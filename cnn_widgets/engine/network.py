"""``Network``: the facade users hold; :class:`NetworkBase` plus every explanation method.

The methods live in their own modules and take a :class:`NetworkBase`; this file only binds them
as methods, so imports run one way: ``core`` <- methods <- ``network``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .atlas import Atlas, atlas
from .attention import attention
from .checks import check_keywords
from .contributions import Contribution, ContributionNode, contribution_tree, contributions
from .core import NetworkBase
from .images import ImageLike
from .occlusion import occlusion
from .faithfulness import Faithfulness, faithfulness
from .probe import DEFAULT_KINDS, Probe, probe
from .relevance import DEFAULT_COMPOSITE, Relevance, relevance
from .saliency import saliency
from .sanity import SanityCheck, sanity_check
from .scan import Scan, scan
from .targets import Target, Unit
from .unit_explain import explain_unit
from .unit_steps import UnitArithmetic
from .visualize import Visualization, dream, visualize

__all__ = ["Network"]


class Network(NetworkBase):
    __doc__ = NetworkBase.__doc__.replace("(no explanation methods)", "with saliency, occlusion, contributions and scans", 1)

    #: The scan this network ran last, complete or not, from its first batch on: a scan whose result
    #: was lost (an exception, a failed save) continues with ``net.scan(images, resume=net.last_scan)``.
    last_scan: Scan | None = None

    def __getstate__(self) -> dict:  # a copy (a Ray worker's, a deepcopy) does not carry the last scan
        return {**self.__dict__, "last_scan": None}

    def saliency(self, image: ImageLike, target: Target = None, method: str = "guided_backprop", **options) -> torch.Tensor:
        """Attribution map for ``target`` w.r.t. the preprocessed input; see :func:`.saliency.saliency`."""
        return saliency(self, image, target, method, **options)

    def attention(self, image: ImageLike, layer: str | None = None, head: int | str | None = None):
        """The class token's attention on the patch grid per head (``[heads, h, w]``; ``head=i`` or
        ``"mean"``: ``[h, w]``), of one transformer block or, for ``layer=None``, a dict of each; the
        mean over query tokens for a model without a class token. See :func:`.attention.attention`."""
        return attention(self, image, layer, head)

    def relevance(self, image: ImageLike, target: Target = None, composite: str = DEFAULT_COMPOSITE) -> Relevance:
        """Layer-wise relevance propagation: the input's relevance and the total per layer (conservation);
        see :func:`.relevance.relevance`."""
        return relevance(self, image, target, composite)

    def sanity_check(self, image: ImageLike, target: Target = None, methods: Sequence[str] | None = None,
                     cascade: bool = True, stages: Sequence[str] | None = None, seed: int = 0, **options) -> SanityCheck:
        """Model-parameter randomisation test of saliency methods; see :func:`.sanity.sanity_check`."""
        return sanity_check(self, image, target, methods=methods, cascade=cascade, stages=stages, seed=seed,
                            **check_keywords(sanity_check, options, 3))

    def faithfulness(self, image: ImageLike, target: Target = None, methods: Sequence[str] | None = None,
                     metric: str = "deletion", steps: int = 32, baseline: str = "blur", **options) -> Faithfulness:
        """Deletion / insertion curves and their AUC (RISE); see :func:`.faithfulness.faithfulness`."""
        return faithfulness(self, image, target, methods=methods, metric=metric, steps=steps, baseline=baseline,
                            **check_keywords(faithfulness, options, 3))

    def probe(self, image: ImageLike, target: Target = None, kinds: Sequence[str] = DEFAULT_KINDS, grid: int = 3,
              seed: int = 0, k: int = 5, **options) -> Probe:
        """Top classes and the target's probability on shuffled, silhouette, grey and blurred copies of
        ``image`` ("does it still say cat when the parts are shuffled?"); see :func:`.probe.probe`."""
        return probe(self, image, target, kinds=kinds, grid=grid, seed=seed, k=k, **check_keywords(probe, options, 3))

    def occlusion(self, image: ImageLike, target: Target = None, window: int = 32, stride: int = 16,
                  fill: str = "mean", **options) -> torch.Tensor:
        """Drop of the target when a window is occluded; see :func:`.occlusion.occlusion`."""
        return occlusion(self, image, target, window=window, stride=stride, fill=fill, **check_keywords(occlusion, options, 3))

    def contributions(self, image: ImageLike, unit: Target, k: int = 5, into: str | None = None,
                      rule: str = "guided", reduce: str = "max", **options) -> list[Contribution]:
        """Ranked channels of the layer below feeding ``unit``; see :func:`.contributions.contributions`."""
        return contributions(self, image, unit, k=k, into=into, rule=rule, reduce=reduce, **check_keywords(contributions, options, 3))

    def contribution_tree(self, image: ImageLike, unit: Target = None, depth: int = 3, k: int = 5,
                          rule: str = "guided", reduce: str = "max", path: Sequence[Unit] = (), **options) -> ContributionNode:
        """Recursive, path-conditioned contribution tree; see :func:`.contributions.contribution_tree`."""
        return contribution_tree(self, image, unit, depth=depth, k=k, rule=rule, reduce=reduce, path=path,
                                 **check_keywords(contribution_tree, options, 3))

    def scan(self, images, layers=None, k: int = 9, batch_size: int | None = None, num_workers: int = 0,
             progress: bool = True, save_to=None, resume=None, backend: str = "local", workers: int | None = None,
             resources: dict | None = None, rank: str = "activation", target: Target = None,
             composite: str | None = None) -> Scan:
        """One pass over a dataset: top-k images, statistics and codes per channel; see :func:`.scan.scan`.

        ``backend="ray"`` runs the batches on Ray workers (``workers``, each with ``resources``) and
        returns the same :class:`Scan`, identical to a local scan with the same batch size.
        ``rank="relevance", target=<class>`` also ranks images by each channel's relevance for the
        class (``scan.top_images(unit, by="relevance")``).
        """
        return scan(self, images, layers=layers, k=k, batch_size=batch_size, num_workers=num_workers,
                    progress=progress, save_to=save_to, resume=resume, backend=backend, workers=workers,
                    resources=resources, rank=rank, target=target, composite=composite)

    def visualize(self, target, steps: int = 256, size: int | None = None, **options) -> Visualization:
        """What ``target`` looks for, with no input image (feature visualisation); see :func:`.visualize.visualize`."""
        return visualize(self, target, steps=steps, size=size, **check_keywords(visualize, options, 2))

    def dream(self, image: ImageLike, layer, octaves: int = 4, steps: int = 10, seed: int = 0, **options) -> Visualization:
        """DeepDream on ``image``: amplify what ``layer`` sees; see :func:`.visualize.dream`."""
        return dream(self, image, layer, octaves=octaves, steps=steps, seed=seed, **check_keywords(dream, options, 3))

    def atlas(self, images, layer: str, grid: int = 12, positions: int = 4, method: str = "tsne", visualize: bool = True,
              steps: int = 128, size: int = 64, seed: int = 0, progress: bool = True, **options) -> Atlas:
        """Activation atlas of ``layer`` over ``images`` (Carter et al., Distill 2019); see :func:`.atlas.atlas`."""
        return atlas(self, images, layer, grid=grid, positions=positions, method=method, visualize=visualize, steps=steps,
                     size=size, seed=seed, progress=progress, **check_keywords(atlas, options, 3))

    def explain_unit(self, image: ImageLike, unit: Unit) -> UnitArithmetic:
        """The exact arithmetic of one number ``cw.Unit(layer, channel, (y, x))`` (the input patch times the
        kernel, a pooling window, a linear layer's products, a residual sum, then batch norm and
        activation; the softmax for a class score); see :func:`.unit_explain.explain_unit`."""
        return explain_unit(self, image, unit)

