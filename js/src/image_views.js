// The image with its predictions, the saliency overlay and the occlusion heat map.
import { decodeArray } from "./buffers.js";
import { lut } from "./colormaps.js";
import { blendHeat } from "./pixels.js";
import { h, listen, paint, traitSelect, setOptions, fmt } from "./dom.js";
import { commit } from "./actions.js";

function imageOf(model) {
  const image = decodeArray(model.get("image_data"));
  return image ? { pixels: image.array, H: image.shape[0], W: image.shape[1] } : null;
}

/** A colour bar with short end labels on one line, and an optional title line above it (never wraps). */
function legend(name, left, right, titleText = "") {
  const c = h("canvas", { width: 256, height: 1 });
  const table = lut(name);
  const rgba = new Uint8ClampedArray(256 * 4);
  for (let v = 0; v < 256; v++) { rgba.set([table[3 * v], table[3 * v + 1], table[3 * v + 2], 255], 4 * v); }
  c.getContext("2d").putImageData(new ImageData(rgba, 256, 1), 0, 0);
  const bar = h("div", { class: "cnnw-legend" }, h("span", { text: left }), c, h("span", { text: right }));
  return titleText ? h("div", { class: "cnnw-legend-block" }, h("div", { class: "cnnw-legend-title", text: titleText }), bar) : bar;
}

export function mountPredictions(model) {
  const canvas = h("canvas", { class: "cnnw-image", width: 1, height: 1, "data-version": "0" });
  const top1 = h("div", { class: "cnnw-top1" });
  const list = h("div", { class: "cnnw-predictions", role: "list" });
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Image and top-5 predictions" }), canvas, top1, list);

  function draw() {
    const image = imageOf(model);
    if (image) paint(canvas, blendHeat(image.pixels, image.H, image.W, null, 0, 0, null, 0), image.W, image.H);
    const predictions = model.get("predictions") || [];
    const target = model.get("target");
    top1.textContent = predictions.length ? predictions[0].label : "";
    top1.title = "top-1 class";
    list.replaceChildren(...predictions.map((p) => {
      const row = h("button", { class: `cnnw-pred${target === p.index ? " selected" : ""}`, "data-index": String(p.index),
        title: `explain class ${p.index} (${p.label})`, role: "listitem" },
      h("span", { class: "cnnw-pred-label" }, h("span", { class: "cnnw-pred-fill", style: `width:${(100 * p.probability).toFixed(1)}%` }), p.label),
      h("span", { class: "cnnw-pred-value", text: `${(100 * p.probability).toFixed(1)}%` }));
      row.addEventListener("click", () => commit(model, { target: p.index }));
      return row;
    }));
  }
  const off = listen(model, ["image_data", "predictions", "target"], draw);
  draw();
  return { el, cleanup: off };
}

export function mountSaliency(model) {
  const canvas = h("canvas", { class: "cnnw-saliency", width: 1, height: 1, "data-version": "0" });
  const methodNames = { gradient: "gradient", deconvnet: "deconvnet", guided_backprop: "guided backprop",
    input_x_gradient: "input × gradient", smoothgrad: "SmoothGrad", integrated_gradients: "integrated gradients", grad_cam: "Grad-CAM" };
  const methodOptions = () => model.get("methods").map((m) => [m, methodNames[m] || m]);
  const method = traitSelect("method", methodOptions(), model.get("method"), (v) => commit(model, { method: v }));
  const opacity = h("input", { type: "range", "data-trait": "opacity", min: "0", max: "1", step: "0.05", value: String(model.get("opacity")), title: "overlay opacity" });
  opacity.addEventListener("input", () => { draw(Number(opacity.value)); });
  opacity.addEventListener("change", () => commit(model, { opacity: Number(opacity.value) }, { kernel: false }));
  const caption = h("div", { class: "cnnw-caption" });
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Saliency" }),
    h("div", { class: "cnnw-controls" }, method, h("label", {}, "opacity", opacity)), canvas, legend("inferno", "low", "high"), caption);

  function draw(alpha = model.get("opacity")) {
    const image = imageOf(model);
    const heat = decodeArray(model.get("saliency"));
    if (!image) return;
    const [hh, hw] = heat ? heat.shape : [0, 0];
    paint(canvas, blendHeat(image.pixels, image.H, image.W, heat && heat.array, hh, hw, lut("inferno"), alpha, (v) => Math.sqrt(v / 255)), image.W, image.H);
    const info = model.get("saliency_info") || {};
    caption.textContent = info.target ? `${methodNames[info.method] || info.method} for ${info.target}` : "";
  }
  const off = listen(model, ["saliency", "saliency_info", "image_data"], () => draw());
  const offState = listen(model, ["opacity", "method"], () => {
    opacity.value = String(model.get("opacity"));
    setOptions(method, methodOptions(), model.get("method"));
    draw();
  });
  draw();
  return { el, cleanup() { off(); offState(); } };
}

export function mountOcclusion(model) {
  const canvas = h("canvas", { class: "cnnw-occlusion", width: 1, height: 1, "data-version": "0" });
  const slider = (trait, min, max, step) => {
    const input = h("input", { type: "range", "data-trait": trait, min: String(min), max: String(max), step: String(step), value: String(model.get(trait)) });
    const value = h("span", { text: String(model.get(trait)), style: "min-width:2.2em;display:inline-block;text-align:right" });
    let timer = null;
    const send = () => { clearTimeout(timer); timer = null; if (Number(input.value) !== model.get(trait)) commit(model, { [trait]: Number(input.value) }); };
    // a drag sends at most one update per 120 ms; the kernel computes only the newest anyway
    input.addEventListener("input", () => { value.textContent = input.value; if (!timer) timer = setTimeout(send, 120); });
    input.addEventListener("change", send);
    return { input, value, label: h("label", {}, trait, input, value), cancel: () => clearTimeout(timer) };
  };
  const windowSlider = slider("window", 8, 224, 4);
  const strideSlider = slider("stride", 8, 112, 4);
  const fill = traitSelect("fill", model.get("fills").map((f) => [f, `fill: ${f}`]), model.get("fill"), (v) => commit(model, { fill: v }));
  const caption = h("div", { class: "cnnw-caption" });
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Occlusion" }),
    h("div", { class: "cnnw-controls" }, windowSlider.label, strideSlider.label, fill), canvas,
    legend("coolwarm", "rises", "falls", "score when that square is hidden:"), caption);

  function draw() {
    const image = imageOf(model);
    const heat = decodeArray(model.get("occlusion"));
    if (!image) return;
    const [hh, hw] = heat ? heat.shape : [0, 0];
    const rgba = blendHeat(image.pixels, image.H, image.W, heat && heat.array, hh, hw, lut("coolwarm"), 1,
      (v) => 0.2 + 0.65 * Math.abs(v - 128) / 127);
    paint(canvas, rgba, image.W, image.H);
    const info = model.get("occlusion_info") || {};
    caption.textContent = info.target ? `drop of ${info.target} when a ${info.window}px square is filled with ${info.fill} (stride ${info.stride}); red = the score falls, largest ${fmt(info.extent)}` : "";
  }
  const off = listen(model, ["occlusion", "occlusion_info", "image_data"], draw);
  const offState = listen(model, ["window", "stride", "fill"], () => {
    for (const [s, t] of [[windowSlider, "window"], [strideSlider, "stride"]]) { s.input.value = String(model.get(t)); s.value.textContent = String(model.get(t)); }
    setOptions(fill, model.get("fills").map((f) => [f, `fill: ${f}`]), model.get("fill"));
  });
  draw();
  return { el, cleanup() { off(); offState(); windowSlider.cancel(); strideSlider.cancel(); } };
}
