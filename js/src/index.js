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
import { mountTopImages, mountEmbedding } from "./scan_views.js";

const PANEL_NAMES = { fmap: "feature maps", scan_layer: "scan view", top_images: "top images" };
// the panels below the feature maps, one at a time (the `tab` trait); scan tabs only with a scan
const TABS = [["tree", "Contribution tree"], ["top_images", "Top images"], ["embedding", "Scanned images"], ["filters", "Filters"]];
const SCAN_TABS = new Set(["top_images", "embedding"]);

function mountTabs(model, pages) {
  const buttons = TABS.map(([name, text]) => {
    const button = h("button", { type: "button", class: "cnnw-tab", role: "tab", "data-tab": name, text });
    button.addEventListener("click", () => commit(model, { tab: name }, { kernel: false }));
    return button;
  });
  const bar = h("div", { class: "cnnw-tabs", role: "tablist" }, ...buttons);
  function update() {
    const scanned = Object.keys(model.get("scan_info") || {}).length > 0;
    let active = model.get("tab") || "tree";
    if (SCAN_TABS.has(active) && !scanned) active = "tree";
    for (const button of buttons) {
      const name = button.dataset.tab;
      button.hidden = SCAN_TABS.has(name) && !scanned;
      button.classList.toggle("selected", name === active);
      button.setAttribute("aria-selected", String(name === active));
    }
    for (const [name, page] of Object.entries(pages)) page.hidden = name !== active;
  }
  const off = listen(model, ["tab", "scan_info"], update);
  update();
  return { el: bar, cleanup: off };
}

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
  let localStatus = null; // e.g. "busy" while a dropped file is being read, before the kernel knows

  const statusEl = h("span", { class: "cnnw-status", role: "status" });
  const errorEl = h("div", { class: "cnnw-error", role: "alert" });
  const setStatus = (status, text) => { localStatus = status ? { status, text } : null; updateStatus(); };
  function updateStatus() {
    const error = model.get("error") || "";
    errorEl.textContent = error;
    let status = isBusy(model) ? "busy" : error ? "error" : "idle";
    const working = model.get("working") || "";
    // short texts in a fixed-width pill: the bar never reflows when the status changes
    let text = status === "busy" ? `computing ${PANEL_NAMES[working] || working}…` : status === "error" ? "error ↓" : "ready";
    if (localStatus && status !== "busy") { status = localStatus.status; text = localStatus.text; }
    root.dataset.status = status;
    statusEl.textContent = text;
    statusEl.title = status === "error" ? "see the message below" : text;
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
  const fmaps = mountFeatureMaps(model);
  const topImages = mountTopImages(model);
  const embedding = mountEmbedding(model);
  const tree = mountTree(model);
  const filters = mountFilters(model);
  const pages = Object.fromEntries([["tree", tree], ["top_images", topImages], ["embedding", embedding], ["filters", filters]]
    .map(([name, part]) => [name, h("div", { class: "cnnw-tab-page", "data-tab": name }, part.el)]));
  const tabs = mountTabs(model, pages);
  const parts = [input, predictions, saliency, occlusion, strip, fmaps, topImages, embedding, tree, filters, tabs];

  root.append(
    h("div", { class: "cnnw-bar" }, input.el, h("label", { class: "cnnw-explain" }, "explain", target), statusEl),
    errorEl,
    h("div", { class: "cnnw-row" }, predictions.el, saliency.el, occlusion.el),
    strip.el,
    h("div", { class: "cnnw-row", style: "grid-template-columns: 1fr" }, fmaps.el,
      h("div", { class: "cnnw-tabbed" }, tabs.el, ...Object.values(pages))),
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

  // width-dependent canvases measure their own panel after layout and redraw on resize (each
  // part's cleanup disconnects its observer)
  return () => {
    offStatus(); offTarget();
    for (const part of parts) part.cleanup();
    el.replaceChildren();
  };
}

export default { render };
