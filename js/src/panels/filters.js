// The filters (weights) of the selected layer: colour tiles for a first layer, signed maps otherwise.
import { decodeArray } from "../buffers.js";
import { lut } from "../colormaps.js";
import { filterLayout, renderFilterTiles } from "../pixels.js";
import { h, listen, paint, onWidth } from "../dom.js";

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-filters", width: 1, height: 1, "data-version": "0" });
  const caption = h("div", { class: "cnnw-caption" });
  const body = h("div", { class: "cnnw-filters-body" }, canvas);
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Filters of the selected layer" }), body, caption);
  let width = 0; // measured after layout

  function draw() {
    const info = model.get("filters_info") || {};
    caption.textContent = info.caption || "";
    const tiles = decodeArray(model.get("filters"));
    if (!tiles) { paint(canvas, new Uint8ClampedArray(0), 0, 0); canvas.style.display = "none"; return; }
    if (!width) return;
    canvas.style.display = "";
    const [n, th, tw] = tiles.shape;
    const rgb = tiles.shape.length === 4;
    const layout = filterLayout(n, th, tw, Math.min(width, 900), { maxHeight: 320, maxTile: 40 });
    paint(canvas, renderFilterTiles(tiles.array, n, th, tw, rgb, layout, lut("coolwarm")), layout.width, layout.height);
    canvas.style.width = `${layout.width}px`;
  }
  const off = listen(model, ["filters", "filters_info"], draw);
  const offWidth = onWidth(body, (w) => { width = w; draw(); });
  const fallback = setTimeout(() => { if (!width) { width = 860; draw(); } }, 1500);
  draw();
  return { el, cleanup() { off(); offWidth(); clearTimeout(fallback); } };
}

export default { name: "filters", place: "tab", mount };
