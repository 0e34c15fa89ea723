// The views below the feature maps, one at a time (the `tab` trait). Tabs and their labels come
// from the kernel's choices; the scan tabs show only while a scan is attached.
// In the compact and presentation layouts the same bar also holds "sections": panels that the full
// layout shows at once (image, saliency, occlusion, feature maps), picked here without the kernel.
// With overflow on (presentation: the bar must stay one row so the pictures fit the screen), the tabs
// that would wrap onto a second row go, from the last one, into a "more…" menu at the row's end.
import { h, listen, setOptions } from "./dom.js";
import { commit } from "./actions.js";
import { options, scanned, scanTabs } from "./choices.js";

const OVERFLOWED = "cnnw-tab-overflowed"; // a tab shown in the "more…" menu instead of the row

/** Whether these laid-out elements sit on more than one row. */
function wraps(elements) {
  const tops = elements.map((e) => e.getBoundingClientRect().top);
  return tops.length > 1 && Math.max(...tops) > Math.min(...tops) + 1;
}

/**
 * pages: {tab name: element}; a tab of the kernel's menu without a page is left out.
 * Returns {el, cleanup, setSections(list, first), setOverflow(on), fit(), current()}: list = [[name, label,
 * element], ...] shown before the kernel's tabs, one at a time with them (null: no sections, every section
 * element shown); setOverflow(true) keeps the bar to one row (fit() again after a change of its width).
 */
export function mountTabs(model, pages) {
  const bar = h("div", { class: "cnnw-tabs", role: "tablist" });
  let buttons = [];
  let sections = null; // [[name, label, element]] or null
  let local = null; // the section shown instead of the kernel's tab, or null
  let overflow = false; // keep one row: the tabs that do not fit go into the "more…" menu
  const more = h("select", { class: "cnnw-tab cnnw-tab-more", "data-kind": "more", "data-client": "", title: "more views", "aria-label": "more views" });
  more.addEventListener("change", () => { const button = buttons.find((b) => b.dataset.tab === more.value); if (button) button.click(); });
  function tabButton(name, text, kind, onClick) {
    const button = h("button", { type: "button", class: "cnnw-tab", role: "tab", "data-tab": name, "data-kind": kind, text });
    button.addEventListener("click", onClick);
    return button;
  }
  function build() {
    const sectionButtons = (sections || []).map(([name, text]) => tabButton(name, text, "section", () => { local = name; update(); }));
    const kernelButtons = options(model, "tab").filter(([name]) => name in pages).map(([name, text]) =>
      tabButton(name, text, "tab", () => { local = null; commit(model, { tab: name }, { kernel: false }); update(); }));
    buttons = [...sectionButtons, ...kernelButtons];
    bar.replaceChildren(...buttons, more);
    update();
  }
  function update() {
    const withScan = scanned(model), onlyWithScan = scanTabs(model);
    const shown = (name) => withScan || !onlyWithScan.has(name);
    const kernelTabs = buttons.filter((b) => b.dataset.kind === "tab").map((b) => b.dataset.tab);
    let active = model.get("tab");
    if (!shown(active) || !(active in pages)) active = kernelTabs.find(shown) || "";
    const section = sections && sections.some(([name]) => name === local) ? local : null;
    for (const button of buttons) {
      const name = button.dataset.tab, isSection = button.dataset.kind === "section";
      const selected = isSection ? name === section : !section && name === active;
      button.hidden = !isSection && !shown(name);
      button.classList.toggle("selected", selected);
      button.setAttribute("aria-selected", String(selected));
    }
    for (const [name, page] of Object.entries(pages)) page.hidden = section !== null || name !== active;
    for (const [name, , element] of sections || []) element.hidden = name !== section;
    fit();
  }
  /** With overflow on and the tabs wrapping: the last ones (then more) into the menu until one row holds the rest. */
  function fit() {
    for (const button of buttons) button.classList.remove(OVERFLOWED);
    more.hidden = true;
    const shown = buttons.filter((b) => !b.hidden);
    if (overflow && bar.isConnected && wraps(shown)) {
      more.hidden = false;
      for (let i = shown.length - 1; i > 0 && wraps([...shown.slice(0, i + 1), more]); i--) shown[i].classList.add(OVERFLOWED);
    }
    const inMenu = shown.filter((b) => b.classList.contains(OVERFLOWED));
    const chosen = inMenu.find((b) => b.classList.contains("selected"));
    setOptions(more, [["", "more…"], ...inMenu.map((b) => [b.dataset.tab, b.textContent])], chosen ? chosen.dataset.tab : "");
    more.classList.toggle("selected", !!chosen);
  }
  function setOverflow(on) {
    if (overflow === !!on) return;
    overflow = !!on;
    fit();
  }
  function setSections(list, first = null) {
    for (const [, , element] of sections || []) element.hidden = false;
    sections = list && list.length ? list : null;
    if (!sections) local = null;
    else if (!sections.some(([name]) => name === local)) local = first;
    build();
  }
  /** The shown section, or the kernel's tab when no section is shown. */
  function current() {
    const selected = buttons.find((b) => b.classList.contains("selected"));
    return selected ? selected.dataset.tab : "";
  }
  // the bar's width decides what fits in one row (measured on the next frame: fitting inside the observer's
  // callback would resize the bar again and trip the browser's "ResizeObserver loop" error)
  let width = -1, frame = 0;
  const refit = () => { frame = 0; if (bar.clientWidth !== width) { width = bar.clientWidth; if (overflow) fit(); } };
  const resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => { if (!frame) frame = requestAnimationFrame(refit); });
  if (resize) resize.observe(bar);
  const offChoices = listen(model, ["choices"], build);
  const offTab = listen(model, ["tab"], () => { local = null; update(); }); // a tab was picked (here, by the kernel or another view): show it
  const off = listen(model, ["scan_info"], update);
  build();
  return { el: bar, setSections, setOverflow, fit, current, cleanup() { off(); offTab(); offChoices(); if (resize) resize.disconnect(); if (frame) cancelAnimationFrame(frame); } };
}
