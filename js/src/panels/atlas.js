// The Atlas tab (Carter et al. 2019): the activation atlas of the selected layer over the scan's
// images, built by the kernel on request. Wheel or pinch zooms about the cursor, drag pans,
// double-click or "fit" resets (the arithmetic is in ../atlas_view.js). Hover a cell: its count
// and top dataset patches; click: the cell's direction becomes what the Explorer explains
// (saliency of it on the image); shift-click or "visualise cell": feature visualisation of it in
// the Visualise tab. The class filter keeps the cells that most raise a class (class activation atlas).
import { decodeArray } from "../buffers.js";
import { commit } from "../actions.js";
import { h, listen, paint, setOptions } from "../dom.js";
import { choiceSelect, rangeSlider } from "../controls.js";
import { rgbToRgba } from "../curve.js";
import { panelProgress } from "../progress.js";
import { isStatic } from "../static_model.js";
import { cellAt, cellAtCanvas, clampView, eventToCanvas, fitView, panBy, toCanvas, wheelFactor, zoomAt, zoomLevel } from "../atlas_view.js";

export { cellAt };

const CANVAS = 384; // canvas pixels per side at least (small grids are enlarged, crisp)
const DRAG = 4; // pointer travel (canvas px) that makes a press a drag rather than a click
const DOUBLE_CLICK_MS = 300; // a click explains its cell only once no second click (a fit) followed

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-atlas", width: CANVAS, height: CANVAS, "data-version": "0", "data-zoom": "1",
    style: "cursor:crosshair;max-width:100%;touch-action:none;background:#fff;border:1px solid #ddd" });
  const source = document.createElement("canvas"); // the atlas picture at its own size
  const patches = h("canvas", { class: "cnnw-atlas-patches", width: 1, height: 1 });
  const hoverText = h("div", { class: "cnnw-caption cnnw-atlas-hover" });
  const build = h("button", { type: "button", class: "cnnw-atlas-build", text: "Build atlas" });
  const fit = h("button", { type: "button", class: "cnnw-atlas-fit", text: "fit", title: "show the whole atlas (or double-click it)" });
  const visualizeCell = h("button", { type: "button", class: "cnnw-atlas-visualize", text: "visualise cell",
    title: "feature visualisation of the explained cell's direction (or shift-click a cell)", disabled: true });
  const grid = rangeSlider(model, "atlas_grid", { kernel: false, needsKernel: true, showValue: true, onInput: () => {}, title: "grid" });
  grid.el.firstChild.textContent = "grid";
  const icons = choiceSelect(model, "atlas_icons", { kernel: false, needsKernel: true, title: "how each cell is drawn" });
  const filter = h("select", { "data-trait": "atlas_class", title: "class activation atlas: the cells that most raise this class" });
  filter.addEventListener("change", () => commit(model, { atlas_class: Number(filter.value) }, { kernel: false }));
  const caption = h("div", { class: "cnnw-caption" });
  const progress = panelProgress(model, "atlas"); // the build's progress, Cancel and "Compute again"
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Activation atlas of the selected layer" }),
    h("div", { class: "cnnw-controls" }, build, grid.el, h("label", {}, "icons", icons.el), h("label", {}, "show", filter),
      fit, visualizeCell), progress.el,
    h("div", { style: "display:flex;gap:16px;align-items:flex-start;margin-top:8px" }, canvas,
      h("div", {}, hoverText, patches)), caption);

  let view = fitView(1, 1, CANVAS, CANVAS);
  let imageSize = [0, 0];
  let hovered = null; // [row, col, count] under the pointer
  const pointers = new Map(); // pointerId -> [cx, cy] of the pointers down
  let press = null; // {x, y, moved} of the current press

  const info = () => model.get("atlas_info") || {};
  const point = (event) => eventToCanvas(canvas.getBoundingClientRect(), canvas.width, canvas.height, event.clientX, event.clientY);
  const setView = (next) => { view = clampView(next, imageSize[0], imageSize[1], canvas.width, canvas.height); render(); };

  function render() {
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!imageSize[0]) return;
    ctx.imageSmoothingEnabled = false; // cells stay crisp when enlarged
    ctx.setTransform(view.scale, 0, 0, view.scale, view.tx, view.ty);
    ctx.drawImage(source, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const size = info().cell || 1;
    const outline = (row, col, color, width) => {
      const [x, y] = toCanvas(view, col * size, row * size);
      ctx.strokeStyle = color; ctx.lineWidth = width;
      ctx.strokeRect(x + width / 2, y + width / 2, size * view.scale - width, size * view.scale - width);
    };
    const target = model.get("atlas_target") || {};
    if (target.layer === info().layer && target.row != null && model.get("target") === "atlas") outline(target.row, target.col, "#d62728", 3);
    if (hovered) outline(hovered[0], hovered[1], "#1f77b4", 2);
    canvas.dataset.zoom = zoomLevel(view).toFixed(3);
    canvas.dataset.view = JSON.stringify([view.scale, view.tx, view.ty]); // canvas = image * scale + t (tests read it)
    canvas.dataset.version = String((Number(canvas.dataset.version) || 0) + 1);
  }

  function hover(cell) {
    const key = cell ? `${cell[0]},${cell[1]}` : "";
    if (key === (hovered ? `${hovered[0]},${hovered[1]}` : "")) return;
    hovered = cell;
    render();
    if (cell) {
      hoverText.textContent = `cell (${cell[0]}, ${cell[1]}): ${cell[2]} samples; top patches:`; // the patches follow
      model.send({ type: "atlas", action: "hover", row: cell[0], col: cell[1] });
    }
  }

  build.addEventListener("click", () => model.send({ type: "recompute", panel: "atlas" }));
  fit.addEventListener("click", () => setView(fitView(imageSize[0], imageSize[1], canvas.width, canvas.height)));
  let pendingClick = null; // the explain of a click, sent unless a double-click (fit) follows
  canvas.addEventListener("dblclick", () => {
    clearTimeout(pendingClick);
    pendingClick = null;
    setView(fitView(imageSize[0], imageSize[1], canvas.width, canvas.height));
  });
  visualizeCell.addEventListener("click", () => {
    const target = model.get("atlas_target") || {};
    if (target.row != null) model.send({ type: "atlas", action: "visualize", row: target.row, col: target.col });
  });
  canvas.addEventListener("wheel", (event) => {
    if (!imageSize[0]) return;
    event.preventDefault(); // the page does not scroll while the atlas zooms
    const [cx, cy] = point(event);
    setView(zoomAt(view, cx, cy, wheelFactor(event.deltaY, event.deltaMode)));
  }, { passive: false });
  canvas.addEventListener("pointerdown", (event) => {
    pointers.set(event.pointerId, point(event));
    canvas.setPointerCapture?.(event.pointerId);
    const [x, y] = point(event);
    press = pointers.size === 1 ? { x, y, moved: false } : { x, y, moved: true }; // a second finger: pinch, no click
  });
  canvas.addEventListener("pointermove", (event) => {
    const now = point(event);
    const before = pointers.get(event.pointerId);
    if (!before) { hover(cellAtCanvas(info(), view, now[0], now[1])); return; }
    if (pointers.size === 2) { // pinch: zoom by the change of the fingers' distance about their midpoint
      const [other] = [...pointers.entries()].filter(([id]) => id !== event.pointerId).map(([, p]) => p);
      const d0 = Math.hypot(before[0] - other[0], before[1] - other[1]), d1 = Math.hypot(now[0] - other[0], now[1] - other[1]);
      if (d0 > 0) setView(zoomAt(view, (now[0] + other[0]) / 2, (now[1] + other[1]) / 2, d1 / d0));
    } else {
      if (press && Math.hypot(now[0] - press.x, now[1] - press.y) > DRAG) press.moved = true;
      if (press && press.moved) { setView(panBy(view, now[0] - before[0], now[1] - before[1])); canvas.style.cursor = "grabbing"; }
    }
    pointers.set(event.pointerId, now);
  });
  const release = (event) => {
    const wasPress = press && !press.moved && pointers.size === 1;
    pointers.delete(event.pointerId);
    canvas.style.cursor = "crosshair";
    if (event.type === "pointerup" && wasPress) {
      const [cx, cy] = point(event);
      const cell = cellAtCanvas(info(), view, cx, cy);
      if (cell && event.detail <= 1) {
        const message = { type: "atlas", action: event.shiftKey ? "visualize" : "explain", row: cell[0], col: cell[1] };
        clearTimeout(pendingClick);
        pendingClick = setTimeout(() => { pendingClick = null; model.send(message); }, DOUBLE_CLICK_MS);
      }
    }
    if (!pointers.size) press = null;
  };
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", release);
  canvas.addEventListener("pointerleave", () => { if (!pointers.size) { hovered = null; render(); } });

  function draw() {
    const atlasInfo = info();
    setOptions(filter, atlasInfo.classes || [[-1, "all cells"]], model.get("atlas_class"));
    const target = model.get("atlas_target") || {};
    visualizeCell.disabled = target.row == null || isStatic(model);
    const image = decodeArray(model.get("atlas_image"));
    if (image) {
      const [H, W] = image.shape;
      paint(source, rgbToRgba(image.array, H, W), W, H);
      const side = Math.max(W, H, CANVAS);
      if (canvas.width !== side) { canvas.width = side; canvas.height = side; }
      canvas.style.width = `${side}px`;
      if (imageSize[0] !== W || imageSize[1] !== H) { imageSize = [W, H]; view = fitView(W, H, side, side); }
      canvas.style.display = "";
      const shown = (atlasInfo.cells || []).length;
      caption.textContent = `${atlasInfo.layer}: ${shown} cells of a ${atlasInfo.grid}×${atlasInfo.grid} grid` +
        (model.get("atlas_class") >= 0 ? " that most raise the class" : "") +
        " · scroll or pinch to zoom, drag to pan, double-click to fit · hover a cell for its top patches · " +
        "click: explain its direction (saliency) · shift-click: visualise it";
      hovered = null;
      render();
    } else {
      imageSize = [0, 0];
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
  const offTarget = listen(model, ["atlas_target", "target"], () => {
    visualizeCell.disabled = (model.get("atlas_target") || {}).row == null || isStatic(model);
    render();
  });
  const offPatches = listen(model, ["atlas_patches", "atlas_hover"], drawPatches);
  draw(); drawPatches();
  return { el, cleanup() { off(); offTarget(); offPatches(); grid.cleanup(); icons.cleanup(); progress.cleanup(); clearTimeout(pendingClick); } };
}

export default { name: "atlas", place: "tab", mount };
