// Sending user changes to the kernel. Each change that needs kernel work carries a new
// request_seq; the kernel echoes the number it has finished in result_seq, so the view knows
// when it is up to date (busy until then) and never mistakes an older result for the latest.

export function commit(model, changes, { kernel = true } = {}) {
  for (const [name, value] of Object.entries(changes)) model.set(name, value);
  if (kernel) model.set("request_seq", (model.get("request_seq") || 0) + 1);
  model.save_changes();
}

export function isBusy(model) {
  return model.get("status") === "busy" || (model.get("result_seq") || 0) < (model.get("request_seq") || 0);
}

/** Ask the kernel to show image `index` of the attached scan. */
export function openScanImage(model, index) {
  model.send({ type: "scan_image", index });
}
