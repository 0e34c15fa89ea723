// Progress of a long kernel computation with a Cancel button: a panel's (the `progress` trait, one
// entry per slow panel: {state, done, total, message, unit}) or any run that maps its own state to
// that shape (the Visualise tab). Every state has an end: running -> done (hidden) | cancelled |
// error (one line, with a button to compute again). Reusable: `panelProgress(model, "tree")`.
import { h, listen } from "./dom.js";
import { isStatic } from "./static_model.js";

export const PROGRESS_CSS = `
.cnnw-progress { display: flex; gap: 6px; align-items: center; font-size: 12px; color: var(--cnnw-muted, #596173); margin: 2px 0 4px; min-height: 22px; }
.cnnw-progress-bar { flex: 1 1 30px; min-width: 24px; max-width: 160px; height: 10px; accent-color: var(--cnnw-accent, #4a7bd0); }
.cnnw-progress-text { flex: 0 0 auto; max-width: calc(100% - 110px); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-variant-numeric: tabular-nums; }
.cnnw-explorer .cnnw-progress-button { flex: none; font-size: 12px; padding: 1px 8px; border: 1px solid var(--cnnw-control-border, #cfd5de); border-radius: 4px;
  background: var(--cnnw-surface, #f7f8fa); color: var(--cnnw-fg, #1d2330); cursor: pointer; }
.cnnw-explorer .cnnw-progress-button:hover { border-color: var(--cnnw-accent, #4a7bd0); }
.cnnw-progress[data-state="cancelled"] .cnnw-progress-text { color: var(--cnnw-busy-fg, #7a5600); white-space: normal; flex: 1 1 auto; }
.cnnw-progress[data-state="error"] .cnnw-progress-text { color: var(--cnnw-err-fg, #9b1c1c); white-space: normal; flex: 1 1 auto; }
.cnnw-progress[data-state="cancelled"] .cnnw-progress-bar, .cnnw-progress[data-state="error"] .cnnw-progress-bar { display: none; }
.cnnw-explorer .cnnw-cancel-all { flex: none; font-size: 12px; padding: 1px 8px; border: 1px solid #e0b64a; border-radius: 10px;
  background: var(--cnnw-busy-bg, #fff8e6); color: var(--cnnw-busy-fg, #7a5600); cursor: pointer; }
`;

/** The fraction done in [0, 1], or null when unknown (an indeterminate bar). */
export function progressFraction(info) {
  const done = Number(info && info.done), total = Number(info && info.total);
  if (!(total > 0) || !Number.isFinite(done)) return null;
  return Math.min(1, Math.max(0, done / total));
}

/** One line for the bar: "24 of 81 windows (30%)", "computing…", or the end state's message. */
export function progressText(info) {
  const state = (info && info.state) || "";
  if (state === "running") {
    const fraction = progressFraction(info);
    if (fraction === null) return "computing…";
    return `${info.done}/${info.total}${info.unit ? ` ${info.unit}` : ""} (${Math.round(100 * fraction)}%)`;
  }
  if (state === "cancelled") return info.message || "cancelled";
  if (state === "error") return `error: ${info.message || "see the message above"}`;
  return "";
}

/**
 * A bar, its text and a button (Cancel while running; `retryText` after a cancel or an error).
 * `update(info)` shows a state; hidden when there is nothing to show (done, or never started).
 */
export function progressBar({ onCancel, onRetry, cancelText = "Cancel", retryText = "Compute again", title = "" } = {}) {
  const bar = h("progress", { class: "cnnw-progress-bar", max: 1 });
  const text = h("span", { class: "cnnw-progress-text" });
  const button = h("button", { type: "button", class: "cnnw-progress-button" });
  const el = h("div", { class: "cnnw-progress", "data-state": "", role: "progressbar", title, hidden: true }, bar, text, button);
  button.addEventListener("click", () => {
    if (el.dataset.state === "running") { if (onCancel) onCancel(); button.disabled = true; button.textContent = "cancelling…"; }
    else if (onRetry) onRetry();
  });
  function update(info) {
    const state = (info && info.state) || "";
    const shown = state === "running" || state === "cancelled" || state === "error";
    el.hidden = !shown;
    el.dataset.state = shown ? state : "";
    const fraction = progressFraction(info);
    el.dataset.fraction = fraction === null ? "" : String(fraction);
    if (state === "running" && fraction !== null) bar.value = fraction;
    else bar.removeAttribute("value"); // indeterminate: the browser animates it
    el.setAttribute("aria-valuenow", fraction === null ? "" : String(Math.round(100 * fraction)));
    text.textContent = progressText(info);
    text.title = text.textContent;
    const running = state === "running";
    button.hidden = running ? !onCancel : !onRetry;
    if (running && button.disabled) return; // "cancelling…" until the state changes
    button.disabled = false;
    button.textContent = running ? cancelText : retryText;
  }
  update({});
  return { el, update };
}

/** The progress of kernel panel `panel`, with Cancel and "Compute again" (messages the kernel handles;
 * no button in a static page, which has no kernel). */
export function panelProgress(model, panel) {
  const live = !isStatic(model);
  const part = progressBar({
    onCancel: live ? () => model.send({ type: "cancel", panel }) : null,
    onRetry: live ? () => model.send({ type: "recompute", panel }) : null,
    title: `progress of the ${panel} computation`,
  });
  part.el.dataset.panel = panel;
  let lastState = "";
  const draw = () => {
    const info = (model.get("progress") || {})[panel] || {};
    if (info.state !== lastState) { lastState = info.state; part.update({}); } // a new state: the button is fresh
    part.update(info);
  };
  const off = listen(model, ["progress"], draw);
  draw();
  return { el: part.el, info: () => (model.get("progress") || {})[panel] || {}, cleanup: off };
}

/** "40%" of the panel the kernel is computing, or "" (for the short status line). */
export function workingFraction(model) {
  const info = (model.get("progress") || {})[model.get("working") || ""];
  const fraction = info && info.state === "running" ? progressFraction(info) : null;
  return fraction === null ? "" : `${Math.round(100 * fraction)}%`;
}

/** A Cancel button for the status line: shown while any slow panel runs; stops them all. */
export function mountCancelAll(model) {
  const button = h("button", { type: "button", class: "cnnw-cancel-all", text: "Cancel", title: "stop the slow panels (saliency, tree, occlusion)", hidden: true });
  button.addEventListener("click", () => model.send({ type: "cancel" }));
  const draw = () => {
    const progress = model.get("progress") || {};
    button.hidden = !Object.values(progress).some((info) => info && info.state === "running") || model.get("status") !== "busy";
  };
  const off = listen(model, ["progress", "status"], draw);
  draw();
  return { el: button, cleanup: off };
}
