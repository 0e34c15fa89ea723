// Sample images, and a file picked or dropped on the widget. Big photos are scaled down in the
// browser first (tornado refuses browser->kernel messages over 10 MiB).
import { h, listen, traitSelect, setOptions } from "./dom.js";
import { commit } from "./actions.js";

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
  const options = () => [...model.get("sample_images").map((n) => [n, n]), ["custom", "your image", model.get("image_name") !== "custom"]];
  const select = traitSelect("image_name", options(), model.get("image_name"), (v) => commit(model, { image_name: v }));
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
  const off = listen(model, ["image_name", "sample_images"], () => setOptions(select, options(), model.get("image_name")));
  return {
    el: h("span", { class: "cnnw-image-input" }, h("label", {}, "image", select), h("label", { class: "cnnw-open" }, "or open", file)),
    cleanup() { off(); root.removeEventListener("dragover", onDragOver); root.removeEventListener("dragleave", onDragLeave); root.removeEventListener("drop", onDrop); },
  };
}
