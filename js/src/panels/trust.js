// The Trust tab: can these pictures be believed? The sanity check's strip (each method's map, one
// column per randomised stage, top-down: Adebayo et al.'s Figure 2 on this model), the similarity
// of each map to the original beneath it, and the deletion / insertion curves with each method's
// AUC. Computed in the kernel as a job of its runner (panels/trust.py): Run sends
// {type: "recompute", panel: "trust"}, Stop {type: "cancel", ...}; its state is progress.trust.
import { decodeArray } from "../buffers.js";
import { commit } from "../actions.js";
import { h, listenBatched, onWidth, paint, fmt } from "../dom.js";
import { labelOf, options } from "../choices.js";
import { choiceSelect } from "../controls.js";
import { lut } from "../colormaps.js";
import { mapRgba } from "../pixels.js";
import { progressBar } from "../progress.js";
import { drawChart, SERIES_COLOURS } from "../plot.js";
import { isStatic } from "../static_model.js";
import { verdictValue } from "./saliency.js";

const CELL = 66; // css pixels of a strip column at most (a 64-pixel map and its gap)
const MIN_CELL = 24; // ... and at least: below, the strip scrolls sideways
const LABEL = 150; // css pixels of the method column

/** The strip's column width for `stages` columns in `width` css pixels. */
export function cellWidth(width, stages) {
  return Math.max(MIN_CELL, Math.min(CELL, Math.floor((width - LABEL) / Math.max(1, stages))));
}

/** The job's state: the runner's progress entry of the "trust" job. */
function trustState(model) {
  return (model.get("progress") || {}).trust || {};
}

function mount(model) {
  const button = h("button", { type: "button", class: "cnnw-trust-run", text: "Run checks" });
  const mode = choiceSelect(model, "trust_mode", { kernel: false, needsKernel: true, title: "randomise the stages cumulatively (the paper's cascade) or one at a time" });
  const methodBox = h("span", { class: "cnnw-trust-methods" });
  const progress = progressBar({ title: "stages and curves done" }); // Run / Stop above is the one button
  const strip = h("div", { class: "cnnw-trust-strip" });
  const similarity = h("canvas", { class: "cnnw-trust-similarity", width: 1, height: 120, "data-version": "0" });
  const simNote = h("div", { class: "cnnw-caption" });
  const charts = {}; // metric -> {block, canvas, axis, legend}: one chart per curve the kernel sends
  const curvesRow = h("div", { class: "cnnw-trust-curves", style: "display:flex;gap:18px;flex-wrap:wrap;margin-top:10px" });
  function chartOf(metric) {
    if (!charts[metric]) {
      const title = h("div", { class: "cnnw-legend-title" });
      const canvas = h("canvas", { class: `cnnw-trust-curve cnnw-trust-${metric}`, "data-metric": metric, width: 230, height: 130, "data-version": "0" });
      const axis = h("div", { class: "cnnw-trust-axis" }), key = h("div", { class: "cnnw-trust-legend", "data-metric": metric });
      charts[metric] = { block: h("div", { style: "max-width:250px" }, title, canvas, axis, key), title, canvas, axis, legend: key };
    }
    return charts[metric];
  }
  const caption = h("div", { class: "cnnw-caption cnnw-trust-caption" });
  const el = h("div", { class: "cnnw-panel cnnw-trust" }, h("h3", { text: "Can I trust these pictures?" }),
    h("div", { class: "cnnw-controls" }, button, h("label", {}, "randomise", mode.el), methodBox),
    progress.el, caption, strip, curvesRow);

  let stripWidth = 900; // the panel's content width, measured once it is laid out
  const offWidth = onWidth(el, (width) => { stripWidth = width - 16; draw(); });
  const running = () => trustState(model).state === "running";
  button.addEventListener("click", () => model.send({ type: running() ? "cancel" : "recompute", panel: "trust" }));

  function drawMethods() {
    const chosen = new Set(model.get("trust_methods") || []);
    methodBox.replaceChildren(...options(model, "method").map(([name, text]) => {
      const box = h("input", { type: "checkbox", value: name, "data-method": name });
      box.checked = chosen.has(name);
      box.addEventListener("change", () => {
        const now = new Set(model.get("trust_methods") || []);
        if (box.checked) now.add(name); else now.delete(name);
        const ordered = options(model, "method").map(([n]) => n).filter((n) => now.has(n)); // registry order
        if (ordered.length) commit(model, { trust_methods: ordered }, { kernel: false });
        else box.checked = true; // at least one method
      });
      return h("label", { class: "cnnw-trust-method" }, box, text);
    }));
  }

  function drawStrip(info, maps, colours) {
    const planned = info.planned || [];
    const methods = info.methods || [];
    const verdicts = model.get("trust_verdicts") || {};
    const cell = cellWidth(stripWidth, planned.length), side = cell - 4;
    strip.style.cssText = `display:grid;grid-template-columns:${LABEL}px repeat(${planned.length}, ${cell}px);align-items:center;margin-top:6px;overflow-x:auto`;
    const cells = [h("div", { class: "cnnw-trust-corner", text: info.mode === "independent" ? "randomised alone →" : "randomised down to →" })];
    planned.forEach((stage, i) => cells.push(h("div", { class: "cnnw-trust-stage", title: stage, "data-half": String(i === info.half),
      text: stage, style: `font-size:10px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;text-align:center;${i === info.half ? "font-weight:bold" : ""}` })));
    const table = lut("inferno");
    const [, done, T] = maps ? maps.shape : [0, 0, 0];
    methods.forEach((method, r) => {
      const verdict = verdicts[method] && verdicts[method].model === info.model ? verdicts[method] : null;
      const badge = verdict ? h("span", { class: "cnnw-trust-verdict", "data-fails": String(verdict.fails), title: verdict.text,
        text: verdict.fails ? ` ⚠ ${verdictValue(verdict)}` : ` ✓ ${verdictValue(verdict)}` }) : null;
      cells.push(h("div", { class: "cnnw-trust-label", title: verdict ? verdict.text : "" },
        h("span", { text: "■ ", style: `color:${colours[r % colours.length]}` }), labelOf(model, "method", method), badge));
      planned.forEach((stage, c) => {
        const canvas = h("canvas", { class: "cnnw-trust-map", width: 1, height: 1, "data-method": method, "data-stage": stage,
          style: `width:${side}px;height:${side}px;background:#eee;image-rendering:auto` });
        if (maps && c < done && r < maps.shape[0]) {
          const { rgba, side } = mapRgba(maps.array.subarray((r * done + c) * T * T, (r * done + c + 1) * T * T), T, T, table);
          paint(canvas, rgba, side, side);
        }
        cells.push(canvas);
      });
    });
    // the similarity curve under the strip, each point under its stage's column
    cells.push(h("div", { class: "cnnw-trust-label cnnw-trust-axis" }, "similarity to the original map (Spearman of |map|), from 1 at the top to −1; ",
      `dashed: 0 and the ${info.threshold ?? 0.5} line, the vertical line the top-half stage`));
    similarity.width = Math.max(1, planned.length * cell);
    similarity.style.cssText = `grid-column: 2 / span ${Math.max(1, planned.length)};width:${similarity.width}px;height:120px`;
    cells.push(similarity);
    strip.replaceChildren(...cells);
    const range = { x0: -0.5, x1: planned.length - 0.5, y0: -1, y1: 1 };
    drawChart(similarity, methods.map((m, i) => {
      const ys = (info.similarity || {})[m] || [];
      return { xs: ys.map((_, j) => j), ys, colour: colours[i % colours.length] };
    }), range, { guides: [0, info.threshold ?? 0.5], marker: info.half >= 0 ? info.half : null, dots: true });
    similarity.style.padding = "0";
  }

  function drawCurves(info, colours) {
    const shown = Object.entries(info.curves || {});
    curvesRow.replaceChildren(...shown.map(([metric]) => chartOf(metric).block));
    for (const [metric, data] of shown) {
      const { canvas, legend: key, title, axis } = chartOf(metric);
      const methods = Object.keys(data.curves || {});
      const all = methods.flatMap((m) => data.curves[m]);
      const probability = data.quantity === "probability";
      const y0 = probability ? 0 : Math.min(0, ...all), y1 = probability ? 1 : Math.max(1e-9, ...all);
      const colour = (m) => colours[(info.methods || []).indexOf(m) % colours.length];
      title.textContent = `${metric}: ${data.title} (${data.lower_is_better ? "lower" : "higher"} AUC is better)`;
      drawChart(canvas, methods.map((m) => ({ xs: data.fractions || [], ys: data.curves[m], colour: colour(m) })), { x0: 0, x1: 1, y0, y1 });
      key.replaceChildren(...methods.map((m) => h("div", { "data-method": m, "data-auc": String(data.auc[m]), style: "font-size:11px" },
        h("span", { text: "■ ", style: `color:${colour(m)}` }), `${labelOf(model, "method", m)}: AUC ${fmt(data.auc[m])}`)));
      canvas.title = `${data.quantity || "score"} of the target against the share of pixels (${data.title})`;
      axis.textContent = methods.length ? `→ share of pixels (0 to 1); ↑ ${data.quantity} of ${info.target} (${fmt(y0)} to ${fmt(y1)})` : "";
    }
  }

  /** What depends on the job's state only (every panel's progress message comes here: nothing heavy). */
  function drawState() {
    const state = trustState(model);
    const isRunning = state.state === "running";
    button.textContent = isRunning ? "Stop" : "Run checks";
    button.dataset.running = String(isRunning);
    button.disabled = isStatic(model);
    mode.el.disabled = isRunning || isStatic(model);
    for (const box of methodBox.querySelectorAll("input")) box.disabled = isStatic(model) || isRunning;
    progress.update(state);
    const info = model.get("trust_info") || {};
    const stale = info.subject !== undefined && info.subject !== model.get("trust_subject");
    el.dataset.stale = String(stale);
    strip.style.opacity = stale ? "0.45" : "1";
    const half = info.half >= 0 ? (info.planned || [])[info.half] : null;
    caption.textContent = !info.methods ? "press Run checks: each method's map as the model is randomised top-down " +
        "(a map that stays the same shows the image, not what the model learned), then deletion and insertion curves"
      : stale ? "computed for another image or target: press Run checks to check this one"
      : `${info.target}: ${info.stages.length} of ${(info.planned || []).length} stages` +
        (half ? `; ⚠ marks a method whose map is still ≥ ${info.threshold} alike with the stages down to ${half} randomised` : "") +
        (isRunning ? "…" : state.state === "cancelled" ? " (stopped)" : "");
  }

  function draw() {
    drawMethods();
    const info = model.get("trust_info") || {};
    if (!info.methods) {
      strip.replaceChildren();
      curvesRow.replaceChildren();
    } else {
      drawStrip(info, decodeArray(model.get("trust_maps")), SERIES_COLOURS);
      drawCurves(info, SERIES_COLOURS);
    }
    drawState();
  }
  const off = listenBatched(model, ["trust_info", "trust_maps", "trust_verdicts", "trust_methods", "trust_subject", "choices"], draw);
  const offState = listenBatched(model, ["progress"], drawState);
  draw();
  return { el, cleanup() { off(); offState(); offWidth(); mode.cleanup(); } };
}

export default { name: "trust", place: "tab", mount };
