// The selected unit's top images over an attached scan (explorer.scan = net.scan(images)): the
// receptive-field patches of its maxima beside their reconstructions (Zeiler & Fergus 2014, fig. 2).
import { decodeArray } from "../buffers.js";
import { sanityVerdict } from "./saliency.js";
import { h, listen, paint, fmt, onWidth } from "../dom.js";
import { openScanImage } from "../actions.js";
import { labelOf, scanned, unitText } from "../choices.js";
import { choiceSelect } from "../controls.js";
import { topGrid, fitInside } from "../scan_layout.js";

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

function mount(model) {
  const title = h("h3", { text: "Top images" });
  const method = choiceSelect(model, "reconstruction");
  // most activating / most relevant (a scan made with rank="relevance" keeps both rankings)
  const by = choiceSelect(model, "top_by", { title: "rank the images by the unit's activation, or by its relevance for the scan's class (CRP)" });
  const patches = h("div", { class: "cnnw-top-grid cnnw-top-patches" });
  const reconstructions = h("div", { class: "cnnw-top-grid cnnw-top-reconstructions" });
  const patchHead = h("div", { class: "cnnw-top-head", text: "receptive-field patches" });
  const recHead = h("div", { class: "cnnw-top-head" });
  const grids = h("div", { class: "cnnw-top-grids" },
    h("div", { class: "cnnw-top-side" }, patchHead, patches), h("div", { class: "cnnw-top-side" }, recHead, reconstructions));
  const message = h("div", { class: "cnnw-scan-message", role: "note" });
  const caption = h("div", { class: "cnnw-caption" });
  const el = h("div", { class: "cnnw-panel cnnw-top-images", hidden: true }, title,
    h("div", { class: "cnnw-controls" }, by.el, h("label", {}, "reconstruction", method.el)), message, grids, caption);
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
    const ranking = scanInfo.ranking || null;
    by.el.hidden = !ranking;
    const relevant = info.by === "relevance" && ranking;
    const current = unitText(model.get("layer"), model.get("channel"));
    el.classList.toggle("cnnw-stale", info.unit !== current);
    if (info.unit) el.dataset.unit = info.unit; else delete el.dataset.unit;
    const [layer, channel] = info.unit ? [info.layer, info.channel] : [model.get("layer"), model.get("channel")];
    title.textContent = `${relevant ? "Most relevant" : "Top"} images of ${unitText(layer, channel)}${relevant ? ` for ${ranking.label}` : ""} over ${scanInfo.count ?? "?"} scanned images` +
      (items.length ? ` (best ${items.length}, best first)` : "");
    message.textContent = info.message || "";
    const crops = decodeArray(model.get("top_crops"));
    const recs = decodeArray(model.get("top_reconstructions"));
    recHead.textContent = `${labelOf(model, "reconstruction", info.method)} reconstructions`;
    const side = width ? Math.max(120, (Math.min(width, 900) - 24) / 2) : 400;
    const layout = topGrid(items.length, side);
    for (const grid of [patches, reconstructions]) grid.style.gridTemplateColumns = `repeat(${layout.cols}, ${layout.cell}px)`;
    patches.replaceChildren(...items.map((item, rank) => figure("patch", rank, item, crops, layout, `#${item.index} · ${fmt(item.value)}`)));
    reconstructions.replaceChildren(...(recs ? items.map((item, rank) => figure("reconstruction", rank, item, recs, layout, `#${item.index}`)) : []));
    grids.hidden = items.length === 0;
    const verdict = sanityVerdict(model, { method: info.method, model: info.model });
    caption.replaceChildren(...(items.length
      ? [relevant
        ? `the images where this unit carries the most relevance for ${ranking.label} (relevance maximisation, CRP; LRP ${labelOf(model, "composite", ranking.composite)}): the patch where its relevance peaks, and the reconstructions; value = the unit's relevance for ${ranking.label} on that image · click one to open that image`
        : "the unit's strongest images in the scan: the input patch its maximum sees, and in the reconstructions what in it drives the unit (grey = 0); value = the unit's maximum on that image · click one to open that image",
        info.note && recs ? h("div", { class: "cnnw-top-note", text: info.note }) : null,
        verdict && recs ? h("div", { class: "cnnw-sanity", "data-fails": String(verdict.fails), title: "sanity check (Trust tab) on this model",
          text: `${labelOf(model, "reconstruction", info.method)} ${verdict.fails ? "⚠ " : "— sanity check passed: "}${verdict.text}` }) : null].filter(Boolean)
      : []));
    el.dataset.version = String((Number(el.dataset.version) || 0) + 1);
  }

  const off = listen(model, ["top_info", "top_crops", "top_reconstructions", "scan_info", "trust_verdicts"], draw);
  const offUnit = listen(model, ["layer", "channel"], () => {
    const info = model.get("top_info") || {};
    el.classList.toggle("cnnw-stale", !!info.unit && info.unit !== unitText(model.get("layer"), model.get("channel")));
  });
  const offWidth = onWidth(el, (w) => { const before = width; width = w; if (Math.abs(w - before) > 8) draw(); });
  draw();
  return { el, cleanup() { off(); offUnit(); method.cleanup(); by.cleanup(); offWidth(); } };
}

export default { name: "top_images", place: "tab", mount };

