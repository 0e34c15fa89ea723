"""How soon the Explorer's Trust tab has something to draw, on the default model at 224 px (a script, never a test).

Run:  python benchmarks/bench_trust_tab.py [--repeats 2] [--methods gradient guided_backprop grad_cam]

The Explorer runs as in a kernel (the job on the runner's long-lane worker thread, one core left
free as every background job does); the clock starts at the Run click's message
(``{"type": "recompute", "panel": "trust"}``) and each row is when the job hands a partial result
to the widget's thread (``report_progress``; the front end draws it a few ms later): the original
model's maps (the first column of the strip), the top-half stage (the verdicts), every stage, and
the end (both curves of every method). The issue's goal: the first stage drawn within 2 s. The
1-minute load average is printed beside each run.
"""

from __future__ import annotations

import argparse
import os
import time

import cnn_widgets as cw
from cnn_widgets.widgets.trust_tab import DEFAULT_METHODS


def one_run(methods: list[str]) -> dict[str, float]:
    explorer = cw.Explorer(cw.load_default(), "cat", tab="trust", window=112, stride=112, trust_methods=methods)
    explorer.compute()
    explorer.runner.threaded = True  # as in a kernel: the job on its lane's worker thread
    marks: dict[str, float] = {}
    real = explorer.report_progress
    start = [0.0]

    def spy(done, total, partial=None, **kwargs):
        traits = partial() if partial is not None else {}
        info = traits.get("trust_info", {})
        now = time.perf_counter() - start[0]
        stages = len(info.get("stages", []))
        if stages >= 1:
            marks.setdefault("first stage", now)
        if info.get("half", -1) >= 0:
            marks.setdefault("top-half stage (verdicts)", now)
        if stages and stages == len(info.get("planned", [])):
            marks.setdefault("every stage", now)
        return real(done, total, partial, **kwargs)

    explorer.report_progress = spy
    start[0] = time.perf_counter()
    explorer._on_progress_message(explorer, {"type": "recompute", "panel": "trust"}, [])
    explorer.runner.wait(600)
    marks["done (both curves)"] = time.perf_counter() - start[0]
    assert explorer.progress["trust"]["state"] == "done", explorer.progress["trust"]
    explorer.close()
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    args = parser.parse_args()
    print(f"bench_trust_tab: default model, cat 224 px, methods {', '.join(args.methods)}, {os.cpu_count()} cores")
    for repeat in range(args.repeats):
        marks = one_run(args.methods)
        print(f"run {repeat + 1} (load {os.getloadavg()[0]:.2f}): " + ", ".join(f"{k} {v:.2f} s" for k, v in marks.items()))


if __name__ == "__main__":
    main()
