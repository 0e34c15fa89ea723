"""Benchmark of ``net.scan`` (printed, never asserted).

For the default model (EfficientNet-Lite0) and AlexNet (random weights) at 224 x 224, batch 32:

* ``forward``: plain ``model(x)`` under ``torch.no_grad`` on ready-made input batches: the limit;
* ``scan (tensors)``: ``scan`` over the same preprocessed tensors (the scan's own bookkeeping:
  hooks, top-k merge, statistics, codes);
* ``load+forward``: a DataLoader preprocessing the augmented photos, then the plain forward: the
  limit for an end-to-end pass over PIL images;
* ``scan (photos)``: ``scan`` over ``cw.datasets.augmented_photos`` end to end.

Then the peak memory of a scan (RSS sampled every 5 ms in a fresh process, minus the RSS before
the scan; and tracemalloc's peak of Python/numpy allocations) for 200 and 2,000 images: flat
apart from the per-image codes, whose size is printed beside it.

Run: ``python benchmarks/bench_scan.py`` (a few minutes on 2 cores); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import cnn_widgets as cw  # noqa: E402
from cnn_widgets.engine import datasets  # noqa: E402
from cnn_widgets.engine.scan import default_scan_layers, scan  # noqa: E402

BATCH = 32


def make_net(name: str) -> cw.Network:
    if name == "default":
        return cw.load_default()
    import torchvision

    torch.manual_seed(0)
    return cw.Network(torchvision.models.alexnet(weights=None), name="AlexNet (random)")


def best_rates(fns: dict, images: int, repeats: int = 3) -> dict:
    """Best images/s of each function over ``repeats`` rounds, the functions interleaved in every
    round (the machine is shared: the best run is the least disturbed, and interleaving exposes
    every function to the same load)."""
    best = dict.fromkeys(fns, 0.0)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = max(best[name], images / (time.perf_counter() - start))
    return best


def throughput(name: str, n: int) -> dict:
    net = make_net(name)
    photos = datasets.augmented_photos(n=n, seed=0)
    tensors = [net.prepare(photos[i])[0] for i in range(n)]
    batches = [torch.stack(tensors[i : i + BATCH]) for i in range(0, n, BATCH)]
    model = net.model.eval()
    layers = default_scan_layers(net)

    def forward():
        with torch.no_grad():
            for x in batches:
                model(x)

    def load_forward():
        loader = torch.utils.data.DataLoader(
            datasets.augmented_photos(n=n, seed=0, transform=net.preprocess), batch_size=BATCH
        )
        with torch.no_grad():
            for x in loader:
                model(x)

    forward()  # warm-up (allocator, oneDNN primitives)
    row = {"model": net.name, "layers": len(layers), "channels": sum(net.layer(l).channels for l in layers)}
    row.update(best_rates({
        "forward": forward,
        "scan_tensors": lambda: scan(net, tensors, batch_size=BATCH, progress=False),
        "load_forward": load_forward,
        "scan_photos": lambda: scan(net, photos, batch_size=BATCH, progress=False),
    }, n))
    return row


def memory_child(n: int) -> None:
    """Run in a fresh process: peak RSS / tracemalloc of one scan of ``n`` images."""
    import tracemalloc

    net = make_net("default")
    scan(net, datasets.augmented_photos(n=BATCH, seed=1), batch_size=BATCH, progress=False)  # warm-up
    photos = datasets.augmented_photos(n=n, seed=0)

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    start = time.perf_counter()
    result = scan(net, photos, batch_size=BATCH, progress=False)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    done.set()
    sampler.join()
    codes = sum(result.codes(l).nbytes for l in result.layers)
    print(json.dumps({"n": n, "rss_delta": peak[0] - before, "traced_peak": traced_peak, "codes": codes,
                      "seconds": seconds}))


def memory(n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(n)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=96, help="images per throughput run (default 96)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return

    n = 64 if args.quick else args.images
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, batch {BATCH}, "
          f"224x224, {n} images per run (best of 3, interleaved)\n")
    header = (f"{'model':<20} {'layers':>6} {'chan':>6} {'forward':>9} {'scan(t)':>9} {'ratio':>6} "
              f"{'load+fw':>9} {'scan(p)':>9} {'ratio':>6}")
    print(header + "\n" + "-" * len(header))
    for name in ("default", "alexnet"):
        r = throughput(name, n)
        print(f"{r['model']:<20} {r['layers']:>6} {r['channels']:>6} {r['forward']:>9.1f} {r['scan_tensors']:>9.1f} "
              f"{r['scan_tensors'] / r['forward']:>6.2f} {r['load_forward']:>9.1f} {r['scan_photos']:>9.1f} "
              f"{r['scan_photos'] / r['load_forward']:>6.2f}", flush=True)
    print("(images/s; scan(t): scan over preprocessed tensors vs plain forward; scan(p): scan over PIL photos "
          "vs DataLoader + plain forward)\n")

    if args.no_memory:
        return
    counts = (64, 320) if args.quick else (200, 2000)
    print(f"peak memory of a scan, default model (fresh process each, after a warm-up scan)")
    print(f"{'images':>7} {'RSS delta MiB':>14} {'tracemalloc MiB':>16} {'codes MiB':>10} {'img/s':>7}")
    for count in counts:
        m = memory(count)
        print(f"{m['n']:>7} {m['rss_delta'] / 2**20:>14.1f} {m['traced_peak'] / 2**20:>16.1f} "
              f"{m['codes'] / 2**20:>10.1f} {m['n'] / m['seconds']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
