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

``--backend ray`` (needs ``pip install cnn_widgets[ray]``; starts a local 2-CPU Ray cluster): the
default model over the same photos locally and with 1 and 2 Ray workers (wall time including the
workers' start, and the steady rate after each worker's first batch), the driver's
merge cost and the size of one batch's partial result, the driver's peak memory for 2,000 and
20,000 synthetic images (32 x 32 inputs, so the run stays short; the driver's work does not depend
on the input size), and a paper extrapolation to ImageNet-train on 8 GPU workers. About 10 minutes
on 2 busy cores; ``--quick``: fewer images.
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
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="ray: local scan vs 1 and 2 Ray workers, merge cost, driver memory, extrapolation")
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return
    if args.backend == "ray":
        ray_main(args)
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
    print("peak memory of a scan, default model (fresh process each, after a warm-up scan)")
    print(f"{'images':>7} {'RSS delta MiB':>14} {'tracemalloc MiB':>16} {'codes MiB':>10} {'img/s':>7}")
    for count in counts:
        m = memory(count)
        print(f"{m['n']:>7} {m['rss_delta'] / 2**20:>14.1f} {m['traced_peak'] / 2**20:>16.1f} "
              f"{m['codes'] / 2**20:>10.1f} {m['n'] / m['seconds']:>7.1f}", flush=True)


# ------------------------------------------------------------------------------------ --backend ray
class SyntheticImages(torch.utils.data.Dataset):
    """Preprocessed random inputs ``[3, size, size]``, image ``i`` from seed ``i``: nothing to ship."""

    def __init__(self, n: int, size: int = 32):
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.randn(3, self.size, self.size, generator=torch.Generator().manual_seed(i))


def start_ray():
    """A local 2-CPU cluster, started lean (no dashboard, monitors) so it starts on a busy machine."""
    import ray
    from ray.cluster_utils import Cluster

    for attempt in range(3):
        try:
            head = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 2, "include_dashboard": False, "no_monitor": True, "include_log_monitor": False})
            break
        except Exception:
            if attempt == 2:
                raise
    ray.init(address=head.address, log_to_driver=False)
    return ray, head


class MergeTimer:
    """Wraps the driver's merge to record, per batch: when, how long, and the partial result's bytes."""

    def __init__(self):
        from cnn_widgets.engine.scan import ray_driver

        self.module, self.original, self.rows = ray_driver, ray_driver.merge_parts, []

    def __enter__(self):
        def timed(result, parts):
            start = time.perf_counter()
            merged = self.original(result, parts)
            size = sum(sum(t.nbytes for t in vars(state).values()) + codes.nbytes for state, codes in parts.values())
            self.rows.append((start, time.perf_counter() - start, size, len(next(iter(parts.values()))[1])))
            return merged

        self.module.merge_parts = timed
        return self

    def __exit__(self, *exc):
        self.module.merge_parts = self.original

    def steady_rate(self, workers: int) -> float:
        """Images/s after the first ``workers`` merged batches (the workers' start-up excluded)."""
        if len(self.rows) <= workers:
            return float("nan")
        return sum(r[3] for r in self.rows[workers:]) / (self.rows[-1][0] - self.rows[workers - 1][0])


def ray_throughput(net, photos) -> list[tuple]:
    n, rows = len(photos), []
    scan(net, photos[:BATCH], batch_size=BATCH, progress=False)  # warm-up
    start = time.perf_counter()
    scan(net, photos, batch_size=BATCH, progress=False)
    local = n / (time.perf_counter() - start)
    rows.append(("local", local, local, float("nan"), 0))
    for workers in (1, 2):
        with MergeTimer() as timer:
            start = time.perf_counter()
            scan(net, photos, batch_size=BATCH, progress=False, backend="ray", workers=workers)
            wall = n / (time.perf_counter() - start)
        merge_ms = 1e3 * sum(r[1] for r in timer.rows) / len(timer.rows)
        rows.append((f"ray, {workers} worker{'s' * (workers > 1)}", wall, timer.steady_rate(workers), merge_ms,
                     timer.rows[0][2]))
    return rows


def driver_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ray_memory(net, n: int, backend: str = "ray") -> dict:
    """Peak RSS (sampled every 5 ms) and tracemalloc peak of the driver during a 2-worker scan of ``n``
    images (``backend="local"``: the same scan in this process, the bound the driver should keep)."""
    import gc
    import tracemalloc

    gc.collect()
    before = driver_rss()
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], driver_rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    with MergeTimer() as timer:
        start = time.perf_counter()
        workers = {"workers": 2} if backend == "ray" else {}
        result = scan(net, SyntheticImages(n), batch_size=BATCH, progress=False, backend=backend, **workers)
        seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    done.set()
    sampler.join()
    if not result.complete:
        raise SystemExit(f"the Ray scan covered {result.count} of {n} images: a partial result is not a measurement")
    codes = sum(result.codes(layer).nbytes for layer in result.layers)
    merge_ms = 1e3 * sum(r[1] for r in timer.rows) / max(1, len(timer.rows))
    return {"n": n, "backend": backend, "rss": peak[0] - before, "traced": traced, "codes": codes, "rate": n / seconds,
            "merge_ms": merge_ms, "partial": timer.rows[0][2] if timer.rows else 0}


def merge_cost(net, batch: int, repeats: int = 20) -> tuple[float, int]:
    """Driver seconds to merge one batch of ``batch`` images (partial states from a real fold) and its bytes."""
    from cnn_widgets.engine.hooks import inference_state
    from cnn_widgets.engine.scan.result import Scan
    from cnn_widgets.engine.scan.batch import fold_batch
    from cnn_widgets.engine.scan.state import empty_layer_state, merge_layer_states
    from cnn_widgets.engine.scan.model import model_fingerprint

    layers = default_scan_layers(net)
    x = torch.stack([SyntheticImages(batch)[i] for i in range(batch)])
    empty = {n: empty_layer_state(net.layer(n).channels, 9, net.dtype) for n in layers}
    with inference_state(net.model), torch.no_grad():
        parts = fold_batch(net, layers, empty, 9, x, 0)
    result = Scan(net, layers, 9, None, batch * (repeats + 1), batch, model_fingerprint(net.model))
    size = sum(sum(t.nbytes for t in vars(s).values()) + c.nbytes for s, c in parts.values())
    start = time.perf_counter()
    for r in range(repeats):
        merged = {n: (merge_layer_states(result._state.layers[n], s, 9), c) for n, (s, c) in parts.items()}
        result._commit(r * batch, merged, [None] * batch)
    return (time.perf_counter() - start) / repeats, size


def ray_main(args) -> None:
    n = 128 if args.quick else max(args.images, 192)
    counts = (500, 2000) if args.quick else (2000, 20000)
    net = make_net("default")
    photos = list(datasets.augmented_photos(n=n, seed=0))
    ray, head = start_ray()
    try:
        print(f"torch {torch.__version__}, ray {ray.__version__}, {os.cpu_count()} cores (local cluster: 2 CPUs, "
              f"1 CPU per worker), {net.name}, {len(default_scan_layers(net))} layers, batch {BATCH}, {n} photos\n")
        header = f"{'':<16} {'wall img/s':>10} {'steady img/s':>12} {'merge ms/batch':>15} {'partial KiB/batch':>18}"
        print(header + "\n" + "-" * len(header))
        for name, wall, steady, merge_ms, size in ray_throughput(net, photos):
            print(f"{name:<16} {wall:>10.1f} {steady:>12.1f} {merge_ms:>15.2f} {size / 2**10:>18.0f}", flush=True)
        print("(wall: the whole call, workers' start included; steady: after each worker's first batch)\n")
        if not args.no_memory:
            print("driver peak memory, 2 workers, synthetic 32x32 inputs (same layers and channels)")
            print(f"{'images':>7} {'backend':>8} {'RSS delta MiB':>14} {'tracemalloc MiB':>16} {'codes MiB':>10} {'img/s':>7} "
                  f"{'merge ms':>9}")
            for m in (ray_memory(net, count, backend) for count in counts for backend in ("local", "ray")):
                print(f"{m['n']:>7} {m['backend']:>8} {m['rss'] / 2**20:>14.1f} {m['traced'] / 2**20:>16.1f} "
                      f"{m['codes'] / 2**20:>10.1f} {m['rate']:>7.1f} {m['merge_ms']:>9.2f}", flush=True)
            print()
    finally:
        ray.shutdown()
        head.shutdown()
    extrapolate(net)


def extrapolate(net) -> None:
    """ImageNet-train (1,281,167 images) on 8 GPU workers, on paper, from the measured driver costs."""
    images, gpus, batch = 1_281_167, 8, 256
    merge_s, size = merge_cost(net, batch)
    start = time.perf_counter()
    photos = datasets.augmented_photos(n=32, seed=3)
    for i in range(len(photos)):
        net.preprocess(photos[i].convert("RGB"))
    prep_rate = len(photos) / (time.perf_counter() - start)  # resize + crop + normalise, one core
    gpu_rate = 2500.0  # assumed: EfficientNet-Lite0 forward + folds, fp32, batch 256, one A100-class GPU
    jpeg = 110e3  # ImageNet-train mean JPEG size, bytes
    decode = 100.0  # assumed JPEG decode img/s per core (PIL, ~400x350), beyond the preprocessing measured here
    limits = {
        "GPUs (8 x assumed 2,500 img/s)": gpus * gpu_rate,
        f"driver merge (measured {1e3 * merge_s:.1f} ms per batch of {batch})": batch / merge_s,
        f"driver intake (partials {size / 2**20:.2f} MiB per batch, at 1 GB/s)": batch * 1e9 / size,
        "reading (mean JPEG 110 kB at 1 GB/s shared storage)": 1e9 / jpeg,
        f"decode + preprocess on 64 CPU cores ({prep_rate:.0f} img/s/core measured + decode)":
            64 / (1 / decode + 1 / prep_rate),
    }
    print(f"paper extrapolation: ImageNet-train, {images:,} images, {gpus} GPU workers, batch {batch}")
    for name, rate in sorted(limits.items(), key=lambda kv: kv[1]):
        print(f"  {name:<78} {rate:>9,.0f} img/s -> {images / rate / 3600:5.2f} h")
    name, rate = min(limits.items(), key=lambda kv: kv[1])
    print(f"  => about {images / rate / 3600:.1f} h, limited by {name.split(' (')[0]}; this machine alone: "
          f"~{images / 25 / 3600:.0f} h at 25 img/s")


if __name__ == "__main__":
    main()
