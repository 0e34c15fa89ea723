"""One kept forward pass per network for the contribution tree: expanding a node costs only its
children's pictures.

Expanding a node of the tree (:func:`.contributions.contribution_tree` with a longer ``path``)
needs the same forward pass as its parent did, the same path gradients down to the node, and the
node's own picture (it was drawn as a child of the parent). A :class:`Walk` keeps them: the leaf
input and the outputs of every layer of the chain from the root down to the first layer (one pass,
stopped after the root's layer, its autograd graph retained), the gradient arriving at each node
reached so far and the raw picture of each node drawn so far. An expansion then runs one
layer-to-layer backward step (the children's scores) and one guided backward pass per new child
picture, in parallel (:func:`pictures`).

A kept walk serves a call only if it would give exactly what a fresh pass gives:

* the input: the very values (``torch.equal``, same shape, dtype and device);
* the model: :func:`.structure.state_key` -- its modules, the storage and version counter of
  every parameter and buffer (an optimiser step, ``load_state_dict`` or ``p.data = ...`` changes
  one of them) and its forward hooks;
* the backward rule, and the root unit (layer, channel, reduce, position).

Anything else builds a fresh walk, after the kept one is dropped (never two graphs at once). At most
one walk per network is kept, with at most ``MAX_KEPT`` node gradients and pictures (a forgotten
one is recomputed from the root's gradient, which is always kept); :func:`release` drops it. Parameters are frozen while the pass runs, so the graph computes no
weight gradient, and no hook outlives the pass.

The pictures are independent backward passes through the one kept graph (each its own
``torch.autograd.grad`` call with ``retain_graph=True``, which autograd allows from several
threads at once). A pass at batch size one is made of many small operations that a second core
barely speeds up, so the passes run side by side, one per core, each on one intra-op thread
(:func:`pictures`); batching them (``is_grads_batched``) measured slower here. They are the same
computations as one after another, to float rounding.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch

from .structure import state_key
from .targets import Unit, scalar
from .threads import set_own_threads

if TYPE_CHECKING:  # pragma: no cover
    from .core import NetworkBase

__all__ = ["Walk", "pictures", "release", "reference_path", "walk"]

MAX_KEPT = 64  # node gradients and pictures kept per walk (a picture of a 224 px input is 0.6 MB)
WORKERS: int | None = None  # picture threads; None: torch.get_num_threads() of the caller

_KEPT: "weakref.WeakKeyDictionary[object, Walk]" = weakref.WeakKeyDictionary()
_LOCK = threading.RLock()  # one walk is built or used at a time (a widget worker beside a notebook cell)
_FAST = threading.local()  # .off: the reference path (no kept walk, pictures one after another)


def fast() -> bool:
    return not getattr(_FAST, "off", False)


@contextmanager
def reference_path() -> Iterator[None]:
    """Within the block (on this thread) nothing is kept or reused and pictures are computed one
    after another on the calling thread: the plain computation the fast path is checked against."""
    previous = getattr(_FAST, "off", False)
    _FAST.off = True
    try:
        yield
    finally:
        _FAST.off = previous


class _Lru(OrderedDict):
    def keep(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > MAX_KEPT:
            self.popitem(last=False)
        return value

    def find(self, key):
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value


class Walk:
    """One forward pass from ``x`` with the ``layers`` chain captured and its graph retained.

    ``layers[0]`` is the root's layer, ``layers[i + 1]`` the layer below ``layers[i]``. Node
    gradients (``df/dh`` at the node's layer, masked to its channel) and raw pictures are kept by
    path (a tuple of channels, one per level below the root).
    """

    def __init__(self, net: "NetworkBase", x: torch.Tensor, layers: Sequence[str], rule: str, root: Unit, key: tuple):
        self.key = key
        self.rule = rule
        self.layers = list(layers)
        self.x = x.detach().clone().requires_grad_(True)
        with net._session(rule) as state:
            _, self.outputs = net._forward(self.x, self.layers, stop_early=True)
            h = self.outputs[root.layer]
            f = scalar(root, h.new_zeros(1, 1), {root.layer: h})[0]
            (grad,) = torch.autograd.grad(f, h, retain_graph=True)
        self.state = state
        self.value = float(f.detach())
        self.root_grad = grad  # never forgotten: every other gradient can be recomputed from it
        self.grads = _Lru()  # path -> the node's gradient (masked to its channel)
        self.below = _Lru()  # path -> the gradient at the layer below the node (its children's scores)
        self.raw = _Lru()  # path -> raw picture

    def serves(self, x: torch.Tensor, rule: str, key: tuple) -> bool:
        return (self.key == key and self.rule == rule and self.x.shape == x.shape and self.x.dtype == x.dtype
                and self.x.device == x.device and bool(torch.equal(self.x, x)))

    def pull(self, level: int, grad: torch.Tensor) -> torch.Tensor:
        """Gradient at ``layers[level + 1]`` of ``<h_{layers[level]}, grad>`` under the walk's rule."""
        self.state.rule = self.rule
        (out,) = torch.autograd.grad(self.outputs[self.layers[level]], self.outputs[self.layers[level + 1]],
                                     grad_outputs=grad, retain_graph=True)
        return out

    def picture(self, layer: str, grad: torch.Tensor) -> torch.Tensor:
        """Guided backprop of ``grad`` (at ``layer``) down to the input image (the rule must be "guided");
        in an LRP walk, the conditional relevance of the input (the input leaf's gradient is relevance)."""
        (out,) = torch.autograd.grad(self.outputs[layer], self.x, grad_outputs=grad, retain_graph=True)
        return out[0].detach()


def walk(net: "NetworkBase", x: torch.Tensor, layers: Callable[[], Sequence[str]], rule: str, root: Unit) -> Walk:
    """The kept walk of ``net`` if it serves ``x``, ``rule`` and ``root`` (call under :func:`locked`), else a
    fresh one capturing ``layers()`` (the chain below the root: it follows from the model and the root)."""
    key = (state_key(net), root)
    if fast():
        kept = _KEPT.get(net)
        if kept is not None and kept.serves(x, rule, key):
            return kept
        release(net)  # before the fresh pass: never two graphs at once
    fresh = Walk(net, x, layers(), rule, root, key)
    if fast():
        _KEPT[net] = fresh
    return fresh


def release(net: "NetworkBase") -> None:
    """Drop the walk kept for ``net`` (its graph and pictures)."""
    with _LOCK:
        _KEPT.pop(net, None)


@contextmanager
def locked() -> Iterator[None]:
    with _LOCK:
        yield


# ---------------------------------------------------------------------------------- pictures
_POOL: list = [None, 0]  # the executor and its size


def _one_thread() -> None:
    set_own_threads(1)  # this pool thread only: every other thread, and new ones, keep their count


def _pool(workers: int) -> ThreadPoolExecutor:
    if _POOL[0] is None or _POOL[1] != workers:
        if _POOL[0] is not None:
            _POOL[0].shutdown(wait=False)
        _POOL[0] = ThreadPoolExecutor(workers, thread_name_prefix="cnnw-tree", initializer=_one_thread)
        _POOL[1] = workers
    return _POOL[0]


def pictures(work: Walk, jobs: Sequence[tuple[str, torch.Tensor]], finish: Callable[[torch.Tensor], object] | None = None
             ) -> list[tuple[torch.Tensor, object]]:
    """Guided-backprop pictures of ``jobs`` (``(layer, grad)`` pairs) through the walk's graph.

    Returns ``(raw picture, finish(raw))`` per job, in order. On the fast path the passes run side
    by side on ``torch.get_num_threads()`` worker threads (one intra-op thread each), ``finish``
    (normalisation) in the same worker; on the reference path one after another on this thread.
    """

    def one(job):
        raw = work.picture(*job)
        return raw, (finish(raw) if finish is not None else None)

    size = WORKERS or torch.get_num_threads()
    if not work.rule.startswith("lrp:"):  # an LRP graph's pictures are relevance: its own rules
        work.state.rule = "guided"
    try:
        if not fast() or min(len(jobs), size) <= 1 or work.x.device.type != "cpu":
            return [one(job) for job in jobs]
        return list(_pool(size).map(one, jobs))
    finally:
        work.state.rule = work.rule
