// Line charts of the Trust tab (similarity per stage, deletion / insertion curves): pure arithmetic
// (plotPoints, tested in node) and one canvas drawing function. The values come from the kernel.

/** Colours of the charts' series, in order (matplotlib's tab10: the notebook figures use the same). */
export const SERIES_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/**
 * [[px, py], ...] of the points (xs[i], ys[i]) in a width x height box: x in [x0, x1] left to right,
 * y in [y0, y1] bottom to top, `pad` pixels inside each edge; values outside the range are clipped to
 * its edge, non-finite ones dropped.
 */
export function plotPoints(xs, ys, { x0, x1, y0, y1 }, width, height, pad = 6) {
  const sx = (width - 2 * pad) / ((x1 - x0) || 1), sy = (height - 2 * pad) / ((y1 - y0) || 1);
  const clip = (v, lo, hi) => Math.min(Math.max(v, Math.min(lo, hi)), Math.max(lo, hi));
  const out = [];
  for (let i = 0; i < Math.min(xs.length, ys.length); i++) {
    if (!Number.isFinite(xs[i]) || !Number.isFinite(ys[i])) continue;
    out.push([pad + (clip(xs[i], x0, x1) - x0) * sx, height - pad - (clip(ys[i], y0, y1) - y0) * sy]);
  }
  return out;
}

/**
 * Draw series [{xs, ys, colour}] on `canvas` over `range`, with dashed horizontal lines at `guides`
 * (y values) and an optional vertical `marker` (x value); axes drawn as a light frame.
 */
export function drawChart(canvas, series, range, { guides = [], marker = null, dots = false } = {}) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#ccc"; ctx.lineWidth = 1; ctx.setLineDash([]);
  ctx.strokeRect(0.5, 0.5, width - 1, height - 1);
  ctx.setLineDash([3, 3]); ctx.strokeStyle = "#999";
  for (const y of guides) {
    const [[, py]] = plotPoints([range.x0], [y], range, width, height);
    ctx.beginPath(); ctx.moveTo(0, py); ctx.lineTo(width, py); ctx.stroke();
  }
  if (marker !== null) {
    const [[px]] = plotPoints([marker], [range.y0], range, width, height);
    ctx.beginPath(); ctx.moveTo(px, 0); ctx.lineTo(px, height); ctx.stroke();
  }
  ctx.setLineDash([]);
  for (const { xs, ys, colour } of series) {
    const points = plotPoints(xs, ys, range, width, height);
    ctx.strokeStyle = ctx.fillStyle = colour; ctx.lineWidth = 1.8;
    ctx.beginPath();
    points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
    if (dots) for (const [x, y] of points) { ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill(); }
  }
  canvas.dataset.version = String((Number(canvas.dataset.version) || 0) + 1);
}
