import { test } from "node:test";
import assert from "node:assert/strict";
import { cellAt, cellAtCanvas, clampView, eventToCanvas, fitView, panBy, toCanvas, toImage, wheelFactor, zoomAt,
  zoomLevel, MAX_ZOOM } from "../src/atlas_view.js";

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test("the fitted view centres the atlas: a 256-px atlas on a 384-px canvas is scaled 1.5 from 0", () => {
  assert.deepEqual(fitView(256, 256, 384, 384), { scale: 1.5, tx: 0, ty: 0, fit: 1.5 });
  // a wide picture: scale by width (400/200 = 2), centred vertically: (400 - 100*2) / 2 = 100
  assert.deepEqual(fitView(200, 100, 400, 400), { scale: 2, tx: 0, ty: 100, fit: 2 });
  assert.deepEqual(toImage(fitView(256, 256, 384, 384), 96, 192), [64, 128]);
});

test("zooming keeps the image point under the cursor in place", () => {
  const view = { scale: 1.5, tx: 0, ty: 0, fit: 1.5 };
  // zoom x2 about canvas (96, 192): image point (64, 128) must stay there.
  // scale 3; tx = 96 - (96 - 0) * 2 = -96; ty = 192 - 192 * 2 = -192
  const zoomed = zoomAt(view, 96, 192, 2);
  assert.deepEqual(zoomed, { scale: 3, tx: -96, ty: -192, fit: 1.5 });
  assert.deepEqual(toImage(zoomed, 96, 192), [64, 128]);
  assert.deepEqual(toCanvas(zoomed, 64, 128), [96, 192]);
  close(zoomLevel(zoomed), 2);
  // zoom back by 1/2 about the same point: the fitted view again
  assert.deepEqual(zoomAt(zoomed, 96, 192, 0.5), view);
});

test("zoom is limited to [fit, 16 x fit] and the point under the cursor still stays", () => {
  const view = { scale: 1.5, tx: 0, ty: 0, fit: 1.5 };
  assert.equal(zoomAt(view, 10, 10, 0.1).scale, 1.5); // never smaller than the whole atlas
  const far = zoomAt(view, 100, 50, 1000);
  assert.equal(far.scale, 1.5 * MAX_ZOOM);
  // k = 24 / 1.5 = 16: tx = 100 - 100 * 16 = -1500, ty = 50 - 50 * 16 = -750
  assert.deepEqual([far.tx, far.ty], [-1500, -750]);
});

test("hover and click hit the same cell at every zoom and pan", () => {
  // grid 8 of 32-px cells (a 256-px atlas) on a 384-px canvas; cell (2, 5) covers image x 160..192, y 64..96
  const info = { cell: 32, grid: 8, cells: [[2, 5, 7, null], [0, 0, 1, null]] };
  let view = fitView(256, 256, 384, 384);
  // at fit (scale 1.5) cell (2, 5) is canvas x 240..288, y 96..144
  assert.deepEqual(cellAtCanvas(info, view, 241, 97), [2, 5, 7]);
  assert.deepEqual(cellAtCanvas(info, view, 287, 143), [2, 5, 7]);
  assert.equal(cellAtCanvas(info, view, 289, 143), null); // cell (2, 6) is empty
  view = zoomAt(view, 0, 0, 4); // scale 6 from the corner: cell (2, 5) is canvas x 960..1152, y 384..576
  assert.deepEqual(cellAtCanvas(info, view, 961, 385), [2, 5, 7]);
  assert.deepEqual(cellAtCanvas(info, view, 5, 5), [0, 0, 1]);
  view = panBy(view, -900, -350); // now x 60..252, y 34..226
  assert.deepEqual([view.tx, view.ty], [-900, -350]);
  assert.deepEqual(cellAtCanvas(info, view, 61, 35), [2, 5, 7]);
  assert.deepEqual(cellAtCanvas(info, view, 251, 225), [2, 5, 7]);
  assert.equal(cellAtCanvas(info, view, 59, 35), null); // cell (2, 4): empty
  // outside the atlas: nothing, even where a cell index would wrap
  assert.equal(cellAt(info, -1, 5), null);
  assert.equal(cellAt(info, 5, 300), null);
});

test("the view is kept on screen: a zoomed atlas cannot be dragged past its edges, a fitted one stays centred", () => {
  const zoomed = { scale: 3, tx: 50, ty: -2000, fit: 1.5 }; // 768 px of atlas on a 384-px canvas
  assert.deepEqual(clampView(zoomed, 256, 256, 384, 384), { scale: 3, tx: 0, ty: -384, fit: 1.5 });
  const fitted = { scale: 1.5, tx: 30, ty: -30, fit: 1.5 };
  assert.deepEqual(clampView(fitted, 256, 256, 384, 384), { scale: 1.5, tx: 0, ty: 0, fit: 1.5 });
  const wide = { scale: 2, tx: 0, ty: 77, fit: 2 }; // 400 x 200 shown on 400 x 400: centred vertically
  assert.deepEqual(clampView(wide, 200, 100, 400, 400), { scale: 2, tx: 0, ty: 100, fit: 2 });
});

test("wheel factors: one notch down zooms out by exp(-0.1), up zooms in, line and page deltas scale", () => {
  close(wheelFactor(100), Math.exp(-0.1));
  close(wheelFactor(-100), Math.exp(0.1));
  close(wheelFactor(3, 1), Math.exp(-0.099));
  close(wheelFactor(1, 2), Math.exp(-0.4));
  close(wheelFactor(100) * wheelFactor(-100), 1);
});

test("pointer positions map through the css size of the canvas", () => {
  // a 768-px canvas drawn 384 css px wide at (10, 20): css (110, 70) is canvas (200, 100)
  assert.deepEqual(eventToCanvas({ left: 10, top: 20, width: 384, height: 384 }, 768, 768, 110, 70), [200, 100]);
});
