// Puts the views where the layout wants them (frontend_layout.js picks the layout):
//   full          the row of image, saliency and occlusion; the layer strip; the feature maps; the tabs
//   compact       the layer strip, then one section at a time in the tab bar (image, saliency,
//                 occlusion, feature maps, then the kernel's tabs), each section scrolling inside the
//                 height the host leaves (marimo edit caps a cell's output at ~610 px)
//   presentation  the image and its predictions pinned beside one section at a time, large, fitted to
//                 the screen: with the Explorer's top at the top of the view, the image with its
//                 predictions and the saliency and occlusion pictures show whole (fewer strip rows
//                 first, then smaller pictures; the tab bar keeps one row, the rest in its "more…" menu)
// The elements are moved, never rebuilt: canvases keep their pixels and listeners.
import { h } from "./dom.js";
import { choiceSelect } from "./controls.js";
import { findHeightCap, fitPresentation, followFrontEnd, scrollView } from "./frontend_layout.js";

const PINNED = "predictions"; // beside every section in the presentation layout
const ROOM_BELOW = 6; // px kept free under the lowest picture that must show (presentation)

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
  const pinned = top.find((v) => v.name === PINNED);
  const section = (v) => [v.name, ((model.get("choices") || {}).layout || {}).sections?.[v.name] || v.name, v.part.el];

  function place(layout) {
    if (layout === "compact" || layout === "presentation") {
      const shown = layout === "presentation" ? [...top, ...main].filter((v) => v !== pinned) : [...top, ...main];
      topRow.replaceChildren();
      tabbed.replaceChildren(tabs.el, ...shown.map((v) => v.part.el), ...[...tabbed.children].filter((c) => c.classList.contains("cnnw-tab-page")));
      if (layout === "presentation" && pinned) { stage.replaceChildren(pinned.part.el, tabbed); mainRow.replaceChildren(stage); }
      else mainRow.replaceChildren(tabbed);
      tabs.setSections(shown.map(section), shown[0] ? shown[0].name : null);
      tabs.setOverflow(layout === "presentation");
    } else {
      const pages = [...tabbed.children].filter((c) => c.classList.contains("cnnw-tab-page"));
      tabs.setSections(null);
      tabs.setOverflow(false);
      topRow.replaceChildren(...top.map((v) => v.part.el));
      tabbed.replaceChildren(tabs.el, ...pages);
      mainRow.replaceChildren(...main.map((v) => v.part.el), tabbed);
    }
    fitHeight();
    fitStage(true);
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
  // presentation: the largest strip and pictures with which the top pictures fit the view (fitPresentation),
  // again on a change of layout, of the window, or of the size of what is above or beside the pictures
  // (not on the fit's own: the sizes it leaves are remembered)
  const errorEl = root.querySelector(".cnnw-error"), strip = root.querySelector(".cnnw-layers");
  const win = host.ownerDocument && host.ownerDocument.defaultView;
  const watched = [bar, errorEl, tabs.el, pinned && pinned.part.el].filter(Boolean);
  const sizeKey = () => watched.map((el) => `${el.offsetWidth}x${el.offsetHeight}`).join(",") + `/${win ? win.innerHeight : 0}`;
  let stageFrame = 0, fitted = "";
  function fitStage(force = false) {
    if (force === true) fitted = "";
    if (!stageFrame) stageFrame = requestAnimationFrame(() => { stageFrame = 0; if (sizeKey() !== fitted) { fitStageNow(); fitted = sizeKey(); } });
  }
  function setFit(rows, pinnedPicture, sectionPicture) {
    // on the strip and the stage, not the root: a change restyles only them
    const props = [[strip, "--cnnw-strip-rows", rows && String(rows)], [stage, "--cnnw-pinned-picture", pinnedPicture && `${pinnedPicture}px`],
      [stage, "--cnnw-picture", sectionPicture && `${sectionPicture}px`]];
    for (const [el, name, value] of props) if (el) { if (value) el.style.setProperty(name, value); else el.style.removeProperty(name); }
  }
  function fitStageNow() {
    if (root.dataset.layout !== "presentation") { setFit(null, null, null); delete root.dataset.fit; return; }
    if (!pinned || !root.isConnected || !root.getClientRects().length) return;
    // the sections with a picture of the top row (saliency, occlusion): each is measured shown in turn
    const pictured = top.filter((v) => v !== pinned).map((v) => [v.part.el, v.part.el.querySelector("canvas")]).filter(([, canvas]) => canvas);
    const hidden = pictured.map(([el]) => el.hidden);
    const set = (rows, pinnedPicture, sectionPicture) => {
      setFit(rows, pinnedPicture, sectionPicture);
      tabs.fit(); // the tab bar's width follows the pinned column's
    };
    set(3, 448, 448);
    const scroller = scrollView(host); // found with the Explorer at its largest (its scroller scrolls then)
    const view = scroller.height - ROOM_BELOW, scrolled = scroller.element ? scroller.element.scrollTop : 0;
    const overflow = (rows, pinnedPicture, sectionPicture) => {
      set(rows, pinnedPicture, sectionPicture);
      const rootTop = root.getBoundingClientRect().top, pinnedBox = pinned.part.el.getBoundingClientRect();
      const image = pinned.part.el.querySelector("canvas");
      let section = -Infinity, sectionSize = 0;
      for (const [el, canvas] of pictured) {
        for (const [other] of pictured) other.hidden = other !== el;
        // a section stacked under the image (a narrow screen) cannot show beside it: only the image must fit
        if (el.getBoundingClientRect().top >= pinnedBox.bottom - 1) continue;
        const box = canvas.getBoundingClientRect();
        section = Math.max(section, box.bottom - rootTop - view);
        sectionSize = box.height;
      }
      const button = strip && strip.firstElementChild;
      const rowHeight = button ? button.offsetHeight + (parseFloat(getComputedStyle(strip).rowGap) || 0) : 0;
      return { pinned: pinnedBox.bottom - rootTop - view, section, pinnedSize: image ? image.getBoundingClientRect().height : 0, sectionSize, rowHeight };
    };
    const fit = fitPresentation(overflow);
    pictured.forEach(([el], i) => { el.hidden = hidden[i]; });
    set(fit.rows, fit.pinned, fit.section);
    // a smaller trial layout may have pulled the page's scroll position up: put it back
    if (scroller.element && scroller.element.scrollTop !== scrolled) scroller.element.scrollTop = scrolled;
    root.dataset.fit = `strip ${fit.rows} rows, image ${fit.pinned}px, section ${fit.section}px`; // what the fit chose (for tests and the curious)
  }
  const resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => { fitHeight(); fitStage(); });
  if (resize) for (const el of [tabs.el, ...watched]) resize.observe(el); // the tab bar wraps onto more lines when narrow; what is above the pictures
  const onWindow = () => fitStage(true);
  if (win) win.addEventListener("resize", onWindow); // a taller or shorter window
  const offFollow = followFrontEnd(model, root, host, place);
  return {
    el: menu.el,
    cleanup() {
      offFollow(); menu.cleanup(); if (resize) resize.disconnect(); if (win) win.removeEventListener("resize", onWindow);
      if (fitFrame) cancelAnimationFrame(fitFrame); if (stageFrame) cancelAnimationFrame(stageFrame);
    },
  };
}
