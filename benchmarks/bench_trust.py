"""How long the trust checks take on the default model at 224 px (a script, never a test).

Run:  python benchmarks/bench_trust.py [--methods gradient guided_backprop ...] [--steps 32] [--threads 1]

Rows, measured side by side in one run, each with the 1-minute load average beside it:

* ``sanity``: ``net.sanity_check`` (cascading randomisation of every default stage) per method: the
  original's maps (the first stage the Trust tab would draw) and the whole cascade;
* ``faithfulness``: ``net.faithfulness`` deletion curves per method, batched (``--batch``, default 16)
  beside one image per pass (``batch_size=1``), the ratio printed.

No Quantus figures: Quantus is not installed with the package (its MPRT and pixel-flipping are the
issue's comparison; see the closing note).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import cnn_widgets as cw

DEFAULT_METHODS = ("gradient", "guided_backprop", "integrated_gradients", "smoothgrad", "grad_cam")


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--steps", type=int, default=32, help="deletion curve steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net, cat = cw.load_default(), cw.sample_image("cat")
    net.saliency(cat)  # warm up
    print(f"bench_trust: default model, cat 224 px, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load {load()}")
    print(f"stages: {len(cw.engine.sanity.default_stages(net.model))} (default), top-down")
    print(f"\n{'method':<22}{'original s':>11}{'cascade s':>11}{'load':>7}")
    for method in args.methods:
        first = [None]
        start = time.perf_counter()

        def seen(done, total, partial, first=first):
            if first[0] is None:
                first[0] = time.perf_counter() - start

        net.sanity_check(cat, methods=[method], progress=False, callback=seen)
        print(f"{method:<22}{first[0]:>11.2f}{time.perf_counter() - start:>11.2f}{load():>7}")
    print(f"\n{'method':<22}{'deletion s':>11}{'batch 1 s':>11}{'ratio':>7}{'AUC':>8}{'load':>7}")
    for method in args.methods:
        times = {}
        for batch in (args.batch, 1):
            start = time.perf_counter()
            result = net.faithfulness(cat, methods=[method], steps=args.steps, batch_size=batch)
            times[batch] = time.perf_counter() - start
        print(f"{method:<22}{times[args.batch]:>11.2f}{times[1]:>11.2f}{times[1] / times[args.batch]:>7.2f}"
              f"{result.auc[method]:>8.3f}{load():>7}")


if __name__ == "__main__":
    main()
