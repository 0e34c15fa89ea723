"""Interaction latency of ``cw.Explorer()`` in JupyterLab, measured in a real browser (headless chromium).

Run:  python benchmarks/bench_interactions.py [--repeats 5] [--quick] [--only window,drag] [--verbose]

A script, never a test: it asserts nothing about time (2 shared cores: the numbers are noisy). It
starts a throw-away JupyterLab (the browser tests' harness, ``tests/browser/conftest.py``: its
``JupyterServer``, ``NotebookPage`` and ``write_notebook``, imported as they are), opens a notebook
showing ``cw.Explorer()`` (the default model, ``cw.load_default()``, on the cat at 224 px) in a
1280x800 page, and performs each interaction below ``--repeats`` times, each time after the previous
one has settled (status idle, the kernel's runner idle), with values that change something each
time. The occlusion panel keeps exact maps (going back to a window, stride or fill already computed
on the image, or another channel of a layer already computed, is shown at once): the window, stride,
fill and drag rows use a value not visited before in the run for every action, and a row says which
actions' exact map was one kept from before (its caption says "computed before") -- in the channel
row that is by design after the first click on the layer.

How a time is taken. Before the action, a watcher is installed in the page (a MutationObserver on the
widget plus a requestAnimationFrame loop). The user action is the Playwright click / select / fill
(or, for the drag, 4 ``input`` events 50 ms apart dispatched in the page, then the release's
``change``); its time t0 is ``performance.now()`` in a capture listener when the event reaches the
page (for the drag: the LAST input event). Each milestone below is a set of conditions on the DOM;
its time is the first animation frame after the moment they all hold at once (the frame that puts
the picture on screen). "final" is every panel the action recomputes painted for the new state and
the widget's status idle, then the latest repaint before 300 ms of quiet. What the DOM says
(js/src): every canvas bumps ``data-version`` when it paints (dom.js ``paint``); the captions and the
tree heading name the target, the occlusion caption also the window, stride and fill; the occlusion
canvas carries ``data-stage`` ("partial" | "first" | "refining" | "exact" | "") -- without it
(older renderers) a complete map is ``data-done == data-total`` and not ``data-partial``; the root
``div.cnnw-explorer`` has ``data-status`` (busy while request_seq > result_seq or the kernel is busy).

Beside each interaction: the kernel's own panel times (the Explorer's ``timings`` trait, logged in the
kernel each time it changes; median over the repeats of each panel's last time in a repeat), read
after each repeat through the kernel connection (no notebook cell is added). Goals are the issue's:

| interaction | first complete picture | exact / final |
| method, colormap, scaling, opacity, layer, tab | -- | <= 150 ms |
| channel select (tile click; target "unit") | saliency <= 200 ms; occlusion covering every pixel <= 300 ms | occlusion exact <= 1 s; tree first level <= 300 ms |
| window / stride / fill slider (also while dragging) | <= 300 ms | <= 1 s after the drag stops |
| image change (sample image menu) | predictions + feature maps <= 200 ms | all panels <= 1.5 s |
| Visualise at 128 px (Start) | first frame <= 300 ms | >= 10 frames/s |

The target is the predicted class (the Explorer's default) for every row but the channel select
(a tile click makes it the unit). A screenshot of the page at the end lands in
``test-artifacts/bench_interactions.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

from conftest import CHROMIUM, CHROMIUM_ARGS, JupyterServer, NotebookPage, write_notebook

SCREENSHOT = REPO / "test-artifacts" / "bench_interactions.png"
VIEWPORT = (1280, 800)
ROOT = "div.cnnw-explorer"
FIRST_RENDER_TIMEOUT_S = 300
ACTION_TIMEOUT_MS = 90_000
VIZ_TIMEOUT_MS = 300_000
QUIET_MS = 300
DRAG_GAP_MS = 50
ORDER = ("method", "colormap", "scaling", "opacity", "layer", "tab", "window", "stride", "fill", "drag", "image",
         "channel", "visualise")

SETUP_CELL = """\
import json, os, torch
import cnn_widgets as cw
from cnn_widgets.widgets.panels.base import target_text as _target_text
explorer = cw.Explorer()"""
DISPLAY_CELL = "explorer"
# the kernel side of the benchmark: every change of `timings` logged as (panel, seconds)
LOG_CELL = """\
_bench_log = []
def _bench_on_timings(change):
    old, new = change["old"] or {}, change["new"] or {}
    for name, seconds in new.items():
        if name not in old or old[name] != seconds:
            _bench_log.append([name, float(seconds)])
explorer.observe(_bench_on_timings, "timings")
def _bench_take():
    taken = list(_bench_log)
    _bench_log.clear()
    return taken"""

# Runs code in the notebook's kernel over its connection (no cell is added); returns its stdout.
KERNEL_EXEC_JS = """
async ([path, code]) => {
  const panel = window.__cnnwTest.panelFor(path);
  const kernel = panel.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, silent: false, store_history: false, allow_stdin: false });
  let out = '';
  future.onIOPub = (msg) => {
    const t = msg.header.msg_type;
    if (t === 'stream') out += msg.content.text;
    else if (t === 'error') out += '__BENCH_ERROR__' + msg.content.ename + ': ' + msg.content.evalue;
  };
  await future.done;
  return out;
}
"""

# The watcher: window.__bench.arm(spec) before the action; window.__bench.st.done once settled.
WATCHER_JS = r"""
() => {
  if (window.__bench) return;
  const root = () => document.querySelector('div.cnnw-explorer');
  const q = (sel) => root().querySelector(sel);
  const version = (sel) => { const e = q(sel); return e ? Number(e.dataset.version || 0) : -1; };
  const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const panelOf = (sel) => { const e = q(sel); return e ? e.closest('.cnnw-panel') : null; };
  // occlusion picture complete: data-stage when the renderer sets it, else done == total and not partial
  const occ = (kind) => {
    const c = q('canvas.cnnw-occlusion');
    if (!c) return false;
    const d = c.dataset;
    if (d.stage !== undefined) return kind === 'exact' ? d.stage === 'exact' : ['first', 'refining', 'exact'].includes(d.stage);
    return !!d.total && d.done === d.total && d.partial !== 'true';
  };
  // the step a frame belongs to, from its panel's caption ("... step 12 of 128 ...")
  const stepShown = (sel) => {
    const panel = panelOf(sel);
    const caption = panel && panel.querySelector('.cnnw-caption');
    const m = caption && /step (\d+) of (\d+)/.exec(caption.textContent);
    return m ? Number(m[1]) : null;
  };
  const bench = { st: null };
  window.__bench = bench;

  function check(st, p) {
    if (p.idle) return root().dataset.status !== 'busy';
    if (p.bumped) return version(p.bumped) > st.before[p.bumped];
    if (p.occ) return occ(p.occ);
    if (p.latch) return !!st.latched[p.latch];
    if (p.frames) return st.steps.length >= p.frames;
    if (p.visible) { const e = q(p.visible); return !!e && e.offsetParent !== null && !e.closest('[hidden]'); }
    let value;
    if (p.text !== undefined) {
      let e = null;
      if (p.caption) { const panel = panelOf(p.caption); e = panel && panel.querySelector(':scope > .cnnw-caption'); }
      else e = q(p.text);
      if (!e) return false;
      value = norm(e.textContent);
    } else if (p.data !== undefined) {
      const e = q(p.data);
      if (!e) return false;
      value = e.dataset[p.key];
    } else throw new Error('unknown condition ' + JSON.stringify(p));
    if ('equals' in p) return value === p.equals;
    if ('notEquals' in p) return value !== undefined && value !== p.notEquals;
    if ('includes' in p) return value !== undefined && value.includes(p.includes);
    if ('startsWith' in p) return value !== undefined && value.startsWith(p.startsWith);
    if ('endsWith' in p) return value !== undefined && value.endsWith(p.endsWith);
    throw new Error('no comparison in ' + JSON.stringify(p));
  }

  function evaluate(st) {
    if (st.done || st.t0 === null) return;
    const now = performance.now();
    for (const [name, cond] of Object.entries(st.spec.latches || {})) if (!st.latched[name] && check(st, cond)) st.latched[name] = now;
    const frame = [];
    for (const [name, conds] of st.spec.milestones) {
      if (st.reached[name] !== undefined) continue;
      if (conds.every((p) => check(st, p))) { st.reached[name] = now; frame.push(name); }
    }
    if (frame.length) requestAnimationFrame(() => { const t = performance.now(); for (const n of frame) st.frames[n] = t; });
    const finalName = st.spec.final;
    const finalConds = st.spec.milestones.find(([n]) => n === finalName)[1];
    if (st.reached[finalName] !== undefined && finalConds.every((p) => check(st, p))) {
      const last = Math.max(st.reached[finalName], st.lastBump ?? -Infinity, st.lastChange ?? -Infinity);
      if (now - last >= st.spec.quietMs) finish(st, false);
    }
  }

  function finish(st, timedOut) {
    if (st.done) return;
    st.timedOut = timedOut;
    st.observer.disconnect();
    for (const [type, fn] of st.listeners) window.removeEventListener(type, fn, true);
    clearTimeout(st.timer);
    // the final picture: the later of the final milestone's frame and the frame of the last repaint
    const finalName = st.spec.final;
    if (!timedOut) {
      const a = st.frames[finalName] ?? st.reached[finalName];
      const b = Math.max(st.lastBumpFrame ?? st.lastBump ?? -Infinity, st.lastChange ?? -Infinity);
      st.finalAt = Math.max(a, b);
    }
    st.done = true;
  }

  function startClock(st, t) {
    st.t0 = t;
    // anything reached before the (last) action belongs to an earlier event
    st.reached = {}; st.frames = {}; st.lastBump = null; st.lastBumpFrame = null; st.lastChange = null; st.bumps = []; st.latched = {};
    st.steps = [];
    setTimeout(() => evaluate(st), 0); // after the event's own handlers
    const loop = () => { if (st.done) return; evaluate(st); requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
    st.timer = setTimeout(() => finish(st, true), st.spec.timeoutMs);
  }

  bench.arm = (spec) => {
    const st = { spec, t0: null, before: {}, reached: {}, frames: {}, latched: {}, lastBump: null, lastBumpFrame: null,
                 lastChange: null, bumps: [], done: false, timedOut: false, finalAt: null, listeners: [], timer: 0, inputs: [],
                 steps: [], lastStep: spec.steps ? stepShown(spec.steps) : null };
    for (const [, conds] of spec.milestones) for (const p of conds) if (p.bumped) st.before[p.bumped] = version(p.bumped);
    st.observer = new MutationObserver((records) => {
      if (st.t0 === null || st.done) return;
      const now = performance.now();
      let bumped = false;
      for (const r of records) {
        if (r.type === 'attributes' && r.attributeName === 'data-version') {
          bumped = true;
          st.bumps.push([r.target.className, now]);
          if (st.spec.steps && r.target.matches(st.spec.steps)) {
            const step = stepShown(st.spec.steps);
            if (step !== null && step !== st.lastStep) { st.lastStep = step; st.steps.push([step, now]); }
          }
        } else if (r.type === 'childList' && r.target.closest && r.target.closest('.cnnw-tree')) {
          st.lastChange = now; // the tree is DOM, not a canvas
        }
      }
      if (bumped) {
        st.lastBump = now;
        requestAnimationFrame(() => { if (st.lastBump === now) st.lastBumpFrame = performance.now(); });
      }
      evaluate(st);
    });
    st.observer.observe(root(), { attributes: true, childList: true, subtree: true, characterData: true });
    if (spec.t0Event) {
      const fn = (event) => {
        if (st.t0 !== null || !root().contains(event.target)) return;
        startClock(st, performance.now());
      };
      window.addEventListener(spec.t0Event, fn, true);
      st.listeners.push([spec.t0Event, fn]);
    }
    bench.st = st;
    return true;
  };

  // A slider drag: input events `gapMs` apart (the clock starts at the last one), then the release.
  bench.drag = async ([selector, values, gapMs, releaseMs]) => {
    const st = bench.st;
    const input = q(selector);
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < values.length; i++) {
      if (i) await sleep(gapMs);
      input.value = String(values[i]);
      const t = performance.now();
      st.inputs.push(t);
      if (i === values.length - 1) startClock(st, t);
      input.dispatchEvent(new Event('input', { bubbles: true }));
    }
    await sleep(releaseMs);
    input.dispatchEvent(new Event('change', { bubbles: true }));
    return st.inputs;
  };

  bench.result = () => {
    const st = bench.st;
    const rel = (t) => (t === undefined || t === null ? null : t - st.t0);
    const ms = {};
    for (const [name] of st.spec.milestones) ms[name] = rel(st.frames[name] ?? st.reached[name]);
    return { ms, final: rel(st.finalAt), timedOut: st.timedOut, t0: st.t0, inputs: st.inputs.map((t) => t - st.t0),
             steps: st.steps.map(([s, t]) => [s, t - st.t0]),
             occCaption: (() => { const p = panelOf('canvas.cnnw-occlusion'); const c = p && p.querySelector(':scope > .cnnw-caption');
                                  return c ? norm(c.textContent) : null; })(),
             bumps: st.bumps.map(([cls, t]) => [cls, t - st.t0]), latched: Object.fromEntries(Object.entries(st.latched).map(([k, t]) => [k, t - st.t0])),
             status: root().dataset.status };
  };
}
"""

# CSS (client) coordinates of the centre of channel c's tile in the feature-map canvas
TILE_CENTER_JS = """
(c) => {
  const cv = document.querySelector('div.cnnw-explorer canvas.cnnw-fmap');
  const d = cv.dataset, cols = +d.cols, tile = +d.tile, gap = +d.gap;
  const x = gap + (c % cols) * (tile + gap) + tile / 2, y = gap + Math.floor(c / cols) * (tile + gap) + tile / 2;
  const r = cv.getBoundingClientRect();
  return { x: r.left + x * r.width / cv.width, y: r.top + y * r.height / cv.height };
}
"""


def fill_range(page, selector: str, value: str) -> None:
    """Playwright's fill of a range input: sets the value, then dispatches input and change."""
    page.locator(selector).fill(value)


# ---------------------------------------------------------------------------------------------- the page
class Bench:
    """The open notebook, the watcher, and the kernel reached without cells."""

    def __init__(self, nb: NotebookPage):
        self.nb = nb
        self.page = nb.page

    def kernel(self, code: str) -> str:
        out = self.page.evaluate(KERNEL_EXEC_JS, [self.nb.path, code])
        if "__BENCH_ERROR__" in out:
            raise RuntimeError(f"kernel raised: {out.split('__BENCH_ERROR__', 1)[1]}\n--- code ---\n{code}")
        return out

    def kernel_json(self, expression: str, setup: str = ""):
        out = self.kernel(f"{setup}\nprint('__BENCH_JSON__' + json.dumps({expression}))")
        return json.loads(out.split("__BENCH_JSON__", 1)[1].splitlines()[0])

    def status(self) -> str:
        return self.page.get_attribute(ROOT, "data-status") or ""

    def settle(self, timeout_s: float = 180.0) -> None:
        """Wait until the page is not busy, the kernel's runner (long jobs included) is idle, then a moment."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.page.wait_for_function(
                "(s) => { const r = document.querySelector(s); return r && r.dataset.status !== 'busy'; }",
                arg=ROOT, timeout=timeout_s * 1000)
            if not self.kernel_json("bool(explorer.runner.busy) or explorer.status == 'busy'"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the Explorer did not settle")
            time.sleep(0.2)
        time.sleep(0.3)

    def take_timings(self) -> list[list]:
        return self.kernel_json("_bench_take()")

    def select_value(self, selector: str) -> str:
        return self.page.input_value(f"{ROOT} {selector}")

    def options(self, selector: str) -> list[tuple[str, str]]:
        return [tuple(o) for o in self.page.eval_on_selector_all(
            f"{ROOT} {selector} option", "(os) => os.map((o) => [o.value, o.textContent])")]

    def measure(self, spec: dict, action, *args, timeout_ms: int = ACTION_TIMEOUT_MS) -> dict:
        """Arm the watcher, ``action(*args)``, wait for it to settle; returns the watcher's result plus the kernel's timings."""
        spec = {"quietMs": QUIET_MS, "timeoutMs": timeout_ms, **spec}
        self.page.evaluate("(spec) => window.__bench.arm(spec)", spec)
        action(*args)
        self.page.wait_for_function("() => window.__bench.st.done", timeout=timeout_ms + 30_000, polling=100)
        result = self.page.evaluate("() => window.__bench.result()")
        self.settle()
        result["kernel"] = self.take_timings()
        return result


# ---------------------------------------------------------------------------------------------- interactions
@dataclass
class Milestone:
    name: str  # key in the watcher
    label: str  # printed
    goal: str = ""  # printed
    goal_ms: float | None = None  # for the ok / MISS note (upper bound)


@dataclass
class Row:
    """One interaction's results over its repeats."""

    key: str
    title: str
    milestones: list[Milestone]
    runs: list[dict] = field(default_factory=list)
    load: tuple[float, float, float] | None = None
    notes: list[str] = field(default_factory=list)
    extra: list[tuple[str, list[float | None], str, float | None, bool]] = field(default_factory=list)  # (label, values, goal, bound, higher_is_better)


def caption_of(panel_canvas: str, **compare) -> dict:
    return {"text": "", "caption": panel_canvas, **compare}


IDLE = {"idle": True}
SAL = "canvas.cnnw-saliency"
OCC = "canvas.cnnw-occlusion"
FMAP = "canvas.cnnw-fmap"
TREE = "div.cnnw-tree"


def final_spec(conds: list[dict], first: list[dict] | None = None, t0: str = "input") -> dict:
    milestones = [["final", conds + [IDLE]]]
    if first is not None:
        milestones.insert(0, ["first", first])
    return {"t0Event": t0, "milestones": milestones, "final": "final"}


def prepare(b: Bench, ctx: dict, target="top", tab="tree", layer=None, image="cat") -> None:
    """Put the Explorer in a known state (from the kernel, untimed) and wait until it has settled."""
    layer = layer or ctx["home_layer"]
    b.kernel(
        f"_want = dict(image_name={image!r}, layer={layer!r}, target={target!r}, tab={tab!r})\n"
        "for _k, _v in _want.items():\n"
        "    if getattr(explorer, _k) != _v: setattr(explorer, _k, _v)\n"
        "for _k, _v in dict(method='guided_backprop', scaling='shared', colormap='viridis', opacity=0.6,\n"
        "                   window=48, stride=24, fill='mean', occlusion_mode='exact').items():\n"
        "    if getattr(explorer, _k) != _v: setattr(explorer, _k, _v)"
    )
    b.settle()
    b.take_timings()


def target_text(b: Bench) -> str:
    return b.kernel_json("_target_text(explorer.net, explorer.resolved_target())")


def run_method(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    labels = dict(b.options('select[data-trait="method"]'))
    cycle = [m for m in ("gradient", "grad_cam", "guided_backprop") if m in labels]
    row = Row("method", "method menu (saliency recomputed; gradient / grad_cam / guided_backprop)",
              [Milestone("final", "final: saliency for the new method, idle", "<= 150 ms", 150)])
    for i in range(repeats):
        method = cycle[i % len(cycle)]
        spec = final_spec([{"bumped": SAL}, caption_of(SAL, startsWith=f"{labels[method]} for ")])
        row.runs.append(b.measure(spec, b.page.select_option, f'{ROOT} select[data-trait="method"]', method))
    return row


def run_colormap(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    names = [v for v, _ in b.options('select[data-trait="colormap"]')]
    cycle = [n for n in ("magma", "gray", "inferno", "viridis") if n in names] or names
    row = Row("colormap", "colormap menu (feature maps recoloured in the browser)",
              [Milestone("final", "final: feature maps in the new colormap", "<= 150 ms", 150)])
    for i in range(repeats):
        name = cycle[i % len(cycle)]
        spec = final_spec([{"bumped": FMAP}, {"data": FMAP, "key": "colormap", "equals": name}])
        row.runs.append(b.measure(spec, b.page.select_option, f'{ROOT} select[data-trait="colormap"]', name))
    return row


def run_scaling(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    row = Row("scaling", "scaling menu (feature maps recomputed in the kernel)",
              [Milestone("final", "final: feature maps rescaled, idle", "<= 150 ms", 150)])
    for i in range(repeats):
        value = ("per_tile", "shared")[i % 2]
        words = "each tile stretched" if value == "per_tile" else "shared scale"
        spec = final_spec([{"bumped": FMAP}, {"text": ".cnnw-fmap-panel > .cnnw-caption", "startsWith": words}])
        row.runs.append(b.measure(spec, b.page.select_option, f'{ROOT} select[data-trait="scaling"]', value))
    return row


def run_opacity(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    row = Row("opacity", "opacity slider (saliency re-blended in the browser)",
              [Milestone("final", "final: saliency re-blended", "<= 150 ms", 150)])
    for i in range(repeats):
        value = ("0.3", "0.85", "0.6")[i % 3]
        spec = final_spec([{"bumped": SAL}])
        row.runs.append(b.measure(spec, fill_range, b.page, f'{ROOT} input[type=range][data-trait="opacity"]', value))
    return row


def run_layer(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    layers, home = ctx["layers"], ctx["home_layer"]
    other = layers[layers.index(home) - 2]
    row = Row("layer", f"layer button ({home} <-> {other}; feature maps and filters recomputed)",
              [Milestone("final", "final: feature maps of the new layer, idle", "<= 150 ms", 150)])
    for i in range(repeats):
        layer = (other, home)[i % 2]
        spec = final_spec([{"bumped": FMAP}, {"text": ".cnnw-fmap-panel > h3", "includes": f"of {layer} ("}], t0="click")
        row.runs.append(b.measure(spec, b.page.click, f'{ROOT} button.cnnw-layer[data-layer="{layer}"]'))
    return row


def run_tab(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    row = Row("tab", "tab button (Contribution tree <-> Filters)",
              [Milestone("final", "final: the tab's page shown and drawn", "<= 150 ms", 150)])
    for i in range(repeats):
        tab = ("filters", "tree")[i % 2]
        conds = [{"visible": f'.cnnw-tab-page[data-tab="{tab}"]'}]
        if tab == "filters":
            conds.append({"data": "canvas.cnnw-filters", "key": "version", "notEquals": "0"})
        else:
            conds.append({"visible": ".cnnw-tree .cnnw-tree-node"})
        spec = final_spec(conds, t0="click")
        row.runs.append(b.measure(spec, b.page.click, f'{ROOT} button.cnnw-tab[data-tab="{tab}"]'))
    return row


def occlusion_milestones(first_goal="<= 300 ms", final_goal="<= 1 s") -> list[Milestone]:
    return [Milestone("first", "first complete occlusion map (every pixel covered)", first_goal, 300),
            Milestone("exact", "exact occlusion map", "", None),
            Milestone("final", "final: exact map, idle", final_goal, 1000)]


def occlusion_spec(words: list[str], t0: str | None = "input") -> dict:
    captions = [caption_of(OCC, includes=w) for w in words]
    return {"t0Event": t0, "final": "final", "milestones": [
        ["first", [{"bumped": OCC}, {"occ": "first"}, *captions]],
        ["exact", [{"bumped": OCC}, {"occ": "exact"}, *captions]],
        ["final", [{"bumped": OCC}, {"occ": "exact"}, *captions, IDLE]],
    ]}


# Values never visited before in the run (the occlusion panel keeps exact maps: going back to a
# window, stride or fill already computed on this image is shown at once, and flagged as such).
WINDOWS = (40, 56, 44, 52, 36, 60, 32, 64, 28, 68)  # stride 24, fill mean (48 is the start)
STRIDES = (20, 28, 16, 32, 36, 12, 40, 44)  # window 48, fill mean (24 is the start)
FILL_WINDOWS = (48, 44, 52, 40, 56, 36, 60, 32, 64, 28)  # stride 24; the fills alternate zero / blur
DRAG_STRIDE = 20  # the drag row's keys (window, 20, mean) stay apart from the window row's
DRAG_FINALS = (60, 36, 64, 32, 56, 40, 68, 28, 52, 44)  # never 48 (its start)


def fresh(values: tuple, i: int) -> int:
    return values[i % len(values)]


def flag_kept(row: Row) -> None:
    """Note which actions' exact occlusion map was one computed before (the caption says "computed before")."""
    kept = [k + 1 for k, r in enumerate(row.runs) if "(computed before)" in (r.get("occCaption") or "")]
    if kept:
        row.notes.append(f"exact occlusion map shown from the kept maps (computed before) in action(s) {kept} of {len(row.runs)}")


def run_window(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    tt = target_text(b)
    shown = " / ".join(str(fresh(WINDOWS, i)) for i in range(repeats))
    row = Row("window", f"window slider (occlusion of {tt}; {shown} px, stride 24)", occlusion_milestones())
    for i in range(repeats):
        window = fresh(WINDOWS, i)
        spec = occlusion_spec([f"drop of {tt} when a {window}px square"])
        row.runs.append(b.measure(spec, fill_range, b.page, f'{ROOT} input[type=range][data-trait="window"]', str(window)))
    flag_kept(row)
    return row


def run_stride(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    tt = target_text(b)
    shown = " / ".join(str(fresh(STRIDES, i)) for i in range(repeats))
    row = Row("stride", f"stride slider (occlusion of {tt}; {shown} px, window 48)", occlusion_milestones())
    for i in range(repeats):
        stride = fresh(STRIDES, i)
        spec = occlusion_spec([f"drop of {tt} when", f"(stride {stride})"])
        row.runs.append(b.measure(spec, fill_range, b.page, f'{ROOT} input[type=range][data-trait="stride"]', str(stride)))
    flag_kept(row)
    return row


def run_fill(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    tt = target_text(b)
    fills = [v for v, _ in b.options('select[data-trait="fill"]')]
    cycle = [f for f in ("zero", "blur") if f in fills]
    shown = " / ".join(str(fresh(FILL_WINDOWS, i)) for i in range(repeats))
    row = Row("fill", f"fill menu (occlusion of {tt}; {' / '.join(cycle)} alternately, each at a new window: {shown} px, "
                      "set untimed before)", occlusion_milestones())
    window_input = f'{ROOT} input[type=range][data-trait="window"]'
    for i in range(repeats):
        window = fresh(FILL_WINDOWS, i)
        if b.page.input_value(window_input) != str(window):
            fill_range(b.page, window_input, str(window))  # untimed: the map at the old fill
            b.settle()
            b.take_timings()
        fill = cycle[i % len(cycle)]
        spec = occlusion_spec([f"drop of {tt} when a {window}px square", f"filled with {fill} "])
        row.runs.append(b.measure(spec, b.page.select_option, f'{ROOT} select[data-trait="fill"]', fill))
    flag_kept(row)
    return row


def run_drag(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    b.kernel(f"explorer.stride = {DRAG_STRIDE}")
    b.settle()
    b.take_timings()
    tt = target_text(b)
    row = Row("drag", f"window slider dragged (stride {DRAG_STRIDE}; 4 input events {DRAG_GAP_MS} ms apart, release "
                      f"{DRAG_GAP_MS} ms after the last; timed from the last input)",
              occlusion_milestones(final_goal="<= 1 s after the drag"))
    selector = 'input[type=range][data-trait="window"]'
    b.page.locator(f"{ROOT} {selector}").scroll_into_view_if_needed()
    gaps, finals = [], []
    for i in range(repeats):
        final = fresh(DRAG_FINALS, i)
        step = 8 if i % 2 == 0 else -8  # up to the final value, or down to it
        values = [final - 3 * step, final - 2 * step, final - step, final]
        finals.append(f"{values[0]}->{final}")
        spec = occlusion_spec([f"drop of {tt} when a {final}px square"], t0=None)  # the clock: the last input
        result = b.measure(spec, b.page.evaluate, "(a) => window.__bench.drag(a)", [selector, values, DRAG_GAP_MS, DRAG_GAP_MS])
        inputs = result["inputs"]
        gaps += [inputs[k + 1] - inputs[k] for k in range(len(inputs) - 1)]
        row.runs.append(result)
    row.notes.append(f"drags (window px): {', '.join(finals)}")
    if gaps:
        row.notes.append(f"input events were {statistics.median(gaps):.0f} ms apart (median; max {max(gaps):.0f}); "
                         "the slider sends at most one value per 120 ms while dragging, and the release sends the last")
    flag_kept(row)
    return row


def run_image(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    names = ("coffee", "rocket", "cat")
    info = b.kernel_json(
        "{n: [explorer.net.predict(cw.sample_image(n))[0].label, "
        f"_target_text(explorer.net, explorer.net.top_class(cw.sample_image(n)))] for n in {names!r}}}")
    row = Row("image", "sample image menu (coffee / rocket / cat; every panel recomputed)", [
        Milestone("first", "first: image, predictions and feature maps", "<= 200 ms", 200),
        Milestone("saliency", "saliency for the new top class"),
        Milestone("tree", "tree complete"),
        Milestone("occ_first", "first complete occlusion map"),
        Milestone("final", "final: every panel, idle", "<= 1.5 s", 1500),
    ])
    for i in range(repeats):
        name = names[i % 3]
        label, tt = info[name]
        first = [{"bumped": "canvas.cnnw-image"}, {"text": ".cnnw-top1", "equals": label}, {"bumped": FMAP}]
        sal = [{"bumped": SAL}, caption_of(SAL, endsWith=f" for {tt}")]
        tree = [{"bumped": TREE}, {"text": ".cnnw-tree-head", "includes": f"for {tt} "}, {"data": TREE, "key": "pending", "equals": "0"}]
        occ_words = [caption_of(OCC, includes=f"drop of {tt} when")]
        spec = {"t0Event": "input", "final": "final", "milestones": [
            ["first", first], ["saliency", sal], ["tree", tree],
            ["occ_first", [{"bumped": OCC}, {"occ": "first"}, *occ_words]],
            ["final", first + sal + tree + [{"bumped": OCC}, {"occ": "exact"}, *occ_words, IDLE]],
        ]}
        row.runs.append(b.measure(spec, b.page.select_option, f'{ROOT} select[data-trait="image_name"]', name))
    flag_kept(row)
    prepare(b, ctx)  # back to the cat
    return row


def run_channel(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx)
    layer = ctx["home_layer"]
    row = Row("channel", f"feature-map tile click (channel 3, 4, 5, ... of {layer}; target becomes the unit)", [
        Milestone("saliency", "first: saliency for the unit", "<= 200 ms", 200),
        Milestone("occ_first", "first complete occlusion map", "<= 300 ms", 300),
        Milestone("tree_first", "tree first level (scores, pictures may be pending)", "<= 300 ms", 300),
        Milestone("tree", "tree complete (pictures drawn)"),
        Milestone("exact", "exact occlusion map", "<= 1 s", 1000),
        Milestone("final", "final: every panel, idle"),
    ])
    b.page.locator(f"{ROOT} {FMAP}").scroll_into_view_if_needed()
    for i in range(repeats):
        channel = 3 + i
        tt = f"unit {layer}[{channel}]"
        sal = [{"bumped": SAL}, caption_of(SAL, endsWith=f" for {tt}")]
        occ_words = [caption_of(OCC, includes=f"drop of {tt} when")]
        tree_first = [{"bumped": TREE}, {"text": ".cnnw-tree-head", "includes": f"for {tt} "}]
        tree = tree_first + [{"data": TREE, "key": "pending", "equals": "0"}]
        spec = {"t0Event": "click", "final": "final", "milestones": [
            ["saliency", sal],
            ["occ_first", [{"bumped": OCC}, {"occ": "first"}, *occ_words]],
            ["tree_first", tree_first], ["tree", tree],
            ["exact", [{"bumped": OCC}, {"occ": "exact"}, *occ_words]],
            ["final", sal + tree + [{"bumped": OCC}, {"occ": "exact"}, *occ_words, IDLE]],
        ]}
        point = b.page.evaluate(TILE_CENTER_JS, channel)
        row.runs.append(b.measure(spec, b.page.mouse.click, point["x"], point["y"]))
    flag_kept(row)
    return row


def run_visualise(b: Bench, ctx: dict, repeats: int) -> Row:
    prepare(b, ctx, tab="visualize")
    size = b.page.locator(f'{ROOT} input[type=range][data-trait="viz_size"]')
    if size.input_value() != "128":
        size.fill("128")
    steps = b.kernel_json("explorer.viz_steps")
    tt = target_text(b)
    row = Row("visualise", f"Visualise tab, Start at 128 px ({steps} steps, {tt}; lr varied per repeat so no run is cached)", [
        Milestone("first", "first frame", "<= 300 ms", 300),
        Milestone("final", "run ended (Start shown again)"),
    ])
    fps, steady = [], []
    lrs = ("0.05", "0.045", "0.055", "0.04", "0.06", "0.035", "0.065")
    for i in range(repeats):
        lr = b.page.locator(f'{ROOT} input[type=range][data-trait="viz_lr"]')
        lr.fill(lrs[i % len(lrs)])
        spec = {"t0Event": "click", "final": "final", "steps": "canvas.cnnw-viz",
                "latches": {"running": {"data": "button.cnnw-viz-start", "key": "running", "equals": "true"}},
                "milestones": [["first", [{"frames": 1}]],
                               ["final", [{"latch": "running"}, {"data": "button.cnnw-viz-start", "key": "running", "equals": "false"}]]]}
        result = b.measure(spec, b.page.click, f"{ROOT} button.cnnw-viz-start", timeout_ms=VIZ_TIMEOUT_MS)
        frames = [t for _, t in result["steps"]]  # a frame: a paint showing a new step
        end = result["final"]
        paints = sum("cnnw-viz" in cls.split() for cls, _ in result["bumps"])
        if frames and end:
            fps.append(len(frames) / (end / 1000))
            steady.append((len(frames) - 1) / ((frames[-1] - frames[0]) / 1000) if len(frames) > 1 and frames[-1] > frames[0] else None)
        else:
            fps.append(None)
            steady.append(None)
        row.notes.append(f"run {i + 1}: {len(frames)} frames (new steps) shown, {paints} canvas paints, run ended at {fmt_ms(end)}")
        row.runs.append(result)
    row.extra.append(("frames/s from Start to the end of the run", fps, ">= 10", 10, True))
    row.extra.append(("frames/s between the first and the last frame", steady, ">= 10", 10, True))
    prepare(b, ctx)
    return row


RUNS = {"method": run_method, "colormap": run_colormap, "scaling": run_scaling, "opacity": run_opacity,
        "layer": run_layer, "tab": run_tab, "window": run_window, "stride": run_stride, "fill": run_fill,
        "drag": run_drag, "image": run_image, "channel": run_channel, "visualise": run_visualise}


# ---------------------------------------------------------------------------------------------- report
def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def verdict(values: list[float], bound: float | None, higher: bool = False) -> str:
    if bound is None or not values:
        return ""
    ok = (lambda v: v >= bound) if higher else (lambda v: v <= bound)
    if all(ok(v) for v in values):
        return "ok"
    if ok(statistics.median(values)):
        return "median ok"
    return "MISS"


def kernel_summary(runs: list[dict]) -> str:
    per_panel: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for run in runs:
        last: dict[str, float] = {}
        for name, seconds in run.get("kernel", []):
            last[name] = seconds
            counts[name] = counts.get(name, 0) + 1
        for name, seconds in last.items():
            per_panel.setdefault(name, []).append(seconds)
    if not per_panel:
        return "none (nothing computed in the kernel)"
    parts = []
    for name, values in per_panel.items():
        extra = f" x{counts[name] / len(runs):.1f}/action" if counts[name] > len(runs) else ""
        parts.append(f"{name} {statistics.median(values) * 1000:.0f} ms{extra}")
    return ", ".join(parts)


def print_row(row: Row, verbose: bool) -> None:
    load = f"  [load {row.load[0]:.2f}]" if row.load else ""
    print(f"\n{row.key}: {row.title}{load}")
    print(f"  {'milestone':52s} {'median':>8s} {'max':>8s}  {'goal':22s} {'':9s} values (ms)")
    for m in row.milestones:
        values = [r["final"] if m.name == "final" else r["ms"].get(m.name) for r in row.runs]
        got = [v for v in values if v is not None]
        med = fmt_ms(statistics.median(got)) if got else "n/a"
        top = fmt_ms(max(got)) if got else "n/a"
        missing = f" ({len(values) - len(got)} never reached)" if len(got) < len(values) else ""
        raw = " ".join("-" if v is None else f"{v:.0f}" for v in values)
        print(f"  {m.label:52s} {med:>8s} {top:>8s}  {m.goal:22s} {verdict(got, m.goal_ms):9s} {raw}{missing}")
    for label, values, goal, bound, higher in row.extra:
        got = [v for v in values if v is not None]
        med = f"{statistics.median(got):.1f}" if got else "n/a"
        low = f"{min(got):.1f}" if got else "n/a"
        raw = " ".join("-" if v is None else f"{v:.1f}" for v in values)
        print(f"  {label:52s} {med:>8s} {'min ' + low:>8s}  {goal:22s} {verdict(got, bound, higher):9s} {raw}")
    print(f"  kernel (timings trait, median of each panel's last time per action): {kernel_summary(row.runs)}")
    timeouts = sum(r["timedOut"] for r in row.runs)
    if timeouts:
        print(f"  {timeouts} of {len(row.runs)} actions timed out before settling")
    for note in row.notes:
        print(f"  note: {note}")
    if verbose:
        for k, r in enumerate(row.runs):
            print(f"    run {k + 1}: {json.dumps({key: r[key] for key in ('ms', 'final', 'timedOut', 'kernel', 'status')})}")


# ---------------------------------------------------------------------------------------------- main
def source_state() -> str:
    """The commit measured, and the files of the package or the renderer changed since (others may be editing)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "cnn_widgets", "js/src"], cwd=REPO, capture_output=True,
                                 text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    changed = [line[3:] for line in changed if line.strip()]
    state = head + (f" with uncommitted changes to {', '.join(changed)}" if changed else " (clean)")
    bundle = REPO / "cnn_widgets" / "static" / "explorer.js"
    sources = list((REPO / "js" / "src").rglob("*.js"))
    if bundle.exists() and sources and max(p.stat().st_mtime for p in sources) > bundle.stat().st_mtime:
        state += "; WARNING: js/src is newer than the built bundle (cd js && npm run build)"
    return state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="actions per interaction (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--only", action="append", default=[],
                        help=f"interactions to run (repeatable or comma-separated): {', '.join(ORDER)}")
    parser.add_argument("--verbose", action="store_true", help="print every action's raw result")
    parser.add_argument("--background-threads", type=int, default=None,
                        help="intra-op threads of the Explorer's background jobs (default: every core but one, "
                             "cnn_widgets/widgets/cores.py); to compare settings side by side")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    only = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = [name for name in only if name not in RUNS]
    if unknown:
        parser.error(f"unknown interaction(s) {unknown}; choose from {', '.join(ORDER)}")
    chosen = [name for name in ORDER if not only or name in only]
    if CHROMIUM is None:
        print("chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2

    from playwright.sync_api import sync_playwright

    print(f"bench_interactions: cw.Explorer() (default model, the cat, 224 px) in JupyterLab, headless chromium "
          f"{VIEWPORT[0]}x{VIEWPORT[1]}; {repeats} actions per interaction")
    print(f"source: {source_state()}")
    print(f"machine: {os.cpu_count()} cores; load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    started = time.monotonic()
    server = JupyterServer("lab").start()
    rows: list[Row] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            print(f"chromium {browser.version}")
            path = write_notebook(server, "bench_interactions.ipynb", [SETUP_CELL, DISPLAY_CELL, LOG_CELL])
            nb = NotebookPage(server, browser, path, viewport=VIEWPORT)
            try:
                nb.open()
                nb.run_all(timeout_s=FIRST_RENDER_TIMEOUT_S)
                nb.page.wait_for_selector(f"{FMAP}[data-version]", timeout=FIRST_RENDER_TIMEOUT_S * 1000)
                b = Bench(nb)
                b.page.evaluate(WATCHER_JS)
                b.settle(FIRST_RENDER_TIMEOUT_S)
                if args.background_threads is not None:  # cores.one_core_free leaves usable_cpus() - 1
                    b.kernel(f"from cnn_widgets.widgets import cores as _cores\n"
                             f"_cores.usable_cpus = lambda: {args.background_threads + 1}")
                    print(f"background jobs: {args.background_threads} intra-op thread(s) (--background-threads)")
                b.take_timings()
                kernel = b.kernel_json(
                    "dict(threads=torch.get_num_threads(), interop=torch.get_num_interop_threads(), torch=torch.__version__,"
                    " cpus=os.cpu_count(), layer=explorer.layer, target=explorer.target, image=explorer.image_name,"
                    " size=list(explorer.net.prepare(explorer.image).shape[-2:]))")
                print(f"kernel: torch {kernel['torch']}, {kernel['threads']} intra-op threads, {kernel['interop']} inter-op "
                      f"threads, {kernel['cpus']} cpus; image {kernel['image']} at {kernel['size'][0]}x{kernel['size'][1]}, "
                      f"layer {kernel['layer']}, target {kernel['target']}")
                layout = b.page.get_attribute(ROOT, "data-layout")
                print(f"widget layout: {layout}; browser: status {b.status()}")
                ctx = {
                    "home_layer": kernel["layer"],
                    "layers": b.page.eval_on_selector_all(f"{ROOT} button.cnnw-layer", "(bs) => bs.map((b) => b.dataset.layer)"),
                }
                for name in chosen:
                    load = os.getloadavg()
                    t = time.monotonic()
                    try:
                        row = RUNS[name](b, ctx, repeats)
                    except Exception as exc:  # noqa: BLE001 -- one broken row must not lose the others
                        print(f"\n{name}: FAILED: {type(exc).__name__}: {exc}")
                        b.settle()
                        continue
                    row.load = load
                    row.notes.append(f"took {time.monotonic() - t:.0f} s")
                    rows.append(row)
                    print_row(row, args.verbose)
                    sys.stdout.flush()
                # the picture: the top of the widget in the 1280x800 viewport
                b.page.evaluate("(s) => document.querySelector(s).scrollIntoView({block: 'start'})", ROOT)
                b.page.wait_for_timeout(300)
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                b.page.screenshot(path=str(SCREENSHOT))
                errors = nb.console_errors()
                if errors:
                    print(f"\nbrowser console errors ({len(errors)}): " + " | ".join(errors[:5]))
            finally:
                nb.close()
                browser.close()
    finally:
        server.stop()
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; total {time.monotonic() - started:.0f} s")
    print(f"screenshot: {SCREENSHOT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
