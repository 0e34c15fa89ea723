// Pure layout math of the dataset-scan panels (no DOM): the top-images grids and the embedding scatter.

/**
 * k cells in a near-square grid (3 x 3 for Zeiler & Fergus' k = 9), each as large as `width` allows
 * between minCell and maxCell. Returns {cols, rows, cell, gap, width, height}.
 */
export function topGrid(k, width, { gap = 6, minCell = 40, maxCell = 150 } = {}) {
  k = Math.max(0, k | 0);
  const cols = Math.max(1, Math.ceil(Math.sqrt(k)));
  const rows = Math.max(1, Math.ceil(k / cols));
  const cell = Math.max(minCell, Math.min(maxCell, Math.floor((width - (cols - 1) * gap) / cols)));
  return { cols, rows, cell, gap, width: cols * cell + (cols - 1) * gap, height: rows * cell + (rows - 1) * gap };
}

/** CSS size [w, h] of a w x h picture scaled to fit a cell x cell square (aspect kept, at least 1 px). */
export function fitInside(w, h, cell) {
  const scale = cell / Math.max(w, h, 1);
  return [Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale))];
}

/**
 * Map 2-D embedding coordinates (xy: [x0, y0, x1, y1, ...]) into a width x height canvas with
 * `margin` px free on every side. One scale for both axes (a distance means the same across and
 * down), the cloud centred, y up. Returns {scale, ox, oy}: px = ox + x * scale, py = oy - y * scale.
 */
export function scatterLayout(xy, count, width, height, margin = 0) {
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (let i = 0; i < count; i++) {
    const x = xy[2 * i], y = xy[2 * i + 1];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (x < minX) minX = x; if (x > maxX) maxX = x;
    if (y < minY) minY = y; if (y > maxY) maxY = y;
  }
  if (minX > maxX) { minX = maxX = 0; minY = maxY = 0; }
  const spanX = maxX - minX, spanY = maxY - minY;
  const freeX = Math.max(1, width - 2 * margin), freeY = Math.max(1, height - 2 * margin);
  const scale = spanX > 0 || spanY > 0 ? Math.min(spanX > 0 ? freeX / spanX : Infinity, spanY > 0 ? freeY / spanY : Infinity) : 1;
  const ox = width / 2 - ((minX + maxX) / 2) * scale;
  const oy = height / 2 + ((minY + maxY) / 2) * scale;
  return { scale, ox, oy };
}

/** Canvas positions (Float32Array [px0, py0, ...]) of the points under a scatterLayout. */
export function placePoints(xy, count, layout) {
  const out = new Float32Array(2 * count);
  for (let i = 0; i < count; i++) {
    out[2 * i] = layout.ox + xy[2 * i] * layout.scale;
    out[2 * i + 1] = layout.oy - xy[2 * i + 1] * layout.scale;
  }
  return out;
}

/**
 * The point whose centre is nearest (x, y) within `radius` px, or -1. Points drawn later lie on
 * top, so among equally near points the later one wins.
 */
export function pointAt(px, count, x, y, radius) {
  let best = -1, bestD = radius * radius;
  for (let i = 0; i < count; i++) {
    const dx = px[2 * i] - x, dy = px[2 * i + 1] - y;
    const d = dx * dx + dy * dy;
    if (d <= bestD) { best = i; bestD = d; }
  }
  return best;
}

/** Side (CSS px) of the thumbnails drawn in a width x height scatter of `count` images. */
export function scatterThumb(count, width, height, { min = 14, max = 44 } = {}) {
  if (count <= 0) return max;
  return Math.max(min, Math.min(max, Math.floor(0.5 * Math.sqrt((width * height) / count))));
}

// Tableau 10: distinct on a projector and for the common colour-vision deficiencies
export const LABEL_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

export function labelColor(code) {
  return code >= 0 ? LABEL_COLORS[code % LABEL_COLORS.length] : "#8a91a0";
}

/** Atlas placement of M square thumbnails of side t: [x, y] of thumbnail i on a cols-wide sheet. */
export function atlasLayout(m, t) {
  const cols = Math.max(1, Math.ceil(Math.sqrt(m)));
  return { cols, rows: Math.max(1, Math.ceil(m / cols)), t, width: cols * t, height: Math.max(1, Math.ceil(m / cols)) * t };
}
