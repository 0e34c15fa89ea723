// The views below the feature maps, one at a time (the `tab` trait). Tabs and their labels come
// from the kernel's choices; the scan tabs show only while a scan is attached.
import { h, listen } from "./dom.js";
import { commit } from "./actions.js";
import { options, scanned, scanTabs } from "./choices.js";

/** pages: {tab name: element}; a tab of the kernel's menu without a page is left out. */
export function mountTabs(model, pages) {
  const bar = h("div", { class: "cnnw-tabs", role: "tablist" });
  let buttons = [];
  function build() {
    buttons = options(model, "tab").filter(([name]) => name in pages).map(([name, text]) => {
      const button = h("button", { type: "button", class: "cnnw-tab", role: "tab", "data-tab": name, text });
      button.addEventListener("click", () => commit(model, { tab: name }, { kernel: false }));
      return button;
    });
    bar.replaceChildren(...buttons);
    update();
  }
  function update() {
    const withScan = scanned(model), onlyWithScan = scanTabs(model);
    const shown = (name) => withScan || !onlyWithScan.has(name);
    let active = model.get("tab");
    if (!shown(active) || !(active in pages)) active = (buttons.map((b) => b.dataset.tab).find(shown)) || "";
    for (const button of buttons) {
      const name = button.dataset.tab;
      button.hidden = !shown(name);
      button.classList.toggle("selected", name === active);
      button.setAttribute("aria-selected", String(name === active));
    }
    for (const [name, page] of Object.entries(pages)) page.hidden = name !== active;
  }
  const offChoices = listen(model, ["choices"], build);
  const off = listen(model, ["tab", "scan_info"], update);
  build();
  return { el: bar, cleanup() { off(); offChoices(); } };
}
