// anywidget entry point of cw.Explorer: builds the panels, wires them to the model, and
// returns a cleanup that removes every listener (anywidget calls it when the view goes away).
import { CSS } from "./styles.js";
import { h, listen, setOptions } from "./dom.js";
import { commit, isBusy } from "./actions.js";
import { mountFeatureMaps } from "./feature_maps.js";
import { mountPredictions, mountSaliency, mountOcclusion } from "./image_views.js";
import { mountTree } from "./tree_view.js";
import { mountFilters } from "./filters_view.js";
import { mountLayerStrip } from "./layer_strip.js";
import { mountImageInput } from "./image_input.js";

function targetOptions(model) {
  const options = [["top", "top-1 class"], ["unit", `selected unit ${model.get("layer")}[${model.get("channel")}]`]];
  const seen = new Set();
  for (const p of model.get("predictions") || []) { options.push([p.index, `class ${p.label}`]); seen.add(p.index); }
  const t = model.get("target");
  if (typeof t === "number" && !seen.has(t)) options.push([t, `class ${t}`]);
  return options;
}

function render({ model, el }) {
  const style = h("style", { text: CSS });
  const root = h("div", { class: "cnnw-explorer", "data-status": "idle" });
  const width = () => root.clientWidth || el.clientWidth || 900;
  let localStatus = null; // e.g. "busy" while a dropped file is being read, before the kernel knows

  const statusEl = h("span", { class: "cnnw-status", role: "status" });
  const errorEl = h("div", { class: "cnnw-error", role: "alert" });
  const setStatus = (status, text) => { localStatus = status ? { status, text } : null; updateStatus(); };
  function updateStatus() {
    const error = model.get("error") || "";
    errorEl.textContent = error;
    let status = isBusy(model) ? "busy" : error ? "error" : "idle";
    let text = status === "busy" ? `computing ${model.get("working") || ""}…` : status === "error" ? "error (see message)" : "ready";
    if (localStatus && status !== "busy") { status = localStatus.status; text = localStatus.text; }
    root.dataset.status = status;
    statusEl.textContent = text;
  }

  const target = h("select", { "data-trait": "target", title: "what saliency, occlusion and the tree explain" });
  target.addEventListener("change", () => {
    const v = target.value;
    commit(model, { target: v === "top" || v === "unit" ? v : Number(v) });
  });
  const updateTarget = () => setOptions(target, targetOptions(model), model.get("target"));

  const input = mountImageInput(model, root, setStatus);
  const predictions = mountPredictions(model);
  const saliency = mountSaliency(model);
  const occlusion = mountOcclusion(model);
  const strip = mountLayerStrip(model);
  const fmaps = mountFeatureMaps(model, width);
  const tree = mountTree(model);
  const filters = mountFilters(model, width);
  const parts = [input, predictions, saliency, occlusion, strip, fmaps, tree, filters];

  root.append(
    h("div", { class: "cnnw-bar" }, input.el, h("label", {}, "explain", target), statusEl),
    errorEl,
    h("div", { class: "cnnw-row" }, predictions.el, saliency.el, occlusion.el),
    strip.el,
    h("div", { class: "cnnw-row", style: "grid-template-columns: 1fr" }, fmaps.el, tree.el, filters.el),
  );
  el.replaceChildren(style, root);

  const offStatus = listen(model, ["status", "error", "result_seq", "request_seq", "working"], () => {
    if (model.get("status") === "busy" || model.get("result_seq") >= model.get("request_seq")) localStatus = null;
    updateStatus();
  });
  const offTarget = listen(model, ["target", "predictions", "layer", "channel"], updateTarget);
  updateTarget();
  updateStatus();
  requestAnimationFrame(() => strip.select());

  // redraw width-dependent canvases when the notebook column changes width
  let lastWidth = width();
  const resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => {
    const w = width();
    if (Math.abs(w - lastWidth) > 24) { lastWidth = w; fmaps.redraw(); filters.redraw(); }
  });
  if (resize) resize.observe(root);

  return () => {
    offStatus(); offTarget();
    if (resize) resize.disconnect();
    for (const part of parts) part.cleanup();
    el.replaceChildren();
  };
}

export default { render };
