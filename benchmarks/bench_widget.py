"""Explorer benchmark: bytes sent per update vs raw array bytes, kernel time per interaction kind.

Run: ``python benchmarks/bench_widget.py``. Prints a table; asserts nothing (timings on a shared
2-core machine are noisy). Goals from the Explorer issue: payload <= 1.1x the raw array bytes,
an update needing a new backward pass < 250 ms on the default model.
"""

from __future__ import annotations

import json
import statistics
import time

import cnn_widgets as cw


def recorder(widget):
    """Wrap the widget's comm so every message's JSON and buffer bytes are counted."""
    sent = []
    original = widget.comm.send

    def send(data=None, metadata=None, buffers=None):
        buffers = buffers or []
        sent.append((len(json.dumps(data, default=str).encode()), sum(memoryview(b).nbytes for b in buffers), data))
        return original(data=data, metadata=metadata, buffers=buffers)

    widget.comm.send = send
    return sent


def raw_bytes(widget, data) -> int:
    total = 0
    for name in (data or {}).get("state", {}):
        value = getattr(widget, name, None)
        if hasattr(value, "nbytes"):
            total += value.nbytes
    return total


def main(repeats: int = 3) -> None:
    net = cw.load_default()
    explorer = cw.Explorer(net, window=112, stride=112)
    sent = recorder(explorer)
    child = explorer.tree["levels"][0]["children"][0]
    unit_layer = explorer.layer
    interactions = [
        ("layer change", lambda i: setattr(explorer, "layer", ["blocks.3.0", "blocks.4.2", "conv_stem"][i % 3])),
        ("channel select (unit target)", lambda i: (setattr(explorer, "target", "unit") if i == 0 else None, setattr(explorer, "channel", 3 + i))),
        ("method change", lambda i: setattr(explorer, "method", ["gradient", "guided_backprop", "grad_cam"][i % 3])),
        ("window change (4 windows)", lambda i: setattr(explorer, "window", [104, 112, 120][i % 3])),
        ("tree expand", lambda i: setattr(explorer, "tree_path", [[child["layer"], child["channel"]]] if i % 2 == 0 else [])),
        ("scaling change", lambda i: setattr(explorer, "scaling", ["per_tile", "shared"][i % 2])),
    ]
    rows = []
    for name, action in interactions:
        if name == "tree expand":
            explorer.target = "top"
            explorer.layer = unit_layer
        times, payload, raw = [], 0, 0
        for i in range(repeats):
            sent.clear()
            explorer.panels["tree"].forget()  # time the computation, not the cache
            start = time.perf_counter()
            action(i)
            times.append(time.perf_counter() - start)
            for json_bytes, buffer_bytes, data in sent:
                payload += json_bytes + buffer_bytes
                raw += raw_bytes(explorer, data)
        panels = ", ".join(f"{k} {v * 1000:.0f}" for k, v in explorer.timings.items() if k in ("feature_maps", "filters", "saliency", "tree", "occlusion"))
        rows.append((name, statistics.median(times) * 1000, payload / repeats, raw / repeats, panels))
    print(f"{'interaction':32} {'kernel ms':>10} {'bytes sent':>11} {'raw array B':>12} {'ratio':>6}   last panel times (ms)")
    for name, ms, payload, raw, panels in rows:
        ratio = f"{payload / raw:.3f}" if raw else "  -"
        print(f"{name:32} {ms:10.0f} {payload:11.0f} {raw:12.0f} {ratio:>6}   {panels}")
    print("goals: ratio <= 1.1 for array updates; < 250 ms for an update needing one backward pass (method / channel).")


if __name__ == "__main__":
    main()
