"""Occlusion benchmark: incremental (Krypton) exact and approximate vs Captum's Occlusion, one run.

Run:  python benchmarks/bench_occlusion.py [--models vgg16 resnet18 default] [--repeats 3] [--quick]

Krypton (Nakandala, Kumar & Papakonstantinou, SIGMOD 2019) recomputes, for each occluded copy,
only the activations the window can change. For each model (random weights for torchvision, the
offline default EfficientNet-Lite0) on one 224x224 input, CPU, 2 threads, mean fill, batches of 32:

* ``captum``: ``captum.attr.Occlusion`` (``perturbations_per_eval=32``), the whole network per copy;
* ``exact``: ``net.occlusion`` (incremental, exact); ``captum / exact`` is the speed-up (goals:
  >= 4 on VGG16, >= 2.5 on ResNet-18 and the default model);
* ``approx``: each setting of ``APPROX`` (adaptive drill-down alone, and with the projective-field
  threshold ``tau``): ``captum / approx`` (goal >= 20), its limit, the share of windows run, and the
  correlation of its heat map with the exact one (goal >= 0.95) and, for drill-down alone, its
  ceiling: the correlation had the drilled windows been the ones whose first-pass estimate is
  furthest from exact (an oracle that reads the exact map, which no real rule has: the headroom
  left to a better choice of windows, given the first pass and its estimate);
* ``1/work``: multiply-adds of one full forward per window over those the method ran -- the
  speed-up limit it chases (convolutions and linear layers only).

Times are medians of ``--repeats`` runs, the methods interleaved round-robin so that a noisy
neighbour slows all alike. A script, never a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import cnn_widgets as cw
from cnn_widgets.engine.incremental.heat import first_pass_estimate, heat_error, heat_map
from cnn_widgets.engine.occlusion import first_pass_stride, window_positions


def build(name: str) -> cw.Network:
    if name == "default":
        return cw.load_default()
    import torchvision

    torch.manual_seed(0)
    return cw.Network(getattr(torchvision.models, name)(weights=None).eval())


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


#: approximate settings measured by default: (tau, drill_down); tau None = no projective-field cut
APPROX = ((None, 0.1), (None, 0.3), (0.7, 0.1))


def setting_name(tau, drill) -> str:
    parts = ([f"tau {tau:g}"] if tau is not None else []) + ([f"drill {drill:g}"] if drill is not None else [])
    return ", ".join(parts) or "exact"


def drill_ceiling(exact, window: int, stride: int, size: tuple[int, int], runs: int) -> float | None:
    """The correlation an oracle choice of drilled windows reaches at ``runs`` windows run.

    Drill-down's first pass (at :func:`first_pass_stride`) and its estimate of every other
    window, as ``occlusion(drill_down=...)`` makes them, then, of the windows left, the ones whose
    estimate is furthest from the exact value (known only from the exact map: an oracle, not a
    method; greedy, so a bound in practice rather than a proven maximum). ``None`` when the first
    pass's corners are not all on the fine grid.
    """
    tops, lefts = window_positions(size, window, stride)
    coarse_stride = first_pass_stride(window, stride)
    ctops, clefts = window_positions(size, window, coarse_stride)
    if not (set(ctops) <= set(tops) and set(clefts) <= set(lefts)) or coarse_stride == stride:
        return None
    grid = exact.grid.double()
    coarse = grid[[tops.index(t) for t in ctops]][:, [lefts.index(l) for l in clefts]]
    corners = [(t, l) for t in tops for l in lefts]
    estimate = first_pass_estimate(coarse, window, coarse_stride, size, corners)
    truth = grid.flatten()
    error = (estimate - truth).abs()
    first = {(t, l) for t in ctops for l in clefts}
    on_first = torch.tensor([c in first for c in corners])
    estimate[on_first] = truth[on_first]
    error[on_first] = -1.0
    drilled = max(0, min(runs - len(first), int((~on_first).sum())))
    chosen = error.topk(drilled).indices
    estimate[chosen] = truth[chosen]
    approx = heat_map(estimate.view(len(tops), len(lefts)), window, stride, size)
    return heat_error(approx, heat_map(grid, window, stride, size))["correlation"]


def bench(name: str, window: int, stride: int, repeats: int, approx=APPROX) -> dict:
    """Captum, exact and every ``(tau, drill_down)`` of ``approx`` on one model, interleaved."""
    from captum.attr import Occlusion

    net = build(name)
    x = net.prepare(cw.sample_image("cat"))
    target = int(net.logits(x).argmax())
    baseline = x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    model = net.model

    def captum():
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            out = Occlusion(lambda b: model(b).softmax(1)).attribute(
                x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=baseline,
                target=target, perturbations_per_eval=32)
        return out[0, 0]

    options = {"window": window, "stride": stride, "fill": "mean", "batch_size": 32, "progress": False, "result": True}
    methods = {"captum": captum, "exact": lambda: net.occlusion(x, target, **options)}
    for tau, drill in approx:
        methods[setting_name(tau, drill)] = (
            lambda tau=tau, drill=drill: net.occlusion(x, target, approx=tau, drill_down=drill, **options))
    times = {k: [] for k in methods}
    outputs = {}
    for _ in range(repeats):
        for key, fn in methods.items():  # interleaved: noise hits every method alike
            seconds, outputs[key] = timed(fn)
            times[key].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    exact = outputs["exact"]
    rows = []
    for tau, drill in approx:
        key = setting_name(tau, drill)
        out = outputs[key]
        rows.append({"setting": key, "seconds": med[key], "speedup": med["captum"] / med[key],
                     "limit": exact.windows / max(out.work * out.windows, 1e-9),
                     "windows": out.windows / exact.windows, "corr": heat_error(out.heat, exact.heat)["correlation"],
                     "ceiling": drill_ceiling(exact, window, stride, tuple(x.shape[-2:]), out.windows)
                     if tau is None and drill is not None else None})
    return {
        "model": name, "window": f"{window}/{stride}", "captum_s": med["captum"], "exact_s": med["exact"],
        "speedup": med["captum"] / med["exact"], "limit": 1 / exact.work, "approx": rows,
        "captum_gap": float((exact.heat - outputs["captum"].to(exact.heat.dtype)).abs().max()),
        "method": exact.method,
    }


def print_rows(r: dict) -> None:
    """The exact row of one model and window, then one indented line per approximate setting."""
    print(f"{r['model']:9} {r['window']:7} {r['captum_s']:9.2f} {r['exact_s']:8.2f} {r['speedup']:12.2f} "
          f"{r['limit']:7.2f}   |exact - captum| {r['captum_gap']:.1e}"
          + ("" if r["method"] == "incremental" else "  (full recomputation!)"), flush=True)
    for a in r["approx"]:
        print(f"{'':9} {'':7}   approx {a['setting']:19} {a['seconds']:6.2f} s  captum/approx {a['speedup']:6.2f}  "
              f"limit {a['limit']:6.2f}  windows run {a['windows']:4.2f}  corr {a['corr']:.3f}"
              + (f"  (ceiling {a['ceiling']:.3f})" if a.get("ceiling") is not None else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet18", "default"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat, window 32 / stride 16 only")
    args = parser.parse_args()
    torch.set_num_threads(2)
    settings = [(32, 16)] if args.quick else [(32, 16), (16, 8)]
    repeats = 1 if args.quick else args.repeats
    print(f"CPU, {torch.get_num_threads()} threads, 224x224, mean fill, batch 32, medians of {repeats}")
    header = f"{'model':9} {'win/str':7} {'captum s':>9} {'exact s':>8} {'captum/exact':>12} {'1/work':>7}"
    print(header)
    print("-" * len(header))
    for name in args.models:
        for window, stride in settings:
            print_rows(bench(name, window, stride, repeats))


if __name__ == "__main__":
    main()
