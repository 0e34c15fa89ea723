// What the image views share: the image as decoded from `image_data`, and a colour-bar legend.
import { decodeArray } from "./buffers.js";
import { lut } from "./colormaps.js";
import { h } from "./dom.js";

/** The shown image as {pixels: uint8 [H, W, 3], H, W}, or null before the first one arrives. */
export function imageOf(model) {
  const image = decodeArray(model.get("image_data"));
  return image ? { pixels: image.array, H: image.shape[0], W: image.shape[1] } : null;
}

/** A colour bar with short end labels on one line, and an optional title line above it (never wraps). */
export function legend(name, left, right, titleText = "") {
  const c = h("canvas", { width: 256, height: 1 });
  const table = lut(name);
  const rgba = new Uint8ClampedArray(256 * 4);
  for (let v = 0; v < 256; v++) { rgba.set([table[3 * v], table[3 * v + 1], table[3 * v + 2], 255], 4 * v); }
  c.getContext("2d").putImageData(new ImageData(rgba, 256, 1), 0, 0);
  const bar = h("div", { class: "cnnw-legend" }, h("span", { text: left }), c, h("span", { text: right }));
  return titleText ? h("div", { class: "cnnw-legend-block" }, h("div", { class: "cnnw-legend-title", text: titleText }), bar) : bar;
}
