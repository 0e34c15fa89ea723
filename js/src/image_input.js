// Sample images, and a file picked or dropped on the widget. Big photos are scaled down in the
// browser first (tornado refuses browser->kernel messages over 10 MiB).
import { h } from "./dom.js";
import { options, shownOnlyValues } from "./choices.js";
import { choiceSelect } from "./controls.js";

export const MAX_SIDE = 1024;

/** Target size keeping the aspect ratio with the longer side at most maxSide. */
export function fitSize(width, height, maxSide = MAX_SIDE) {
  const scale = Math.min(1, maxSide / Math.max(width, height));
  return [Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale))];
}

async function encodeForKernel(file) {
  let bitmap;
  try { bitmap = await createImageBitmap(file); } catch (e) { return { bytes: await file.arrayBuffer(), name: file.name }; }
  const [w, h0] = fitSize(bitmap.width, bitmap.height);
  if (w === bitmap.width && h0 === bitmap.height && file.size < 8 * 1024 * 1024) return { bytes: await file.arrayBuffer(), name: file.name };
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h0;
  canvas.getContext("2d").drawImage(bitmap, 0, 0, w, h0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  return { bytes: await blob.arrayBuffer(), name: file.name };
}

export function mountImageInput(model, root, setStatus) {
  // the kernel's "your image" entry (a picked, dropped or scanned image) is shown, never chosen
  const shownOnly = (m, v) => shownOnlyValues(m, "image_name").includes(v) && m.get("image_name") !== v;
  const select = choiceSelect(model, "image_name", {
    optionsOf: (m) => options(m, "image_name").map(([v, text]) => [v, text, shownOnly(m, v)]),
  });
  const file = h("input", { type: "file", class: "cnnw-file", accept: "image/*", title: "open an image file (or drop one on the widget)" });

  async function send(f) {
    if (!f) return;
    setStatus("busy", `reading ${f.name}…`);
    const { bytes, name } = await encodeForKernel(f);
    model.send({ type: "image", name }, undefined, [bytes]);
  }
  file.addEventListener("change", () => send(file.files && file.files[0]));
  const onDragOver = (e) => { if (e.dataTransfer && [...e.dataTransfer.types].includes("Files")) { e.preventDefault(); root.classList.add("cnnw-drop"); } };
  const onDragLeave = () => root.classList.remove("cnnw-drop");
  const onDrop = (e) => {
    root.classList.remove("cnnw-drop");
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) { e.preventDefault(); send(f); }
  };
  root.addEventListener("dragover", onDragOver);
  root.addEventListener("dragleave", onDragLeave);
  root.addEventListener("drop", onDrop);
  return {
    el: h("span", { class: "cnnw-image-input" }, h("label", {}, "image", select.el), h("label", { class: "cnnw-open" }, "or open", file)),
    cleanup() { select.cleanup(); root.removeEventListener("dragover", onDragOver); root.removeEventListener("dragleave", onDragLeave); root.removeEventListener("drop", onDrop); },
  };
}
