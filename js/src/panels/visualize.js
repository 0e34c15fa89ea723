// The Visualise tab: what the selected unit or class looks for (feature visualisation) or DeepDream
// on the image, optimised in the kernel and streamed here frame by frame. The run is a job of the
// kernel's runner like every slow panel: Start sends {type: "recompute", panel: "visualize"}, Stop
// {type: "cancel", ...}, and its state is progress.visualize (the kernel never sends a stale frame).
import { decodeArray } from "../buffers.js";
import { commit } from "../actions.js";
import { h, listenBatched, paint, fmt } from "../dom.js";
import { choiceSelect, rangeSlider } from "../controls.js";
import { curvePoints, rgbToRgba } from "../curve.js";
import { progressBar } from "../progress.js";
import { isStatic } from "../static_model.js";

/** The run's state: the runner's progress entry of the "visualize" job. */
export function vizState(model) {
  return (model.get("progress") || {}).visualize || {};
}

const SHOWN = 256; // css pixels of the picture

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-viz", width: 1, height: 1, "data-version": "0",
    style: `width:${SHOWN}px;height:${SHOWN}px;image-rendering:pixelated;background:#eee` });
  const curve = h("canvas", { class: "cnnw-viz-curve", width: 240, height: 90, title: "objective per step" });
  const progress = progressBar({ title: "steps done" }); // no button of its own: Start / Stop above is the one
  progress.el.classList.add("cnnw-viz-progress");
  const button = h("button", { type: "button", class: "cnnw-viz-start", text: "Start" });
  const caption = h("div", { class: "cnnw-caption" });
  const local = { kernel: false, needsKernel: true }; // the settings wait for Start: no panel recomputes
  const mode = choiceSelect(model, "viz_mode", { ...local, title: "what to optimise" });
  const param = choiceSelect(model, "viz_param", { ...local, title: "how the picture is parametrised" });
  const start = choiceSelect(model, "viz_start", { ...local, title: "start from noise or from the image shown" });
  const sliders = ["viz_steps", "viz_lr", "viz_size", "viz_jitter"].map((trait) =>
    rangeSlider(model, trait, { ...local, showValue: true, onInput: () => {}, title: trait.slice(4) }));
  for (const s of sliders) s.el.firstChild.textContent = s.input.title; // "steps", not "viz_steps"
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "What it looks for" }),
    h("div", { class: "cnnw-controls" }, button, h("label", {}, "mode", mode.el), h("label", {}, "image", param.el),
      h("label", {}, "start from", start.el), ...sliders.map((s) => s.el)),
    h("div", { class: "cnnw-viz-body", style: "display:flex;gap:16px;align-items:flex-start;margin-top:8px" },
      canvas, h("div", {}, progress.el, curve, caption)));

  const running = () => vizState(model).state === "running";
  button.addEventListener("click", () => {
    model.send({ type: running() ? "cancel" : "recompute", panel: "visualize" });
  });

  function drawCurve(values, steps) {
    const ctx = curve.getContext("2d");
    ctx.clearRect(0, 0, curve.width, curve.height);
    ctx.strokeStyle = "#ccc"; ctx.strokeRect(0.5, 0.5, curve.width - 1, curve.height - 1);
    const points = curvePoints(values, steps, curve.width, curve.height);
    if (!points.length) return;
    ctx.strokeStyle = "#1f77b4"; ctx.lineWidth = 1.5; ctx.beginPath();
    points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
  }

  let painted; // the viz_frame value on the canvas: a message that leaves it alone does not repaint it
  function draw() {
    const info = model.get("viz_info") || {};
    const state = vizState(model);
    const isRunning = state.state === "running";
    button.textContent = isRunning ? "Stop" : "Start";
    button.dataset.running = String(isRunning);
    // locked while a run goes on; always in a static page (no kernel to run one)
    mode.el.disabled = param.el.disabled = start.el.disabled = isRunning || isStatic(model);
    const dream = model.get("viz_mode") === "dream";
    param.el.parentElement.hidden = start.el.parentElement.hidden = dream;
    sliders[2].el.hidden = dream; // DeepDream keeps the image's size
    const value = model.get("viz_frame");
    const frame = value === painted ? null : decodeArray(value);
    if (frame) {
      const [H, W] = frame.shape;
      paint(canvas, rgbToRgba(frame.array, H, W), W, H);
      painted = value;
    } else if (value == null && painted !== null && !isRunning) {
      paint(canvas, new Uint8ClampedArray(0), 0, 0);
      painted = null;
    }
    const curveData = decodeArray(model.get("viz_curve"));
    const values = curveData ? Array.from(curveData.array) : [];
    drawCurve(values, dream ? values.length : info.steps);
    progress.update(state);
    const last = values.length ? fmt(values[values.length - 1]) : "";
    const stopped = info.interrupted || state.state === "cancelled";
    caption.textContent = state.state === "error" ? `error: ${state.message}` : info.target
      ? `${info.target}: step ${info.step || 0} of ${info.steps}${last ? `, objective ${last}` : ""}` +
        (isRunning ? "…" : info.cached ? " (from the cache)" : stopped ? " (stopped)" : "")
      : "press Start to optimise an image for the explain target (or DeepDream the image at the selected layer)";
  }
  // one draw per message from the kernel (a frame changes four traits at once)
  const off = listenBatched(model, ["viz_frame", "viz_curve", "viz_info", "progress", "viz_mode"], draw);
  draw();
  return { el, cleanup() { off(); for (const part of [mode, param, start, ...sliders]) part.cleanup(); } };
}

export default { name: "visualize", place: "tab", mount };
