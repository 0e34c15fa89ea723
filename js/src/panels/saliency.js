// The saliency map over the image; the method menu is the engine's registry (from `choices`).
import { decodeArray } from "../buffers.js";
import { lut } from "../colormaps.js";
import { blendHeat } from "../pixels.js";
import { h, listen, paint, fmt } from "../dom.js";
import { commit } from "../actions.js";
import { labelOf } from "../choices.js";
import { choiceSelect, rangeSlider } from "../controls.js";
import { imageOf, legend } from "../picture.js";

/** The image with a saliency map (uint8 [hh, hw], or null) over it: inferno, alpha growing as the square root. */
export function saliencyRgba(image, heat, hh, hw, alpha) {
  return blendHeat(image.pixels, image.H, image.W, heat, hh, hw, lut("inferno"), alpha, (v) => Math.sqrt(v / 255));
}

/** A verdict's similarity in a caption: "flat" when the randomised map has no variation (no rank correlation). */
export function verdictValue(verdict) {
  return verdict.similarity == null ? "flat" : fmt(verdict.similarity);
}

/** The Trust tab's verdict on the shown map's method, when it was computed on the same model (else null). */
export function sanityVerdict(model, info) {
  const verdict = (model.get("trust_verdicts") || {})[info.method];
  return verdict && info.model && verdict.model === info.model ? verdict : null;
}

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-saliency", width: 1, height: 1, "data-version": "0" });
  const method = choiceSelect(model, "method");
  // LRP's composite of rules (engine.lrp_rules.COMPOSITES): offered while the method is LRP
  const composite = choiceSelect(model, "composite", { title: "LRP composite: which rule each kind of layer uses" });
  const showComposite = () => { composite.el.hidden = model.get("method") !== "lrp"; };
  const offMethod = listen(model, ["method"], showComposite);
  showComposite();
  const opacity = rangeSlider(model, "opacity", { kernel: false, onInput: (alpha) => draw(alpha), title: "overlay opacity" });
  const caption = h("div", { class: "cnnw-caption" });
  const compareButton = h("button", { type: "button", class: "cnnw-compare-open", text: "compare…", title: "every chosen method side by side, the image's probes and a second network (the Compare tab)" });
  compareButton.addEventListener("click", () => commit(model, { tab: "compare" }, { kernel: false })); // as the tab bar does
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Saliency" }),
    h("div", { class: "cnnw-controls" }, method.el, composite.el, opacity.el, compareButton), canvas, legend("inferno", "low", "high"), caption);

  function draw(alpha = model.get("opacity")) {
    const image = imageOf(model);
    const heat = decodeArray(model.get("saliency"));
    if (!image) return;
    const [hh, hw] = heat ? heat.shape : [0, 0];
    paint(canvas, saliencyRgba(image, heat && heat.array, hh, hw, alpha), image.W, image.H);
    const info = model.get("saliency_info") || {};
    const verdict = sanityVerdict(model, info);
    const rules = info.composite ? ` (${labelOf(model, "composite", info.composite)})` : "";
    caption.textContent = info.target ? `${labelOf(model, "method", info.method)}${rules} for ${info.target}` : "";
    caption.dataset.sanity = verdict ? (verdict.fails ? "fails" : "passes") : "";
    if (verdict) caption.append(h("span", { class: "cnnw-sanity", "data-fails": String(verdict.fails), title: `sanity check (Trust tab) on this model, ${labelOf(model, "image_name", verdict.image)} image`,
      text: verdict.fails ? ` — ⚠ ${verdict.text}` : ` — sanity check passed: ${verdict.text}` }));
  }
  const off = listen(model, ["saliency", "saliency_info", "image_data", "opacity", "trust_verdicts"], () => draw());
  draw();
  return { el, cleanup() { off(); offMethod(); method.cleanup(); composite.cleanup(); opacity.cleanup(); } };
}

export default { name: "saliency", place: "top", mount };
