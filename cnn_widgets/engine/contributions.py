"""Image-specific layer-to-layer contributions and the contribution tree.

Michael Cogswell, "Why is this a cat? (part 2)": the layer-to-layer contribution tree of
mcogswell/cnn_treevis, generalised to any PyTorch CNN.

For a unit ``u`` (layer ``L``, channel ``i``) and the layer ``L'`` below it, channel ``j`` of ``L'``
contributes

.. math::  s_j = \\sum_{p} h^{L'}_{j,p} \\; \\frac{\\partial f(h^{L}_i)}{\\partial h^{L'}_{j,p}}

where ``f`` sums the map of ``i`` (``reduce="sum"``) or takes its largest pixel (``reduce="max"``,
as the original cnn_treevis code does), and the backward pass uses the true gradient
(``rule="gradient"``) or the guided-backprop rule (``rule="guided"``). The top-``k`` channels are the
children of ``u``. A child's *picture* is guided backprop to the image of the gradient arriving at
``L'`` with every other channel zeroed, so it shows the region of the image that feeds the parent.

Recursing gives a tree. A node is conditioned on its whole path: the masked gradient of a child is
what flows on to its own children. For a bias-free ReLU network with ``rule="gradient"`` and
``reduce="sum"``, ``f`` is positively homogeneous of degree 1 in ``h^{L'}``, so by Euler's theorem
``sum_j s_j = f`` exactly (the tests check this).

**Relevance (``rule="lrp"``): Concept Relevance Propagation** (Achtibat et al., "From attribution
maps to human-understandable explanations through Concept Relevance Propagation", Nature Machine
Intelligence 2023). The backward pass is layer-wise relevance propagation with a ``composite`` of
rules (:mod:`.relevance`), so ``h * grad`` is relevance: a child's score is the relevance of its
channel conditioned on the path (the parent's relevance routed through the parent's channel only),
the scores of *all* channels of the layer below sum to the parent's score up to the leak of biases
and stabilisers (:attr:`ContributionNode.children_total`), and a node's picture is its conditional
relevance map (the maps of all children sum to the parent's map).

Deep nodes receive tiny gradients, which saturated the original visualisations; here each picture is
normalised on its own (symmetric percentile clipping around grey).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from . import tree_walk
from .contribution_nodes import Contribution, ContributionNode
from .checks import check_bool, check_choice, check_float, check_int
from .errors import OptionError, TargetError
from .pictures import normalise_picture, relevance_picture
from .lrp_mode import DEFAULT_COMPOSITE, rule_name
from .targets import REDUCES, ClassTarget, Target, Unit, scalar

if TYPE_CHECKING:  # pragma: no cover
    from .core import NetworkBase
    from .images import ImageLike

# the backward pass of the scores: the true gradient, guided backprop, or relevance (LRP: CRP's tree)
RULES = {"gradient": "gradient", "guided": "guided backprop", "lrp": "relevance (LRP)"}
# the saliency method (saliency.METHODS) a node's picture is made with, per rule
PICTURES = {"gradient": "guided_backprop", "guided": "guided_backprop", "lrp": "lrp"}


def session_rule(rule: str, composite) -> str:
    """The engine session's rule for a tree rule: ``"lrp:<composite>"`` for relevance."""
    return rule_name(composite) if rule == "lrp" else rule


def _check_options(k: int, rule: str, reduce: str, depth: int | None = None, composite=DEFAULT_COMPOSITE) -> str:
    """Check the options; returns the engine session's rule."""
    check_int("k", k)
    check_choice("rule", rule, RULES)
    session = session_rule(rule, composite)
    check_choice("reduce", reduce, REDUCES)
    if depth is not None:
        check_int("depth", depth, low=0)
    return session


def root_unit(net: "NetworkBase", target: Target, image: "ImageLike", reduce: str) -> tuple[Unit, str]:
    """The unit a tree starts from and its label; classes become units of the logit layer."""
    if target is None:
        target = net.top_class(image)
    resolved = net._resolve_target(target)
    if isinstance(resolved, ClassTarget):
        # the class scores are the output of a layer: a linear head, or a conv classifier's 1x1 map
        logits = net.logit_layer
        if logits is None:
            raise TargetError(
                f"no explorable layer of {net.name} outputs the class scores (they are computed after the "
                "last layer), so a class cannot root the tree; root it at a cw.Unit(layer, channel) instead"
            )
        return Unit(logits, resolved.index, reduce=reduce), resolved.label
    unit = resolved if resolved.position is not None else Unit(resolved.layer, resolved.channel, reduce=reduce)
    return unit, str(unit)


class _Backward:
    """One forward pass with two layers captured; the gradient between them (``contributions``)."""

    def __init__(self, net: "NetworkBase", image: "ImageLike", layers: Sequence[str], rule: str):
        self.net = net
        self.rule = rule
        self.x = net.prepare(image).clone().requires_grad_(True)
        self.layers = list(layers)
        self._session = net._session(rule)
        self.state = self._session.__enter__()
        try:
            _, self.outputs = net._forward(self.x, self.layers, stop_early=True)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._session.__exit__(None, None, None)

    def unit_gradient(self, unit: Unit) -> tuple[float, torch.Tensor]:
        """``f`` of the unit and ``df/dh`` at its own layer (non-zero only in its channel)."""
        h = self.outputs[unit.layer]
        f = scalar(unit, h.new_zeros(1, 1), {unit.layer: h})[0]
        (grad,) = torch.autograd.grad(f, h, retain_graph=True)
        return float(f.detach()), grad

    def pull(self, upper: str, grad: torch.Tensor, lower: str) -> torch.Tensor:
        """Gradient at layer ``lower`` of ``<h_upper, grad>`` (using the current rule)."""
        self.state.rule = self.rule
        (out,) = torch.autograd.grad(self.outputs[upper], self.outputs[lower], grad_outputs=grad, retain_graph=True)
        return out


def _channel_scores(h: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    product = (h.detach() * grad)[0]
    return product.flatten(1).sum(dim=1) if product.dim() > 1 else product


def _mask_channel(grad: torch.Tensor, channel: int) -> torch.Tensor:
    masked = torch.zeros_like(grad)
    masked[:, channel] = grad[:, channel]
    return masked


def _chain(net: "NetworkBase", start: str, depth: int | None) -> list[str]:
    """``start`` and the ``depth`` layers below it, each ``net.layer_below`` the previous (``None``: down to the first)."""
    layers = [start]
    while depth is None or len(layers) <= depth:
        below = net.layer_below(layers[-1])
        if below is None:
            break
        layers.append(below)
    return layers


def contributions(
    net: "NetworkBase",
    image: "ImageLike",
    unit: Target,
    k: int = 5,
    into: str | None = None,
    rule: str = "guided",
    reduce: str = "max",
    composite: str = DEFAULT_COMPOSITE,
) -> list[Contribution]:
    """The ``k`` channels of the layer below (or of ``into``) that contribute most to ``unit``.

    Parameters
    ----------
    unit
        ``cw.Unit(layer, channel)`` or a class (index / label); ``None`` is the top class.
    into
        The lower layer whose channels are ranked; default ``net.layer_below(unit.layer)`` (the
        input of the nearest channel-mixing layer at or below the unit).
    rule
        ``"guided"`` (the original cnn_treevis code), ``"gradient"`` (true gradient) or ``"lrp"``
        (relevance with ``composite``: the scores are the channels' relevance and sum to the unit's).
    reduce
        ``f``: ``"max"`` pixel of the unit's map (the original cnn_treevis code) or ``"sum"`` of the map.

    Returns
    -------
    list[Contribution]
        Best first; each has ``.unit`` (a ``cw.Unit`` of the lower layer) and ``.score``.
    """
    session = _check_options(k, rule, reduce, composite=composite)
    root, _ = root_unit(net, unit, image, reduce)
    if into is None:
        into = net.layer_below(root.layer)
        if into is None:
            raise TargetError(f"{root.layer!r} is the first layer: there is no layer below it to explain it with")
    lower = net.layer(into)
    if lower.index >= net.layer(root.layer).index:
        raise TargetError(f"into={into!r} must be a layer below {root.layer!r} (earlier in the forward pass)")
    work = _Backward(net, image, [root.layer, lower.name], session)
    try:
        _, grad = work.unit_gradient(root)
        below = work.pull(root.layer, grad, lower.name)
        scores = _channel_scores(work.outputs[lower.name], below)
    finally:
        work.close()
    values, channels = scores.topk(min(k, scores.numel()))
    return [Contribution(Unit(lower.name, int(c)), float(v)) for v, c in zip(values, channels)]


def contribution_tree(
    net: "NetworkBase",
    image: "ImageLike",
    unit: Target = None,
    depth: int = 3,
    k: int = 5,
    rule: str = "guided",
    reduce: str = "max",
    path: Sequence[Unit] = (),
    percentile: float = 99.0,
    follow: str | Sequence[int] | None = None,
    pictures: bool = True,
    composite: str = DEFAULT_COMPOSITE,
) -> ContributionNode:
    """Recursive, path-conditioned contribution tree rooted at ``unit`` (Cogswell's contribution tree).

    Parameters
    ----------
    unit
        Root: ``cw.Unit`` or a class (index / label); ``None`` is the top class.
    depth
        Levels of children below the returned node (``k ** depth`` leaves at most).
    k
        Children per node.
    path
        Units leading from the root down to the node to return, each in the layer below the
        previous one: ``contribution_tree(img, root, depth=1, path=(child.unit,))`` expands one
        child of the root, conditioned on the root. This is how an explorer expands on click.
    follow
        ``None`` grows every child (``k ** depth`` nodes). ``"best"`` or a list of child indices,
        one per level, grows only one child per level (``k * depth`` nodes): the way
        "Why is this a cat?" reads a tree, one part at a time.
    rule, composite
        ``"guided"`` / ``"gradient"``: Cogswell's scores; ``"lrp"``: relevance with ``composite``
        (CRP: children's scores sum to the parent's up to the leak, pictures are conditional
        relevance maps).
    pictures
        ``False``: scores only, every node's ``picture`` and ``raw_picture`` ``None`` (a few
        milliseconds after the first call on an image; the pictures follow from a second call).

    The forward pass, the path's gradients and the pictures already drawn are kept for the next
    call on the same network, image, rule and root (:mod:`.tree_walk`): expanding a child costs
    one backward step and one backward pass per new picture, run side by side on the CPU's cores.

    Returns
    -------
    ContributionNode
        The root (or the node at the end of ``path``) with ``depth`` levels of children.
    """
    session = _check_options(k, rule, reduce, depth, composite)
    check_float("percentile", percentile, low=0, high=100, open_low=True)
    check_bool("pictures", pictures)
    if follow is not None and not (follow == "best" or (isinstance(follow, (list, tuple)) and all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < k for i in follow))):
        raise OptionError(f"follow must be None, 'best' or a list of child indices in 0..{k - 1}, got {follow!r}")
    root, root_label = root_unit(net, unit, image, reduce)
    path = tuple(path)
    x = net.prepare(image)
    with tree_walk.locked():
        work = tree_walk.walk(net, x, lambda: _chain(net, root.layer, None), session, root)
        layers = work.layers
        _check_path(net, layers, path)
        grad, key, score = work.root_grad, (), work.value
        node_unit, label = root, root_label
        for level, step in enumerate(path, start=1):
            below = _below(work, key)
            score = float(_channel_scores(work.outputs[layers[level]], below)[step.channel])
            key = (*key, step.channel)
            grad = _node_grad(work, key)
            node_unit, label = Unit(step.layer, step.channel), str(Unit(step.layer, step.channel))
        plan = None if follow is None else ([0] * depth if follow == "best" else list(follow) + [0] * depth)
        node = ContributionNode(node_unit, label, score, None, None, [], path)
        nodes = [(node, layers[len(path)], grad, key)]
        _grow(work, len(path), key, node, depth, k, plan, nodes)
        if pictures:
            _draw(work, nodes, percentile)
    return node


def check_path(net: "NetworkBase", root_layer: str, path) -> None:
    """THE rule for a tree's ``path`` below a root in ``root_layer``: :class:`Unit` steps, each in the layer
    below the one before (``net.layer_below``), channels in range; else a ``TargetError`` saying which
    step breaks it. :func:`contribution_tree` and the Explorer's ``tree_path`` both apply it."""
    _check_path(net, _chain(net, root_layer, len(path)), tuple(path))


def _check_path(net: "NetworkBase", layers: list[str], path: tuple) -> None:
    for level, step in enumerate(path, start=1):
        if not isinstance(step, Unit):
            raise TargetError(f"path entries must be cw.Unit, got {step!r}")
        if level >= len(layers) or step.layer != layers[level]:
            expected = layers[level] if level < len(layers) else None
            raise TargetError(
                f"path step {level} is in layer {step.layer!r} but the layer below "
                f"{layers[level - 1]!r} is {expected!r}; a path goes one layer down per step"
            )
        channels = net.layer(step.layer).channels
        if not 0 <= step.channel < channels:
            raise TargetError(f"path step {level}: channel {step.channel} is out of range for {step.layer!r} (0..{channels - 1})")


def _below(work: "tree_walk.Walk", key: tuple) -> torch.Tensor:
    """The gradient at the layer below the node ``key`` (a path of channels, at level ``len(key)``):
    its children's scores come from it. Kept, or recomputed when the walk has forgotten it."""
    found = work.below.find(key)
    return found if found is not None else work.below.keep(key, work.pull(len(key), _node_grad(work, key)))


def _node_grad(work: "tree_walk.Walk", key: tuple) -> torch.Tensor:
    """``df/dh`` at the node ``key``'s layer, masked to its channel. The walk keeps at most
    ``MAX_KEPT`` of them; a forgotten one is recomputed from its parent's (the root's is always kept)."""
    if not key:
        return work.root_grad
    found = work.grads.find(key)
    return found if found is not None else work.grads.keep(key, _mask_channel(_below(work, key[:-1]), key[-1]))


def _grow(work, level, key, node, depth, k, plan, nodes) -> None:
    """Children of ``node`` (scores only) down to ``depth``; every new node is appended to ``nodes``."""
    if depth == 0 or level + 1 >= len(work.layers):
        return
    lower = work.layers[level + 1]
    below = _below(work, key)
    scores = _channel_scores(work.outputs[lower], below)
    node.children_total = float(scores.sum())
    values, channels = scores.topk(min(k, scores.numel()))
    for i, (v, c) in enumerate(zip(values.tolist(), channels.tolist())):
        child_unit, child_key = Unit(lower, int(c)), (*key, int(c))
        grad = work.grads.find(child_key)
        if grad is None:
            grad = work.grads.keep(child_key, _mask_channel(below, int(c)))
        child = ContributionNode(child_unit, str(child_unit), float(v), None, None, [], (*node.path, child_unit))
        node.children.append(child)
        nodes.append((child, lower, grad, child_key))
        grow = plan is None or i == plan[0]
        _grow(work, level + 1, child_key, child, depth - 1 if grow else 0, k, None if plan is None else plan[1:], nodes)


def _draw(work, nodes, percentile: float) -> None:
    """Every node's picture: kept ones reused, the others computed side by side (tree_walk.pictures).
    Relevance (an LRP walk) is shown as LRP heatmaps, gradients as signed pictures around grey."""
    show = relevance_picture if work.rule.startswith("lrp:") else normalise_picture
    missing = []
    for entry in nodes:
        node, _, _, key = entry
        node.raw_picture = work.raw.find(key)
        if node.raw_picture is None:
            missing.append(entry)
        else:
            node.picture = show(node.raw_picture, percentile)
    drawn = tree_walk.pictures(work, [(layer, grad) for _, layer, grad, _ in missing], lambda raw: show(raw, percentile))
    for (node, _, _, key), (raw, picture) in zip(missing, drawn):
        work.raw.keep(key, raw)
        node.raw_picture, node.picture = raw, picture
