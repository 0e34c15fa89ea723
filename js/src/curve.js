// The objective curve of the Visualise tab: values -> points of a polyline in a w x h box.

/** [[x, y], ...] for `values` over `steps` steps (x by step, y scaled to the values' range, up = larger). */
export function curvePoints(values, steps, width, height, pad = 4) {
  const n = values.length;
  if (!n) return [];
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) return [];
  const span = hi > lo ? hi - lo : 1;
  const last = Math.max(1, (steps || n) - 1);
  return Array.from(values, (v, i) => [
    pad + (width - 2 * pad) * Math.min(1, i / last),
    Number.isFinite(v) ? height - pad - (height - 2 * pad) * (v - lo) / span : height - pad,
  ]);
}

/** RGBA pixels of an H x W x 3 uint8 picture. */
export function rgbToRgba(rgb, H, W) {
  const out = new Uint8ClampedArray(H * W * 4);
  for (let i = 0, j = 0; i < H * W; i++, j += 3) {
    out[4 * i] = rgb[j]; out[4 * i + 1] = rgb[j + 1]; out[4 * i + 2] = rgb[j + 2]; out[4 * i + 3] = 255;
  }
  return out;
}
