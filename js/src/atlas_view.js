// Zoom and pan of the atlas canvas, as pure arithmetic (no DOM): a view maps atlas-image pixels to
// canvas pixels, canvas = image * scale + (tx, ty). Zooming keeps the image point under the cursor
// (or the pinch centre) where it is; hover and click map a canvas point back through the view, so
// they hit the same cell at every zoom.

export const MIN_ZOOM = 1; // relative to the fitted view: never smaller than the whole atlas
export const MAX_ZOOM = 16;

/** The view that shows the whole image centred in the canvas (the reset / double-click view). */
export function fitView(imageW, imageH, canvasW, canvasH) {
  if (!(imageW > 0 && imageH > 0)) return { scale: 1, tx: 0, ty: 0, fit: 1 };
  const scale = Math.min(canvasW / imageW, canvasH / imageH);
  return { scale, tx: (canvasW - imageW * scale) / 2, ty: (canvasH - imageH * scale) / 2, fit: scale };
}

/** Image pixel [x, y] under canvas pixel (cx, cy). */
export function toImage(view, cx, cy) {
  return [(cx - view.tx) / view.scale, (cy - view.ty) / view.scale];
}

/** Canvas pixel [cx, cy] of image pixel (x, y). */
export function toCanvas(view, x, y) {
  return [x * view.scale + view.tx, y * view.scale + view.ty];
}

/** Zoom by `factor` about canvas point (cx, cy), within [MIN_ZOOM, MAX_ZOOM] times the fitted scale. */
export function zoomAt(view, cx, cy, factor) {
  const fit = view.fit || view.scale;
  const scale = Math.min(Math.max(view.scale * factor, fit * MIN_ZOOM), fit * MAX_ZOOM);
  const k = scale / view.scale;
  return { ...view, scale, tx: cx - (cx - view.tx) * k, ty: cy - (cy - view.ty) * k };
}

/** Move the view by (dx, dy) canvas pixels. */
export function panBy(view, dx, dy) {
  return { ...view, tx: view.tx + dx, ty: view.ty + dy };
}

/**
 * Keep the image on screen: where it is wider than the canvas its edges may not come inside the
 * canvas's; where narrower it stays centred on that axis.
 */
export function clampView(view, imageW, imageH, canvasW, canvasH) {
  const axis = (t, size, canvas) => {
    const shown = size * view.scale;
    if (shown <= canvas) return (canvas - shown) / 2;
    return Math.min(0, Math.max(canvas - shown, t));
  };
  return { ...view, tx: axis(view.tx, imageW, canvasW), ty: axis(view.ty, imageH, canvasH) };
}

/** Zoom factor of one wheel event: ~10% per notch (deltaY 100 px), pixel- or line-based deltas. */
export function wheelFactor(deltaY, deltaMode = 0) {
  const pixels = deltaMode === 1 ? deltaY * 33 : deltaMode === 2 ? deltaY * 400 : deltaY;
  return Math.exp(-pixels * 0.001);
}

/** Canvas pixel of a pointer event at (clientX, clientY) on a canvas drawn in box `rect` (CSS may scale it). */
export function eventToCanvas(rect, canvasW, canvasH, clientX, clientY) {
  return [(clientX - rect.left) * canvasW / (rect.width || 1), (clientY - rect.top) * canvasH / (rect.height || 1)];
}

/** The non-empty cell [row, col, count] at image pixel (x, y) of a grid of `info.cell`-pixel cells, or null. */
export function cellAt(info, x, y) {
  const size = info.cell || 1, grid = info.grid || Infinity;
  if (!(x >= 0 && y >= 0)) return null;
  const row = Math.floor(y / size), col = Math.floor(x / size);
  if (row >= grid || col >= grid) return null;
  const found = (info.cells || []).find(([r, c]) => r === row && c === col);
  return found ? [row, col, found[2]] : null;
}

/** The cell under canvas pixel (cx, cy) seen through `view`. */
export function cellAtCanvas(info, view, cx, cy) {
  const [x, y] = toImage(view, cx, cy);
  return cellAt(info, x, y);
}

/** Zoom of `view` relative to its fitted view (1 = the whole atlas fits). */
export function zoomLevel(view) {
  return view.scale / (view.fit || view.scale);
}
