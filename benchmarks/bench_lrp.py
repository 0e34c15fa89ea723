"""How long LRP and the relevance tree (CRP) take, beside their limits and zennit (a script, never a test).

Run:  python benchmarks/bench_lrp.py [--quick] [--repeats 4] [--threads 1] [--cpu-time]

Everything on the CPU with ``--threads`` intra-op threads (1 by default: a measure of work that a
second process on the machine distorts least), the cat at 224 px, random weights for torchvision's
VGG16 and ResNet-18 (nothing is downloaded), the bundled default model (EfficientNet-Lite0). Times
are the best of ``--repeats`` rounds, the sides interleaved in every round (A, B, C, A, B, C, ...)
so that a noisy neighbour slows each alike; the 1-minute load average is printed on every row.

1. **One LRP heatmap** ``net.saliency(x, c, method="lrp", composite=...)`` (``x`` the prepared
   input, the kept graph released before every call, ``graph_cache.release``: a fresh image) beside

   * *the limit*: ``net.saliency(x, c, method="gradient")`` released the same way -- one forward
     pass and one backward pass to the input, the least any modified-gradient method can cost;
   * *zennit 0.5*: its ``Gradient`` attributor with the same composite (``EpsilonPlusFlat``;
     ``EpsilonGammaBox`` with our box, black and white pixels through the preprocessing) and its
     canonizers (``VGGCanonizer``, ``ResNetCanonizer``), on a copy of the model, the composite
     registered once outside the timing (zennit's best case; registering costs a few ms more). The
     default model has no zennit canonizer: its batch norms are merged by a ``NamedMergeBatchNorm``
     built from the (convolution, batch norm) pairs, its residual additions are left as they are
     (zennit then sends each addend the full relevance, not its share: same work, other numbers --
     its ``max|d|`` is not an agreement check). zennit's time is the best of at most 2 rounds (on
     VGG16 one call takes 4-10 s; the sides are still interleaved in those rounds).

   ``max|d|``: ``max |ours - zennit| / max |zennit|`` of the two heatmaps (zennit started at the
   logit, as ours). Goals: LRP <= 1.2 x the limit, LRP <= zennit.

2. **One tree expansion** (the cost of a click in the explorer): ``contribution_tree(img, None,
   depth=1, k=5, rule=r)`` first (forward pass, the root's children and their pictures; untimed,
   the walk released before it so every round starts alike), then the timed expansion of its best
   child, ``contribution_tree(img, None, depth=1, k=5, rule=r, path=(child.unit,))``: the kept walk
   is reused, one backward step for the scores, five pictures. ``r`` is ``"guided"`` (Cogswell's
   tree, the explorer's default) and ``"lrp"`` (CRP, ``epsilon_plus_flat``). Goal: relevance
   within 1.5 x guided. ``first``: the untimed first call's best, for scale.

``--quick``: best of 2 rounds instead of 4. The full run costs about 2 CPU-minutes (2.5 minutes of wall
time at a load of 2-4 on 2 cores), ``--quick`` about 1.5. ``--cpu-time``: every time in CPU seconds of
this process (``time.process_time``; with one thread the tree's pictures run on the calling thread), a
measure that other processes on a busy machine distort less than wall time.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings

import torch

import cnn_widgets as cw
from cnn_widgets.engine import graph_cache, tree_walk
from cnn_widgets.engine.lrp_mode import input_bounds

CLOCK = [time.perf_counter]  # --cpu-time: time.process_time
COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box")
ZENNIT_ROUNDS = 2  # zennit's best is of at most this many rounds


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def best_of(functions: dict, repeats: int, warmup: int = 0) -> dict[str, float]:
    """Best seconds of each function over ``repeats`` rounds, the functions interleaved in every round
    (each function returns the seconds of its own timed part)."""
    times = {name: [] for name in functions}
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    for _ in range(repeats):
        for name, fn in functions.items():
            times[name].append(fn())
    return {name: min(t) for name, t in times.items()}


def timed(fn):
    def run():
        start = CLOCK[0]()
        fn()
        return CLOCK[0]() - start

    return run


# ------------------------------------------------------------------------------------- zennit
def merge_pairs(model: torch.nn.Module) -> list[tuple[list[str], str]]:
    """(convolution, batch norm) name pairs of a model whose batch norms follow their convolution
    in module order (timm's EfficientNet): a ``NamedMergeBatchNorm``'s argument."""
    pairs, last = [], None
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            last = name
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and last is not None:
            pairs.append(([last], name))
            last = None
    return pairs


def zennit_attributor(net: cw.Network, model_name: str, composite: str, x: torch.Tensor):
    """zennit's ``Gradient`` attributor on a copy of the model (the shared default model is never touched)."""
    from zennit.attribution import Gradient
    from zennit.canonizers import NamedMergeBatchNorm
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    model = copy.deepcopy(net.model).eval()
    if model_name == "vgg16":
        canonizers = [VGGCanonizer()]
    elif model_name == "resnet18":
        canonizers = [ResNetCanonizer()]
    else:
        canonizers = [NamedMergeBatchNorm(merge_pairs(model))]
    if composite == "epsilon_plus_flat":
        comp = EpsilonPlusFlat(canonizers=canonizers)
    else:
        low, high = input_bounds(net)
        comp = EpsilonGammaBox(low=low.expand_as(x), high=high.expand_as(x), canonizers=canonizers)
    return Gradient(model=model, composite=comp)


def heatmap_row(model_name: str, net: cw.Network, img, composite: str, repeats: int) -> tuple:
    """Best times of ours, the limit and zennit for one model and composite, and ``max|d|``."""
    x = net.prepare(img)
    c = net.top_class(img)  # also learns the layers at this input: no round pays for it

    def ours():
        graph_cache.release(net)
        return net.saliency(x, c, method="lrp", composite=composite)

    def limit():
        graph_cache.release(net)
        return net.saliency(x, c, method="gradient")

    attributor = zennit_attributor(net, model_name, composite, x)
    onehot = torch.zeros(1, net.num_classes)
    onehot[0, c] = 1.0

    def zennit():
        data = x.detach().clone().requires_grad_(True)
        return attributor(data, lambda out: out * onehot)[1]  # relevance starts at the logit, as ours

    with attributor:
        # zennit in the first rounds only (on VGG16 it is a 4-10 s call); the sides interleaved in those
        best = best_of({"lrp": timed(ours), "limit": timed(limit), "zennit": timed(zennit)}, min(repeats, ZENNIT_ROUNDS))
        if repeats > ZENNIT_ROUNDS:
            more = best_of({"lrp": timed(ours), "limit": timed(limit)}, repeats - ZENNIT_ROUNDS)
            best.update({k: min(v, best[k]) for k, v in more.items()})
        theirs = zennit()[0]
    mine = ours()
    graph_cache.release(net)
    diff = float((mine - theirs).abs().max() / theirs.abs().max())
    return model_name, composite, best, diff, load()


def print_heatmap_row(row) -> None:
    model_name, composite, best, diff, avg = row
    lrp, lim, zen = best["lrp"], best["limit"], best["zennit"]
    met = f"{'yes' if lrp <= 1.2 * lim else 'NO':>5}{'yes' if lrp <= zen else 'NO':>6}"
    print(f"{model_name:<10}{composite:<19}{lrp * 1e3:>8.0f}{lim * 1e3:>8.0f}{zen * 1e3:>9.0f}"
          f"{lrp / lim:>8.2f}{lrp / zen:>8.2f}{met}{diff:>9.1e}{avg:>7}", flush=True)


# --------------------------------------------------------------------------------------- tree
def tree_row(model_name: str, net: cw.Network, img, repeats: int) -> tuple:
    """Best time of expanding the best child of the top class's root, guided and relevance."""
    first_times: dict[str, list[float]] = {}

    def expansion(rule):
        def run():
            tree_walk.release(net)
            start = CLOCK[0]()
            root = net.contribution_tree(img, None, depth=1, k=5, rule=rule)
            first_times.setdefault(rule, []).append(CLOCK[0]() - start)
            start = CLOCK[0]()
            net.contribution_tree(img, None, depth=1, k=5, rule=rule, path=(root.children[0].unit,))
            return CLOCK[0]() - start

        return run

    best = best_of({"guided": expansion("guided"), "lrp": expansion("lrp")}, repeats)
    tree_walk.release(net)
    first = {rule: min(t) for rule, t in first_times.items()}
    return model_name, best, first, load()


def print_tree_row(row) -> None:
    model_name, best, first, avg = row
    g, r = best["guided"], best["lrp"]
    print(f"{model_name:<10}{g * 1e3:>10.0f}{r * 1e3:>10.0f}{r / g:>8.2f}{'yes' if r <= 1.5 * g else 'NO':>6}"
          f"{first['guided'] * 1e3:>14.0f}{first['lrp'] * 1e3:>11.0f}{avg:>7}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="best of 2 rounds instead of 4")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu-time", action="store_true", help="CPU seconds of this process instead of wall time")
    args = parser.parse_args()
    if args.cpu_time:
        CLOCK[0] = time.process_time
    repeats = args.repeats or (2 if args.quick else 4)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from importlib.metadata import version

    import torchvision

    torch.manual_seed(0)
    img = cw.sample_image("cat")
    nets = {"vgg16": cw.Network(torchvision.models.vgg16().eval(), name="vgg16"),
            "resnet18": cw.Network(torchvision.models.resnet18().eval(), name="resnet18"),
            "default": cw.load_default()}
    print(f"bench_lrp: cat 224 px, torch {torch.__version__}, zennit {version('zennit')}, "
          f"{torch.get_num_threads()} thread(s), best of {repeats} interleaved rounds, "
          f"{'CPU' if args.cpu_time else 'wall'} time, load {load()}")

    print("\n1. one heatmap (ms); limit = forward + input backward (method='gradient'); "
          "goals lrp/limit <= 1.2, lrp/zennit <= 1")
    print(f"{'model':<10}{'composite':<19}{'lrp':>8}{'limit':>8}{'zennit':>9}{'/limit':>8}{'/zennit':>8}"
          f"{'1.2x':>5}{'<=z':>6}{'max|d|':>9}{'load':>7}")
    for model_name, net in nets.items():
        for composite in COMPOSITES:
            print_heatmap_row(heatmap_row(model_name, net, img, composite, repeats))

    print("\n2. one tree expansion (ms): a child of the top class's root, k=5, depth=1, kept walk; "
          "goal lrp/guided <= 1.5")
    print(f"{'model':<10}{'guided':>10}{'lrp':>10}{'ratio':>8}{'1.5x':>6}{'first guided':>14}{'first lrp':>11}{'load':>7}")
    for model_name in ("default", "resnet18"):
        print_tree_row(tree_row(model_name, nets[model_name], img, repeats))
    print(f"\nload after: {load()}")


if __name__ == "__main__":
    main()
