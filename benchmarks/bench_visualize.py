"""Feature visualisation: ours vs torch-lucent, speed and quality measured side by side.

Install the anchor (its pins are too old for this torch; the shims below cover what moved):

    pip install --no-deps torch-lucent kornia kornia_rs decorator

Run:  python benchmarks/bench_visualize.py [--steps 64] [--repeats 3] [--sizes 128 224] [--threads 2]

On the offline default model (EfficientNet-Lite0, ``cw.load_default()``) and one unit
(``blocks.5.3`` channel 95, lucent's ``"blocks_5_3:95"``), both tools optimise a Fourier-parametrised,
colour-decorrelated image with Lucid's standard transforms (pad 12, jitter 8, scale, rotate, jitter 4)
and Adam at lr 0.05 for the same number of steps, on the CPU. For each picture size:

* ``steps/s``: steps over the wall time of the whole call;
* ``act@224``: the unit's mean activation for the final picture (as uint8 pixels), measured for both
  tools the same way -- resized to the model's 224 input, normalised, and read through
  ``net.activations`` -- not each tool's own loss (which sees a transformed copy);
* ``act@own``: the same with the picture fed at its own size (the model is fully
  convolutional). Below 224 the two differ: ours optimises at the picture's own scale (the model
  runs natively at ``size``), lucent's default at the 224 scale it upsamples to.

Rows: ours; lucent as its README uses it (below 224 px it upsamples every step to 224 before the
model, and the model's parameters keep ``requires_grad`` so its backward also computes weight
gradients); and lucent at the picture's own size (``fixed_image_size``), which isolates the engine
from that upsampling. Runs are interleaved round-robin (a noisy neighbour slows all alike) with a
different seed per repeat, the same seeds for every tool; the table gives medians. If lucent cannot
be imported, the comparison is against a plain-pixel Adam loop written here (and the table says so).
This is a script, never a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import cnn_widgets as cw
from cnn_widgets.engine.preprocess import pixels_to_input

LAYER, CHANNEL = "blocks.5.3", 95


def import_lucent():
    """lucent's render/param modules, with kornia's moved names put back where lucent looks for them."""
    import kornia
    import kornia.geometry.transform as kgt

    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(kgt, name))
    from lucent.optvis import param, render, transform

    return param, render, transform


def measured(net: cw.Network, pixels: torch.Tensor, own_size: bool = False) -> float:
    """The unit's mean activation for ``pixels`` ``[1, 3, s, s]`` in [0, 1]: resized to the model's input
    size and read through ``net.activations``, or (``own_size``) fed at ``s``, the scale ours optimised at.

    The own-size pass goes through ``net.forward``: ``net.activations`` on another shape would make
    that shape the network's current input size for every later call.
    """
    x = pixels.float()
    if not own_size and tuple(x.shape[-2:]) != net.input_size:
        x = F.interpolate(x, size=net.input_size, mode="bilinear", align_corners=False)
    x = pixels_to_input(x, net.preprocess, 3)
    if not own_size:
        return net.activations(x[0], [LAYER])[LAYER][CHANNEL].mean().item()
    with net._session(), torch.no_grad():
        _, outputs = net._forward(x, [LAYER], stop_early=True)
    return outputs[LAYER][0, CHANNEL].mean().item()


def run_ours(net, size, steps, seed):
    viz = net.visualize(cw.Unit(LAYER, CHANNEL), steps=steps, size=size, seed=seed, progress=False, every=steps)
    pixels = torch.from_numpy(np.array(viz.image)).permute(2, 0, 1)[None].float() / 255
    return measured(net, pixels), measured(net, pixels, own_size=True)


def run_lucent(lucent, net, size, steps, seed, native):
    param, render, _ = lucent
    np.random.seed(seed)
    torch.manual_seed(seed)
    images = render.render_vis(
        net.model, f"{LAYER.replace('.', '_')}:{CHANNEL}", param_f=lambda: param.image(size),
        thresholds=(steps,), progress=False, show_image=False, fixed_image_size=size if native else None,
    )
    pixels = (torch.from_numpy(np.asarray(images[-1])).permute(0, 3, 1, 2) * 255).round() / 255  # uint8, as ours
    return measured(net, pixels), measured(net, pixels, own_size=True)


def run_pixel_adam(net, size, steps, seed):
    """The fallback anchor: plain pixels, a sigmoid, Adam, no transforms, the full model every step."""
    g = torch.Generator().manual_seed(seed)
    values = (torch.randn(1, 3, size, size, generator=g) * 0.01).requires_grad_(True)
    optimizer = torch.optim.Adam([values], lr=0.05)
    module = net.layer(LAYER)._module
    seen = {}
    handle = module.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o))
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            pixels = torch.sigmoid(values)
            x = pixels_to_input(F.interpolate(pixels, size=net.input_size, mode="bilinear"), net.preprocess, 3)
            net.model(x)
            (-seen["h"][:, CHANNEL].mean()).backward()
            optimizer.step()
    finally:
        handle.remove()
    pixels = (torch.sigmoid(values.detach()) * 255).round() / 255
    return measured(net, pixels), measured(net, pixels, own_size=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    net = cw.load_default()
    net.model.eval()
    try:
        lucent = import_lucent()
        anchor = "lucent"
    except Exception as err:  # noqa: BLE001 -- any import failure means: fall back, and say why
        print(f"torch-lucent unavailable ({type(err).__name__}: {err}); comparing with a plain-pixel Adam loop")
        lucent, anchor = None, "pixel Adam"

    tools = {"ours": lambda size, seed, steps: run_ours(net, size, steps, seed)}
    if lucent is not None:
        tools["lucent"] = lambda size, seed, steps: run_lucent(lucent, net, size, steps, seed, native=False)
        tools["lucent native"] = lambda size, seed, steps: run_lucent(lucent, net, size, steps, seed, native=True)
    else:
        tools["pixel Adam"] = lambda size, seed, steps: run_pixel_adam(net, size, steps, seed)

    for fn in tools.values():  # warm-up: first-call allocations and lazy imports
        fn(min(args.sizes), 0, 2)
    results = {(t, s): {"rate": [], "act": [], "own": []} for t in tools for s in args.sizes}
    for repeat in range(args.repeats):
        for size in args.sizes:
            for name, fn in tools.items():
                if name == "lucent native" and size >= 224:
                    continue  # the same as plain lucent there: nothing to upsample
                start = time.perf_counter()
                act, own = fn(size, repeat, args.steps)
                rate = args.steps / (time.perf_counter() - start)
                for key, value in (("rate", rate), ("act", act), ("own", own)):
                    results[(name, size)][key].append(value)
                print(f"  repeat {repeat} size {size:3d} {name:13s} {rate:6.2f} steps/s  activation {act:7.3f}"
                      f"  at own size {own:7.3f}", flush=True)

    print(f"\nEfficientNet-Lite0, unit {LAYER}:{CHANNEL}, {args.steps} steps, {torch.get_num_threads()} threads, "
          f"medians of {args.repeats} interleaved repeats (seeds 0..{args.repeats - 1})")
    header = (f"{'size':>4}  {'tool':13s} {'steps/s':>8} {'act@224':>8} {'act@own':>8}   {'ours/it speed':>13}"
              f" {'ours-it @224':>12} {'ours-it @own':>12}")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        ours_rate = statistics.median(results[("ours", size)]["rate"])
        ours_act = statistics.median(results[("ours", size)]["act"])
        ours_own = statistics.median(results[("ours", size)]["own"])
        for name in tools:
            r = results[(name, size)]
            if not r["rate"]:
                continue
            rate, act, own = (statistics.median(r[k]) for k in ("rate", "act", "own"))
            ratio = "" if name == "ours" else f"{ours_rate / rate:.2f}x"
            diff = "" if name == "ours" else f"{ours_act - act:+.3f}"
            diff_own = "" if name == "ours" else f"{ours_own - own:+.3f}"
            print(f"{size:>4}  {name:13s} {rate:8.2f} {act:8.3f} {own:8.3f}   {ratio:>13} {diff:>12} {diff_own:>12}")
    print(f"\ngoal: ours >= 1.5x {anchor}'s steps/s and a final activation at least as high")


if __name__ == "__main__":
    main()
