// Puts the views where the layout wants them (frontend_layout.js picks the layout):
//   full          the row of image, saliency and occlusion; the layer strip; the feature maps; the tabs
//   compact       the layer strip, then one section at a time in the tab bar (image, saliency,
//                 occlusion, feature maps, then the kernel's tabs), each section scrolling inside the
//                 height the host leaves (marimo edit caps a cell's output at ~610 px)
//   presentation  the image and its predictions pinned beside one section at a time, large
// The elements are moved, never rebuilt: canvases keep their pixels and listeners.
import { h } from "./dom.js";
import { choiceSelect } from "./controls.js";
import { findHeightCap, followFrontEnd } from "./frontend_layout.js";

const PINNED = "predictions"; // beside every section in the presentation layout

/**
 * parts: {bar, topRow, mainRow, tabbed, tabs, views} of index.js (views: [{name, place, part: {el}}]).
 * Returns {el: the layout menu, cleanup}.
 */
export function mountArrangement(model, root, host, { bar, topRow, mainRow, tabbed, tabs, views }) {
  const menu = choiceSelect(model, "layout_mode", { kernel: false, title: "how the Explorer is laid out (compact: one section at a time; presentation: large, for a projector)" });
  menu.el.classList.add("cnnw-layout-menu");
  bar.append(menu.el);
  const top = views.filter((v) => v.place === "top"), main = views.filter((v) => v.place === "main");
  const stage = h("div", { class: "cnnw-stage" });
  const section = (v) => [v.name, ((model.get("choices") || {}).layout || {}).sections?.[v.name] || v.name, v.part.el];

  function place(layout) {
    const pinned = top.find((v) => v.name === PINNED);
    if (layout === "compact" || layout === "presentation") {
      const shown = layout === "presentation" ? [...top, ...main].filter((v) => v !== pinned) : [...top, ...main];
      topRow.replaceChildren();
      tabbed.replaceChildren(tabs.el, ...shown.map((v) => v.part.el), ...[...tabbed.children].filter((c) => c.classList.contains("cnnw-tab-page")));
      if (layout === "presentation" && pinned) { stage.replaceChildren(pinned.part.el, tabbed); mainRow.replaceChildren(stage); }
      else mainRow.replaceChildren(tabbed);
      tabs.setSections(shown.map(section), shown[0] ? shown[0].name : null);
    } else {
      const pages = [...tabbed.children].filter((c) => c.classList.contains("cnnw-tab-page"));
      tabs.setSections(null);
      topRow.replaceChildren(...top.map((v) => v.part.el));
      tabbed.replaceChildren(tabs.el, ...pages);
      mainRow.replaceChildren(...main.map((v) => v.part.el), tabbed);
    }
    fitHeight();
  }

  // compact in a height-capped host: each section scrolls inside what is left under the tab bar
  let fitFrame = 0;
  function fitHeight() {
    if (fitFrame) return;
    fitFrame = requestAnimationFrame(() => {
      fitFrame = 0;
      const found = root.dataset.layout === "compact" ? findHeightCap(host) : null;
      if (!found) { root.style.removeProperty("--cnnw-section-max"); return; }
      const box = found.element.getBoundingClientRect();
      const below = tabs.el.getBoundingClientRect().bottom - box.top + found.element.scrollTop;
      // what the root's padding and border and the host's own padding take under the section
      const room = Math.floor(found.height - below - 28);
      root.style.setProperty("--cnnw-section-max", `${Math.max(160, room)}px`);
    });
  }
  const resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(fitHeight);
  if (resize) resize.observe(tabs.el); // the tab bar wraps onto more lines when narrow
  const offFollow = followFrontEnd(model, root, host, place);
  return {
    el: menu.el,
    cleanup() { offFollow(); menu.cleanup(); if (resize) resize.disconnect(); if (fitFrame) cancelAnimationFrame(fitFrame); },
  };
}
