// The contribution tree: the root unit, its best children as thumbnails with scores; clicking a
// child expands it (the kernel computes the path-conditioned children), "up" goes back a level.
import { decodeArray } from "./buffers.js";
import { h, listen, paint, fmt } from "./dom.js";
import { commit } from "./actions.js";

export function mountTree(model) {
  const up = h("button", { class: "cnnw-tree-up", type: "button", title: "back up one level", text: "▲ up" });
  const rootButton = h("button", { type: "button", class: "cnnw-tree-top", title: "back to the root", text: "⤒ root" });
  const heading = h("span");
  const body = h("div", { class: "cnnw-tree", "data-version": "0" });
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Contribution tree (which features below made this one fire)" }),
    h("div", { class: "cnnw-tree-head" }, up, rootButton, heading), body);

  const setPath = (path) => commit(model, { tree_path: path });
  up.addEventListener("click", () => setPath(model.get("tree_path").slice(0, -1)));
  rootButton.addEventListener("click", () => setPath([]));

  function thumb(pictures, index) {
    const canvas = h("canvas", { class: "cnnw-tree-picture", width: 1, height: 1 });
    if (pictures && index >= 0 && index < pictures.shape[0]) {
      const [, ph, pw] = pictures.shape;
      const plane = ph * pw * 3;
      const src = pictures.array.subarray(index * plane, (index + 1) * plane);
      const rgba = new Uint8ClampedArray(ph * pw * 4);
      for (let i = 0, o = 0; i < plane; i += 3, o += 4) { rgba[o] = src[i]; rgba[o + 1] = src[i + 1]; rgba[o + 2] = src[i + 2]; rgba[o + 3] = 255; }
      paint(canvas, rgba, pw, ph);
    }
    return canvas;
  }

  function nodeEl(node, pictures, depth, expanded) {
    const children = h("div", { class: "cnnw-tree-children" });
    const el = h("div", { class: `cnnw-tree-node${expanded ? " expanded" : ""}`, "data-layer": node.layer, "data-channel": String(node.channel),
      "data-depth": String(depth), title: `${node.label}: contribution ${node.score}` },
    h("div", { class: "cnnw-tree-card" }, thumb(pictures, node.picture),
      h("div", { class: "cnnw-tree-text" }, h("span", { class: "cnnw-tree-label", text: node.label }),
        h("span", { class: "cnnw-tree-score", text: depth === 0 ? `value ${fmt(node.score)}` : `score ${fmt(node.score)}` }),
        node.children && !node.children.length && depth > 0 && expanded ? h("span", { class: "cnnw-tree-score", text: "first layer: no children" }) : null)),
    children);
    return { el, children };
  }

  function draw() {
    const tree = model.get("tree") || {};
    const levels = tree.levels || [];
    const path = tree.path || [];
    const pictures = decodeArray(model.get("tree_pictures"));
    heading.textContent = tree.target ? `for ${tree.target} · ${tree.rule} rule, ${tree.reduce} · depth ${path.length}` : "";
    up.disabled = path.length === 0;
    rootButton.disabled = path.length === 0;
    if (!levels.length) { body.replaceChildren(); return; }
    // level i holds the node at path[:i]; its children are laid out inside it, the one on the path nested further
    const root = nodeEl(levels[0], pictures, 0, true);
    root.el.addEventListener("click", (e) => { if (e.target.closest(".cnnw-tree-node") === root.el) setPath([]); });
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
  const off = listen(model, ["tree", "tree_pictures"], draw);
  draw();
  return { el, cleanup: off };
}
