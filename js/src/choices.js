// Every choice, label and range the views offer comes from the kernel's `choices` trait (built in
// Python from the traits that validate them and the engine's registries): nothing is copied here.
// Also: how a unit is written, and whether a scan is attached.

function choicesOf(model) {
  return model.get("choices") || {};
}

/** [value, label] pairs of a trait's menu. */
export function options(model, trait) {
  return (choicesOf(model).options || {})[trait] || [];
}

/** The label of one value of a trait's menu (the value itself when it has none). */
export function labelOf(model, trait, value) {
  const found = options(model, trait).find(([v]) => v === value);
  return found ? found[1] : String(value ?? "");
}

/** Values of a trait's menu that the kernel sets but a user cannot pick (shown disabled). */
export function shownOnlyValues(model, trait) {
  return (choicesOf(model).shown_only || {})[trait] || [];
}

/** {min, max, step} of a slider trait. */
export function range(model, trait) {
  return (choicesOf(model).ranges || {})[trait] || { min: 0, max: 1, step: 1 };
}

/** What the status line calls a panel while it is computed. */
export function panelLabel(model, panel) {
  return (choicesOf(model).panels || {})[panel] || panel;
}

/** Tabs shown only while a scan is attached. */
export function scanTabs(model) {
  return new Set(choicesOf(model).scan_tabs || []);
}

/** A unit written as everywhere else (Python's str(cw.Unit)): layer[channel]. */
export function unitText(layer, channel) {
  return `${layer}[${channel}]`;
}

/** Whether a scan is attached (the scan views show only then). */
export function scanned(model) {
  return Object.keys(model.get("scan_info") || {}).length > 0;
}
