// The filters (weights) of the selected layer: colour tiles for a first layer, signed maps otherwise.
import { decodeArray } from "./buffers.js";
import { lut } from "./colormaps.js";
import { filterLayout, renderFilterTiles } from "./pixels.js";
import { h, listen, paint } from "./dom.js";

export function mountFilters(model, widthOf) {
  const canvas = h("canvas", { class: "cnnw-filters", width: 1, height: 1, "data-version": "0" });
  const caption = h("div", { class: "cnnw-caption" });
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Filters of the selected layer" }), canvas, caption);

  function draw() {
    const info = model.get("filters_info") || {};
    caption.textContent = info.caption || "";
    const tiles = decodeArray(model.get("filters"));
    if (!tiles) { paint(canvas, new Uint8ClampedArray(0), 0, 0); canvas.style.display = "none"; return; }
    canvas.style.display = "";
    const [n, th, tw] = tiles.shape;
    const rgb = tiles.shape.length === 4;
    const layout = filterLayout(n, th, tw, Math.min(widthOf() - 16, 900), { maxHeight: 320, maxTile: 40 });
    paint(canvas, renderFilterTiles(tiles.array, n, th, tw, rgb, layout, lut("coolwarm")), layout.width, layout.height);
    canvas.style.width = `${layout.width}px`;
  }
  const off = listen(model, ["filters", "filters_info"], draw);
  draw();
  return { el, redraw: draw, cleanup: off };
}
