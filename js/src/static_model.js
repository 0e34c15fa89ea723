// A stand-in for anywidget's `model` in a page with no kernel (cw.export_html): the widget's saved
// state behind the same get / set / on / off / save_changes / send, so the same render({model, el})
// draws it. The shim decides the static mode (its `staticSnapshot` flag), not the page: changes that
// need the kernel (a commit that bumps request_seq, a custom message) are undone at once, so a
// static page never waits for a computation that cannot come; client-side ones (colormap,
// opacity, tab) stay live.
import { h } from "./dom.js";

export const STATIC_NOTE = "static snapshot — run the notebook to change this";

/** Whether a model is a static snapshot (this shim) rather than a live kernel's model. */
export function isStatic(model) {
  return Boolean(model && model.staticSnapshot === true);
}

function base64ToView(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new DataView(bytes.buffer);
}

/**
 * A saved widget state as Jupyter stores it ({state, buffers: [{path, encoding: "base64", data}]},
 * the per-model entry of application/vnd.jupyter.widget-state+json) -> the plain state with a
 * DataView at every buffer path (what anywidget hands the renderer). A buffer whose parent is no
 * longer an object (the trait was set to None later) is dropped.
 */
export function restoreState({ state, buffers = [] }) {
  const values = JSON.parse(JSON.stringify(state || {}));
  for (const { path, encoding = "base64", data } of buffers) {
    if (encoding !== "base64") throw new Error(`buffer ${path.join(".")}: encoding ${encoding} is not base64`);
    let parent = values;
    for (const key of path.slice(0, -1)) parent = parent == null ? null : parent[key];
    if (parent && typeof parent === "object") parent[path[path.length - 1]] = base64ToView(data);
  }
  return values;
}

/** The model shim over a saved widget state (see restoreState). */
export function staticModel(widgetState) {
  const values = restoreState(widgetState);
  const listeners = new Map(); // event -> Set of callbacks
  let pending = new Map(); // trait -> value before this batch of set() calls
  const emit = (event, ...args) => { for (const cb of [...(listeners.get(event) || [])]) cb(...args); };
  const model = {
    staticSnapshot: true,
    get(name) { return values[name]; },
    set(name, value) {
      if (!pending.has(name)) pending.set(name, values[name]);
      values[name] = value;
      emit(`change:${name}`, model, value);
    },
    on(event, callback) { if (!listeners.has(event)) listeners.set(event, new Set()); listeners.get(event).add(callback); },
    off(event, callback) {
      if (event == null) listeners.clear();
      else if (callback == null) listeners.delete(event);
      else if (listeners.has(event)) listeners.get(event).delete(callback);
    },
    save_changes() {
      const changed = pending;
      pending = new Map();
      // a commit that needs the kernel bumps request_seq (actions.js): only a kernel could answer it
      if (!changed.has("request_seq")) return;
      // undone after the caller's own follow-up (a view may update itself right after commit),
      // so the change events put every control back on the saved values
      queueMicrotask(() => {
        for (const [name, before] of changed) { values[name] = before; emit(`change:${name}`, model, before); }
        emit("static:refused", [...changed.keys()]);
      });
    },
    send(content) { emit("static:refused", [content && content.type]); },
  };
  return model;
}

/**
 * Static mode of a rendered Explorer: the one-line note under the top bar, every kernel-backed
 * control disabled (controls.js disables its own; here the buttons and inputs of the other views,
 * everything not marked data-client), and the note flashes when a refused change is undone.
 * Returns a cleanup.
 */
export function markStatic(root, model, after) {
  const note = h("div", { class: "cnnw-static-note", role: "note", text: STATIC_NOTE });
  after.after(note);
  root.dataset.static = "true";
  for (const tab of root.querySelectorAll(".cnnw-tab")) tab.dataset.client = ""; // tabs only show what is there
  for (const control of root.querySelectorAll("button, select, input")) {
    if ("client" in control.dataset || control.disabled) continue;
    control.disabled = true;
    control.title = `${control.title ? `${control.title} — ` : ""}${STATIC_NOTE}`;
  }
  let timer = 0;
  const flash = () => {
    note.classList.remove("cnnw-flash");
    void note.offsetWidth; // restart the animation
    note.classList.add("cnnw-flash");
    clearTimeout(timer);
    timer = setTimeout(() => note.classList.remove("cnnw-flash"), 1200);
  };
  model.on("static:refused", flash);
  return () => { model.off("static:refused", flash); clearTimeout(timer); note.remove(); };
}

export const STATIC_CSS = `
.cnnw-static-note { color: #4b5565; background: #eef1f5; border-radius: 6px; padding: 4px 8px; margin-bottom: 8px; font-size: 12px; }
.cnnw-static-note.cnnw-flash { background: #fff4d6; color: #7a5600; }
.cnnw-explorer[data-static] button:disabled, .cnnw-explorer[data-static] select:disabled,
.cnnw-explorer[data-static] input:disabled { cursor: not-allowed; opacity: 0.55; }
.cnnw-explorer[data-static] .cnnw-layer.selected:disabled, .cnnw-explorer[data-static] .cnnw-pred:disabled { opacity: 0.9; }
.cnnw-explorer[data-static] .cnnw-pred:disabled { cursor: default; color: inherit; }
`;
