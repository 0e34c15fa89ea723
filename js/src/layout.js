// Grid layout of tiles on one canvas. Channel c sits at column c % cols, row floor(c / cols),
// its top-left corner at (gap + col * (tile + gap), gap + row * (tile + gap)).

/**
 * Largest square tile (between minTile and maxTile) such that the grid fits maxWidth and,
 * if possible, maxHeight. Returns {count, cols, rows, tile, gap, width, height}.
 */
export function gridLayout({ count, maxWidth, maxHeight = Infinity, minTile = 8, maxTile = 96, gap = 2 }) {
  count = Math.max(0, count | 0);
  maxWidth = Math.max(minTile + 2 * gap, Math.floor(maxWidth));
  let best = null;
  for (let tile = Math.max(minTile, maxTile); tile >= minTile; tile--) {
    const fit = Math.max(1, Math.floor((maxWidth - gap) / (tile + gap)));
    const cols = Math.max(1, Math.min(fit, count));
    const rows = Math.max(1, Math.ceil(count / cols));
    const layout = { count, cols, rows, tile, gap, width: gap + cols * (tile + gap), height: gap + rows * (tile + gap) };
    best = layout;
    if (layout.height <= maxHeight) return layout;
  }
  return best;
}

export function tileOrigin(layout, channel) {
  const col = channel % layout.cols;
  const row = Math.floor(channel / layout.cols);
  return [layout.gap + col * (layout.tile + layout.gap), layout.gap + row * (layout.tile + layout.gap)];
}

/** Channel under canvas pixel (x, y), or -1 over a gap or past the last channel. */
export function tileAt(layout, x, y) {
  const step = layout.tile + layout.gap;
  const cx = x - layout.gap, cy = y - layout.gap;
  if (cx < 0 || cy < 0) return -1;
  const col = Math.floor(cx / step), row = Math.floor(cy / step);
  if (cx - col * step >= layout.tile || cy - row * step >= layout.tile) return -1;
  if (col >= layout.cols) return -1;
  const channel = row * layout.cols + col;
  return channel < layout.count ? channel : -1;
}

/** Tile size that shows a map of h x w pixels well: integer zoom up to maxTile, at least minTile. */
export function naturalTile(h, w, { minTile = 8, maxTile = 112 } = {}) {
  const side = Math.max(h, w, 1);
  if (side >= maxTile) return maxTile;
  return Math.max(minTile, Math.floor(maxTile / side) * side);
}
