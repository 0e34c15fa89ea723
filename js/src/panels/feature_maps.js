// The feature-map grid: every channel of the selected layer as a tile, coloured in the browser.
// Hover and click work on data already here (no kernel round trip); only `channel` goes back.
import { decodeArray } from "../buffers.js";
import { lut } from "../colormaps.js";
import { gridLayout, naturalTile, tileAt, tileOrigin } from "../layout.js";
import { renderTiles } from "../pixels.js";
import { h, listen, paint, fmt, onWidth } from "../dom.js";
import { commit } from "../actions.js";
import { choiceSelect } from "../controls.js";

const FALLBACK_WIDTH = 860; // used only when the view is never laid out (hidden); replaced once measured
const MAX_WIDTH = 900;

/** The grid for C maps of hh x ww in a panel `width` px wide (pure; the same numbers for a redraw). */
export function fmapLayout(C, hh, ww, width) {
  return gridLayout({ count: C, maxWidth: Math.min(width, MAX_WIDTH), maxHeight: 420, minTile: 10,
    maxTile: naturalTile(hh, ww, { minTile: 10, maxTile: 112 }), gap: 2 });
}

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-fmap", width: 1, height: 1, "data-version": "0" });
  const overlay = h("canvas", { class: "cnnw-fmap-overlay", width: 1, height: 1 });
  const hover = h("span", { class: "cnnw-hover", "data-placeholder": "hover a tile" });
  const scaling = choiceSelect(model, "scaling");
  const colormap = choiceSelect(model, "colormap", { kernel: false });
  const channelInput = h("input", { type: "number", class: "cnnw-channel", "data-trait": "channel", min: "0", step: "1",
    value: String(model.get("channel")), title: "selected channel" });
  channelInput.addEventListener("change", () => {
    const c = Number(channelInput.value);
    if (Number.isInteger(c) && c >= 0 && c < channelCount()) commit(model, { channel: c, target: "unit" });
    else channelInput.value = String(model.get("channel"));
  });
  const title = h("h3", { text: "Feature maps" });
  const caption = h("div", { class: "cnnw-caption" });
  const scroll = h("div", { class: "cnnw-fmap-scroll" }, h("div", { class: "cnnw-fmap-wrap" }, canvas, overlay));
  const el = h("div", { class: "cnnw-panel cnnw-fmap-panel" }, title,
    h("div", { class: "cnnw-controls" }, scaling.el, colormap.el, h("label", {}, "channel", channelInput), hover),
    scroll, caption);

  let data = null; // {maps, C, hh, ww, maxima, dead}
  let scanDead = null; // Uint8Array [C] from the attached scan (for this layer), or null
  let layout = null;
  let hovered = -1;
  let width = 0; // the grid's available width, measured after layout (0: not yet)

  function channelCount() { return data ? data.C : 0; }

  function decode() {
    const fmap = decodeArray(model.get("fmap"));
    if (!fmap) { data = null; return; }
    const [C, hh, ww] = fmap.shape;
    const maxima = decodeArray(model.get("fmap_max"));
    const dead = decodeArray(model.get("fmap_dead"));
    data = { maps: fmap.array, C, hh, ww, maxima: maxima && maxima.array, dead: dead && dead.array };
    decodeScanDead();
  }

  function decodeScanDead() {
    const info = model.get("scan_layer_info") || {};
    const dead = info.in_scan ? decodeArray(model.get("scan_dead")) : null;
    scanDead = dead && data && info.layer === (model.get("fmap_info") || {}).layer && dead.shape[0] === data.C ? dead.array : null;
  }

  function clearHover() {
    hovered = -1;
    hover.textContent = "";
  }

  function draw() {
    if (!data || !width) return; // not laid out yet: onWidth draws once the width is known
    const t0 = performance.now();
    const { C, hh, ww } = data;
    layout = fmapLayout(C, hh, ww, width);
    const name = model.get("colormap");
    const rgba = renderTiles(data.maps, C, hh, ww, layout, lut(name), [0, 0, 0, 0]); // gaps show the panel (light or dark theme)
    overlay.width = layout.width; overlay.height = layout.height;
    Object.assign(canvas.dataset, { channels: String(C), cols: String(layout.cols), tile: String(layout.tile),
      gap: String(layout.gap), colormap: name });
    canvas.style.width = `${layout.width}px`;
    drawOverlay();
    paint(canvas, rgba, layout.width, layout.height);
    canvas.dataset.drawMs = (performance.now() - t0).toFixed(1);
    const info = model.get("fmap_info") || {};
    const deadCount = data.dead ? data.dead.reduce((a, b) => a + b, 0) : 0;
    const scanDeadCount = scanDead ? scanDead.reduce((a, b) => a + b, 0) : 0;
    title.textContent = `Feature maps of ${info.layer ?? ""} (${C} channels, ${hh}×${ww})`;
    caption.textContent = `${info.lo == null ? "each tile stretched to its own range" : `shared scale ${fmt(info.lo)} … ${fmt(info.hi)}`}` +
      ` · ${deadCount} dead (all-zero) channel${deadCount === 1 ? "" : "s"} on this image crossed out in red` +
      (scanDead ? ` · ${scanDeadCount} dead over the scan greyed out` : "") + " · click a position to select the unit, double-click to look inside it";
  }

  function drawOverlay() {
    if (!layout) return;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    const { tile } = layout;
    if (data && scanDead) {
      // channels that (nearly) never fire over the scanned images: washed out, with a grey bar
      ctx.fillStyle = "rgba(236, 238, 242, 0.78)";
      for (let c = 0; c < data.C; c++) {
        if (!scanDead[c]) continue;
        const [x, y] = tileOrigin(layout, c);
        ctx.fillRect(x, y, tile, tile);
      }
      ctx.strokeStyle = "#7d8594"; ctx.lineWidth = Math.max(1, tile / 14);
      for (let c = 0; c < data.C; c++) {
        if (!scanDead[c]) continue;
        const [x, y] = tileOrigin(layout, c);
        ctx.beginPath(); ctx.moveTo(x + tile * 0.2, y + tile / 2); ctx.lineTo(x + tile * 0.8, y + tile / 2); ctx.stroke();
      }
    }
    if (data && data.dead) {
      ctx.strokeStyle = "#e0201b"; ctx.lineWidth = Math.max(1, tile / 12);
      for (let c = 0; c < data.C; c++) {
        if (!data.dead[c]) continue;
        const [x, y] = tileOrigin(layout, c);
        ctx.strokeRect(x + 0.5, y + 0.5, tile - 1, tile - 1);
        ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + tile, y + tile); ctx.moveTo(x + tile, y); ctx.lineTo(x, y + tile); ctx.stroke();
      }
    }
    const outline = (c, color, width) => {
      if (c < 0 || !data || c >= data.C) return;
      const [x, y] = tileOrigin(layout, c);
      ctx.strokeStyle = color; ctx.lineWidth = width;
      ctx.strokeRect(x - width / 2, y - width / 2, tile + width, tile + width);
    };
    outline(hovered, "#1d2330", 2);
    outline(model.get("channel"), "#ff8c00", 3);
  }

  function channelAtEvent(event) {
    if (!layout) return -1;
    const rect = canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) * canvas.width) / rect.width;
    const y = ((event.clientY - rect.top) * canvas.height) / rect.height;
    return tileAt(layout, Math.floor(x), Math.floor(y));
  }

  function onMove(event) {
    const c = channelAtEvent(event);
    if (c === hovered) return;
    hovered = c;
    if (c >= 0 && data) {
      const max = data.maxima ? data.maxima[c] : NaN;
      hover.textContent = `channel ${c} · max ${fmt(max)}${data.dead && data.dead[c] ? " · all zero here" : ""}` +
        `${scanDead && scanDead[c] ? " · dead over the scan" : ""}`;
    } else {
      hover.textContent = "";
    }
    drawOverlay();
  }
  function onLeave() { clearHover(); drawOverlay(); }
  /** [y, x] on the channel's map under the pointer ([] for a layer with one number per channel). */
  function positionAtEvent(event, c) {
    const info = (model.get("layers") || []).find((l) => l.name === (model.get("fmap_info") || {}).layer);
    if (!layout || !data || !info || info.shape.length !== 3) return [];
    const rect = canvas.getBoundingClientRect();
    const [x0, y0] = tileOrigin(layout, c);
    const px = ((event.clientX - rect.left) * canvas.width) / rect.width - x0, py = ((event.clientY - rect.top) * canvas.height) / rect.height - y0;
    const clamp = (v, n) => Math.min(n - 1, Math.max(0, Math.floor(v)));
    return [clamp((py * data.hh) / layout.tile, data.hh), clamp((px * data.ww) / layout.tile, data.ww)];
  }
  function onClick(event) {
    const c = channelAtEvent(event);
    if (c < 0) return;
    hovered = c;
    // the unit under the pointer: its channel and its position (the "Inside a unit" tab shows it; a double-click opens that tab)
    commit(model, { channel: c, target: "unit", unit_position: positionAtEvent(event, c) });
    channelInput.value = String(c);
    drawOverlay();
  }
  canvas.addEventListener("mousemove", onMove);
  canvas.addEventListener("mouseleave", onLeave);
  canvas.addEventListener("click", onClick);
  const onDoubleClick = (event) => { if (channelAtEvent(event) >= 0) commit(model, { tab: "unit" }); }; // look inside the unit (panels/unit.js)
  canvas.addEventListener("dblclick", onDoubleClick);

  // a new image or layer: the hovered text describes the old maps, so it goes
  const offData = listen(model, ["fmap", "fmap_max", "fmap_dead", "fmap_info"], () => { decode(); clearHover(); draw(); });
  const offScan = listen(model, ["scan_dead", "scan_layer_info"], () => { decodeScanDead(); draw(); });
  const offImage = listen(model, ["image_data"], clearHover);
  const offWidth = onWidth(scroll, (w) => {
    const before = layout;
    width = w;
    if (!data) return;
    const next = fmapLayout(data.C, data.hh, data.ww, w);
    if (!before || next.tile !== before.tile || next.cols !== before.cols) draw();
  });
  // a view that is never laid out (e.g. hidden) still gets a grid
  const fallback = setTimeout(() => { if (!width) { width = FALLBACK_WIDTH; draw(); } }, 1500);
  const offColor = listen(model, ["colormap"], draw);
  const offSel = listen(model, ["channel"], () => {
    channelInput.value = String(model.get("channel"));
    drawOverlay();
  });
  decode(); draw();

  return {
    el,
    cleanup() { offData(); offScan(); offImage(); offWidth(); clearTimeout(fallback); offColor(); offSel(); scaling.cleanup(); colormap.cleanup();
      canvas.removeEventListener("mousemove", onMove); canvas.removeEventListener("mouseleave", onLeave); canvas.removeEventListener("click", onClick); canvas.removeEventListener("dblclick", onDoubleClick); },
  };
}

export default { name: "feature_maps", place: "main", mount };
