"""Occlusion's ``method="auto"``: incremental where it pays, the whole network per copy where it does not.

Run:  python benchmarks/bench_occlusion_auto.py [--models efficientnet_b0 mobilenet_v3_small default] [--repeats 3]

Per model (random weights for torchvision, the offline default model), the cat at 224 px, window 32
stride 16, mean fill, batches of 32, CPU, 2 threads: the time of ``method="incremental"``, ``"full"``
and ``"auto"`` (medians of interleaved repeats), the incremental work (multiply-adds over those of
full recomputation) and what ``auto`` ran. Behind squeeze-and-excitation blocks (EfficientNet-B0,
MobileNetV3) every position changes, incremental inference redoes nearly the whole network with its
bookkeeping on top, and ``auto`` should cost about what ``full`` does; elsewhere it should cost what
``incremental`` does. A script, never a timed test.
"""

from __future__ import annotations

import argparse

import torch

import cnn_widgets as cw
from bench_occlusion import build
from bench_speed import interleaved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_b0", "mobilenet_v3_small", "default"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    options = {"window": 32, "stride": 16, "fill": "mean", "batch_size": 32, "progress": False, "result": True}
    print(f"CPU, {torch.get_num_threads()} threads, cat 224 px, window 32 stride 16, medians of {args.repeats}")
    print(f"{'model':20} {'incremental s':>13} {'full s':>7} {'auto s':>7}  {'work':>5}  auto ran    auto/best")
    for name in args.models:
        net = build(name)
        x = net.prepare(cw.sample_image("cat"))
        target = int(net.logits(x).argmax())
        results = {}

        def run(method):
            results[method] = net.occlusion(x, target, execution=method, **options)

        # interleaved: load hits every method alike
        med = interleaved({m: (lambda m=m: run(m)) for m in ("incremental", "full", "auto")}, args.repeats)
        print(f"{name:20} {med['incremental']:13.2f} {med['full']:7.2f} {med['auto']:7.2f}  "
              f"{results['incremental'].work:5.2f}  {results['auto'].method:11} "
              f"{med['auto'] / min(med['incremental'], med['full']):5.2f}", flush=True)


if __name__ == "__main__":
    main()
