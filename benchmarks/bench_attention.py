"""How long attention rollout and the attention maps take, beside one forward and one forward+backward
(a script, never a test).

Run:  python benchmarks/bench_attention.py [--repeats 5] [--threads 1] [--models vit_tiny_patch16_224 ...]

timm models with random weights (nothing is downloaded), the cat at 224 px, on the CPU with
``--threads`` intra-op threads (1 by default: the machine is shared, a second process distorts one
thread least). Times are the best of ``--repeats`` rounds, the sides interleaved in every round
(A, B, C, D, A, B, ...) so a noisy neighbour slows each alike; the 1-minute load average is printed
on every row. Compare the ratios, measured side by side, rather than absolute times across runs.

* ``rollout``: ``net.saliency(x, None, method="attention_rollout")``: one forward pass with the
  attention recorded (timm's fused ``scaled_dot_product_attention`` recomputed explicitly), the
  heads fused, 12 ``[N, N]`` products in float64, the upsampling;
* ``maps``: ``net.attention(x)``: the class token's map of every block and head (same pass);
* ``forward``: the model's own forward pass (``torch.no_grad``, eval, fused attention): the least
  any pass-based method costs;
* ``grad``: ``net.saliency(x, c, method="gradient")`` with the kept graph released before each call
  (``graph_cache.release``): one forward and one backward pass to the input.

Goal (issue 27): rollout at or below one forward+backward.

Measured (1 thread, shared 2-core machine at load 6.9-7.6, best of 9 / 5; ms):

  model                   rollout  maps  fwd  fwd+bwd  rollout/fwd  rollout/fwd+bwd
  vit_tiny_patch16_224        103    79   75      173         1.37             0.59
  deit_tiny_patch16_224       108   114   82      228         1.32             0.47
  (an earlier run, best of 5: 133 / 165 ms, ratios to fwd+bwd 0.66 / 0.67)

The capture costs about a third of a forward pass: timm's fused attention recomputed explicitly
(its kernel fuses the same three products), the torch-function mode's dispatch, the finiteness check.
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
from cnn_widgets.engine import graph_cache  # noqa: E402
from cnn_widgets.engine.hooks import inference_state  # noqa: E402

MODELS = ("vit_tiny_patch16_224", "deit_tiny_patch16_224")


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def best_of(functions: dict, repeats: int) -> dict[str, float]:
    """Best seconds of each function over ``repeats`` rounds (one untimed warm-up), interleaved."""
    for fn in functions.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def row(model_name: str, repeats: int) -> tuple:
    import timm

    model = timm.create_model(model_name, pretrained=False).eval()
    net = cw.Network(model, name=model_name)
    x = net.prepare(cw.sample_image("cat"))
    c = net.top_class(x)  # learns the layers at this input: no round pays for it

    def forward():
        with inference_state(model), torch.no_grad():
            model(x)

    def grad():
        graph_cache.release(net)
        net.saliency(x, c, method="gradient")

    best = best_of({"rollout": lambda: net.saliency(x, None, method="attention_rollout"),
                    "maps": lambda: net.attention(x), "forward": forward, "grad": grad}, repeats)
    graph_cache.release(net)
    return model_name, best, load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=int(THREADS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"bench_attention: cat 224 px, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{os.cpu_count()} cores, best of {args.repeats}; load average before: {os.getloadavg()}")
    print(f"{'model':<24}{'rollout ms':>11}{'maps ms':>9}{'fwd ms':>8}{'fwd+bwd ms':>11}"
          f"{'rollout/fwd':>12}{'rollout/fwd+bwd':>16}{'load':>7}")
    for name in args.models:
        model_name, best, avg = row(name, args.repeats)
        r, m, f, g = best["rollout"], best["maps"], best["forward"], best["grad"]
        print(f"{model_name:<24}{r * 1e3:>11.0f}{m * 1e3:>9.0f}{f * 1e3:>8.0f}{g * 1e3:>11.0f}"
              f"{r / f:>12.2f}{r / g:>16.2f}{avg:>7}", flush=True)


if __name__ == "__main__":
    main()
