// The scanned images at the selected layer (explorer.scan = net.scan(images)): a scatter of their
// codes' PCA, thumbnails coloured by label; hover enlarges one, a click opens it as the image.
import { decodeArray } from "../buffers.js";
import { h, listen, onWidth } from "../dom.js";
import { openScanImage } from "../actions.js";
import { scanned } from "../choices.js";
import { scatterLayout, placePoints, pointAt, scatterThumb, labelColor, atlasLayout } from "../scan_layout.js";

function mount(model) {
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

export default { name: "embedding", place: "tab", mount };
