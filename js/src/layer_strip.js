// One button per explorable layer (kind and shape shown); the selected one has class "selected".
import { h, listen } from "./dom.js";
import { commit } from "./actions.js";

export function mountLayerStrip(model) {
  const el = h("div", { class: "cnnw-layers", role: "toolbar", "aria-label": "layers" });
  function draw() {
    el.replaceChildren(...(model.get("layers") || []).map((layer) => {
      const button = h("button", { type: "button", class: "cnnw-layer", "data-layer": layer.name, "data-kind": layer.kind,
        title: `${layer.name}: ${layer.kind}, output ${layer.shape.join("×")}` },
      layer.name, h("small", { text: `${layer.kind} ${layer.shape.join("×")}` }));
      button.addEventListener("click", () => { if (model.get("layer") !== layer.name) commit(model, { layer: layer.name, channel: 0 }); });
      return button;
    }));
    select();
  }
  function select() {
    const name = model.get("layer");
    let chosen = null;
    for (const b of el.children) { const on = b.dataset.layer === name; b.classList.toggle("selected", on); if (on) chosen = b; }
    if (chosen && el.isConnected) {
      // the chosen button's row first, its top where the first row's is (the strip snaps to rows: styles.js)
      const top = chosen.getBoundingClientRect().top - el.getBoundingClientRect().top - el.clientTop + el.scrollTop;
      const pad = parseFloat(getComputedStyle(el).paddingTop) || 0;
      if (top - pad < el.scrollTop || top + chosen.offsetHeight > el.scrollTop + el.clientHeight - pad) el.scrollTop = top - pad;
    }
  }
  const offLayers = listen(model, ["layers"], draw);
  const offLayer = listen(model, ["layer"], select);
  // fewer rows (the presentation layout's fit to the screen, arrange.js) may hide the chosen row: bring it back
  let height = -1, frame = 0;
  const resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; if (el.clientHeight !== height) { height = el.clientHeight; select(); } });
  });
  if (resize) resize.observe(el);
  draw();
  return { el, select, cleanup() { offLayers(); offLayer(); if (resize) resize.disconnect(); if (frame) cancelAnimationFrame(frame); } };
}
