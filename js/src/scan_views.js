// Dataset-scan panels (shown once a scan is attached: explorer.scan = net.scan(images)):
// the selected unit's top images (receptive-field patches beside their reconstructions, Zeiler &
// Fergus fig. 2) and a scatter of the scanned images at the selected layer (click opens one).
import { decodeArray } from "./buffers.js";
import { h, listen, paint, traitSelect, setOptions, fmt, onWidth } from "./dom.js";
import { commit } from "./actions.js";
import { topGrid, fitInside, scatterLayout, placePoints, pointAt, scatterThumb, labelColor, atlasLayout } from "./scan_layout.js";

const RECONSTRUCTIONS = [["deconvnet", "deconvnet"], ["guided_backprop", "guided backprop"], ["gradient", "gradient"]];

function openScanImage(model, index) {
  model.send({ type: "scan_image", index });
}

/** RGBA of picture i of a zero-padded [N, H, W, 3] stack, cropped to its own h x w. */
function cropRgba(stack, i, h0, w0) {
  const [, H, W] = stack.shape;
  const rgba = new Uint8ClampedArray(h0 * w0 * 4);
  const base = i * H * W * 3;
  for (let y = 0; y < h0; y++) {
    let s = base + y * W * 3, o = y * w0 * 4;
    for (let x = 0; x < w0; x++, s += 3, o += 4) {
      rgba[o] = stack.array[s]; rgba[o + 1] = stack.array[s + 1]; rgba[o + 2] = stack.array[s + 2]; rgba[o + 3] = 255;
    }
  }
  return rgba;
}

function scanned(model) {
  const info = model.get("scan_info") || {};
  return Object.keys(info).length > 0;
}

// ------------------------------------------------------------------------------------------ top images
export function mountTopImages(model) {
  const title = h("h3", { text: "Top images" });
  const method = traitSelect("reconstruction", RECONSTRUCTIONS, model.get("reconstruction"), (v) => commit(model, { reconstruction: v }));
  const patches = h("div", { class: "cnnw-top-grid cnnw-top-patches" });
  const reconstructions = h("div", { class: "cnnw-top-grid cnnw-top-reconstructions" });
  const patchHead = h("div", { class: "cnnw-top-head", text: "receptive-field patches" });
  const recHead = h("div", { class: "cnnw-top-head" });
  const grids = h("div", { class: "cnnw-top-grids" },
    h("div", { class: "cnnw-top-side" }, patchHead, patches), h("div", { class: "cnnw-top-side" }, recHead, reconstructions));
  const message = h("div", { class: "cnnw-scan-message", role: "note" });
  const caption = h("div", { class: "cnnw-caption" });
  const el = h("div", { class: "cnnw-panel cnnw-top-images", hidden: true }, title,
    h("div", { class: "cnnw-controls" }, h("label", {}, "reconstruction", method)), message, grids, caption);
  let width = 0;

  function highlight(rank, on) {
    for (const grid of [patches, reconstructions]) {
      const item = grid.children[rank];
      if (item) item.classList.toggle("hot", on);
    }
  }

  function figure(kind, rank, item, stack, layout, label) {
    const canvas = h("canvas", { width: 1, height: 1 });
    if (stack) {
      paint(canvas, cropRgba(stack, rank, item.height, item.width), item.width, item.height);
      const [cw, ch] = fitInside(item.width, item.height, layout.cell);
      canvas.style.width = `${cw}px`; canvas.style.height = `${ch}px`;
      // enlarge small patches pixel by pixel, shrink large ones smoothly
      canvas.style.imageRendering = cw >= item.width ? "pixelated" : "auto";
    }
    const attrs = kind === "patch"
      ? { class: "cnnw-top-patch", "data-index": String(item.index), "data-value": String(item.value), "data-rank": String(rank) }
      : { class: "cnnw-top-reconstruction", "data-index": String(item.index), "data-rank": String(rank) };
    const box = item.box ? ` · receptive field rows ${item.box[0]}–${item.box[2]}, columns ${item.box[1]}–${item.box[3]}` : "";
    const fig = h("figure", { ...attrs, style: `width:${layout.cell}px`,
      title: `image ${item.index}${item.label != null ? ` (${item.label})` : ""} · value ${item.value}${box} · click to open this image` },
    h("div", { class: "cnnw-top-cell", style: `height:${layout.cell}px` }, canvas),
    h("figcaption", { text: label }));
    fig.addEventListener("mouseenter", () => highlight(rank, true));
    fig.addEventListener("mouseleave", () => highlight(rank, false));
    fig.addEventListener("click", () => openScanImage(model, item.index));
    return fig;
  }

  function draw() {
    const visible = scanned(model);
    el.hidden = !visible;
    if (!visible) { delete el.dataset.unit; patches.replaceChildren(); reconstructions.replaceChildren(); return; }
    const info = model.get("top_info") || {};
    const scanInfo = model.get("scan_info") || {};
    const items = info.items || [];
    const current = `${model.get("layer")}:${model.get("channel")}`;
    el.classList.toggle("cnnw-stale", info.unit !== current);
    if (info.unit) el.dataset.unit = info.unit; else delete el.dataset.unit;
    const [layer, channel] = info.unit ? [info.layer, info.channel] : [model.get("layer"), model.get("channel")];
    title.textContent = `Top images of ${layer}[${channel}] over ${scanInfo.count ?? "?"} scanned images` +
      (items.length ? ` (best ${items.length}, best first)` : "");
    message.textContent = info.message || "";
    const crops = decodeArray(model.get("top_crops"));
    const recs = decodeArray(model.get("top_reconstructions"));
    const names = Object.fromEntries(RECONSTRUCTIONS);
    recHead.textContent = `${names[info.method] || info.method || ""} reconstructions`;
    const side = width ? Math.max(120, (Math.min(width, 900) - 24) / 2) : 400;
    const layout = topGrid(items.length, side);
    for (const grid of [patches, reconstructions]) grid.style.gridTemplateColumns = `repeat(${layout.cols}, ${layout.cell}px)`;
    patches.replaceChildren(...items.map((item, rank) => figure("patch", rank, item, crops, layout, `#${item.index} · ${fmt(item.value)}`)));
    reconstructions.replaceChildren(...(recs ? items.map((item, rank) => figure("reconstruction", rank, item, recs, layout, `#${item.index}`)) : []));
    grids.hidden = items.length === 0;
    caption.textContent = items.length
      ? "the unit's strongest images in the scan: the input patch its maximum sees (left) and what in it drives the unit (right, grey = 0); value = the unit's maximum on that image · click one to open that image"
      : "";
    el.dataset.version = String((Number(el.dataset.version) || 0) + 1);
  }

  const off = listen(model, ["top_info", "top_crops", "top_reconstructions", "scan_info"], draw);
  const offUnit = listen(model, ["layer", "channel"], () => {
    const info = model.get("top_info") || {};
    el.classList.toggle("cnnw-stale", !!info.unit && info.unit !== `${model.get("layer")}:${model.get("channel")}`);
  });
  const offMethod = listen(model, ["reconstruction"], () => setOptions(method, RECONSTRUCTIONS, model.get("reconstruction")));
  const offWidth = onWidth(el, (w) => { const before = width; width = w; if (Math.abs(w - before) > 8) draw(); });
  draw();
  return { el, cleanup() { off(); offUnit(); offMethod(); offWidth(); } };
}

// ------------------------------------------------------------------------------------------ embedding
export function mountEmbedding(model) {
  const title = h("h3", { text: "Scanned images" });
  const canvas = h("canvas", { class: "cnnw-embedding", width: 1, height: 1, "data-version": "0" });
  const hoverText = h("span", { class: "cnnw-embedding-hover", "data-placeholder": "hover an image to enlarge it, click to open it" });
  const legendEl = h("div", { class: "cnnw-label-legend" });
  const message = h("div", { class: "cnnw-scan-message", role: "note" });
  const caption = h("div", { class: "cnnw-caption" });
  const wrap = h("div", { class: "cnnw-embedding-wrap" }, canvas);
  const el = h("div", { class: "cnnw-panel cnnw-embedding-panel", hidden: true }, title,
    h("div", { class: "cnnw-controls" }, hoverText), message, wrap, legendEl, caption);

  let width = 0;
  let data = null; // {xy, count, labels, names, atlas, atlasLayout, step, t}
  let px = null; // point centres in canvas px
  let thumb = 24; // drawn thumbnail side
  let base = null; // the scatter without hover, to restore quickly
  let hovered = -1;

  function decode() {
    const info = model.get("scan_layer_info") || {};
    const xy = info.in_scan ? decodeArray(model.get("embedding")) : null;
    if (!xy) { data = null; return; }
    const labels = decodeArray(model.get("embedding_labels"));
    const thumbs = decodeArray(model.get("embedding_thumbs"));
    let atlas = null, sheet = null;
    if (thumbs) {
      const [m, t] = thumbs.shape;
      sheet = atlasLayout(m, t);
      atlas = h("canvas", { width: sheet.width, height: sheet.height });
      const ctx = atlas.getContext("2d");
      const plane = t * t * 3;
      for (let i = 0; i < m; i++) {
        const rgba = new Uint8ClampedArray(t * t * 4);
        const src = thumbs.array.subarray(i * plane, (i + 1) * plane);
        for (let s = 0, o = 0; s < plane; s += 3, o += 4) { rgba[o] = src[s]; rgba[o + 1] = src[s + 1]; rgba[o + 2] = src[s + 2]; rgba[o + 3] = 255; }
        ctx.putImageData(new ImageData(rgba, t, t), (i % sheet.cols) * t, Math.floor(i / sheet.cols) * t);
      }
    }
    data = { xy: xy.array, count: xy.shape[0], labels: labels && labels.array, names: info.label_names || [],
      atlas, sheet, step: info.thumb_step || 1, layer: info.layer };
  }

  function thumbOf(i) {
    if (!data.atlas || i % data.step) return null;
    const j = i / data.step;
    if (j >= data.sheet.cols * data.sheet.rows) return null;
    return [(j % data.sheet.cols) * data.sheet.t, Math.floor(j / data.sheet.cols) * data.sheet.t, data.sheet.t];
  }

  function drawItem(ctx, i, x, y, side, emphasis) {
    const code = data.labels ? data.labels[i] : -1;
    const src = thumbOf(i);
    const color = data.labels ? labelColor(code) : "#596173";
    if (src) {
      const border = emphasis ? 3 : data.labels ? 2 : 1;
      ctx.fillStyle = color;
      ctx.fillRect(Math.round(x - side / 2 - border), Math.round(y - side / 2 - border), side + 2 * border, side + 2 * border);
      ctx.drawImage(data.atlas, src[0], src[1], src[2], src[2], Math.round(x - side / 2), Math.round(y - side / 2), side, side);
    } else {
      ctx.fillStyle = color;
      ctx.beginPath(); ctx.arc(x, y, emphasis ? 6 : 3, 0, 2 * Math.PI); ctx.fill();
    }
  }

  function draw() {
    const visible = scanned(model);
    el.hidden = !visible;
    if (!visible) return;
    const info = model.get("scan_layer_info") || {};
    title.textContent = info.layer ? `Scanned images at ${info.layer} (PCA of their average-pooled codes)` : "Scanned images";
    message.textContent = info.message || "";
    wrap.hidden = !data;
    legendEl.replaceChildren(...(data && data.labels ? data.names.slice(0, 24).map((name, code) =>
      h("span", { class: "cnnw-label-chip" }, h("i", { style: `background:${labelColor(code)}` }), name)) : []));
    if (!data || !width) return;
    const w = Math.min(width, 900), hh = Math.max(220, Math.min(360, Math.round(w * 0.42)));
    thumb = scatterThumb(data.count, w, hh);
    const margin = Math.ceil(thumb / 2) + 9; // room for the label border and the current-image box
    px = placePoints(data.xy, data.count, scatterLayout(data.xy, data.count, w, hh, margin));
    canvas.width = w; canvas.height = hh; canvas.style.width = `${w}px`;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, hh);
    for (let i = 0; i < data.count; i++) drawItem(ctx, i, px[2 * i], px[2 * i + 1], thumb, false);
    const current = model.get("scan_index");
    if (current >= 0 && current < data.count) {
      ctx.strokeStyle = "#ff8c00"; ctx.lineWidth = 3;
      const x = px[2 * current], y = px[2 * current + 1], s = thumb + 10;
      ctx.strokeRect(x - s / 2, y - s / 2, s, s);
    }
    base = ctx.getImageData(0, 0, w, hh);
    Object.assign(canvas.dataset, { count: String(data.count), layer: data.layer || "", thumb: String(thumb) });
    canvas.dataset.version = String((Number(canvas.dataset.version) || 0) + 1);
    caption.textContent = `${data.count} images; nearby images have similar codes at this layer` +
      (data.labels ? "; colour = label" : "") + (data.step > 1 ? `; thumbnails for every ${data.step}th image, dots for the rest` : "") +
      (current >= 0 ? `; orange box = the image shown (#${current})` : "");
    if (hovered >= 0) drawHover();
  }

  function drawHover() {
    if (!base || !px) return;
    const ctx = canvas.getContext("2d");
    ctx.putImageData(base, 0, 0);
    if (hovered < 0) return;
    const big = Math.min(144, Math.max(3 * thumb, 96));
    // keep the enlarged picture inside the canvas
    const x = Math.min(Math.max(px[2 * hovered], big / 2 + 4), canvas.width - big / 2 - 4);
    const y = Math.min(Math.max(px[2 * hovered + 1], big / 2 + 4), canvas.height - big / 2 - 4);
    drawItem(ctx, hovered, x, y, thumbOf(hovered) ? big : 6, true);
  }

  function indexAt(event) {
    if (!px) return -1;
    const rect = canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) * canvas.width) / rect.width;
    const y = ((event.clientY - rect.top) * canvas.height) / rect.height;
    return pointAt(px, data.count, x, y, Math.max(8, thumb * 0.75));
  }
  function onMove(event) {
    const i = indexAt(event);
    if (i === hovered) return;
    hovered = i;
    if (i >= 0) {
      const code = data.labels ? data.labels[i] : -1;
      hoverText.textContent = `image ${i}${code >= 0 ? ` · ${data.names[code]}` : ""} · click to open it`;
    } else hoverText.textContent = "";
    canvas.style.cursor = i >= 0 ? "pointer" : "default";
    drawHover();
  }
  function onLeave() { hovered = -1; hoverText.textContent = ""; drawHover(); }
  function onClick(event) {
    const i = indexAt(event);
    if (i >= 0) openScanImage(model, i);
  }
  canvas.addEventListener("mousemove", onMove);
  canvas.addEventListener("mouseleave", onLeave);
  canvas.addEventListener("click", onClick);

  const off = listen(model, ["embedding", "embedding_labels", "embedding_thumbs", "scan_layer_info", "scan_info"], () => {
    decode(); hovered = -1; hoverText.textContent = ""; draw();
  });
  const offIndex = listen(model, ["scan_index"], draw);
  const offWidth = onWidth(el, (w) => { const before = width; width = w; if (Math.abs(w - before) > 8) draw(); });
  decode(); draw();
  return {
    el,
    cleanup() { off(); offIndex(); offWidth(); canvas.removeEventListener("mousemove", onMove);
      canvas.removeEventListener("mouseleave", onLeave); canvas.removeEventListener("click", onClick); },
  };
}
