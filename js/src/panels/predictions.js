// The image with its top-5 predictions; clicking a class explains it.
import { blendHeat } from "../pixels.js";
import { h, listen, paint } from "../dom.js";
import { commit } from "../actions.js";
import { imageOf } from "../picture.js";

function mount(model) {
  const canvas = h("canvas", { class: "cnnw-image", width: 1, height: 1, "data-version": "0" });
  const top1 = h("div", { class: "cnnw-top1", title: "top-1 class" });
  const list = h("div", { class: "cnnw-predictions", role: "list" });
  const el = h("div", { class: "cnnw-panel" }, h("h3", { text: "Image and top-5 predictions" }), canvas, top1, list);

  function draw() {
    const image = imageOf(model);
    if (image) paint(canvas, blendHeat(image.pixels, image.H, image.W, null, 0, 0, null, 0), image.W, image.H);
    const predictions = model.get("predictions") || [];
    const target = model.get("target");
    top1.textContent = predictions.length ? predictions[0].label : "";
    list.replaceChildren(...predictions.map((p) => {
      const row = h("button", { class: `cnnw-pred${target === p.index ? " selected" : ""}`, "data-index": String(p.index),
        title: `explain class ${p.index} (${p.label})`, role: "listitem" },
      h("span", { class: "cnnw-pred-label" }, h("span", { class: "cnnw-pred-fill", style: `width:${(100 * p.probability).toFixed(1)}%` }), p.label),
      h("span", { class: "cnnw-pred-value", text: `${(100 * p.probability).toFixed(1)}%` }));
      row.addEventListener("click", () => commit(model, { target: p.index }));
      return row;
    }));
  }
  // a click on the image: the selected layer's unit whose receptive field is centred there (unit_view.py), in "Inside a unit"
  canvas.addEventListener("click", (event) => {
    const r = canvas.getBoundingClientRect();
    if (!r.width || !r.height) return;
    model.send({ type: "unit", y: Math.floor(((event.clientY - r.top) * canvas.height) / r.height), x: Math.floor(((event.clientX - r.left) * canvas.width) / r.width) });
  });
  canvas.title = "click to look inside the selected layer's unit over this pixel";
  const off = listen(model, ["image_data", "predictions", "target"], draw);
  draw();
  return { el, cleanup: off };
}

export default { name: "predictions", place: "top", mount };
