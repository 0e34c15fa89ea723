// The Atlas tab (Carter et al. 2019): the activation atlas of the selected layer over the scan's
// images, built by the kernel on request. Hover a cell: its count and top dataset patches; click:
// visualise the cell's direction (the Visualise tab opens); the class filter keeps the cells that
// most raise a class (the class activation atlas).
import { decodeArray } from "../buffers.js";
import { commit } from "../actions.js";
import { h, listen, paint, setOptions } from "../dom.js";
import { choiceSelect, rangeSlider } from "../controls.js";
import { rgbToRgba } from "../curve.js";

/** The cell [row, col] under canvas pixel (x, y) of a grid of `cell`-pixel cells, or null. */
export function cellAt(info, x, y) {
  const size = info.cell || 1, row = Math.floor(y / size), col = Math.floor(x / size);
  const found = (info.cells || []).find(([r, c]) => r === row && c === col);
  return found ? [row, col, found[2]] : null;
}

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-atlas", width: 1, height: 1, "data-version": "0", style: "cursor:pointer;max-width:100%" });
  const patches = h("canvas", { class: "cnnw-atlas-patches", width: 1, height: 1 });
  const hoverText = h("div", { class: "cnnw-caption" });
  const build = h("button", { type: "button", class: "cnnw-atlas-build", text: "Build atlas" });
  const grid = rangeSlider(model, "atlas_grid", { kernel: false, showValue: true, onInput: () => {}, title: "grid" });
  grid.el.firstChild.textContent = "grid";
  const icons = choiceSelect(model, "atlas_icons", { kernel: false, title: "how each cell is drawn" });
  const filter = h("select", { "data-trait": "atlas_class", title: "class activation atlas: the cells that most raise this class" });
  filter.addEventListener("change", () => commit(model, { atlas_class: Number(filter.value) }, { kernel: false }));
  const caption = h("div", { class: "cnnw-caption" });
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Activation atlas of the selected layer" }),
    h("div", { class: "cnnw-controls" }, build, grid.el, h("label", {}, "icons", icons.el), h("label", {}, "show", filter)),
    h("div", { style: "display:flex;gap:16px;align-items:flex-start;margin-top:8px" }, canvas,
      h("div", {}, hoverText, patches)), caption);
  let hovered = "";

  build.addEventListener("click", () => model.send({ type: "atlas", action: "build" }));
  const at = (event) => {
    const rect = canvas.getBoundingClientRect();
    const scale = canvas.width / (rect.width || 1);
    return cellAt(model.get("atlas_info") || {}, (event.clientX - rect.left) * scale, (event.clientY - rect.top) * scale);
  };
  canvas.addEventListener("mousemove", (event) => {
    const cell = at(event);
    const key = cell ? `${cell[0]},${cell[1]}` : "";
    if (key === hovered) return;
    hovered = key;
    if (cell) { hoverText.textContent = `cell (${cell[0]}, ${cell[1]}): ${cell[2]} samples`; model.send({ type: "atlas", action: "hover", row: cell[0], col: cell[1] }); }
  });
  canvas.addEventListener("click", (event) => {
    const cell = at(event);
    if (cell) model.send({ type: "atlas", action: "visualize", row: cell[0], col: cell[1] });
  });

  function draw() {
    const info = model.get("atlas_info") || {};
    setOptions(filter, info.classes || [[-1, "all cells"]], model.get("atlas_class"));
    const image = decodeArray(model.get("atlas_image"));
    if (image) {
      const [H, W] = image.shape;
      paint(canvas, rgbToRgba(image.array, H, W), W, H);
      canvas.style.display = "";
      canvas.style.width = `${Math.max(W, 384)}px`; // small grids enlarged (hover maps back through the css scale)
      const shown = (info.cells || []).length;
      caption.textContent = `${info.layer}: ${shown} cells of a ${info.grid}×${info.grid} grid` +
        (model.get("atlas_class") >= 0 ? " that most raise the class" : "") + " · hover a cell for its top patches, click to visualise its direction";
    } else {
      canvas.style.display = "none";
      caption.textContent = "Build the atlas of the selected layer over the scanned images (one pass; icons from feature visualisation are slower).";
    }
  }
  function drawPatches() {
    const crops = decodeArray(model.get("atlas_patches"));
    const hover = model.get("atlas_hover") || {};
    if (hover.count != null) hoverText.textContent = `cell (${hover.row}, ${hover.col}): ${hover.count} samples; top patches:`;
    if (!crops) { paint(patches, new Uint8ClampedArray(0), 0, 0); return; }
    const [n, ph, pw] = crops.shape, cols = Math.min(3, n), rows = Math.ceil(n / cols), gap = 2;
    const W = cols * (pw + gap), H = rows * (ph + gap), rgba = new Uint8ClampedArray(W * H * 4).fill(255);
    for (let i = 0; i < n; i++) {
      const ox = (i % cols) * (pw + gap), oy = Math.floor(i / cols) * (ph + gap);
      for (let y = 0; y < ph; y++) for (let x = 0; x < pw; x++) {
        const s = ((i * ph + y) * pw + x) * 3, d = ((oy + y) * W + ox + x) * 4;
        rgba[d] = crops.array[s]; rgba[d + 1] = crops.array[s + 1]; rgba[d + 2] = crops.array[s + 2];
      }
    }
    paint(patches, rgba, W, H);
  }
  const off = listen(model, ["atlas_image", "atlas_info", "atlas_class"], draw);
  const offPatches = listen(model, ["atlas_patches", "atlas_hover"], drawPatches);
  draw(); drawPatches();
  return { el, cleanup() { off(); offPatches(); grid.cleanup(); icons.cleanup(); } };
}

export default { name: "atlas", place: "tab", mount };
