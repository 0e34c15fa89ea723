// anywidget entry point of cw.Explorer: the top bar, the layer strip and the views listed in
// VIEWS, wired to the model; returns a cleanup that removes every listener (anywidget calls it
// when the view goes away).
import { CSS } from "./styles.js";
import { h, listen } from "./dom.js";
import { commit, isBusy } from "./actions.js";
import { options, panelLabel, unitText } from "./choices.js";
import { choiceSelect } from "./controls.js";
import { mountImageInput } from "./image_input.js";
import { mountLayerStrip } from "./layer_strip.js";
import { mountTabs } from "./tabs.js";
import { mountArrangement } from "./arrange.js";
import { isStatic, markStatic, staticModel, STATIC_CSS } from "./static_model.js";
import { addPanelFigureButton, figureButton, FIGURE_CSS } from "./figure.js";
import { mountCancelAll, workingFraction, PROGRESS_CSS } from "./progress.js";
import predictions from "./panels/predictions.js";
import saliency from "./panels/saliency.js";
import occlusion from "./panels/occlusion.js";
import featureMaps from "./panels/feature_maps.js";
import tree from "./panels/tree.js";
import topImages from "./panels/top_images.js";
import embedding from "./panels/embedding.js";
import filters from "./panels/filters.js";
import visualize from "./panels/visualize.js";
import atlas from "./panels/atlas.js";
import trust from "./panels/trust.js";
import compare from "./panels/compare.js";
import unitView, { UNIT_CSS } from "./panels/unit.js";

// Every view, in page order. Each file exports {name, place, mount(model) -> {el, cleanup}};
// place "top": the row under the bar; "main": full width under the layer strip; "tab": one page
// below the feature maps, shown by the kernel's `tab` trait (whose menu names the tabs).
const VIEWS = [predictions, saliency, occlusion, featureMaps, tree, topImages, embedding, filters, visualize, atlas, trust, compare, unitView];

const ATLAS_TARGET = "atlas"; // the kernel's target value while an atlas cell's direction is explained (atlas_tab.py)

/** The target menu: the kernel's fixed targets (the unit named), the predicted classes, then an explained atlas cell. */
function targetOptions(model) {
  const unit = unitText(model.get("layer"), model.get("channel"));
  const result = options(model, "target").map(([v, text]) => [v, v === "unit" ? `${text} ${unit}` : text]);
  const seen = new Set();
  for (const p of model.get("predictions") || []) { result.push([p.index, `class ${p.label}`]); seen.add(p.index); }
  const t = model.get("target");
  if (typeof t === "number" && !seen.has(t)) result.push([t, `class ${t}`]);
  const atlas = model.get("atlas_target") || {}; // a clicked atlas cell's direction (panels/atlas.js)
  if (atlas.label) result.push([ATLAS_TARGET, atlas.label]);
  return result;
}

function render({ model, el }) {
  const style = h("style", { text: CSS + STATIC_CSS + FIGURE_CSS + PROGRESS_CSS + UNIT_CSS });
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
    const percent = workingFraction(model); // "occlusion 40%…" fits the pill where "computing occlusion 40%…" would not
    let text = status === "busy" ? (percent ? `${panelLabel(model, working)} ${percent}…` : `computing ${panelLabel(model, working)}…`)
      : status === "error" ? "error ↓" : "ready";
    if (localStatus && status !== "busy") { status = localStatus.status; text = localStatus.text; }
    root.dataset.status = status;
    statusEl.textContent = isStatic(model) && status === "idle" ? "static snapshot" : text;
    statusEl.title = status === "error" ? "see the message below" : text;
  }

  const target = choiceSelect(model, "target", { title: "what saliency, occlusion and the tree explain", optionsOf: targetOptions,
    follow: ["predictions", "layer", "channel", "atlas_target"],
    parse: (v) => (v === ATLAS_TARGET || options(model, "target").some(([fixed]) => fixed === v) ? v : Number(v)) });
  const input = mountImageInput(model, root, setStatus);
  const strip = mountLayerStrip(model);
  const views = VIEWS.map((view) => ({ ...view, part: view.mount(model) }));
  for (const view of views) addPanelFigureButton(view.part.el, view.name); // figure.js: PNG at 2x for slides
  const placed = (place) => views.filter((v) => v.place === place);
  const pages = Object.fromEntries(placed("tab").map((v) => [v.name, h("div", { class: "cnnw-tab-page", "data-tab": v.name }, v.part.el)]));
  const tabs = mountTabs(model, pages);

  const cancelAll = mountCancelAll(model); // progress.js: stops the slow panels (saliency, tree, occlusion)
  const bar = h("div", { class: "cnnw-bar" }, input.el, h("label", { class: "cnnw-explain" }, "explain", target.el), statusEl, cancelAll.el,
    figureButton("explorer", () => root, { title: "save the whole Explorer as a PNG at 2× (for slides)" }));
  const topRow = h("div", { class: "cnnw-row cnnw-top-row" }, ...placed("top").map((v) => v.part.el));
  const tabbed = h("div", { class: "cnnw-tabbed" }, tabs.el, ...Object.values(pages));
  const mainRow = h("div", { class: "cnnw-row cnnw-main-row", style: "grid-template-columns: 1fr" }, ...placed("main").map((v) => v.part.el), tabbed);
  root.append(bar, errorEl, topRow, strip.el, mainRow);
  el.replaceChildren(style, root);
  // full / compact / presentation and the light / dark theme, for the host page (arrange.js)
  const arrangement = mountArrangement(model, root, el, { bar, topRow, mainRow, tabbed, tabs, views });
  // a static export (static_model.js): note, kernel-backed controls disabled; the shim decides, not the page
  const offStatic = isStatic(model) ? markStatic(root, model, bar) : () => {};

  const offStatus = listen(model, ["status", "error", "result_seq", "request_seq", "working", "choices", "progress"], () => {
    if (model.get("status") === "busy" || model.get("result_seq") >= model.get("request_seq")) localStatus = null;
    updateStatus();
  });
  updateStatus();
  requestAnimationFrame(() => strip.select());

  // width-dependent canvases measure their own panel after layout and redraw on resize (each
  // part's cleanup disconnects its observer)
  return () => {
    offStatus();
    offStatic();
    for (const part of [arrangement, input, strip, tabs, target, cancelAll, ...views.map((v) => v.part)]) part.cleanup();
    el.replaceChildren();
  };
}

// staticModel: the model shim a static export (cw.export_html) renders with; anywidget reads only `render`
export default { render, staticModel };
