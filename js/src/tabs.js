// The views below the feature maps, one at a time (the `tab` trait). Tabs and their labels come
// from the kernel's choices; the scan tabs show only while a scan is attached.
// In the compact and presentation layouts the same bar also holds "sections": panels that the full
// layout shows at once (image, saliency, occlusion, feature maps), picked here without the kernel.
import { h, listen } from "./dom.js";
import { commit } from "./actions.js";
import { options, scanned, scanTabs } from "./choices.js";

/**
 * pages: {tab name: element}; a tab of the kernel's menu without a page is left out.
 * Returns {el, cleanup, setSections(list, first)}: list = [[name, label, element], ...] shown before
 * the kernel's tabs, one at a time with them (null: no sections, every section element shown).
 */
export function mountTabs(model, pages) {
  const bar = h("div", { class: "cnnw-tabs", role: "tablist" });
  let buttons = [];
  let sections = null; // [[name, label, element]] or null
  let local = null; // the section shown instead of the kernel's tab, or null
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
    bar.replaceChildren(...buttons);
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
  const offChoices = listen(model, ["choices"], build);
  const offTab = listen(model, ["tab"], () => { local = null; update(); }); // a tab was picked (here, by the kernel or another view): show it
  const off = listen(model, ["scan_info"], update);
  build();
  return { el: bar, setSections, current, cleanup() { off(); offTab(); offChoices(); } };
}
