// The contribution tree: the root unit, its best children as thumbnails with scores; clicking a
// child expands it (the kernel computes the path-conditioned children), "up" goes back a level.
// Each thumbnail is the node picture cropped (in the kernel) to where its energy is; hovering it
// shows the whole picture with that crop box drawn. A new level arrives twice: first its children's
// scores (tree.pending, pictures -1: drawn as empty placeholders), then the level with its pictures.
import { decodeArray } from "../buffers.js";
import { h, listen, paint, fmt } from "../dom.js";
import { commit } from "../actions.js";
import { labelOf } from "../choices.js";
import { choiceSelect } from "../controls.js";
import { panelProgress } from "../progress.js";
import { sanityVerdict, verdictValue } from "./saliency.js";

const PREVIEW = 240; // CSS px of the enlarged whole picture

function rgbToRgba(src) {
  const rgba = new Uint8ClampedArray((src.length / 3) * 4);
  for (let i = 0, o = 0; i < src.length; i += 3, o += 4) { rgba[o] = src[i]; rgba[o + 1] = src[i + 1]; rgba[o + 2] = src[i + 2]; rgba[o + 3] = 255; }
  return rgba;
}

/** Picture `index` of a [N, h, w, 3] stack as RGBA, or null. */
function pictureOf(stack, index) {
  if (!stack || index < 0 || index >= stack.shape[0]) return null;
  const [, ph, pw] = stack.shape;
  const plane = ph * pw * 3;
  return { rgba: rgbToRgba(stack.array.subarray(index * plane, (index + 1) * plane)), width: pw, height: ph };
}

/** A node's identity across redraws (a tree has each unit at most once per path). */
export const nodeKey = (node) => `${node.layer}[${node.channel}]`;

/** The crop box of a node in preview pixels: [x, y, w, h] (box is top, left, bottom, right of a size[0] x size[1] picture). */
export function previewBox(box, size, side) {
  const [top, left, bottom, right] = box;
  const [ph, pw] = size;
  return [(left * side) / pw, (top * side) / ph, ((right - left) * side) / pw, ((bottom - top) * side) / ph];
}

/**
 * What the scores of `node`'s children add up to (the caption under the tree). With relevance (LRP:
 * concept relevance propagation) every channel of the layer below together holds the node's
 * relevance up to the leak of biases and stabilisers; Cogswell's gradient scores are no decomposition.
 */
export function sumsText(tree, node) {
  const children = node.children || [];
  if (!children.length || node.children_total == null) return "";
  const shown = children.reduce((sum, c) => sum + c.score, 0);
  const share = (v) => (node.score ? ` (${fmt((100 * v) / node.score)}%)` : "");
  if (tree.rule !== "lrp") {
    return `the ${children.length} children shown score ${fmt(shown)}, all channels below ${fmt(node.children_total)}: `
      + `these scores are not a decomposition of ${node.label}'s ${fmt(node.score)} (choose relevance for scores that add up)`;
  }
  const leak = node.score - node.children_total;
  return `relevance adds up: all channels below ${node.label} hold ${fmt(node.children_total)} of its ${fmt(node.score)}`
    + ` (leak ${fmt(leak)}${share(leak)}, absorbed by biases and stabilisers); the ${children.length} shown hold ${fmt(shown)}${share(shown)}`;
}

function mount(model) {
  const up = h("button", { class: "cnnw-tree-up", type: "button", title: "back up one level", text: "▲ up" });
  const rootButton = h("button", { type: "button", class: "cnnw-tree-top", title: "back to the root", text: "⤒ root" });
  const heading = h("span");
  const body = h("div", { class: "cnnw-tree", "data-version": "0" });
  const previewCanvas = h("canvas", { class: "cnnw-tree-full", width: PREVIEW, height: PREVIEW });
  const previewText = h("div", { class: "cnnw-caption" });
  const preview = h("div", { class: "cnnw-tree-preview", hidden: true }, previewCanvas, previewText);
  const progress = panelProgress(model, "tree"); // the same bar and Cancel as occlusion
  // the scores' rule; with relevance (LRP, CRP) also the composite of LRP rules
  const rule = choiceSelect(model, "rule", { title: "how the scores are computed: Cogswell's gradient rules, or relevance that adds up (LRP)" });
  const composite = choiceSelect(model, "composite", { title: "LRP composite: which rule each kind of layer uses" });
  const showComposite = () => { composite.el.hidden = model.get("rule") !== "lrp"; };
  const offRule = listen(model, ["rule"], showComposite);
  showComposite();
  const sums = h("div", { class: "cnnw-caption cnnw-tree-sums" });
  const el = h("div", { class: "cnnw-panel cnnw-tree-panel" }, h("h3", { text: "Contribution tree (which features below made this one fire)" }),
    h("div", { class: "cnnw-controls cnnw-tree-controls" }, h("label", {}, "scores", rule.el), composite.el),
    h("div", { class: "cnnw-tree-head" }, up, rootButton, heading, h("span", { class: "cnnw-tree-hint", text: "pictures cropped to where they are strong; hover one for the whole picture" })),
    progress.el, body, sums, preview);

  const setPath = (path) => commit(model, { tree_path: path });
  up.addEventListener("click", () => setPath(model.get("tree_path").slice(0, -1)));
  rootButton.addEventListener("click", () => setPath([]));

  let full = null; // decoded tree_full
  // A click expands (or folds) a node: the redrawn tree puts a new thumbnail under the still pointer,
  // whose preview would cover the children just opened. No preview for that node until the pointer
  // leaves its thumbnail or enters another node's.
  let quiet = null; // nodeKey of the node clicked last, or null

  function showPreview(node, anchor) {
    if (quiet === nodeKey(node)) return;
    quiet = null;
    const picture = pictureOf(full, node.picture);
    if (!picture) return;
    const source = h("canvas", { width: picture.width, height: picture.height });
    source.getContext("2d").putImageData(new ImageData(picture.rgba, picture.width, picture.height), 0, 0);
    const ctx = previewCanvas.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.clearRect(0, 0, PREVIEW, PREVIEW);
    ctx.drawImage(source, 0, 0, PREVIEW, PREVIEW);
    if (node.box && node.size) {
      const [x, y, w, hh] = previewBox(node.box, node.size, PREVIEW);
      ctx.lineWidth = 3; ctx.strokeStyle = "rgba(255,255,255,0.9)"; ctx.strokeRect(x + 1.5, y + 1.5, w - 3, hh - 3);
      ctx.lineWidth = 2; ctx.strokeStyle = "#ff8c00"; ctx.strokeRect(x + 1, y + 1, w - 2, hh - 2);
    }
    previewText.textContent = `${node.label}: the whole picture; the box is the crop shown in the tree`;
    // beside the thumbnail, inside the panel (right of it when there is room, else left)
    const panel = el.getBoundingClientRect(), at = anchor.getBoundingClientRect();
    const boxWidth = PREVIEW + 14;
    let left = at.right - panel.left + 8;
    if (left + boxWidth > panel.width) left = Math.max(4, at.left - panel.left - boxWidth - 8);
    const top = Math.max(4, Math.min(at.top - panel.top, panel.height - PREVIEW - 48));
    preview.style.left = `${left}px`; preview.style.top = `${top}px`;
    preview.hidden = false;
  }
  const hidePreview = () => { preview.hidden = true; };
  const clicked = (node) => { quiet = nodeKey(node); hidePreview(); };

  function thumb(pictures, node) {
    const canvas = h("canvas", { class: "cnnw-tree-picture", width: 1, height: 1 });
    const picture = pictureOf(pictures, node.picture);
    if (picture) paint(canvas, picture.rgba, picture.width, picture.height);
    else { canvas.classList.add("cnnw-tree-pending"); canvas.title = "picture being computed"; return canvas; }
    canvas.addEventListener("mouseenter", () => showPreview(node, canvas));
    canvas.addEventListener("mouseleave", () => {
      hidePreview();
      if (canvas.isConnected && quiet === nodeKey(node)) quiet = null; // the pointer really left (not a redraw)
    });
    return canvas;
  }

  let relevance = false; // the shown tree's scores are relevance (rule "lrp")

  function nodeEl(node, pictures, depth, expanded) {
    const children = h("div", { class: "cnnw-tree-children" });
    const el = h("div", { class: `cnnw-tree-node${expanded ? " expanded" : ""}`, "data-layer": node.layer, "data-channel": String(node.channel),
      "data-depth": String(depth), title: `${node.label}: contribution ${node.score}${depth > 0 ? (expanded ? " (click to fold)" : " (click to expand)") : ""}` },
    h("div", { class: "cnnw-tree-card" }, thumb(pictures, node),
      h("div", { class: "cnnw-tree-text" }, h("span", { class: "cnnw-tree-label", text: node.label }),
        h("span", { class: "cnnw-tree-score", text: depth === 0 ? `value ${fmt(node.score)}` : `${relevance ? "relevance" : "score"} ${fmt(node.score)}` }),
        node.children && !node.children.length && depth > 0 && expanded ? h("span", { class: "cnnw-tree-score", text: "first layer: no children" }) : null)),
    children);
    return { el, children };
  }

  function draw() {
    hidePreview();
    const tree = model.get("tree") || {};
    const levels = tree.levels || [];
    relevance = tree.rule === "lrp";
    sums.replaceChildren(...(levels.length ? [sumsText(tree, levels[levels.length - 1])] : []));
    const path = tree.path || [];
    const pictures = decodeArray(model.get("tree_pictures"));
    full = decodeArray(model.get("tree_full"));
    const rules = tree.composite ? ` (${labelOf(model, "composite", tree.composite)})` : "";
    heading.textContent = tree.target ? `for ${tree.target} · ${labelOf(model, "rule", tree.rule)}${rules}, ${labelOf(model, "reduce", tree.reduce)} · depth ${path.length}${tree.pending ? " · drawing pictures…" : ""}` : "";
    // the sanity verdict (Trust tab) on this model of the node pictures' method goes with them
    const verdict = tree.target ? sanityVerdict(model, { method: tree.pictures, model: tree.model }) : null;
    const method = labelOf(model, "method", tree.pictures);
    if (verdict) heading.append(h("span", { class: "cnnw-sanity", "data-fails": String(verdict.fails), title: `sanity check of ${method}, the node pictures' method (Trust tab)`,
      text: verdict.fails ? ` · ⚠ pictures (${method}) ${verdict.text}` : ` · pictures (${method}) passed the sanity check (${verdictValue(verdict)})` }));
    body.dataset.pending = tree.pending ? "1" : "0";
    up.disabled = path.length === 0;
    rootButton.disabled = path.length === 0;
    if (!levels.length) { body.replaceChildren(...(tree.note ? [h("div", { class: "cnnw-caption cnnw-tree-note", text: tree.note })] : [])); return; }
    // level i holds the node at path[:i]; its children are laid out inside it, the one on the path nested further
    const root = nodeEl(levels[0], pictures, 0, true);
    root.el.addEventListener("click", (e) => { if (e.target.closest(".cnnw-tree-node") === root.el) { clicked(levels[0]); setPath([]); } });
    let container = root.children;
    for (let i = 0; i < levels.length; i++) {
      const next = path[i];
      let nextContainer = null;
      for (const child of levels[i].children || []) {
        const onPath = next && child.layer === next[0] && child.channel === next[1];
        const item = nodeEl(onPath && levels[i + 1] ? { ...levels[i + 1], score: child.score, label: child.label } : child, pictures, i + 1, onPath);
        const prefix = path.slice(0, i);
        item.el.addEventListener("click", (e) => {
          if (e.target.closest(".cnnw-tree-node") !== item.el) return;
          e.stopPropagation();
          clicked(child);
          setPath(onPath ? prefix : [...prefix, [child.layer, child.channel]]);
        });
        container.append(item.el);
        if (onPath) nextContainer = item.children;
      }
      if (!nextContainer) break;
      container = nextContainer;
    }
    body.replaceChildren(root.el);
    body.dataset.version = String((Number(body.dataset.version) || 0) + 1);
  }
  const off = listen(model, ["tree", "tree_pictures", "tree_full", "trust_verdicts"], draw);
  draw();
  return { el, cleanup: () => { off(); offRule(); rule.cleanup(); composite.cleanup(); progress.cleanup(); } };
}

export default { name: "tree", place: "tab", mount };
