// The occlusion map over the image (Zeiler & Fergus): how the target's score changes when a square is hidden.
// Coarse to fine: the kernel's first pass already covers every pixel, then the map refines in place
// to the exact one (`data-stage` and the caption say which is shown). Pixels no window has reached
// yet (`occlusion_pending`) are drawn as a greyed image; a progress bar with Cancel sits above.
import { decodeArray } from "../buffers.js";
import { lut } from "../colormaps.js";
import { blendHeat } from "../pixels.js";
import { h, listen, paint, fmt } from "../dom.js";
import { choiceSelect, rangeSlider } from "../controls.js";
import { imageOf, legend } from "../picture.js";
import { panelProgress } from "../progress.js";

/** Grey out (in place) the RGBA pixels whose pending mask (uint8 [ph, pw], nearest) is 1. */
export function greyPending(rgba, H, W, pending, ph, pw) {
  if (!pending) return rgba;
  for (let y = 0; y < H; y++) {
    const row = Math.floor((y * ph) / H) * pw;
    for (let x = 0; x < W; x++) {
      if (!pending[row + Math.floor((x * pw) / W)]) continue;
      const o = (y * W + x) * 4;
      const grey = 0.299 * rgba[o] + 0.587 * rgba[o + 1] + 0.114 * rgba[o + 2];
      const v = 150 + 0.35 * grey; // light and flat: "not computed yet", never read as a colour of the map
      rgba[o] = v; rgba[o + 1] = v; rgba[o + 2] = v;
    }
  }
  return rgba;
}

/** What the map on screen is: "" (none), "partial" (grey pixels), "first" / "refining" (every pixel has a
 * value; more windows come), "exact", "approximate" (the fast mode's map). From the kernel's
 * `stage` (panels/occlusion.py STAGES); an older kernel's info is read from done / total. */
export function occlusionStage(info, pending) {
  if (!info || !info.target) return "";
  if (info.stage) return info.stage;
  if (pending || (info.total && info.done < info.total)) return "partial";
  return info.mode === "fast" ? "approximate" : "exact";
}

/** The caption: what the map shows, and how much of it is there. */
export function occlusionCaption(info, progress) {
  if (info && info.note) return info.note; // nothing to compute for this target, and why (not an error)
  if (!info || !info.target) return "";
  const stage = occlusionStage(info, null);
  const fast = info.mode === "fast";
  const what = `drop of ${info.target} when a ${info.window}px square is filled with ${info.fill} (stride ${info.stride})`
    + (fast ? "; fast: approximate, the windows not run are estimated from their neighbours" : "");
  const cancelled = progress && progress.state === "cancelled";
  if (stage === "partial") {
    return `${cancelled ? "cancelled, partial map" : "computing"}: ${info.done} of ${info.total} windows; grey = not computed yet; ${what}`;
  }
  if (stage === "first" || stage === "refining") {
    const state = cancelled ? "cancelled, coarse map" : `coarse, refining: ${info.done} of ${info.total} windows`;
    return `${state} (every pixel averages the windows done over it); ${what}`;
  }
  const kind = stage === "approximate" ? "approximate" : `exact${info.cached ? " (computed before)" : ""}`;
  return `${kind}: ${what}; red = the score falls, largest ${fmt(info.extent)}`;
}

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-occlusion", width: 1, height: 1, "data-version": "0" });
  const windowSlider = rangeSlider(model, "window");
  const strideSlider = rangeSlider(model, "stride");
  const fill = choiceSelect(model, "fill", { title: "what a hidden square is filled with" });
  const mode = choiceSelect(model, "occlusion_mode",
    { title: "exact: every window; fast: a coarse pass, then only the windows where it changes most (approximate)" });
  const progress = panelProgress(model, "occlusion");
  const caption = h("div", { class: "cnnw-caption" });
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Occlusion" }),
    h("div", { class: "cnnw-controls" }, windowSlider.el, strideSlider.el, h("label", {}, "fill", fill.el), h("label", {}, "mode", mode.el)), progress.el, canvas,
    legend("coolwarm", "rises", "falls", "score when that square is hidden:"), caption);

  function draw() {
    const image = imageOf(model);
    const heat = decodeArray(model.get("occlusion"));
    const pending = decodeArray(model.get("occlusion_pending"));
    if (!image) return;
    const [hh, hw] = heat ? heat.shape : [0, 0];
    const rgba = blendHeat(image.pixels, image.H, image.W, heat && heat.array, hh, hw, lut("coolwarm"), 1,
      (v) => 0.2 + 0.65 * Math.abs(v - 128) / 127);
    if (heat && pending) greyPending(rgba, image.H, image.W, pending.array, pending.shape[0], pending.shape[1]);
    paint(canvas, rgba, image.W, image.H);
    const info = model.get("occlusion_info") || {};
    canvas.dataset.done = String(info.done ?? "");
    canvas.dataset.total = String(info.total ?? "");
    canvas.dataset.partial = String(!!pending);
    canvas.dataset.stage = heat ? occlusionStage(info, pending) : "";
    caption.textContent = occlusionCaption(info, progress.info());
  }
  const off = listen(model, ["occlusion", "occlusion_info", "occlusion_pending", "image_data"], draw);
  const offCaption = listen(model, ["progress"], () => { caption.textContent = occlusionCaption(model.get("occlusion_info") || {}, progress.info()); });
  draw();
  return { el, cleanup() { off(); offCaption(); progress.cleanup(); windowSlider.cleanup(); strideSlider.cleanup(); fill.cleanup(); mode.cleanup(); } };
}

export default { name: "occlusion", place: "top", mount };
