"""Engine benchmark: saliency vs its lower bound, and ours vs captum, measured side by side.

Run:  python benchmarks/bench_engine.py [--models alexnet resnet18 vgg16 default] [--repeats 5]

For each model (random weights for torchvision; the offline default EfficientNet-Lite0 with its
own weights) on one 224x224 input, on the CPU:

* ``limit``: one forward + one input-only backward in plain torch (parameters frozen) -- the least
  any gradient-based saliency method can cost;
* ``gradient / limit`` and ``guided / limit``: our ``net.saliency`` over that (goal: <= 1.1);
* ``ours / captum`` for ``Saliency(abs=False)``, ``GuidedBackprop`` and ``Occlusion`` (window and
  stride 32, batches of 32 occluded copies, ``perturbations_per_eval=32``) (goal: <= 1.0).

Ratios are of medians (and, in brackets, of minima: steadier on a shared machine) of ``--repeats``
runs after a warm-up; the methods are interleaved round-robin so that a noisy neighbour slows all
of them alike. This is a script, never a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import cnn_widgets as cw


def build(name: str) -> tuple[torch.nn.Module, cw.Network]:
    import torchvision

    if name == "default":
        net = cw.load_default()
        return net.model, net
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, cw.Network(model)


def measure(functions: dict[str, callable], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times of each function, ``repeats`` runs interleaved round-robin after ``warmup``."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def bench_model(name: str, repeats: int, occlusion_repeats: int, window: int, stride: int, batch: int) -> dict:
    from captum.attr import GuidedBackprop, Occlusion, Saliency

    model, net = build(name)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    if name == "default":
        x = net.prepare(cw.sample_image("cat"))
    with torch.no_grad():
        target = int(model.eval()(x).argmax())
    net.layers, net.num_classes  # layer discovery is a one-off per Network, not part of a call

    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)

    def limit():
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xg)[0, target], xg)

    def captum_saliency():
        Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=False)

    def captum_guided():
        GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=target)

    def captum_occlusion():
        Occlusion(lambda batch: model(batch).softmax(1)).attribute(
            x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=0.0,
            target=target, perturbations_per_eval=batch,
        )

    def our_occlusion():
        net.occlusion(x, target, window=window, stride=stride, fill="zero", batch_size=batch, progress=False)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum's "setting backward hooks on ReLU" notices
            saliency_times = measure(
                {
                    "limit": limit,
                    "gradient": lambda: net.saliency(x, target, "gradient"),
                    "guided": lambda: net.saliency(x, target, "guided_backprop"),
                    "captum_gradient": captum_saliency,
                    "captum_guided": captum_guided,
                },
                repeats,
            )
            occlusion_times = measure(
                {"occlusion": our_occlusion, "captum_occlusion": captum_occlusion}, occlusion_repeats, warmup=0
            )
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    return {**saliency_times, **occlusion_times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "resnet18", "vgg16", "default"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--occlusion-repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default: torch's choice; 1 is far steadier on a machine shared with other jobs)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, input 1x3x224x224, "
        f"{args.repeats} repeats (occlusion {args.occlusion_repeats}) after warm-up; "
        f"occlusion window {args.window} stride {args.stride} batch {args.batch_size}"
    )
    columns = [
        ("grad/limit", "gradient", "limit"),
        ("guided/limit", "guided", "limit"),
        ("grad/captum", "gradient", "captum_gradient"),
        ("guided/captum", "guided", "captum_guided"),
        ("occl/captum", "occlusion", "captum_occlusion"),
    ]
    header = f"{'model':<9} {'limit ms':>9} {'occl s':>7} " + " ".join(f"{title:>15}" for title, _, _ in columns)
    print("ratios: median (min) of the repeats")
    print(header)
    print("-" * len(header))
    for name in args.models:
        t = bench_model(name, args.repeats, args.occlusion_repeats, args.window, args.stride, args.batch_size)
        med = {k: statistics.median(v) for k, v in t.items()}
        low = {k: min(v) for k, v in t.items()}
        cells = " ".join(f"{f'{med[a] / med[b]:.3f} ({low[a] / low[b]:.3f})':>15}" for _, a, b in columns)
        print(f"{name:<9} {med['limit'] * 1e3:9.1f} {med['occlusion']:7.2f} {cells}", flush=True)
    print(
        "goals: grad/limit and guided/limit <= 1.1; every ours/captum <= 1.0. "
        "(captum's GuidedBackprop hooks nn.ReLU modules only: on the default model, whose rectifiers "
        "are ReLU6, it computes a plain gradient, so that ratio compares timings, not the same method.)"
    )


if __name__ == "__main__":
    main()
