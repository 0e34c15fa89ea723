// The occlusion map over the image (Zeiler & Fergus): how the target's score changes when a square is hidden.
import { decodeArray } from "../buffers.js";
import { lut } from "../colormaps.js";
import { blendHeat } from "../pixels.js";
import { h, listen, paint, fmt } from "../dom.js";
import { choiceSelect, rangeSlider } from "../controls.js";
import { imageOf, legend } from "../picture.js";

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-occlusion", width: 1, height: 1, "data-version": "0" });
  const windowSlider = rangeSlider(model, "window");
  const strideSlider = rangeSlider(model, "stride");
  const fill = choiceSelect(model, "fill", { title: "what a hidden square is filled with" });
  const caption = h("div", { class: "cnnw-caption" });
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Occlusion" }),
    h("div", { class: "cnnw-controls" }, windowSlider.el, strideSlider.el, h("label", {}, "fill", fill.el)), canvas,
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
  draw();
  return { el, cleanup() { off(); windowSlider.cleanup(); strideSlider.cleanup(); fill.cleanup(); } };
}

export default { name: "occlusion", place: "top", mount };
