"""Layer listing of a compiled model vs the same eager model, and one prediction / saliency map of each.

Run:  python benchmarks/bench_models.py [--repeats 5] [--size 64]

On torchvision ResNet-18 (random weights) at ``size`` px, one thread, on the CPU:

* ``layers``: ``cw.Network(model, ...).layers`` from a new Network (one traced pass: what a user
  waits for after wrapping the model), for ``model`` eager and ``torch.compile(model)`` (issue 27:
  253 s before, when the compiled graph was traced and recompiled under the engine's hooks);
* ``predict`` and ``saliency`` (guided backprop): the first call on a new Network.

The compiled model is explored through its original module (``engine/model_kinds.py``), so the
ratios compiled / eager should be about 1; ``torch.compile`` itself (which compiles nothing until
the compiled model is called, and the engine never calls it) is timed apart. Eager and compiled
runs are interleaved, medians of ``repeats`` after a warm-up. This is a script, never a timed test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch
from torchvision import models as tvm

import cnn_widgets as cw


def _first_calls(model, preprocess, image) -> dict[str, float]:
    times = {}
    start = time.perf_counter()
    net = cw.Network(model, preprocess=preprocess)
    net.layers
    times["layers"] = time.perf_counter() - start
    start = time.perf_counter()
    net.predict(image)
    times["predict"] = time.perf_counter() - start
    start = time.perf_counter()
    net.saliency(image, 0, "guided_backprop")
    times["saliency"] = time.perf_counter() - start
    return times


def measure(repeats: int = 5, size: int = 64) -> dict[str, tuple[float, float]]:
    """``{call: (eager seconds, compiled seconds)}``, medians of interleaved runs."""
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None).eval()
    preprocess = cw.imagenet_preprocess(size=size, resize=size)
    image = cw.sample_image("cat")
    start = time.perf_counter()
    compiled = torch.compile(model)
    compile_time = time.perf_counter() - start
    runs: dict[str, list[list[float]]] = {}
    for i in range(repeats + 1):
        eager = _first_calls(model, preprocess, image)
        fast = _first_calls(compiled, preprocess, image)
        if i:  # the first round warms up
            for call in eager:
                runs.setdefault(call, [[], []])
                runs[call][0].append(eager[call])
                runs[call][1].append(fast[call])
    result = {call: (statistics.median(a), statistics.median(b)) for call, (a, b) in runs.items()}
    result["torch.compile(model)"] = (float("nan"), compile_time)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print(f"machine: {os.cpu_count()} cores, torch threads: {torch.get_num_threads()}, torch {torch.__version__}; "
          f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"ResNet-18 at {args.size} px, medians of {args.repeats} interleaved runs (first calls on a new Network)")
    print(f"{'call':24} {'eager s':>9} {'compiled s':>11} {'compiled/eager':>15}")
    for call, (eager, compiled) in measure(args.repeats, args.size).items():
        ratio = compiled / eager if eager == eager else float("nan")
        print(f"{call:24} {eager:9.3f} {compiled:11.3f} {ratio:15.2f}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
