"""Benchmark of the activation atlas (printed, never asserted).

The issue's target: a 12 x 12 atlas of the default model (EfficientNet-Lite0) with ``visualize=True``
finishes in minutes on this CPU. Over ``cw.datasets.augmented_photos(n=IMAGES)`` at a middle layer,
each phase is timed on its own in one run:

* ``sample``: one pass over the images, stopped at the layer, keeping ``positions`` vectors each;
* ``layout``: t-SNE (and PCA, for comparison) of the sampled vectors, then binning and averages;
* ``icons``: the batched direction visualisation of every non-empty cell (``steps`` Adam steps,
  64-pixel icons); beside it the limit, a plain forward and backward of the same batch to the layer
  repeated ``steps`` times (no parametrisation, no transforms), and the cost of one unbatched
  icon (one direction per ascent, as ``visualize`` would run it) extrapolated to all cells;
* ``patches``: the ``visualize=False`` icons (mean receptive-field patches: a second pass of
  image loading, no model);
* ``class_filter``: one forward and backward pass over the images for a class.

Threads: ``OMP_NUM_THREADS`` (default 1 here, see below). The machine is shared (other sessions' jobs run on the same 2 cores): the load average is printed
with the figures; compare ratios measured in one run rather than absolute times across runs.

Run: ``python benchmarks/bench_atlas.py`` (several minutes); ``--steps 16`` times the icons on
fewer steps and scales them to 128 (the ascent's cost is linear in the steps); ``--quick`` for a
smoke run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# One thread: on this shared, oversubscribed 2-core machine OpenMP's spinning threads make a
# 2-thread forward+backward about 8x slower than 1 thread (measured: 8.8 s vs 1.1 s for 48
# 64-pixel images to blocks.4.2 at load 16). Set before torch and scikit-learn start their pools.
THREADS = os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import cnn_widgets as cw  # noqa: E402
from cnn_widgets.engine.atlas import atlas, bin_points, cell_means, direction_icons, layout  # noqa: E402
from cnn_widgets.engine.atlas.icons import patch_icons  # noqa: E402
from cnn_widgets.engine.atlas.sample import sample_activations  # noqa: E402
from cnn_widgets.engine.hooks import inference_state  # noqa: E402
from cnn_widgets.engine.scan.sources import as_source  # noqa: E402


CPU: dict[str, float] = {}


def timed(fn, label: str):
    """Run ``fn``; print and return its wall time (and keep its CPU time: with one thread it is what
    an idle core would take, whatever the other sessions on this machine do)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, CPU[label] = time.perf_counter() - start, time.process_time() - cpu
    print(f"  {label:<34} wall {wall:8.1f} s   cpu {CPU[label]:8.1f} s", flush=True)
    return out, wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--grid", type=int, default=12)
    parser.add_argument("--positions", type=int, default=4)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--layer", default="blocks.4.2")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--save", default=None, help="write the visualize=True atlas picture there (PNG)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.grid, args.steps = 24, 4, 8

    torch.set_num_threads(int(THREADS))
    print(f"load average before: {os.getloadavg()}, torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")
    net = cw.load_default()
    source = as_source(cw.datasets.augmented_photos(n=args.images))
    layer = args.layer
    total_start = time.perf_counter()
    samples, t_sample = timed(lambda: sample_activations(net, source, layer, args.positions, 0, 16, False), "sample")
    m, c = samples.vectors.shape
    coords, t_tsne = timed(lambda: layout(samples.vectors, "tsne", 0), "layout t-SNE")
    _, t_pca = timed(lambda: layout(samples.vectors, "pca", 0), "layout PCA")
    rows, cols = bin_points(coords, args.grid)
    (counts, means), t_bin = timed(lambda: cell_means(samples.vectors, rows, cols, args.grid), "binning + averages")
    filled = np.flatnonzero(counts.ravel())
    directions = means.reshape(args.grid * args.grid, -1)[filled]
    n = len(filled)
    (icons, _), t_icons = timed(lambda: direction_icons(net, layer, directions, steps=args.steps, size=args.size,
                                                        progress=False), "icons (batched)")
    t_total_visualize = time.perf_counter() - total_start
    if args.save:
        canvas = np.full((args.grid * args.size, args.grid * args.size, 3), 255, np.uint8)
        for f, icon in zip(filled, icons):
            row, col = divmod(int(f), args.grid)
            canvas[row * args.size:(row + 1) * args.size, col * args.size:(col + 1) * args.size] = icon
        from PIL import Image

        Image.fromarray(canvas).save(args.save)
    cpu_total = sum(CPU[k] for k in ("sample", "layout t-SNE", "layout PCA", "binning + averages", "icons (batched)"))

    # the limit: forward + backward of the same batch to the layer, steps times, nothing else
    name = net.layer(layer).name
    x = torch.rand(min(n, 48), 3, args.size, args.size)

    def plain():
        with inference_state(net.model), torch.enable_grad():
            for _ in range(args.steps):
                xi = x.clone().requires_grad_(True)
                _, out = net._forward(xi, layers=[name], stop_early=True)
                out[name].pow(2).mean().backward()

    _, t_plain = timed(plain, "limit: plain fwd+bwd, one batch")
    t_limit = t_plain * n / len(x)  # the same work for every cell (batches of 48)
    # one direction per ascent, as visualize runs it: a few directions timed, extrapolated to all
    probe = min(2, n)
    _, t_single = timed(lambda: [direction_icons(net, layer, directions[i:i + 1], steps=args.steps, size=args.size,
                                                 progress=False) for i in range(probe)], f"{probe} unbatched icons")
    t_unbatched = t_single / probe * n

    flat = rows * args.grid + cols
    _, t_patches = timed(lambda: patch_icons(net, source, layer, samples.image_index, samples.position, flat,
                                             args.grid * args.grid, size=args.size, progress=False), "patches")
    result = atlas(net, source, layer, grid=args.grid, positions=args.positions, visualize=False, progress=False)
    print("  (building a visualize=False atlas for the class filter)", flush=True)
    _, t_filter = timed(lambda: result.class_filter("tabby", k=12, progress=False), "class_filter")

    print(f"default model, layer {layer} {tuple(net.layer(layer).shape)}, {args.images} augmented photos, "
          f"{args.positions} positions -> {m} vectors of {c}; grid {args.grid}x{args.grid}: {n} non-empty cells; "
          f"icons {args.size}px, {args.steps} steps")
    print(f"  sample            {t_sample:8.1f} s")
    print(f"  layout t-SNE      {t_tsne:8.1f} s   (PCA {t_pca:.2f} s; binning + averages {t_bin * 1000:.1f} ms)")
    print(f"  icons (batched)   {t_icons:8.1f} s   limit (plain fwd+bwd, same batches) {t_limit:.1f} s: "
          f"ratio {t_icons / t_limit:.2f}")
    print(f"  icons unbatched   {t_unbatched:8.1f} s   (extrapolated from {probe}): batched is "
          f"{t_unbatched / t_icons:.1f}x faster")
    if args.steps != 128:  # the ascent's cost is linear in the steps: scale to the default 128
        scale = 128 / args.steps
        print(f"  scaled to 128 steps: icons {t_icons * scale:.1f} s wall, {CPU['icons (batched)'] * scale:.1f} s cpu; "
              f"atlas total {(t_total_visualize + t_icons * (scale - 1)) / 60:.1f} min wall, "
              f"{(cpu_total + CPU['icons (batched)'] * (scale - 1)) / 60:.1f} min cpu")
    print(f"  atlas visualize=True total {t_total_visualize:.1f} s = {t_total_visualize / 60:.1f} min wall, "
          f"{cpu_total / 60:.1f} min of one core's CPU time")
    print(f"  patches (visualize=False icons) {t_patches:.1f} s; visualize=False total ~ "
          f"{t_sample + t_tsne + t_patches:.1f} s")
    print(f"  class_filter('tabby') {t_filter:.1f} s (one forward+backward pass over the images)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
