"""How long ``net.explain_unit`` takes per layer kind, beside the model's own forward pass (a script,
never a test).

Run:  python benchmarks/bench_unit.py [--repeats 5] [--threads 1] [--model default|digits]

The default model (EfficientNet-Lite0, 224 px) or the digits CNN, the cat (or a digit), on the CPU with
``--threads`` intra-op threads (1 by default: the machine is shared). For each layer kind the
benchmark explains one unit of an early, a middle and a late layer of that kind; each time is the
best of ``--repeats`` rounds, the sides interleaved in every round (forward, then each unit) so a
noisy neighbour slows each alike. The 1-minute load average is printed on every row.

* ``forward``: ``model(x)`` under ``torch.no_grad`` in eval mode, the least any pass costs;
* ``explain``: ``net.explain_unit(image, unit)``: one recorded forward pass (stopped a few operations
  after the unit's layer), the walk back to the source, the source taken apart in float64, the
  input channels and the output map copied for the view. The activations it reads for ``.value``
  are cached per image (as in the Explorer, which has computed them to draw the feature maps).

Goal (issue 28): opening the view (engine call + first draw) within 100 ms for the default model.

Measured (1 thread, shared 2-core machine, load 1.9-2.2, best of 5; ms):

  EfficientNet-Lite0 (forward 20.4):  conv_stem 18.6, blocks.4.0.conv_pw 32.6, conv_head 47.3,
    bn1.act 20.0, blocks.6.0 (block: its last conv) 54.5, global_pool 48.1, classifier 54.5
    (0.9-2.7 forward passes: the recorded pass up to the layer, ~0.5 ms of Python per operation)
  DigitsCNN (forward 0.3):  conv1 3.6, conv2 2.8, relu1 2.7, pool1 1.9, pool2 3.1, fc 4.4
"""

from __future__ import annotations

import argparse
import os
import sys
import time

THREADS = os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import cnn_widgets as cw  # noqa: E402


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def picks(net: cw.Network) -> list[tuple[str, str]]:
    """(kind, layer): an early, a middle and a late layer of each kind."""
    by_kind: dict[str, list[str]] = {}
    for layer in net.layers:
        by_kind.setdefault(layer.kind, []).append(layer.name)
    chosen = []
    for kind, names in by_kind.items():
        for name in dict.fromkeys([names[0], names[len(names) // 2], names[-1]]):
            chosen.append((kind, name))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=int(THREADS))
    parser.add_argument("--model", choices=("default", "digits"), default="default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "default":
        net, image = cw.load_default(), cw.sample_image("cat")
    else:
        from cnn_widgets.engine.digits_dataset import digits_split

        net, image = cw.digits_cnn(), digits_split("test")[0][0]
    x = net.prepare(image)
    net.activations(image)  # the Explorer has these already (the feature maps)
    rows = picks(net)
    units = {name: cw.Unit(name, 0) for _, name in rows}
    for unit in units.values():
        net.explain_unit(image, unit)  # warm
    times = {name: [] for name in units}
    forward = []
    model = net.model.eval()
    for _ in range(args.repeats):
        with torch.no_grad():
            forward.append(best(lambda: model(x), 1))
        for name, unit in units.items():
            times[name].append(best(lambda: net.explain_unit(image, unit), 1))
    fwd = min(forward) * 1000
    print(f"{net.name}, {args.threads} thread(s), best of {args.repeats}; forward {fwd:.1f} ms "
          f"(load {os.getloadavg()[0]:.2f})")
    print(f"{'kind':8} {'layer':28} {'source':8} {'explain ms':>10} {'/forward':>9}  load")
    for kind, name in rows:
        ms = min(times[name]) * 1000
        source = net.explain_unit(image, units[name]).kind
        print(f"{kind:8} {name:28} {source:8} {ms:10.1f} {ms / fwd:9.2f}  {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
