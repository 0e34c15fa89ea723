"""The Visualise tab as a lecture sees it, kernel side: steps/s of the ascent and frames/s pushed.

Run:  python benchmarks/bench_visualize_stream.py [--steps 48] [--repeats 2] [--size 128]

On the default model (``cw.load_default()``, EfficientNet-Lite0) at ``--size`` px, with the
Explorer's default target (the top class of the cat) and settings (Fourier, standard transforms):

* ``engine``: steps/s of ``net.visualize`` in a worker thread (as the runner runs it) with 1 and 2
  intra-op threads, interleaved, and the CPU ms of one step (that thread's ``thread_time``);
* ``widget``: an Explorer in a loop that stands in for the kernel's (``asyncio``), Start pressed as
  the front end presses it (a ``recompute`` message, debounced). Counted at the widget's comm:
  the first frame after Start (ms), frames/s between the first and the last frame sent, steps/s
  of the whole run, the kernel thread's ms per frame (traits set, state serialised, JSON of the
  message) and the bytes of one frame. Rows: ``now`` and ``before`` (the job as it was before the
  lecture-speed change: partial results capped at ``progress.PUSHES_PER_S``, torch's own thread
  count, no starting frame), interleaved. Each run is a first Start on the network: the
  structure learned at ``--size`` is dropped before it (a later Start skips that first pass).

The goal (lecture-speed issue): first frame on screen <= 300 ms after Start and >= 10 frames/s,
measured in the browser by ``benchmarks/bench_interactions.py``; this is the kernel's share of
both. Every row has the 1-minute load average beside it: the machine is shared, and a second
intra-op thread is worth nothing when another process holds a core. A script, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import threading
import time

import torch

import cnn_widgets as cw
from cnn_widgets.widgets import cores
from cnn_widgets.widgets.panels import visualize as viz_panel


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def engine_rate(net, target, size: int, steps: int, threads: int) -> tuple[float, float]:
    """(steps/s, CPU ms per step) of one run in a fresh thread set to ``threads`` intra-op threads."""
    out = {}

    def work():
        torch.set_num_threads(threads)  # this thread's own (OpenMP); the main thread keeps its setting
        cpu, wall = time.thread_time(), time.perf_counter()
        net.visualize(target, steps=steps, size=size, progress=False, every=1)
        out["wall"], out["cpu"] = time.perf_counter() - wall, time.thread_time() - cpu

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    return steps / out["wall"], 1e3 * out["cpu"] / steps  # (thread_time counts the calling thread only)


@contextlib.contextmanager
def as_before(explorer):
    """The Visualise job as it was: PUSHES_PER_S partial results, torch's threads, no starting frame."""
    visualize = explorer.net.visualize
    saved = viz_panel.VisualizePanel.pushes_per_s, cores.usable_cpus
    viz_panel.VisualizePanel.pushes_per_s = None
    cores.usable_cpus = lambda: 1 << 16  # cores.one_core_free then keeps torch's own count
    explorer.net.visualize = lambda *a, show_start=False, **k: visualize(*a, **k)
    try:
        yield
    finally:
        viz_panel.VisualizePanel.pushes_per_s, cores.usable_cpus = saved
        del explorer.net.visualize


def drop_structure(net, size: int) -> None:
    """Forget what was learned at ``size`` (a first Start at this size traces the model there)."""
    net._structures = {k: v for k, v in net._structures.items() if k[1][-1] != size}


async def widget_run(explorer, sends: list, shown_ms: list) -> dict:
    sends.clear()
    shown_ms.clear()
    cpu = time.process_time()
    start = time.perf_counter()
    explorer._on_progress_message(explorer, {"type": "recompute", "panel": "visualize"}, [])
    while True:
        await asyncio.sleep(0.002)
        state = explorer.progress.get("visualize", {}).get("state")
        if not explorer.runner.running("visualize") and state in ("done", "error", "cancelled"):
            break
    end = time.perf_counter()
    if state != "done":
        raise RuntimeError(f"the run ended {state}: {explorer.error}")
    frames = [s for s in sends if "viz_frame" in s["keys"]]
    steps = explorer.viz_info["steps"]
    span = frames[-1]["t"] - frames[0]["t"]
    return {"first_ms": 1e3 * (frames[0]["t"] - start), "fps": (len(frames) - 1) / span if span > 0 else 0.0,
            "frames": len(frames), "steps_s": steps / (end - start), "cpu_ms_step": 1e3 * (time.process_time() - cpu) / steps,
            "push_ms": statistics.mean(shown_ms) if shown_ms else 0.0, "bytes": frames[-1]["bytes"], "load": load()}


def instrument(explorer):
    """Record every message the widget sends (time, changed traits, buffer bytes, JSON time) and the
    kernel thread's time per partial result shown."""
    from cnn_widgets.widgets import progress

    sends, shown_ms = [], []
    original = explorer.comm.send

    def send(data=None, metadata=None, buffers=None):
        t = time.perf_counter()
        json.dumps(data, default=str)  # what the kernel's session does with it
        sends.append({"t": t, "keys": list((data or {}).get("state", {})),
                      "bytes": sum(memoryview(b).nbytes for b in (buffers or []))})
        return original(data=data, metadata=metadata, buffers=buffers)

    explorer.comm.send = send
    show = progress.PanelProgress._show_partial

    def timed_show(self, *args):
        t = time.perf_counter()
        show(self, *args)
        shown_ms.append(1e3 * (time.perf_counter() - t))

    explorer._show_partial = timed_show.__get__(explorer)
    return sends, shown_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()

    net = cw.load_default()
    image = cw.sample_image("cat")
    target = net.top_class(image)
    print(f"EfficientNet-Lite0, {args.size} px, class {net.label(target)!r} (the Explorer's default target), "
          f"{args.steps} steps; torch threads {torch.get_num_threads()}, usable cores {cores.usable_cpus()}; "
          f"the job runs with {cores.usable_cpus() - 1 or 1}\n")

    engine_rate(net, target, args.size, 2, 1)  # warm-up
    rates = {1: [], 2: []}
    print(f"{'engine':8s} {'threads':>7s} {'steps/s':>8s} {'cpu ms/step':>12s} {'load':>6s}")
    for _ in range(args.repeats):
        for threads in (1, 2):
            rate, cpu = engine_rate(net, target, args.size, args.steps, threads)
            rates[threads].append(rate)
            print(f"{'':8s} {threads:7d} {rate:8.1f} {cpu:12.1f} {load():>6s}", flush=True)

    explorer = cw.Explorer(net, image, tab="visualize")
    explorer.viz_size, explorer.viz_steps = args.size, args.steps
    explorer.runner.threaded = True  # the job in the runner's worker, as in a kernel
    explorer.runner.defer = True  # a front-end message: debounced on the loop
    sends, shown_ms = instrument(explorer)
    rows = {"now": [], "before": []}

    async def runs():
        for _ in range(args.repeats):
            for mode in ("now", "before"):
                drop_structure(net, args.size)
                with as_before(explorer) if mode == "before" else contextlib.nullcontext():
                    explorer.panels["visualize"].cache.clear()
                    rows[mode].append(await widget_run(explorer, sends, shown_ms))
                r = rows[mode][-1]
                print(f"  widget {mode:6s}: first frame {r['first_ms']:5.0f} ms, {r['fps']:5.1f} frames/s, "
                      f"{r['steps_s']:5.1f} steps/s, {r['frames']} frames, load {r['load']}", flush=True)

    print()
    asyncio.run(runs())
    explorer.close()

    print(f"\n{'widget':8s} {'first ms':>9s} {'frames/s':>9s} {'steps/s':>8s} {'cpu ms/step':>12s} "
          f"{'kernel ms/frame':>16s} {'bytes/frame':>12s} {'load':>6s}")
    for mode, results in rows.items():
        med = {k: statistics.median(r[k] for r in results) for k in ("first_ms", "fps", "steps_s", "cpu_ms_step", "push_ms")}
        print(f"{mode:8s} {med['first_ms']:9.0f} {med['fps']:9.1f} {med['steps_s']:8.1f} {med['cpu_ms_step']:12.1f} "
              f"{med['push_ms']:16.2f} {results[-1]['bytes']:12d} {results[-1]['load']:>6s}")
    now, before = (statistics.median(r["fps"] for r in rows[m]) for m in ("now", "before"))
    print(f"\nengine medians: 1 thread {statistics.median(rates[1]):.1f} steps/s, 2 threads "
          f"{statistics.median(rates[2]):.1f} steps/s; widget frames/s now / before: {now / before:.2f}x")
    print("goal (kernel side): first frame <= 300 ms and >= 10 frames/s; medians above, load beside them")


if __name__ == "__main__":
    main()
