// The Visualise tab: what the selected unit or class looks for (feature visualisation) or DeepDream
// on the image, optimised in the kernel and streamed here frame by frame. Frames carry the request
// they belong to; a frame of any other request than the kernel's current one is never drawn.
import { decodeArray } from "../buffers.js";
import { commit } from "../actions.js";
import { h, listen, paint, fmt } from "../dom.js";
import { choiceSelect, rangeSlider } from "../controls.js";
import { curvePoints, rgbToRgba } from "../curve.js";
import { progressBar } from "../progress.js";

/** The run's state (viz_info) in the shape of the shared progress bar. */
export function vizProgress(info) {
  if (!info || !info.steps) return {};
  const base = { done: info.step || 0, total: info.steps, unit: "steps" };
  if (info.running) return { ...base, state: "running" };
  if (info.error) return { ...base, state: "error", message: info.error };
  if (info.interrupted) return { ...base, state: "cancelled", message: `stopped at step ${info.step || 0} of ${info.steps}` };
  return { ...base, state: "done" };
}

const SHOWN = 256; // css pixels of the picture

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-viz", width: 1, height: 1, "data-version": "0", "data-request": "-1",
    style: `width:${SHOWN}px;height:${SHOWN}px;image-rendering:pixelated;background:#eee` });
  const curve = h("canvas", { class: "cnnw-viz-curve", width: 240, height: 90, title: "objective per step" });
  const progress = progressBar({ title: "steps done" }); // no button of its own: Start / Stop above is the one
  progress.el.classList.add("cnnw-viz-progress");
  const button = h("button", { type: "button", class: "cnnw-viz-start", text: "Start" });
  const caption = h("div", { class: "cnnw-caption" });
  const local = { kernel: false }; // the settings wait for Start: no panel recomputes
  const mode = choiceSelect(model, "viz_mode", { ...local, title: "what to optimise" });
  const param = choiceSelect(model, "viz_param", { ...local, title: "how the picture is parametrised" });
  const start = choiceSelect(model, "viz_start", { ...local, title: "start from noise or from the image shown" });
  const sliders = ["viz_steps", "viz_lr", "viz_size", "viz_jitter"].map((trait) =>
    rangeSlider(model, trait, { kernel: false, showValue: true, onInput: () => {}, title: trait.slice(4) }));
  for (const s of sliders) s.el.firstChild.textContent = s.input.title; // "steps", not "viz_steps"
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "What it looks for" }),
    h("div", { class: "cnnw-controls" }, button, h("label", {}, "mode", mode.el), h("label", {}, "image", param.el),
      h("label", {}, "start from", start.el), ...sliders.map((s) => s.el)),
    h("div", { class: "cnnw-viz-body", style: "display:flex;gap:16px;align-items:flex-start;margin-top:8px" },
      canvas, h("div", {}, progress.el, curve, caption)));

  const running = () => !!(model.get("viz_info") || {}).running;
  button.addEventListener("click", () => {
    model.send({ type: "visualize", action: running() ? "stop" : "start" });
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

  function draw() {
    const info = model.get("viz_info") || {};
    const current = model.get("viz_request");
    button.textContent = info.running ? "Stop" : "Start";
    button.dataset.running = String(!!info.running);
    mode.el.disabled = param.el.disabled = start.el.disabled = !!info.running;
    const dream = model.get("viz_mode") === "dream";
    param.el.parentElement.hidden = start.el.parentElement.hidden = dream;
    sliders[2].el.hidden = dream; // DeepDream keeps the image's size
    if (info.request !== current) return; // not the current request's: never draw it
    const frame = decodeArray(model.get("viz_frame"));
    if (frame) {
      const [H, W] = frame.shape;
      paint(canvas, rgbToRgba(frame.array, H, W), W, H);
    } else if (!info.running) paint(canvas, new Uint8ClampedArray(0), 0, 0);
    canvas.dataset.request = String(info.request);
    const curveData = decodeArray(model.get("viz_curve"));
    const values = curveData ? Array.from(curveData.array) : [];
    drawCurve(values, dream ? values.length : info.steps);
    progress.update(vizProgress(info));
    const last = values.length ? fmt(values[values.length - 1]) : "";
    caption.textContent = info.error ? `error: ${info.error}` : info.target
      ? `${info.target}: step ${info.step || 0} of ${info.steps}${last ? `, objective ${last}` : ""}` +
        (info.cached ? " (from the cache)" : info.interrupted ? " (stopped)" : info.running ? "…" : "")
      : "press Start to optimise an image for the explain target (or DeepDream the image at the selected layer)";
  }
  const off = listen(model, ["viz_frame", "viz_curve", "viz_info", "viz_request", "viz_mode"], draw);
  draw();
  return { el, cleanup() { off(); for (const part of [mode, param, start, ...sliders]) part.cleanup(); } };
}

export default { name: "visualize", place: "tab", mount };
