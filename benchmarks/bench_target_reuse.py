"""A new target on the same image: saliency of a second target vs the first (forward + backward).

Run:  python benchmarks/bench_target_reuse.py [--repeats 5] [--method guided_backprop]

On the offline default model (EfficientNet-Lite0) and the cat at 224 px, on the CPU:

* ``first``: ``net.saliency(cat, tabby)`` with no kept graph -- one forward and one input-only
  backward (the least a first target can cost: the ``limit`` of issue 12);
* ``second``: ``net.saliency(cat, tiger cat)`` right after it -- the kept graph
  (``engine/graph_cache.py``) is backpropagated again, no forward pass;
* ``ratio = second / first`` (goal: <= 0.7), of medians of interleaved repeats (each repeat drops
  the kept graph, times the first target, then the second), plus the same for two units of one
  layer and the plain-torch forward + input-backward for reference.

Both calls go through the public ``net.saliency`` from the PIL image (preprocessing included).
This is a script, never a timed test. ``measure()`` is imported by the combined benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import cnn_widgets as cw
from cnn_widgets.engine import graph_cache


def _pair(net, image, first, second, method: str, repeats: int) -> tuple[float, float]:
    """Medians of (first target, second target) over ``repeats`` interleaved runs, after a warm-up."""
    firsts, seconds = [], []
    for i in range(repeats + 1):
        graph_cache.release(net)
        start = time.perf_counter()
        net.saliency(image, first, method)
        middle = time.perf_counter()
        net.saliency(image, second, method)
        end = time.perf_counter()
        if i:  # the first round warms up
            firsts.append(middle - start)
            seconds.append(end - middle)
    graph_cache.release(net)
    return statistics.median(firsts), statistics.median(seconds)


def _plain_limit(net, image, repeats: int) -> float:
    """Plain torch: one forward and one input-only backward of a logit (parameters frozen)."""
    x0 = net.prepare(image)
    flags = [p.requires_grad for p in net.model.parameters()]
    times = []
    try:
        for p in net.model.parameters():
            p.requires_grad_(False)
        for i in range(repeats + 1):
            start = time.perf_counter()
            x = x0.clone().requires_grad_(True)
            torch.autograd.grad(net.model(x)[0, 281], x)
            if i:
                times.append(time.perf_counter() - start)
    finally:
        for p, flag in zip(net.model.parameters(), flags):
            p.requires_grad_(flag)
    return statistics.median(times)


def measure(repeats: int = 5, method: str = "guided_backprop") -> dict:
    """``{"first_s", "second_s", "ratio"}`` for two classes on the cat with the default model (224 px),
    plus ``"unit_first_s"``, ``"unit_second_s"``, ``"unit_ratio"`` (two channels of one layer) and
    ``"plain_limit_s"`` (plain torch forward + input backward)."""
    net = cw.load_default()
    cat = cw.sample_image("cat")
    first, second = _pair(net, cat, 285, 282, method, repeats)  # Egyptian cat, then tiger cat
    unit_layer = "blocks.5.0"
    unit_first, unit_second = _pair(net, cat, cw.Unit(unit_layer, 3), cw.Unit(unit_layer, 40), method, repeats)
    return {"first_s": first, "second_s": second, "ratio": second / first, "unit_first_s": unit_first,
            "unit_second_s": unit_second, "unit_ratio": unit_second / unit_first,
            "plain_limit_s": _plain_limit(net, cat, repeats), "method": method}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--method", default="guided_backprop")
    args = parser.parse_args()
    r = measure(args.repeats, args.method)
    print(f"default model, cat 224 px, {r['method']}, medians of {args.repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads")
    print(f"{'targets':<22}{'first (ms)':>12}{'second (ms)':>13}{'second/first':>14}   goal <= 0.7")
    print(f"{'two classes':<22}{r['first_s'] * 1e3:>12.1f}{r['second_s'] * 1e3:>13.1f}{r['ratio']:>14.2f}")
    print(f"{'two units, one layer':<22}{r['unit_first_s'] * 1e3:>12.1f}{r['unit_second_s'] * 1e3:>13.1f}"
          f"{r['unit_ratio']:>14.2f}")
    print(f"plain torch forward + input backward: {r['plain_limit_s'] * 1e3:.1f} ms "
          f"(second target / that: {r['second_s'] / r['plain_limit_s']:.2f})")


if __name__ == "__main__":
    main()
