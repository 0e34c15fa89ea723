// The Compare tab: the same image side by side three ways (panels/compare.py): the saliency maps of
// the chosen methods in one row, each with its sanity verdict (the Trust tab's); the image's probes
// with how the target's probability moved; and a second network (compare=other_net) beside this one:
// predictions, saliency, the selected layer's feature maps.
import { decodeArray } from "../buffers.js";
import { lut } from "../colormaps.js";
import { mapRgba } from "../pixels.js";
import { h, listenBatched, paint, fmt } from "../dom.js";
import { labelOf } from "../choices.js";
import { imageOf } from "../picture.js";
import { rgbToRgba } from "../curve.js";
import { saliencyRgba, sanityVerdict, verdictValue } from "./saliency.js";

const MAP = 168; // css pixels of a method's map
const PROBE = 112; // css pixels of a probe
const TILE = 36; // css pixels of a feature-map tile (two networks side by side fit a 700-pixel tab)

function overlay(image, heat, alpha, size, attrs = {}) {
  const canvas = h("canvas", { width: 1, height: 1, style: `width:${size}px;height:${size}px`, ...attrs });
  if (image && heat) paint(canvas, saliencyRgba(image, heat.array, heat.shape[0], heat.shape[1], alpha), image.W, image.H);
  return canvas;
}

function slice(stack, i) {
  const [, ...shape] = stack.shape;
  const n = shape.reduce((a, b) => a * b, 1);
  return { array: stack.array.subarray(i * n, (i + 1) * n), shape };
}

function tiles(stack, label) {
  if (!stack) return h("div", { class: "cnnw-caption", text: "" });
  const [n, th, tw] = stack.shape;
  const row = h("div", { class: "cnnw-compare-tiles", style: "display:flex;gap:3px;flex-wrap:wrap" });
  for (let i = 0; i < n; i++) {
    const canvas = h("canvas", { width: 1, height: 1, style: `width:${TILE}px;height:${TILE}px;image-rendering:pixelated`, "data-tile": String(i), title: label(i) });
    const { rgba, side } = mapRgba(slice(stack, i).array, th, tw, lut("viridis"));
    paint(canvas, rgba, side, side);
    row.append(canvas);
  }
  return row;
}

function mount(model) {
  const methodsRow = h("div", { class: "cnnw-compare-methods", style: "display:flex;gap:10px;flex-wrap:wrap" });
  const probesRow = h("div", { class: "cnnw-compare-probes", style: "display:flex;gap:8px;flex-wrap:wrap" });
  const probesTitle = h("h4", { class: "cnnw-compare-title" });
  const networks = h("div", { class: "cnnw-compare-networks", style: "display:flex;gap:24px;flex-wrap:wrap" });
  const networksTitle = h("h4", { class: "cnnw-compare-title", text: "Two networks on this image" });
  const caption = h("div", { class: "cnnw-caption" });
  const el = h("div", { class: "cnnw-panel cnnw-compare" }, h("h3", { text: "Side by side" }), caption,
    h("h4", { class: "cnnw-compare-title", text: "Methods (choose them in the Trust tab)" }), methodsRow,
    probesTitle, probesRow, networksTitle, networks);

  function drawMethods(info, image) {
    const stack = decodeArray(model.get("compare_maps"));
    methodsRow.replaceChildren(...(info.methods || []).map((method, i) => {
      const verdict = sanityVerdict(model, { method, model: info.model });
      const text = h("div", { class: "cnnw-caption", style: `max-width:${MAP}px` }, labelOf(model, "method", method),
        verdict ? h("span", { class: "cnnw-sanity", "data-fails": String(verdict.fails), title: verdict.text,
          text: verdict.fails ? ` ⚠ ${verdictValue(verdict)}` : ` ✓ ${verdictValue(verdict)}` }) : null);
      return h("figure", { style: "margin:0", "data-method": method },
        overlay(image, stack && i < stack.shape[0] ? slice(stack, i) : null, model.get("opacity"), MAP,
          { class: "cnnw-compare-map", "data-method": method }), text);
    }));
  }

  function drawProbes(info) {
    const stack = decodeArray(model.get("compare_probes"));
    const probes = info.probes || [];
    const original = probes.find((p) => p.kind === "original");
    probesTitle.textContent = original ? `Probes: does it still say ${info.target}?` : "Probes";
    if (!stack || !probes.length) { probesRow.replaceChildren(h("div", { class: "cnnw-caption", text: info.probe_note || "" })); return; }
    const [, H, W] = stack.shape;
    probesRow.replaceChildren(...probes.map((p, i) => {
      const canvas = h("canvas", { width: 1, height: 1, class: "cnnw-compare-probe", "data-kind": p.kind, style: `width:${PROBE}px;height:${PROBE}px` });
      paint(canvas, rgbToRgba(slice(stack, i).array, H, W), W, H);
      const change = p.kind === "original" ? "" : ` (${p.change >= 0 ? "+" : ""}${fmt(p.change)})`;
      return h("figure", { style: `margin:0;max-width:${PROBE}px`, "data-kind": p.kind }, canvas,
        h("div", { class: "cnnw-caption", "data-probability": String(p.probability) }, h("b", { text: p.kind }),
          h("br"), `p = ${fmt(p.probability)}${change}`, h("br"), `top: ${p.top} ${fmt(p.top_probability)}`));
    }));
  }

  function drawNetworks(info, image) {
    const other = info.other || {};
    networksTitle.hidden = networks.hidden = !other.name;
    if (!other.name) { networks.replaceChildren(); return; }
    const ours = (model.get("predictions") || []).map((p) => [p.label, p.probability]);
    const theirs = (other.predictions || []).map((p) => [p.label, p.probability]);
    const otherImage = decodeArray(model.get("compare_other_image"));
    const otherPicture = otherImage ? { pixels: otherImage.array, H: otherImage.shape[0], W: otherImage.shape[1] } : null;
    const heat = decodeArray(model.get("saliency")), otherHeat = decodeArray(model.get("compare_other_saliency"));
    const channels = other.channels || [];
    const column = (name, predictions, picture, map, fmaps, side) => h("div", { class: "cnnw-compare-network", "data-side": side, style: `max-width:${Math.max(MAP, 8 * (TILE + 3))}px` },
      h("b", { text: name }),
      h("ol", { class: "cnnw-compare-predictions", style: "margin:2px 0 6px;padding-left:20px;font-size:12px" },
        ...predictions.map(([label, p]) => h("li", { text: `${label} ${fmt(p)}` }))),
      overlay(picture, map, model.get("opacity"), MAP, { class: "cnnw-compare-saliency", "data-side": side }),
      h("div", { class: "cnnw-caption", text: map ? `${labelOf(model, "method", other.method)}` : other.note || "" }),
      other.layer ? h("div", { class: "cnnw-caption", text: `${other.layer}, channels ${channels[0]}–${channels[channels.length - 1]} (each network on its own scale)` }) : null,
      tiles(fmaps, (i) => `${other.layer}[${channels[i]}]`));
    networks.replaceChildren(
      column(model.get("layers") ? "this network" : "", ours, image, heat, decodeArray(model.get("compare_fmaps")), "this"),
      column(other.name || "the other network", theirs, otherPicture, otherHeat, decodeArray(model.get("compare_other_fmaps")), "other"));
    if (other.note) networks.append(h("div", { class: "cnnw-caption", text: other.note }));
  }

  function draw() {
    const info = model.get("compare_info") || {};
    const image = imageOf(model);
    caption.textContent = info.target ? `${info.target}` : "the maps, probes and a second network appear here when this tab is shown";
    if (!info.methods) { methodsRow.replaceChildren(); probesRow.replaceChildren(); networks.replaceChildren(); return; }
    drawMethods(info, image);
    drawProbes(info);
    drawNetworks(info, image);
  }
  const off = listenBatched(model, ["compare_info", "compare_maps", "compare_probes", "compare_fmaps", "compare_other_fmaps",
    "compare_other_image", "compare_other_saliency", "trust_verdicts", "image_data", "opacity", "saliency", "predictions"], draw);
  draw();
  return { el, cleanup() { off(); } };
}

export default { name: "compare", place: "tab", mount };
